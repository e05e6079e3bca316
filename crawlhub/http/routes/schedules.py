"""Handlers of schedules and their preview."""

from spectree import Response as Resp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crawlhub.scheduling import schedules
from crawlhub.web.responses import ModelResponse
from crawlhub.web.schemas.common import PageQuery
from crawlhub.web.schemas.schedules import (
    FireTime,
    Preview,
    PreviewQuery,
    ScheduleCreate,
    ScheduleOut,
    SchedulePage,
    SchedulePatch,
)
from crawlhub.web.validation import body_of, ctx, errors, query_of, spec


@spec.validate(query=PageQuery, resp=Resp(HTTP_200=SchedulePage, **errors(404)), tags=["schedules"])
def list_schedules(request: Request) -> Response:
    """A spider's schedules."""
    query = query_of(request, PageQuery)
    rows, total = schedules.list_schedules(
        ctx(request).db, request.path_params["ref"], page=query.page, page_size=query.page_size
    )
    return ModelResponse(
        SchedulePage.of([ScheduleOut.model_validate(r) for r in rows], total, query)
    )


@spec.validate(
    json=ScheduleCreate, resp=Resp(HTTP_201=ScheduleOut, **errors(400, 404)), tags=["schedules"]
)
def create_schedule(request: Request) -> Response:
    """Add a cron schedule to a spider (422 with the reason for an expression that cannot fire)."""
    context = ctx(request)
    schedule = schedules.create_schedule(
        context.db,
        request.path_params["ref"],
        body_of(request, ScheduleCreate).model_dump(exclude_unset=True),
        context.wake_ticker,
    )
    return ModelResponse(ScheduleOut.model_validate(schedule), 201)


@spec.validate(resp=Resp(HTTP_200=ScheduleOut, **errors(404)), tags=["schedules"])
def get_schedule(request: Request) -> Response:
    """One schedule."""
    schedule = schedules.get_schedule(ctx(request).db, request.path_params["id"])
    return ModelResponse(ScheduleOut.model_validate(schedule))


@spec.validate(
    json=SchedulePatch, resp=Resp(HTTP_200=ScheduleOut, **errors(400, 404)), tags=["schedules"]
)
def patch_schedule(request: Request) -> Response:
    """Change or pause/resume a schedule; resuming does not replay missed fires."""
    context = ctx(request)
    schedule = schedules.update_schedule(
        context.db,
        request.path_params["id"],
        body_of(request, SchedulePatch).model_dump(exclude_unset=True),
        context.wake_ticker,
    )
    return ModelResponse(ScheduleOut.model_validate(schedule))


@spec.validate(resp=Resp("HTTP_204", **errors(404)), tags=["schedules"])
def delete_schedule(request: Request) -> Response:
    """Delete a schedule; its past runs stay."""
    schedules.delete_schedule(ctx(request).db, request.path_params["id"])
    return Response(status_code=204)


@spec.validate(query=PreviewQuery, resp=Resp(HTTP_200=Preview, **errors(404)), tags=["schedules"])
def preview_schedule(request: Request) -> Response:
    """The next n fire times after `after` (default now), in UTC and in the schedule's zone."""
    query = query_of(request, PreviewQuery)
    fires = schedules.preview(ctx(request).db, request.path_params["id"], query.n, query.after)
    return ModelResponse(Preview(items=[FireTime(utc=u, local=loc) for u, loc in fires]))


ROUTES = [
    Route("/api/spiders/{ref}/schedules", list_schedules, methods=["GET"]),
    Route("/api/spiders/{ref}/schedules", create_schedule, methods=["POST"]),
    Route("/api/schedules/{id}", get_schedule, methods=["GET"]),
    Route("/api/schedules/{id}", patch_schedule, methods=["PATCH"]),
    Route("/api/schedules/{id}", delete_schedule, methods=["DELETE"]),
    Route("/api/schedules/{id}/preview", preview_schedule, methods=["GET"]),
]
