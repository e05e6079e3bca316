"""Schedules: every schedule with its next fire, pause and resume, and the create/edit form
whose preview follows the expression as it is typed."""

import json
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from crawlhub.errors import InvalidInput
from crawlhub.registry import spiders
from crawlhub.scheduling import schedules
from crawlhub.services import runs
from crawlhub.ui.forms import field, listed, page_number, parse_form
from crawlhub.ui.rendering import action, back, page, render
from crawlhub.web.schemas.schedules import ScheduleCreate, SchedulePatch
from crawlhub.web.sessions import Session
from crawlhub.web.validation import ctx

PAGE_SIZE = 50
OVERLAPS = ("forbid", "allow", "replace")
CATCHUPS = ("latest", "all", "none")


@page
def list_schedules(request: Request, session: Session) -> Response:
    """Every schedule, soonest first."""
    number = page_number(request)
    rows, total = schedules.list_all(ctx(request).db, page=number, page_size=PAGE_SIZE)
    return render(
        request,
        session,
        "schedules.html",
        rows=rows,
        projects=runs.spider_projects(ctx(request), {s.spider_id for s, _, _ in rows}),
        total=total,
        page=number,
        pages=-(-total // PAGE_SIZE),
    )


def form_page(
    request: Request,
    session: Session,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
    schedule: Any = None,
) -> Response:
    """The create or edit form."""
    names = spiders.spider_names(ctx(request).db)
    return render(
        request,
        session,
        "schedule_form.html",
        status,
        values=values,
        errors=errors,
        schedule=schedule,
        spider_names=names,
        overlaps=OVERLAPS,
        catchups=CATCHUPS,
    )


@page
def new_schedule(request: Request, session: Session) -> Response:
    """The form for a new schedule (a spider may be given)."""
    values = {
        "spider": request.query_params.get("spider", ""),
        "cron": "",
        "timezone": "UTC",
        "overlap": "forbid",
        "catchup": "latest",
        "jitter_s": "0",
        "params": "{}",
        "settings": "{}",
    }
    return form_page(request, session, values, {})


def form_values(form: FormData) -> dict[str, Any]:
    """The form's fields as a schedule's (a blank deadline means none)."""
    values: dict[str, Any] = {
        name: field(form, name)
        for name in ("cron", "timezone", "overlap", "catchup", "jitter_s", "params", "settings")
    }
    deadline = field(form, "starting_deadline_s")
    values["starting_deadline_s"] = deadline or None
    values["requires"] = listed(form, "requires")
    values["enabled"] = form.get("enabled", "on") == "on"
    return values


@action
def create_schedule(request: Request, session: Session, form: FormData) -> Response:
    """Save a new schedule and list them all."""
    spider = field(form, "spider")
    body, errors = parse_form(ScheduleCreate, form_values(form))
    if not spider:
        errors["spider"] = "choose a spider"
    if not errors:
        context = ctx(request)
        try:
            schedules.create_schedule(
                context.db, spider, body.model_dump(exclude_unset=True), context.wake_ticker
            )
            return back("/schedules", "Schedule added.")
        except InvalidInput as exc:
            errors["settings" if "setting" in exc.message else "cron"] = exc.message
    return form_page(request, session, {**dict(form), "spider": spider}, errors, 422)


@page
def edit_schedule(request: Request, session: Session) -> Response:
    """The form of an existing schedule."""
    schedule = schedules.get_schedule(ctx(request).db, request.path_params["id"])
    values = {
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "overlap": schedule.overlap,
        "catchup": schedule.catchup,
        "jitter_s": str(schedule.jitter_s),
        "requires": ", ".join(schedule.requires or []),
        "starting_deadline_s": str(schedule.starting_deadline_s or ""),
        "params": json.dumps(schedule.params),
        "settings": json.dumps(schedule.settings),
        "enabled": schedule.enabled,
    }
    return form_page(request, session, values, {}, schedule=schedule)


@action
def update_schedule(request: Request, session: Session, form: FormData) -> Response:
    """Save a schedule's changes."""
    ref = request.path_params["id"]
    body, errors = parse_form(SchedulePatch, form_values(form))
    context = ctx(request)
    if not errors:
        try:
            schedules.update_schedule(
                context.db, ref, body.model_dump(exclude_unset=True), context.wake_ticker
            )
            return back("/schedules", "Schedule saved.")
        except InvalidInput as exc:
            errors["settings" if "setting" in exc.message else "cron"] = exc.message
    schedule = schedules.get_schedule(context.db, ref)
    return form_page(request, session, dict(form), errors, 422, schedule=schedule)


@action
def pause_or_resume(request: Request, session: Session, form: FormData) -> Response:
    """Pause a schedule (no fires) or resume it (from now on: no burst of missed fires)."""
    context = ctx(request)
    enabled = field(form, "enabled") == "true"
    schedules.update_schedule(
        context.db, request.path_params["id"], {"enabled": enabled}, context.wake_ticker
    )
    return back("/schedules", "Schedule resumed." if enabled else "Schedule paused.")


@page
def preview(request: Request, session: Session) -> Response:
    """The expression in words and its next five fires, or why it cannot be a schedule."""
    params = request.query_params
    expr, zone = params.get("cron", "")[:255], params.get("timezone", "UTC")[:64]
    try:
        reading, fires = schedules.read_expression(expr, zone)
        error = None
    except InvalidInput as exc:
        reading, fires, error = "", [], exc.message
    return render(
        request,
        session,
        "_preview.html",
        reading=reading,
        fires=fires,
        error=error,
        empty=not expr.strip(),
    )
