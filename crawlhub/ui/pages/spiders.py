"""Spiders: the searchable list, a new spider with its package, a spider's page and its forms."""

from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from crawlhub.config import LABEL
from crawlhub.errors import CrawlhubError, InvalidInput, TooLarge
from crawlhub.registry import spiders
from crawlhub.scheduling import schedules
from crawlhub.services import activity, dispatch, runs
from crawlhub.ui import charts
from crawlhub.ui.forms import field, listed, page_number, parse_form
from crawlhub.ui.rendering import action, back, page, render
from crawlhub.web.schemas.spiders import SpiderCreate, SpiderPatch
from crawlhub.web.sessions import Session
from crawlhub.web.validation import ctx, parse_json

PAGE_SIZE = 20
INT_FIELDS = (
    "timeout_s",
    "max_retries",
    "retry_backoff_min_s",
    "retry_backoff_max_s",
    "retention_days",
    "max_concurrent_runs",
)
OPTIONAL_INT_FIELDS = ("retention_days", "max_concurrent_runs")  # empty: none


@page
def list_spiders(request: Request, session: Session) -> Response:
    """Spiders with their last run, next fire and success rate; searchable, paged."""
    search = request.query_params.get("q", "").strip()[:64]
    number = page_number(request)
    rows, total = spiders.list_spiders(
        ctx(request).db, page=number, page_size=PAGE_SIZE, search=search or None
    )
    return render(
        request,
        session,
        "spiders.html",
        records=activity.spider_records(ctx(request), rows),
        total=total,
        page=number,
        pages=-(-total // PAGE_SIZE),
        search=search,
        errors={},
        values={},
    )


def settings_values(form: FormData) -> dict[str, Any]:
    """A spider's settings form as the fields of a patch (checkboxes absent mean off)."""
    values: dict[str, Any] = {
        name: field(form, name) for name in ("entry", "params", "env", "limits")
    }
    for name in INT_FIELDS:
        raw = field(form, name)
        values[name] = None if raw == "" and name in OPTIONAL_INT_FIELDS else raw
    values["dedup_keys"] = listed(form, "dedup_keys")
    values["requires"] = listed(form, "requires")
    values["alert_on_zero_items"] = form.get("alert_on_zero_items") == "on"
    values["enabled"] = form.get("enabled") == "on"
    return values


@action
def create_spider(request: Request, session: Session, form: FormData) -> Response:
    """A new spider and its first package, both or neither."""
    values = {name: field(form, name) for name in ("name", "kind", "entry") if field(form, name)}
    body, errors = parse_form(SpiderCreate, values)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        errors["file"] = "choose the package to upload (.zip, .tar.gz or .py)"
    context = ctx(request)
    if not errors:
        data = upload.file.read(context.settings.max_upload_bytes + 1)  # type: ignore[union-attr]
        try:
            spider = spiders.create_spider(
                context,
                body.model_dump(exclude_unset=True),
                (str(upload.filename), data),  # type: ignore[union-attr]
            )
            return back(f"/spiders/{spider.name}", f"Spider {spider.name} added.")
        except (InvalidInput, TooLarge) as exc:
            errors["file"] = exc.message
    rows, total = spiders.list_spiders(context.db, page=1, page_size=PAGE_SIZE)
    return render(
        request,
        session,
        "spiders.html",
        422,
        records=activity.spider_records(context, rows),
        total=total,
        page=1,
        pages=-(-total // PAGE_SIZE),
        search="",
        errors=errors,
        values=values,
    )


def spider_page(
    request: Request,
    session: Session,
    ref: str,
    status: int = 200,
    errors: dict[str, str] | None = None,
) -> Response:
    """A spider's page: settings, versions, schedules, runs, charts, "Run now"."""
    context = ctx(request)
    spider = spiders.get_spider(context.db, ref)
    versions, _ = spiders.list_versions(context.db, ref, page=1, page_size=10)
    spider_schedules, _ = schedules.list_schedules(context.db, ref, page=1, page_size=50)
    recent, _ = runs.runs_before(context, runs.RunQuery(spider=str(spider.id)), None, 10)
    history = activity.spider_history(context, spider.id)
    items = charts.simple(
        [(t.created_at, f"{t.created_at:%Y-%m-%d %H:%M} UTC: {t.items_count} items",
          t.items_count) for t in history],
        "items", "Items per run", "items",
    )  # fmt: skip
    durations = charts.simple(
        [(t.created_at, f"{t.created_at:%Y-%m-%d %H:%M} UTC: {runs.duration_s(t):.1f} s",
          runs.duration_s(t)) for t in history],
        "duration", "Duration per run", "s",
    )  # fmt: skip
    return render(
        request,
        session,
        "spider.html",
        status,
        spider=spider,
        versions=versions,
        schedules=spider_schedules,
        recent=recent,
        items=items,
        durations=durations,
        errors=errors or {},
    )


@page
def show_spider(request: Request, session: Session) -> Response:
    """A spider's page."""
    return spider_page(request, session, request.path_params["ref"])


@action
def update_spider(request: Request, session: Session, form: FormData) -> Response:
    """Save a spider's settings; errors are shown beside their fields."""
    ref = request.path_params["ref"]
    body, errors = parse_form(SpiderPatch, settings_values(form))
    if errors:
        return spider_page(request, session, ref, 422, errors)
    context = ctx(request)
    try:
        spider = spiders.update_spider(context, ref, body.model_dump(exclude_unset=True))
    except (InvalidInput, TooLarge) as exc:
        return spider_page(request, session, ref, 422, {"": exc.message})
    dispatch.quietly(context)  # its limit may be higher now
    return back(f"/spiders/{spider.name}", "Settings saved.")


@action
def upload_version(request: Request, session: Session, form: FormData) -> Response:
    """Upload a new version of a spider's package."""
    ref = request.path_params["ref"]
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return spider_page(request, session, ref, 422, {"file": "choose a package to upload"})
    context = ctx(request)
    data = upload.file.read(context.settings.max_upload_bytes + 1)
    try:
        spiders.upload_version(context, ref, str(upload.filename), data)
    except (InvalidInput, TooLarge) as exc:
        return spider_page(request, session, ref, 422, {"file": exc.message})
    return back(f"/spiders/{ref}", "New version uploaded.")


@action
def run_now(request: Request, session: Session, form: FormData) -> Response:
    """Start a manual run with optional params, and show it."""
    ref = request.path_params["ref"]
    try:
        params = parse_json(field(form, "params") or "{}", "params")
    except CrawlhubError as exc:
        return spider_page(request, session, ref, 422, {"run_params": exc.message})
    if not isinstance(params, dict):
        return spider_page(request, session, ref, 422, {"run_params": "give a JSON object"})
    labels = listed(form, "requires")
    if any(not LABEL.match(label) for label in labels or ()):
        return spider_page(request, session, ref, 422, {"run_params": "a node label is a name "
                           "or name=value of letters, digits, '.', '_' and '-'"})  # fmt: skip
    try:
        priority = int(field(form, "priority") or dispatch.MANUAL_PRIORITY)
        if abs(priority) > dispatch.PRIORITY_BOUND:
            raise ValueError
    except ValueError:
        return spider_page(request, session, ref, 422, {"run_params": "the priority is a whole "
                           f"number within ±{dispatch.PRIORITY_BOUND}"})  # fmt: skip
    task = runs.create_run(ctx(request), ref, params, requires=labels, priority=priority)
    return back(f"/runs/{task.id}", "Run started.")
