"""Handlers of runs: start, test-run, list, cancel, logs and their live stream."""

import re

from spectree import Response as Resp
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from crawlhub.services import runs
from crawlhub.web import sse
from crawlhub.web.responses import ModelResponse
from crawlhub.web.schemas.common import MAX_INT
from crawlhub.web.schemas.tasks import (
    LogLineOut,
    LogPage,
    LogQuery,
    LogStreamQuery,
    RunRequest,
    TaskListQuery,
    TaskOut,
    TaskPage,
)
from crawlhub.web.validation import body_of, ctx, errors, parse, query_of, read_json, spec

LAST_EVENT_ID = re.compile(r"[0-9]{1,10}")  # the `id:` of a log event this stream sent


@spec.validate(
    json=RunRequest, resp=Resp(HTTP_202=TaskOut, **errors(400, 404, 409)), tags=["tasks"]
)
def run_spider(request: Request) -> Response:
    """Create a pending run of the spider's current version and enqueue it."""
    body = body_of(request, RunRequest)
    task = runs.create_run(ctx(request), request.path_params["ref"], body.params,
                           settings=body.settings, requires=body.requires,
                           priority=body.priority)  # fmt: skip
    return ModelResponse(TaskOut.model_validate(task), 202)


@spec.validate(
    json=RunRequest, skip_validation=True, resp=Resp("HTTP_200", **errors(400, 404, 409)),
    tags=["tasks"],
)  # fmt: skip
async def test_run(request: Request) -> Response:
    """Run the spider now and stream it back as server-sent events: `log` events, then `status`."""
    context = ctx(request)
    body = parse(RunRequest, await read_json(request))
    task = await run_in_threadpool(
        runs.create_run,
        context,
        request.path_params["ref"],
        body.params,
        "test",
        body.settings,
    )
    events = sse.task_log_events(context, task.id, 0)
    return StreamingResponse(events, media_type="text/event-stream", headers=sse.HEADERS)


@spec.validate(query=TaskListQuery, resp=Resp(HTTP_200=TaskPage, **errors(404)), tags=["tasks"])
def list_tasks(request: Request) -> Response:
    """List runs, newest first (filters: spider_id (id or name), status, trigger, verdict,
    schedule_id):
    by page, or after a cursor (`before`: keyset, fast at any depth)."""
    query = query_of(request, TaskListQuery)
    selection = runs.RunQuery(spider=query.spider_id, status=query.status, trigger=query.trigger,
                              schedule_id=query.schedule_id, verdict=query.verdict)  # fmt: skip
    if query.cursor is not None:
        rows, following = runs.runs_before(ctx(request), selection, query.cursor, query.page_size)
        found = [TaskOut.model_validate(t) for t in rows]
        return ModelResponse(TaskPage.keyset(found, following, query.page_size))
    rows, total, exact = runs.list_tasks(
        ctx(request), selection, page=query.page, page_size=query.page_size
    )
    found = [TaskOut.model_validate(t) for t in rows]
    return ModelResponse(TaskPage.numbered(found, total, exact, query))


@spec.validate(resp=Resp(HTTP_200=TaskOut, **errors(404)), tags=["tasks"])
def get_task(request: Request) -> Response:
    """One run."""
    return ModelResponse(
        TaskOut.model_validate(runs.get_task(ctx(request), request.path_params["id"]))
    )


@spec.validate(resp=Resp(HTTP_200=TaskOut, **errors(404, 409)), tags=["tasks"])
def cancel_task(request: Request) -> Response:
    """Cancel a run: pending at once, running within 3 s; 409 when it has already finished."""
    task = runs.cancel(ctx(request), request.path_params["id"])
    return ModelResponse(TaskOut.model_validate(task))


@spec.validate(query=LogQuery, resp=Resp(HTTP_200=LogPage, **errors(404)), tags=["tasks"])
def task_logs(request: Request) -> Response:
    """Persisted log lines of a run in seq order (all attempts unless `attempt` is given)."""
    query = query_of(request, LogQuery)
    rows = runs.log_lines(
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
    resp=Resp("HTTP_200", **errors(404)),
    tags=["tasks"],
)
async def task_log_stream(request: Request) -> Response:
    """Server-sent events: persisted lines, then live lines until the run ends; resumable."""
    context = ctx(request)
    task = await run_in_threadpool(runs.get_task, context, request.path_params["id"])
    after = parse(LogStreamQuery, dict(request.query_params)).after_seq
    last_event_id = request.headers.get("last-event-id", "").strip()
    if LAST_EVENT_ID.fullmatch(last_event_id) and int(last_event_id) <= MAX_INT:
        after = max(after, int(last_event_id))  # anything else is not an id we sent: ignored
    events = sse.task_log_events(context, task.id, after)
    return StreamingResponse(events, media_type="text/event-stream", headers=sse.HEADERS)


ROUTES = [
    Route("/api/spiders/{ref}/run", run_spider, methods=["POST"]),
    Route("/api/spiders/{ref}/test-run", test_run, methods=["POST"]),
    Route("/api/tasks", list_tasks, methods=["GET"]),
    Route("/api/tasks/{id}", get_task, methods=["GET"]),
    Route("/api/tasks/{id}/cancel", cancel_task, methods=["POST"]),
    Route("/api/tasks/{id}/logs", task_logs, methods=["GET"]),
    Route("/api/tasks/{id}/logs/stream", task_log_stream, methods=["GET"]),
]
