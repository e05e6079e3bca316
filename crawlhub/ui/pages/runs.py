"""Runs: the filtered list (keyset paging), a run's page with its live log and items, cancel,
run again, and the log stream and exports the page uses."""

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from crawlhub.data import items
from crawlhub.repo.statuses import FINISHED, STATUSES
from crawlhub.services import runs
from crawlhub.ui.forms import utc_time, whole_number
from crawlhub.ui.rendering import action, back, current_session, page, render, to_login
from crawlhub.web import sse
from crawlhub.web.exports import export_response
from crawlhub.web.schemas.tasks import format_cursor, parse_cursor
from crawlhub.web.sessions import Session
from crawlhub.web.validation import ctx

PAGE_SIZE = 50
LOG_PAGE = 500  # lines per log page: a 100 000-line log is read a page at a time
ITEM_ROWS = 50
TRIGGERS = ("manual", "schedule", "test", "scrapyd", "retry")
VERDICTS = ("pass", "warn", "fail")
STREAMS = ("stdout", "stderr", "system")


def cursor_of(raw: str) -> runs.Cursor | None:
    """The keyset cursor of the next page (the API's `before`), None when absent or bad."""
    try:
        return parse_cursor(raw[:100])
    except ValueError:
        return None


def choice(raw: str | None, allowed: tuple[str, ...]) -> str | None:
    """A filter value when it is one of the allowed ones."""
    return raw if raw in allowed else None


@page
def list_runs(request: Request, session: Session) -> Response:
    """Runs newest first, filtered by spider, status, trigger and time range."""
    params = request.query_params
    query = runs.RunQuery(
        spider=params.get("spider", "").strip()[:64] or None,
        status=choice(params.get("status"), STATUSES),
        trigger=choice(params.get("trigger"), TRIGGERS),
        verdict=choice(params.get("verdict"), VERDICTS),
        since=utc_time(params.get("since", ""), "since"),
        until=utc_time(params.get("until", ""), "until"),
    )
    rows, following = runs.runs_before(
        ctx(request), query, cursor_of(params.get("before", "")), PAGE_SIZE
    )
    older = None
    if following is not None:
        kept = {k: v for k, v in params.items() if k != "before" and v}
        older = {**kept, "before": format_cursor(following)}
    return render(
        request,
        session,
        "runs.html",
        rows=rows,
        names=runs.spider_names(ctx(request), {t.spider_id for t in rows}),
        projects=runs.spider_projects(ctx(request), {t.spider_id for t in rows}),
        query=query,
        older=older,
        filters=dict(params),
        statuses=STATUSES,
        triggers=TRIGGERS,
        verdicts=VERDICTS,
    )


@page
def show_run(request: Request, session: Session) -> Response:
    """A run: status, timings, stats, its log a page at a time (live while it runs), items."""
    context = ctx(request)
    ref = request.path_params["id"]
    task, spider, label = runs.task_and_spider(context, ref)
    params = request.query_params
    stream = choice(params.get("stream"), STREAMS)
    attempt = whole_number(params.get("attempt"))
    search = params.get("q", "").strip()[:200] or None
    after = whole_number(params.get("after_seq"))
    before = whole_number(params.get("before_seq"))
    newest = after is None and before is None
    if newest:
        before = 2**31 - 1  # the newest lines
    lines = runs.log_lines(
        context,
        ref,
        after_seq=after or 0,
        limit=LOG_PAGE,
        stream=stream,
        attempt=attempt,
        before_seq=before if after is None else None,
        search=search,
    )
    selection = items.select(context.db, task=task.id)
    found = items.page(context.db, selection, page=1, page_size=ITEM_ROWS, after_id=None)
    rows, total = found.rows, found.total
    columns = list(dict.fromkeys(key for row in rows for key in row.data))
    filtered = bool(stream or attempt or search or params.get("after_seq"))
    return render(
        request,
        session,
        "run.html",
        task=task,
        spider=spider,
        label=label,
        lines=lines,
        rows=rows,
        columns=columns,
        items_total=total,
        stream=stream,
        attempt=attempt,
        search=search or "",
        # Live until no line can come: a run cancelled while running writes its last lines
        # for a few seconds after its status turned.
        live=not runs.lines_over(task, stream_ended=False) and not filtered,
        newest=newest,
        finished=task.status in FINISHED,
        log_page=LOG_PAGE,
        streams=STREAMS,
    )


@page
def run_facts(request: Request, session: Session) -> Response:
    """A run's facts alone, which its page refreshes while the run is not over."""
    context = ctx(request)
    task, spider, label = runs.task_and_spider(context, request.path_params["id"])
    response = render(request, session, "_run_facts.html", task=task, spider=spider,
                      label=label)  # fmt: skip
    if task.status in FINISHED:
        response.status_code = 286  # htmx: stop polling
    return response


@action
def cancel_run(request: Request, session: Session, form: FormData) -> Response:
    """Cancel a run and show it."""
    task = runs.cancel(ctx(request), request.path_params["id"])
    return back(f"/runs/{task.id}", "Cancelled: the spider is being stopped.")


@action
def run_again(request: Request, session: Session, form: FormData) -> Response:
    """Start a new run of the same spider with the same params, and show it."""
    task = runs.run_again(ctx(request), request.path_params["id"])
    return back(f"/runs/{task.id}", "A new run started with the same params.")


async def log_stream(request: Request) -> Response:
    """The run's log as server-sent events for the page (signed-in session, not a token)."""
    if current_session(request) is None:
        return to_login(request)
    context = ctx(request)
    after = whole_number(request.query_params.get("after_seq")) or 0
    task = await run_in_threadpool(runs.get_task, context, request.path_params["id"])
    return StreamingResponse(
        sse.task_log_events(context, task.id, after),
        media_type="text/event-stream",
        headers=sse.HEADERS,
    )


@page
def export(request: Request, session: Session) -> Response:
    """A download of the selected items, as the API's export makes it."""
    return export_response(ctx(request).db, request.path_params["fmt"], dict(request.query_params))
