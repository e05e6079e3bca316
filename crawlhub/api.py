"""The HTTP API (SPEC §8): thin handlers that parse, call one domain function and serialise."""

import contextlib
import logging
import re
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from spectree import Response as Resp
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from crawlhub import alerts, data, export, metrics, queues, schedules, spiders, sse, tasks
from crawlhub.context import Context
from crawlhub.errors import BadRequest, NotFound, TooLarge
from crawlhub.repo import migrate
from crawlhub.schemas import (
    AlertListQuery,
    AlertOut,
    AlertPage,
    ChannelCreate,
    ChannelOut,
    ChannelPage,
    ChannelPatch,
    ChannelTest,
    Count,
    DataPage,
    DataQuery,
    DeadLetter,
    DeadLetterPage,
    DeadLetterQuery,
    DeleteQuery,
    DeliveryOut,
    DeliveryPage,
    ErrorResponse,
    ExportQuery,
    FireTime,
    Health,
    ItemOut,
    LogLineOut,
    LogPage,
    LogQuery,
    LogStreamQuery,
    PageQuery,
    Preview,
    PreviewQuery,
    QueueOut,
    Queues,
    Requeued,
    RunRequest,
    ScheduleCreate,
    ScheduleOut,
    SchedulePage,
    SchedulePatch,
    SpiderCreate,
    SpiderListQuery,
    SpiderOut,
    SpiderPage,
    SpiderPatch,
    TaskListQuery,
    TaskOut,
    TaskPage,
    VersionOut,
    VersionPage,
    VersionUpload,
    WorkerOut,
)
from crawlhub.web import (
    EXCEPTION_HANDLERS,
    BearerAuth,
    BodyLimit,
    ModelResponse,
    body_of,
    make_spectree,
    parse,
    query_of,
    read_json,
)

logger = logging.getLogger(__name__)

spec = make_spectree()
UPLOAD_PATHS = re.compile(r"^/api/spiders/[^/]+/versions/?$")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the uploaded file


def _errors(*statuses: int) -> dict[str, Any]:
    return {f"HTTP_{status}": ErrorResponse for status in statuses}


def ctx(request: Request) -> Context:
    """The process context the app was built with."""
    context: Context = request.app.state.ctx
    return context


# --- health -----------------------------------------------------------------------------


@spec.validate(resp=Resp(HTTP_200=Health), tags=["health"], security={})
async def healthz(request: Request) -> Response:
    """The process is alive."""
    return ModelResponse(Health(status="ok"))


@spec.validate(resp=Resp(HTTP_200=Health, HTTP_503=Health), tags=["health"], security={})
async def readyz(request: Request) -> Response:
    """The database (at the newest migration) and Redis answer."""
    context = ctx(request)
    checks = {"database": "ok", "migrations": "ok", "redis": "embedded"}
    try:
        at_head = await run_in_threadpool(migrate.is_at_head, context.db.engine)
        if not at_head:
            checks["migrations"] = "behind: run `crawlhub migrate`"
    except Exception as exc:  # any driver error means "not ready"
        logger.warning("readyz: database check failed: %s", type(exc).__name__)
        checks["database"] = checks["migrations"] = "unreachable"
    if context.redis is not None:
        try:
            await run_in_threadpool(context.redis.ping)
            checks["redis"] = "ok"
        except Exception as exc:
            logger.warning("readyz: redis check failed: %s", type(exc).__name__)
            checks["redis"] = "unreachable"
    ready = all(value in ("ok", "embedded") for value in checks.values())
    health = Health(status="ok" if ready else "unavailable", checks=checks)
    return ModelResponse(health, 200 if ready else 503)


@spec.validate(resp=Resp("HTTP_200"), tags=["health"], security={})
async def prometheus(request: Request) -> Response:
    """Prometheus metrics: this process's counters, task and queue state."""
    body = await run_in_threadpool(metrics.render, ctx(request))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return JSONResponse(spec.spec)


# --- spiders ----------------------------------------------------------------------------


