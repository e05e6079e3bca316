"""Handlers of scraped items: query, export, delete."""

from spectree import Response as Resp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crawlhub.data import items
from crawlhub.web.exports import export_response
from crawlhub.web.responses import ModelResponse
from crawlhub.web.schemas.common import Count
from crawlhub.web.schemas.data import DataPage, DataQuery, DeleteQuery, ExportQuery, ItemOut
from crawlhub.web.validation import ctx, errors, query_of, spec


@spec.validate(query=DataQuery, resp=Resp(HTTP_200=DataPage, **errors(404)), tags=["data"])
def list_data(request: Request) -> Response:
    """Scraped items in id order: by page, or after an id (keyset, fast at any depth)."""
    q = query_of(request, DataQuery)
    db = ctx(request).db
    selection = items.select(db, spider=q.spider_id, task=q.task_id, since=q.since, until=q.until)
    found_page = items.page(db, selection, page=q.page, page_size=q.page_size,
                            after_id=q.after_id)  # fmt: skip
    total, exact = found_page.total, found_page.exact
    found = [ItemOut.model_validate(r) for r in found_page.rows]
    keyset = q.after_id is not None
    return ModelResponse(DataPage(
        items=found, total=total, total_exact=exact, page=None if keyset else q.page,
        page_size=q.page_size,
        total_pages=None if total is None else (total + q.page_size - 1) // q.page_size,
        next_after_id=found[-1].id if found and found_page.more else None,
    ))  # fmt: skip


@spec.validate(
    query=ExportQuery, skip_validation=True, resp=Resp("HTTP_200", **errors(404)), tags=["data"]
)
def export_data(request: Request) -> Response:
    """Stream the selection as csv, json, jsonl or xlsx (constant memory at any size)."""
    return export_response(ctx(request).db, request.path_params["fmt"], dict(request.query_params))


@spec.validate(query=DeleteQuery, resp=Resp(HTTP_200=Count, **errors(400, 404)), tags=["data"])
def delete_data(request: Request) -> Response:
    """Delete the items of a task or of a spider (one of them is required)."""
    q = query_of(request, DeleteQuery)
    db = ctx(request).db
    selection = items.select(db, spider=q.spider_id, task=q.task_id)
    return ModelResponse(Count(count=items.delete(db, selection)))


ROUTES = [
    Route("/api/data", list_data, methods=["GET"]),
    Route("/api/data", delete_data, methods=["DELETE"]),
    Route("/api/data/export/{fmt}", export_data, methods=["GET"]),
]
