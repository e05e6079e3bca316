"""Streamed exports of scraped items: the API's and the dashboard's downloads."""

from crawlhub.data import formats, items
from crawlhub.errors import NotFound
from crawlhub.repo.db import Database
from crawlhub.web.responses import ClosingStream
from crawlhub.web.schemas.data import ExportQuery
from crawlhub.web.validation import parse


def export_response(db: Database, fmt: str, params: dict[str, str]) -> ClosingStream:
    """The streamed export file of the items a query string selects (the API's and the
    dashboard's downloads)."""
    if fmt not in formats.FORMATS:
        raise NotFound(f"unknown export format '{fmt[:20]}' (csv, json, jsonl, xlsx)")
    q = parse(ExportQuery, params)
    fields = items.parse_fields(q.fields)
    selection = items.select(db, spider=q.spider_id, task=q.task_id, since=q.since, until=q.until)
    body = items.export_stream(db, selection, fmt, fields=fields, excel=q.excel)
    suspect = items.suspect_runs(db, selection)
    name = items.filename(selection, fmt, suspect=bool(suspect))
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if suspect:  # runs whose data failed their quality checks, with on_fail = suspect
        shown = ", ".join(str(task_id) for task_id in suspect[: items.SUSPECT_SHOWN])
        more = " and more" if len(suspect) > items.SUSPECT_SHOWN else ""
        headers["X-CrawlHub-Suspect"] = (
            f"data of runs that failed their quality checks: {shown}{more}"
        )
    return ClosingStream(body, media_type=formats.FORMATS[fmt], headers=headers)