@spec.validate(query=SpiderListQuery, resp=Resp(HTTP_200=SpiderPage), tags=["spiders"])
def list_spiders(request: Request) -> Response:
    """List spiders, newest first."""
    query = query_of(request, SpiderListQuery)
    rows, total = spiders.list_spiders(
        ctx(request).db,
        page=query.page,
        page_size=query.page_size,
        kind=query.kind,
        enabled=query.enabled,
    )
    return ModelResponse(SpiderPage.of([SpiderOut.model_validate(r) for r in rows], total, query))


@spec.validate(
    json=SpiderCreate, resp=Resp(HTTP_201=SpiderOut, **_errors(400, 409)), tags=["spiders"]
)
def create_spider(request: Request) -> Response:
    """Register a spider; upload its code with POST /api/spiders/{id}/versions."""
    context = ctx(request)
    spider = spiders.create_spider(context.db, context.settings, body_of(request, SpiderCreate))
    return ModelResponse(SpiderOut.model_validate(spider), 201)


@spec.validate(resp=Resp(HTTP_200=SpiderOut, **_errors(404)), tags=["spiders"])
def get_spider(request: Request) -> Response:
    """One spider, by id or name."""
    spider = spiders.get_spider(ctx(request).db, request.path_params["ref"])
    return ModelResponse(SpiderOut.model_validate(spider))


@spec.validate(
    json=SpiderPatch, resp=Resp(HTTP_200=SpiderOut, **_errors(400, 404, 409)), tags=["spiders"]
)
def patch_spider(request: Request) -> Response:
    """Change a spider's settings; absent fields stay as they are."""
    context = ctx(request)
    spider = spiders.update_spider(
        context.db, context.settings, request.path_params["ref"], body_of(request, SpiderPatch)
    )
    return ModelResponse(SpiderOut.model_validate(spider))


@spec.validate(resp=Resp("HTTP_204", **_errors(404, 409)), tags=["spiders"])
def delete_spider(request: Request) -> Response:
    """Delete a spider with its versions, schedules, tasks, logs and items."""
    spiders.delete_spider(ctx(request).db, request.path_params["ref"])
    return Response(status_code=204)


@spec.validate(query=PageQuery, resp=Resp(HTTP_200=VersionPage, **_errors(404)), tags=["spiders"])
def list_versions(request: Request) -> Response:
    """A spider's uploaded versions, newest first."""
    query = query_of(request, PageQuery)
    rows, total = spiders.list_versions(
        ctx(request).db, request.path_params["ref"], page=query.page, page_size=query.page_size
    )
    return ModelResponse(VersionPage.of([VersionOut.model_validate(r) for r in rows], total, query))


@spec.validate(
    form=VersionUpload,
    skip_validation=True,
    resp=Resp(HTTP_201=VersionOut, **_errors(400, 404, 413, 422)),
    tags=["spiders"],
)
async def upload_version(request: Request) -> Response:
    """Upload a .zip, .tar.gz or .py (multipart field `file`); it becomes the current version."""
    context = ctx(request)
    limit = context.settings.max_upload_bytes
    async with request.form(max_files=1, max_fields=4) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest(
                "expected multipart/form-data with the package in a field named 'file'"
            )
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(
                f"the upload is over the limit of {limit} bytes", code="archive_too_large"
            )
        filename = safe_filename(upload.filename)
    version = await run_in_threadpool(
        spiders.upload_version,
        context.db,
        context.settings,
        request.path_params["ref"],
        filename,
        data,
    )
    return ModelResponse(VersionOut.model_validate(version), 201)


# --- runs and tasks ---------------------------------------------------------------------


@spec.validate(
    json=RunRequest, resp=Resp(HTTP_202=TaskOut, **_errors(400, 404, 409)), tags=["tasks"]
)
def run_spider(request: Request) -> Response:
    """Create a pending run of the spider's current version and enqueue it."""
    body = body_of(request, RunRequest)
    task = tasks.create_run(ctx(request), request.path_params["ref"], body.params)
    return ModelResponse(TaskOut.model_validate(task), 202)


