"""Signing in (a user name and password, or an API token), and out."""

import urllib.parse

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from crawlhub.services import accounts
from crawlhub.services.accounts import SignInRefused
from crawlhub.ui.rendering import action, current_session, render
from crawlhub.web.sessions import COOKIE, Session, issue, matching_token
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
    return render(request, None, "login.html", next=target, error=None,
                  sso=ctx(request).settings.sso)  # fmt: skip


async def login(request: Request) -> Response:
    """Check a user name and password (or an API token); on success set the session cookie
    and go where the user was going."""
    form = await request.form(max_files=0, max_fields=6)
    target = safe_next(str(form.get("next") or "/"))
    context = ctx(request)
    given = {name: value for name in ("username", "password", "token")
             if isinstance(value := form.get(name), str)}  # fmt: skip
    hours = context.settings.session_hours
    if "token" in given:
        token = matching_token(context.tokens, given["token"].strip())
        if token is None:
            return render(request, None, "login.html", 401, next=target, via_token=True,
                          error="That token is not valid here.")  # fmt: skip
        cookie = issue(context.tokens, hours, token=token)
    else:
        address = request.client.host if request.client else None
        try:
            user = await run_in_threadpool(accounts.sign_in, context,
                                           given.get("username", "").strip(),
                                           given.get("password", ""), address)  # fmt: skip
        except SignInRefused as exc:
            return render(request, None, "login.html", 401, next=target, error=exc.message,
                          username=given.get("username", "")[:64])  # fmt: skip
        cookie = issue(context.tokens, hours, user_id=str(user.id), version=user.session_version)
    response = RedirectResponse(target, 303)
    _set_cookie(request, response, cookie)
    return response


def set_session(request: Request, response: Response, *, user_id: str, version: int) -> None:
    """Sign a browser in as a user (its session cookie on the response)."""
    context = ctx(request)
    cookie = issue(context.tokens, context.settings.session_hours, user_id=user_id,
                   version=version)  # fmt: skip
    _set_cookie(request, response, cookie)


def _set_cookie(request: Request, response: Response, cookie: str) -> None:
    hours = ctx(request).settings.session_hours
    response.set_cookie(COOKIE, cookie, max_age=int(hours * 3600), path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")  # fmt: skip


@action
def logout(request: Request, session: Session, form: object) -> Response:
    """End the session."""
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
