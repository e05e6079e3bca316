"""Rendering dashboard pages: the Jinja2 environment, its filters, the security headers, and
the two kinds of handler (pages that need a session, actions that also need its CSRF token)."""

import functools
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from crawlhub.data.formats import cell
from crawlhub.errors import CrawlhubError
from crawlhub.registry.spiders import hidden_env
from crawlhub.web.permissions import Action, identity_of, may
from crawlhub.web.responses import status_of
from crawlhub.web.sessions import CSRF_FIELD, CSRF_HEADER, Session, csrf_ok, session_of

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
NAVIGATION = (
    ("Overview", "/"),
    ("Spiders", "/spiders"),
    ("Projects", "/projects"),
    ("Runs", "/runs"),
    ("Schedules", "/schedules"),
    ("Data", "/data"),
    ("Alerts", "/alerts"),
    ("Queues", "/queues"),
    ("Nodes", "/nodes"),
)
# No inline script or style anywhere: everything the pages run or wear is a file of ours.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> Markup:
    """A time as a <time> element: UTC in the text and on hover; the page's script shows it
    in the viewer's zone."""
    if value is None:
        return Markup("—")
    utc = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(value.isoformat(), utc, utc)


def localtime(value: datetime | None, zone: str) -> str:
    """A time on the wall clock of an IANA zone."""
    if value is None:
        return "—"
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def seconds(value: float | None) -> str:
    """A duration for people: 0.4 s, 12 s, 3 min 5 s, 2 h 1 min."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.1f} s"
    total = int(value)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def percent(value: float | None) -> str:
    """A share as a whole percentage, or a dash."""
    return "—" if value is None else f"{value:.0%}"


def pretty(value: Any) -> str:
    """A JSON value as indented text."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def environment() -> jinja2.Environment:
    """Autoescaping on for every template: whatever a spider or user wrote is text."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        localtime=localtime,
        seconds=seconds,
        percent=percent,
        cell=cell,
        pretty=pretty,
        quote=lambda s: urllib.parse.quote(str(s), safe=""),
        hidden_env=hidden_env,
    )
    env.globals.update(navigation=NAVIGATION, csrf_field=CSRF_FIELD)
    return env


ENV = environment()


def render(
    request: Request, session: Session | None, template: str, status: int = 200, **values: Any
) -> HTMLResponse:
    """A page rendered with the values, the navigation and the session's CSRF token."""
    # A fragment htmx fetches (a run's facts every second) leaves the notice to its page.
    fragment = request.headers.get("HX-Request") == "true"
    notice = (
        "" if fragment else urllib.parse.unquote(request.cookies.get(NOTICE, ""))[:NOTICE_CHARS]
    )
    me = identity_of(request) if session else None
    html = ENV.get_template(template).render(
        request=request, path=request.url.path, csrf=session.csrf if session else "",
        notice=notice, me=me, may=lambda action, project=None: may(me, Action(action), project),
        **values,
    )  # fmt: skip
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if notice:  # shown once
        response.delete_cookie(NOTICE, path="/", httponly=True, samesite="strict")
    return response


def current_session(request: Request) -> Session | None:
    """The signed-in session of a request, if any: its cookie, while the access check found
    its user still allowed in (not disabled, no password change since)."""
    return session_of(request) if identity_of(request) is not None else None


def to_login(request: Request) -> RedirectResponse:
    """Back to the sign-in page, remembering where the user was going."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?next=" + urllib.parse.quote(target, safe=""), 303)


def error_page(request: Request, session: Session | None, exc: CrawlhubError) -> HTMLResponse:
    """A CrawlHub error as a page, with the status the API would answer."""
    return render(request, session, "error.html", status_of(exc), error=exc)


PageHandler = Callable[[Request, Session], Response]
ActionHandler = Callable[[Request, Session, FormData], Response]


def page(handler: PageHandler) -> Callable[[Request], Response]:
    """A page that needs a signed-in session (run in the thread pool: it may query)."""

    @functools.wraps(handler)
    def wrapper(request: Request) -> Response:
        session = current_session(request)
        if session is None:
            return to_login(request)
        try:
            return handler(request, session)
        except CrawlhubError as exc:
            return error_page(request, session, exc)

    return wrapper


def action(handler: ActionHandler) -> Callable[[Request], Awaitable[Response]]:
    """A form post that changes something: needs the session and its CSRF token."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        session = current_session(request)
        if session is None:
            return to_login(request)
        form = await request.form(max_files=1, max_fields=100)
        try:
            given = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
            if not csrf_ok(session, given if isinstance(given, str) else None):
                logger.warning(
                    "dashboard: %s %s refused: no valid CSRF token",
                    request.method,
                    request.url.path,
                )
                return render(
                    request,
                    session,
                    "error.html",
                    403,
                    error=CrawlhubError(
                        "this form is missing its security token: reload the page and try again"
                    ),
                )
            return await run_in_threadpool(handler, request, session, form)
        except CrawlhubError as exc:
            return error_page(request, session, exc)
        finally:
            await form.close()

    return wrapper


NOTICE = "crawlhub_notice"  # what the last button did, shown once by the next page
NOTICE_CHARS = 300


def back(location: str, said: str) -> RedirectResponse:
    """After a change, show the page it happened on (POST → redirect → GET), saying what
    was done there (in a cookie the next page shows once)."""
    response = RedirectResponse(location, 303)
    response.set_cookie(NOTICE, urllib.parse.quote(said[:NOTICE_CHARS]), max_age=60, path="/",
                        httponly=True, samesite="strict")  # fmt: skip
    return response