@spec.validate(
    json=RunRequest, skip_validation=True, resp=Resp("HTTP_200", **_errors(400, 404, 409)),
    tags=["tasks"],
)  # fmt: skip
async def test_run(request: Request) -> Response:
    """Run the spider now and stream it back as server-sent events: `log` events, then `status`."""
    context = ctx(request)
    body = parse(RunRequest, await read_json(request))
    task = await run_in_threadpool(
        tasks.create_run, context, request.path_params["ref"], body.params, "test"
    )
    events = sse.task_log_events(context, task.id, 0)
    return StreamingResponse(events, media_type="text/event-stream", headers=sse.HEADERS)


@spec.validate(query=TaskListQuery, resp=Resp(HTTP_200=TaskPage, **_errors(404)), tags=["tasks"])
def list_tasks(request: Request) -> Response:
    """List runs, newest first (filters: spider_id (id or name), status, trigger, schedule_id)."""
    query = query_of(request, TaskListQuery)
    rows, total = tasks.list_tasks(
        ctx(request), page=query.page, page_size=query.page_size, spider=query.spider_id,
        status=query.status, trigger=query.trigger, schedule_id=query.schedule_id,
    )  # fmt: skip
    return ModelResponse(TaskPage.of([TaskOut.model_validate(t) for t in rows], total, query))


@spec.validate(resp=Resp(HTTP_200=TaskOut, **_errors(404)), tags=["tasks"])
def get_task(request: Request) -> Response:
    """One run."""
    return ModelResponse(
        TaskOut.model_validate(tasks.get_task(ctx(request), request.path_params["id"]))
    )


@spec.validate(resp=Resp(HTTP_200=TaskOut, **_errors(404, 409)), tags=["tasks"])
def cancel_task(request: Request) -> Response:
    """Cancel a run: pending at once, running within 3 s; 409 when it has already finished."""
    task = tasks.cancel(ctx(request), request.path_params["id"])
    return ModelResponse(TaskOut.model_validate(task))


@spec.validate(query=LogQuery, resp=Resp(HTTP_200=LogPage, **_errors(404)), tags=["tasks"])
def task_logs(request: Request) -> Response:
    """Persisted log lines of a run in seq order (all attempts unless `attempt` is given)."""
    query = query_of(request, LogQuery)
    rows = tasks.log_lines(
        ctx(request), request.path_params["id"], after_seq=query.after_seq, limit=query.limit,
        stream=query.stream, attempt=query.attempt,
    )  # fmt: skip
    items = [LogLineOut.model_validate(r) for r in rows]
    return ModelResponse(
        LogPage(items=items, next_after_seq=items[-1].seq if items else query.after_seq)
    )


@spec.validate(
    query=LogStreamQuery,
    skip_validation=True,
    resp=Resp("HTTP_200", **_errors(404)),
    tags=["tasks"],
)
async def task_log_stream(request: Request) -> Response:
    """Server-sent events: persisted lines, then live lines until the run ends; resumable."""
    context = ctx(request)
    task = await run_in_threadpool(tasks.get_task, context, request.path_params["id"])
    after = parse(LogStreamQuery, dict(request.query_params)).after_seq
    last_event_id = request.headers.get("last-event-id", "").strip()
    if last_event_id.isdigit():
        after = max(after, int(last_event_id))
    events = sse.task_log_events(context, task.id, after)
    return StreamingResponse(events, media_type="text/event-stream", headers=sse.HEADERS)


# --- schedules --------------------------------------------------------------------------


@spec.validate(
    query=PageQuery, resp=Resp(HTTP_200=SchedulePage, **_errors(404)), tags=["schedules"]
)
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
    json=ScheduleCreate, resp=Resp(HTTP_201=ScheduleOut, **_errors(400, 404)), tags=["schedules"]
)
def create_schedule(request: Request) -> Response:
    """Add a cron schedule to a spider (422 with the reason for an expression that cannot fire)."""
    context = ctx(request)
    schedule = schedules.create_schedule(
        context.db,
        request.path_params["ref"],
        body_of(request, ScheduleCreate),
        context.wake_ticker,
    )
    return ModelResponse(ScheduleOut.model_validate(schedule), 201)


