"""Signing in with an API token, and out."""

import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crawlhub.ui.rendering import action, current_session, render
from crawlhub.ui.sessions import COOKIE, Session, issue, matching_token
from crawlhub.web.validation import ctx


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only, never another host."""
    if not target:
        return "/"
    parsed = urllib.parse.urlsplit(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def login_form(request: Request) -> Response:
    """The sign-in page (signed-in visitors go straight on)."""
    target = safe_next(request.query_params.get("next"))
    if current_session(request) is not None:
        return RedirectResponse(target, 303)
    return render(request, None, "login.html", next=target, error=None)


async def login(request: Request) -> Response:
    """Check the token; on success set the session cookie and go where the user was going."""
    form = await request.form(max_files=0, max_fields=4)
    given = form.get("token")
    target = safe_next(str(form.get("next") or "/"))
    context = ctx(request)
    token = matching_token(context.tokens, given.strip()) if isinstance(given, str) else None
    if token is None:
        return render(
            request, None, "login.html", 401, next=target, error="That token is not valid here."
        )
    response = RedirectResponse(target, 303)
    hours = context.settings.session_hours
    response.set_cookie(
        COOKIE,
        issue(context.tokens, token, hours),
        max_age=int(hours * 3600),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@action
def logout(request: Request, session: Session, form: object) -> Response:
    """End the session."""
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
