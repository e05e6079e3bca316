"""Data: scraped items by spider, run and time range, with keyset paging and exports."""

from starlette.requests import Request
from starlette.responses import Response

from crawlhub.data import items
from crawlhub.services import runs
from crawlhub.ui.forms import utc_time, whole_number
from crawlhub.ui.rendering import page, render
from crawlhub.web.sessions import Session
from crawlhub.web.validation import ctx

PAGE_SIZE = 50


@page
def list_items(request: Request, session: Session) -> Response:
    """A page of items after an id, newest selection first by id order."""
    params = request.query_params
    raw_task = params.get("task", "").strip()[:64]
    task = raw_task or None  # a run's id, its first characters or its Scrapyd job id
    after = params.get("after_id", "")
    db = ctx(request).db
    spider = params.get("spider", "").strip()[:64] or None
    since = utc_time(params.get("since", ""), "since")
    until = utc_time(params.get("until", ""), "until")
    selection = items.select(db, spider=spider, task=task, since=since, until=until)
    after_id = whole_number(after, 2**63 - 1) or 0
    found = items.page(db, selection, page=1, page_size=PAGE_SIZE, after_id=after_id)
    rows = found.rows
    columns = list(dict.fromkeys(key for row in rows for key in row.data))
    export = {
        k: v
        for k, v in {
            "spider_id": spider,
            "task_id": raw_task,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        }.items()
        if v
    }
    following = (
        {**{k: v for k, v in params.items() if k != "after_id" and v}, "after_id": str(rows[-1].id)}
        if found.more
        else None
    )
    return render(
        request,
        session,
        "data.html",
        rows=rows,
        names=runs.spider_names(ctx(request), {row.spider_id for row in rows}),
        columns=columns,
        filters=dict(params),
        export=export,
        following=following,
    )