@spec.validate(resp=Resp(HTTP_200=ScheduleOut, **_errors(404)), tags=["schedules"])
def get_schedule(request: Request) -> Response:
    """One schedule."""
    schedule = schedules.get_schedule(ctx(request).db, request.path_params["id"])
    return ModelResponse(ScheduleOut.model_validate(schedule))


@spec.validate(
    json=SchedulePatch, resp=Resp(HTTP_200=ScheduleOut, **_errors(400, 404)), tags=["schedules"]
)
def patch_schedule(request: Request) -> Response:
    """Change or pause/resume a schedule; resuming does not replay missed fires."""
    context = ctx(request)
    schedule = schedules.update_schedule(
        context.db, request.path_params["id"], body_of(request, SchedulePatch), context.wake_ticker
    )
    return ModelResponse(ScheduleOut.model_validate(schedule))


@spec.validate(resp=Resp("HTTP_204", **_errors(404)), tags=["schedules"])
def delete_schedule(request: Request) -> Response:
    """Delete a schedule; its past runs stay."""
    schedules.delete_schedule(ctx(request).db, request.path_params["id"])
    return Response(status_code=204)


@spec.validate(query=PreviewQuery, resp=Resp(HTTP_200=Preview, **_errors(404)), tags=["schedules"])
def preview_schedule(request: Request) -> Response:
    """The next n fire times after `after` (default now), in UTC and in the schedule's zone."""
    query = query_of(request, PreviewQuery)
    fires = schedules.preview(ctx(request).db, request.path_params["id"], query.n, query.after)
    return ModelResponse(Preview(items=[FireTime(utc=u, local=loc) for u, loc in fires]))


# --- alerts and channels ----------------------------------------------------------------


@spec.validate(query=AlertListQuery, resp=Resp(HTTP_200=AlertPage, **_errors(404)), tags=["alerts"])
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


@spec.validate(resp=Resp(HTTP_200=AlertOut, **_errors(404)), tags=["alerts"])
def read_alert(request: Request) -> Response:
    """Mark one alert read."""
    alert = alerts.mark_read(ctx(request), request.path_params["id"])
    return ModelResponse(AlertOut.model_validate(alert))


@spec.validate(resp=Resp(HTTP_200=Count), tags=["alerts"])
def read_all_alerts(request: Request) -> Response:
    """Mark every alert read; returns how many changed."""
    changed = alerts.mark_read(ctx(request), None)
    return ModelResponse(Count(count=changed if isinstance(changed, int) else 1))


@spec.validate(resp=Resp(HTTP_200=DeliveryPage, **_errors(404)), tags=["alerts"])
def alert_deliveries(request: Request) -> Response:
    """Where an alert was delivered: status, attempts and last error per channel."""
    rows = alerts.deliveries(ctx(request), request.path_params["id"])
    return ModelResponse(DeliveryPage(items=[DeliveryOut.model_validate(d) for d in rows]))


@spec.validate(query=PageQuery, resp=Resp(HTTP_200=ChannelPage), tags=["channels"])
def list_channels(request: Request) -> Response:
    """Notification channels (secrets are never returned)."""
    q = query_of(request, PageQuery)
    rows, total = alerts.list_channels(ctx(request), page=q.page, page_size=q.page_size)
    return ModelResponse(ChannelPage.of([ChannelOut.model_validate(c) for c in rows], total, q))


@spec.validate(
    json=ChannelCreate, resp=Resp(HTTP_201=ChannelOut, **_errors(400, 404)), tags=["channels"]
)
def create_channel(request: Request) -> Response:
    """Add a channel: webhook, slack, dingtalk, feishu, wecom (URL) or email (address)."""
    body = body_of(request, ChannelCreate)
    channel = alerts.create_channel(ctx(request), body.model_dump(exclude_unset=True))
    return ModelResponse(ChannelOut.model_validate(channel), 201)


@spec.validate(
    json=ChannelPatch, resp=Resp(HTTP_200=ChannelOut, **_errors(400, 404)), tags=["channels"]
)
def patch_channel(request: Request) -> Response:
    """Change a channel; absent fields stay."""
    changes = body_of(request, ChannelPatch).model_dump(exclude_unset=True)
    channel = alerts.update_channel(ctx(request), request.path_params["id"], changes)
    return ModelResponse(ChannelOut.model_validate(channel))


