"""Handlers of alerts, their deliveries, and notification channels."""

from spectree import Response as Resp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crawlhub.alerting import alerts, channels
from crawlhub.web.responses import ModelResponse
from crawlhub.web.schemas.alerts import (
    AlertListQuery,
    AlertOut,
    AlertPage,
    ChannelCreate,
    ChannelOut,
    ChannelPage,
    ChannelPatch,
    ChannelTest,
    DeliveryOut,
    DeliveryPage,
)
from crawlhub.web.schemas.common import Count, PageQuery
from crawlhub.web.validation import body_of, ctx, errors, query_of, spec


@spec.validate(query=AlertListQuery, resp=Resp(HTTP_200=AlertPage, **errors(404)), tags=["alerts"])
def list_alerts(request: Request) -> Response:
    """Alerts, most recently seen first (filters: level, is_read, spider_id as id or name)."""
    q = query_of(request, AlertListQuery)
    rows, total = alerts.list_alerts(
        ctx(request), page=q.page, page_size=q.page_size, level=q.level, is_read=q.is_read,
        spider=q.spider_id,
    )  # fmt: skip
    return ModelResponse(AlertPage.of([AlertOut.model_validate(a) for a in rows], total, q))


@spec.validate(resp=Resp(HTTP_200=Count), tags=["alerts"])
def unread_alerts(request: Request) -> Response:
    """How many alerts are unread."""
    return ModelResponse(Count(count=alerts.unread_count(ctx(request))))


@spec.validate(resp=Resp(HTTP_200=AlertOut, **errors(404)), tags=["alerts"])
def read_alert(request: Request) -> Response:
    """Mark one alert read."""
    alert = alerts.mark_read(ctx(request), request.path_params["id"])
    return ModelResponse(AlertOut.model_validate(alert))


@spec.validate(resp=Resp(HTTP_200=Count), tags=["alerts"])
def read_all_alerts(request: Request) -> Response:
    """Mark every alert read; returns how many changed."""
    return ModelResponse(Count(count=alerts.mark_all_read(ctx(request))))


@spec.validate(resp=Resp(HTTP_200=DeliveryPage, **errors(404)), tags=["alerts"])
def alert_deliveries(request: Request) -> Response:
    """Where an alert was delivered: status, attempts and last error per channel."""
    rows = alerts.deliveries(ctx(request), request.path_params["id"])
    return ModelResponse(DeliveryPage(items=[DeliveryOut.model_validate(d) for d in rows]))


@spec.validate(query=PageQuery, resp=Resp(HTTP_200=ChannelPage), tags=["channels"])
def list_channels(request: Request) -> Response:
    """Notification channels (secrets are never returned)."""
    q = query_of(request, PageQuery)
    rows, total = channels.list_channels(ctx(request), page=q.page, page_size=q.page_size)
    return ModelResponse(ChannelPage.of([ChannelOut.model_validate(c) for c in rows], total, q))


@spec.validate(
    json=ChannelCreate, resp=Resp(HTTP_201=ChannelOut, **errors(400, 404)), tags=["channels"]
)
def create_channel(request: Request) -> Response:
    """Add a channel: webhook, slack, dingtalk, feishu, wecom (URL) or email (address). A URL
    may not point at loopback, link-local, private or unique-local addresses, local names, or
    the database or Redis host, unless CRAWLHUB_CHANNEL_ALLOW_HOSTS allows it (422)."""
    body = body_of(request, ChannelCreate)
    channel = channels.create_channel(ctx(request), body.model_dump(exclude_unset=True))
    return ModelResponse(ChannelOut.model_validate(channel), 201)


@spec.validate(
    json=ChannelPatch, resp=Resp(HTTP_200=ChannelOut, **errors(400, 404)), tags=["channels"]
)
def patch_channel(request: Request) -> Response:
    """Change a channel; absent fields stay; a new target is checked as on creation (422)."""
    changes = body_of(request, ChannelPatch).model_dump(exclude_unset=True)
    channel = channels.update_channel(ctx(request), request.path_params["id"], changes)
    return ModelResponse(ChannelOut.model_validate(channel))


@spec.validate(resp=Resp("HTTP_204", **errors(404)), tags=["channels"])
def delete_channel(request: Request) -> Response:
    """Delete a channel."""
    channels.delete_channel(ctx(request), request.path_params["id"])
    return Response(status_code=204)


@spec.validate(resp=Resp(HTTP_200=ChannelTest, **errors(404)), tags=["channels"])
def test_channel(request: Request) -> Response:
    """Send a test notification now and report whether the channel accepted it: the target's
    HTTP status and a short reason, never its reply body."""
    outcome = channels.test_channel(ctx(request), request.path_params["id"])
    return ModelResponse(ChannelTest.model_validate(outcome))


ROUTES = [
    Route("/api/alerts", list_alerts, methods=["GET"]),
    Route("/api/alerts/unread-count", unread_alerts, methods=["GET"]),
    Route("/api/alerts/read-all", read_all_alerts, methods=["POST"]),
    Route("/api/alerts/{id}/read", read_alert, methods=["POST"]),
    Route("/api/alerts/{id}/deliveries", alert_deliveries, methods=["GET"]),
    Route("/api/channels", list_channels, methods=["GET"]),
    Route("/api/channels", create_channel, methods=["POST"]),
    Route("/api/channels/{id}", patch_channel, methods=["PATCH"]),
    Route("/api/channels/{id}", delete_channel, methods=["DELETE"]),
    Route("/api/channels/{id}/test", test_channel, methods=["POST"]),
]
