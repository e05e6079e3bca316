"""Alerts (unread first in the eye), their deliveries, and notification channels."""

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from crawlhub.alerting import alerts, channels
from crawlhub.errors import InvalidInput
from crawlhub.ui.forms import field, page_number, parse_form
from crawlhub.ui.rendering import action, back, page, render
from crawlhub.web.schemas.alerts import ChannelCreate, ChannelPatch
from crawlhub.web.sessions import Session
from crawlhub.web.validation import ctx

PAGE_SIZE = 20
KINDS = ("webhook", "slack", "dingtalk", "feishu", "wecom", "email")
LEVELS = ("info", "warning", "error")


def alerts_page(
    request: Request,
    session: Session,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> Response:
    """Alerts with their deliveries, and the channels with their forms."""
    context = ctx(request)
    number = page_number(request)
    rows, total = alerts.list_alerts(
        context, page=number, page_size=PAGE_SIZE, level=None, is_read=None, spider=None
    )
    deliveries = alerts.deliveries_by_alert(context, [a.id for a in rows])
    channel_rows, _ = channels.list_channels(context, page=1, page_size=100)
    return render(
        request,
        session,
        "alerts.html",
        status,
        alerts=rows,
        total=total,
        page=number,
        pages=-(-total // PAGE_SIZE),
        deliveries=deliveries,
        channels=channel_rows,
        unread=alerts.unread_count(context),
        kinds=KINDS,
        levels=LEVELS,
        errors=errors or {},
        values=values or {},
    )


@page
def list_alerts(request: Request, session: Session) -> Response:
    """The alerts page."""
    return alerts_page(request, session)


@action
def mark_read(request: Request, session: Session, form: FormData) -> Response:
    """Mark one alert read."""
    alerts.mark_read(ctx(request), request.path_params["id"])
    return back("/alerts", "Alert marked read.")


@action
def mark_all_read(request: Request, session: Session, form: FormData) -> Response:
    """Mark every alert read."""
    alerts.mark_all_read(ctx(request))
    return back("/alerts", "Every alert marked read.")


def channel_values(form: FormData, *, creating: bool) -> dict[str, Any]:
    """A channel form's fields; a blank secret is left as it is (secrets are write-only)."""
    values: dict[str, Any] = {name: field(form, name) for name in ("kind", "target", "min_level")}
    if field(form, "secret"):
        values["secret"] = field(form, "secret")
    spider = field(form, "spider_id")
    if spider or not creating:
        values["spider_id"] = spider or None
    values["enabled"] = form.get("enabled") == "on"
    return values


def field_of(exc: InvalidInput) -> str:
    """The form field an error names in its details ('' for the form as a whole)."""
    details = exc.details if isinstance(exc.details, list) else []
    locations = [d.get("loc") for d in details if isinstance(d, dict)]
    return str(locations[0][-1]) if locations and locations[0] else ""


@action
def create_channel(request: Request, session: Session, form: FormData) -> Response:
    """Add a channel."""
    values = channel_values(form, creating=True)
    body, errors = parse_form(ChannelCreate, dict(values))
    if not errors:
        try:
            made = channels.create_channel(ctx(request), body.model_dump(exclude_unset=True))
            return back("/alerts", f'Channel added ({made.kind}); "Test" sends it a notification.')
        except InvalidInput as exc:
            errors[field_of(exc)] = exc.message
    return alerts_page(request, session, 422, errors, values)


@action
def update_channel(request: Request, session: Session, form: FormData) -> Response:
    """Change a channel."""
    body, errors = parse_form(ChannelPatch, channel_values(form, creating=False))
    if not errors:
        try:
            channels.update_channel(
                ctx(request), request.path_params["id"], body.model_dump(exclude_unset=True)
            )
            return back("/alerts", "Channel saved.")
        except InvalidInput as exc:
            errors[""] = exc.message
    return alerts_page(request, session, 422, {f"channel-{k}": v for k, v in errors.items()})


@action
def test_channel(request: Request, session: Session, form: FormData) -> Response:
    """Send a test notification and show whether the channel took it."""
    outcome = channels.test_channel(ctx(request), request.path_params["id"])
    said = ("Test notification delivered." if outcome.delivered else
            f"Test notification failed: {outcome.error}")  # fmt: skip
    return back("/alerts", said)


@action
def delete_channel(request: Request, session: Session, form: FormData) -> Response:
    """Delete a channel."""
    channels.delete_channel(ctx(request), request.path_params["id"])
    return back("/alerts", "Channel deleted.")