@spec.validate(resp=Resp("HTTP_204", **_errors(404)), tags=["channels"])
def delete_channel(request: Request) -> Response:
    """Delete a channel."""
    alerts.delete_channel(ctx(request), request.path_params["id"])
    return Response(status_code=204)


@spec.validate(resp=Resp(HTTP_200=ChannelTest, **_errors(404)), tags=["channels"])
def test_channel(request: Request) -> Response:
    """Send a test notification now and report whether the channel accepted it."""
    delivered, error = alerts.test_channel(ctx(request), request.path_params["id"])
    return ModelResponse(ChannelTest(delivered=delivered, error=error))


# --- queues -----------------------------------------------------------------------------


@spec.validate(resp=Resp(HTTP_200=Queues), tags=["queues"])
def list_queues(request: Request) -> Response:
    """Per queue: ready, delayed, in flight and dead-lettered messages; live workers."""
    counts, workers = queues.overview(ctx(request))
    return ModelResponse(Queues(
        queues=[QueueOut(**vars(c)) for c in counts],
        workers=[WorkerOut(id=w, last_heartbeat=beat) for w, beat in workers],
    ))  # fmt: skip


@spec.validate(
    query=DeadLetterQuery, resp=Resp(HTTP_200=DeadLetterPage, **_errors(404)), tags=["queues"]
)
def list_dead_letters(request: Request) -> Response:
    """The newest dead letters of a queue, decoded (task id, actor, error, time)."""
    q = query_of(request, DeadLetterQuery)
    found, total = queues.dead_letters(ctx(request), request.path_params["name"], q.limit)
    items = [DeadLetter(message_id=m.message_id, actor=m.actor, task_id=m.task_id, error=m.error,
                        retries=m.retries, dead_at=m.dead_at) for m in found]  # fmt: skip
    return ModelResponse(DeadLetterPage(items=items, total=total))


@spec.validate(resp=Resp(HTTP_200=Requeued, **_errors(404)), tags=["queues"])
def requeue_dead_letter(request: Request) -> Response:
    """Run a dead letter again: its task becomes pending with the retry counter reset."""
    params = request.path_params
    task_id = queues.requeue(ctx(request), params["name"], params["message_id"])
    return ModelResponse(Requeued(requeued=params["message_id"], task_id=task_id))


@spec.validate(resp=Resp(HTTP_200=Count, **_errors(404)), tags=["queues"])
def purge_dead_letters(request: Request) -> Response:
    """Drop every dead letter of a queue; returns how many."""
    return ModelResponse(Count(count=queues.purge(ctx(request), request.path_params["name"])))


# --- data -------------------------------------------------------------------------------


@spec.validate(query=DataQuery, resp=Resp(HTTP_200=DataPage, **_errors(404)), tags=["data"])
def list_data(request: Request) -> Response:
    """Scraped items in id order: by page, or after an id (keyset, fast at any depth)."""
    q = query_of(request, DataQuery)
    db = ctx(request).db
    selection = data.select(db, spider=q.spider_id, task=q.task_id, since=q.since, until=q.until)
    rows, total = data.page(db, selection, page=q.page, page_size=q.page_size, after_id=q.after_id)
    items = [ItemOut.model_validate(r) for r in rows]
    keyset = q.after_id is not None
    return ModelResponse(DataPage(
        items=items, total=total, page=None if keyset else q.page, page_size=q.page_size,
        total_pages=None if total is None else (total + q.page_size - 1) // q.page_size,
        next_after_id=items[-1].id if items else None,
    ))  # fmt: skip


@spec.validate(
    query=ExportQuery, skip_validation=True, resp=Resp("HTTP_200", **_errors(404)), tags=["data"]
)
def export_data(request: Request) -> Response:
    """Stream the selection as csv, json, jsonl or xlsx (constant memory at any size)."""
    fmt = request.path_params["fmt"]
    if fmt not in export.FORMATS:
        raise NotFound(f"unknown export format '{fmt[:20]}' (csv, json, jsonl, xlsx)")
    q = parse(ExportQuery, dict(request.query_params))
    db = ctx(request).db
    fields = data.parse_fields(q.fields)
    selection = data.select(db, spider=q.spider_id, task=q.task_id, since=q.since, until=q.until)
    body = data.export_stream(db, selection, fmt, fields=fields, excel=q.excel)
    disposition = f'attachment; filename="{data.filename(selection, fmt)}"'
    return StreamingResponse(
        body, media_type=export.FORMATS[fmt], headers={"Content-Disposition": disposition}
    )


@spec.validate(query=DeleteQuery, resp=Resp(HTTP_200=Count, **_errors(400, 404)), tags=["data"])
def delete_data(request: Request) -> Response:
    """Delete the items of a task or of a spider (one of them is required)."""
    q = query_of(request, DeleteQuery)
    db = ctx(request).db
    selection = data.select(db, spider=q.spider_id, task=q.task_id)
    return ModelResponse(Count(count=data.delete(db, selection)))


def safe_filename(name: str | None) -> str:
    """The last path component of a client-supplied file name, printable and bounded."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return cleaned[-255:] or "upload"


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", prometheus, methods=["GET"]),
    Route("/api/openapi.json", openapi, methods=["GET"], include_in_schema=False),
    Route("/api/spiders", list_spiders, methods=["GET"]),
    Route("/api/spiders", create_spider, methods=["POST"]),
    Route("/api/spiders/{ref}", get_spider, methods=["GET"]),
    Route("/api/spiders/{ref}", patch_spider, methods=["PATCH"]),
    Route("/api/spiders/{ref}", delete_spider, methods=["DELETE"]),
    Route("/api/spiders/{ref}/versions", list_versions, methods=["GET"]),
    Route("/api/spiders/{ref}/versions", upload_version, methods=["POST"]),
    Route("/api/spiders/{ref}/run", run_spider, methods=["POST"]),
    Route("/api/spiders/{ref}/test-run", test_run, methods=["POST"]),
    Route("/api/spiders/{ref}/schedules", list_schedules, methods=["GET"]),
    Route("/api/spiders/{ref}/schedules", create_schedule, methods=["POST"]),
    Route("/api/schedules/{id}", get_schedule, methods=["GET"]),
    Route("/api/schedules/{id}", patch_schedule, methods=["PATCH"]),
    Route("/api/schedules/{id}", delete_schedule, methods=["DELETE"]),
    Route("/api/schedules/{id}/preview", preview_schedule, methods=["GET"]),
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
    Route("/api/queues", list_queues, methods=["GET"]),
    Route("/api/queues/{name}/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/api/queues/{name}/dead-letters", purge_dead_letters, methods=["DELETE"]),
    Route(
        "/api/queues/{name}/dead-letters/{message_id}/requeue",
        requeue_dead_letter,
        methods=["POST"],
    ),
    Route("/api/data", list_data, methods=["GET"]),
    Route("/api/data", delete_data, methods=["DELETE"]),
    Route("/api/data/export/{fmt}", export_data, methods=["GET"]),
    Route("/api/tasks", list_tasks, methods=["GET"]),
    Route("/api/tasks/{id}", get_task, methods=["GET"]),
    Route("/api/tasks/{id}/cancel", cancel_task, methods=["POST"]),
    Route("/api/tasks/{id}/logs", task_logs, methods=["GET"]),
    Route("/api/tasks/{id}/logs/stream", task_log_stream, methods=["GET"]),
]


def create_app(context: Context) -> Starlette:
    """The ASGI app serving the API for a process context."""
    settings = context.settings
    middleware = [
        Middleware(BearerAuth, tokens=context.tokens),
        Middleware(
            BodyLimit,
            default=settings.max_request_bytes,
            large=settings.max_upload_bytes + MULTIPART_OVERHEAD,
            large_paths=UPLOAD_PATHS,
        ),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await context.live.aclose()

    app = Starlette(
        routes=ROUTES,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.ctx = context
    spec.app = app  # spectree reads routes from here; we serve the document ourselves
    return app
