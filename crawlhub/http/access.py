"""Who each request comes from and whether the permission table lets them (SPEC §8, the
teams part of docs/guide/users.md).

Credentials: a bearer token (one of CRAWLHUB_API_TOKENS: an instance admin; or a personal
token), on the Scrapyd API also HTTP basic auth (any user name with a configured token, the
token's owner's name with a personal one), on the dashboard its session cookie. The route a
request matches gives the action (`crawlhub.web.permissions.TABLE`); a caller that may not
take it gets 403 with the error envelope, one without credentials 401 (the dashboard sends
them to its sign-in page instead). The caller is kept in the request's state and, for the
code that writes changes, in `crawlhub.repo.users.ACTOR`.
"""

import base64
import binascii
import html
from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from crawlhub.context import Context
from crawlhub.http.scrapyd import is_scrapyd_path
from crawlhub.http.scrapyd.endpoints import NODE_NAME
from crawlhub.repo.reach import REACH
from crawlhub.repo.users import ACTOR
from crawlhub.services import accounts
from crawlhub.services.accounts import Identity
from crawlhub.web import sessions
from crawlhub.web.permissions import STATE_KEY, Action, action_of, may, reach_of
from crawlhub.web.responses import error_response

STATIC = "/static"  # the dashboard's files: open, and nobody is looked up for them


def is_api_path(path: str) -> bool:
    """Whether a request path is under /api."""
    return path == "/api" or path.startswith("/api/")


def face_of(path: str) -> str:
    """Which face a path belongs to: `api`, `scrapyd` or `ui` (the dashboard)."""
    if is_api_path(path):
        return "api"
    return "scrapyd" if is_scrapyd_path(path) else "ui"


class Access:
    """Resolves the caller and applies the permission table to every request."""

    def __init__(self, app: ASGIApp, context: Context, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.context = context
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        face = face_of(scope["path"])
        matched = self._match(scope)
        action = action_of(scope["method"], *matched) if matched is not None else None
        if action is Action.OPEN and (face != "ui" or (matched and matched[0] == STATIC)):
            # Open to all; the dashboard's open pages (sign-in) still learn who is signed in.
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        identity = await run_in_threadpool(self._identify, conn, face)
        denied = self._denied(face, matched is not None, action, identity)
        if denied is not None:
            await denied(scope, receive, send)
            return
        scope.setdefault("state", {})[STATE_KEY] = identity
        address = conn.client.host if conn.client else None
        reset = ACTOR.set(identity.actor(address) if identity is not None else None)
        limits = REACH.set(reach_of(identity, action) if identity and action else None)
        try:
            await self.app(scope, receive, send)
        finally:
            REACH.reset(limits)
            ACTOR.reset(reset)

    def _match(self, scope: Scope) -> tuple[str, dict[str, object]] | None:
        """The matched route's declared path and its parameters (None: no route matches,
        or only with another method: the router answers 404, 405 or a slash's redirect)."""
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return str(getattr(route, "path", "")), dict(child.get("path_params", {}))
        return None

    def _denied(self, face: str, matched: bool, action: Action | None,
                identity: Identity | None) -> Response | None:  # fmt: skip
        if identity is None:
            if face == "ui":
                return None  # the dashboard's pages send the visitor to sign in
            return _unauthorized(face)
        if not matched:
            return None
        if action is None:
            return _forbidden(face, "this route is not in the permission table")
        if may(identity, action):
            return None
        scopes = f", scopes {', '.join(identity.scopes)}" if identity.scopes else ""
        return _forbidden(face, f"{identity.name} may not {action.value} here (role "
                                f"{identity.role}{scopes})")  # fmt: skip

    def _identify(self, conn: HTTPConnection, face: str) -> Identity | None:
        cookie = None
        if face == "ui":  # the dashboard's forms need its session (CSRF), whoever signs
            cookie = sessions.verify(self.context.tokens, conn.cookies.get(sessions.COOKIE))
            conn.scope.setdefault("state", {})[sessions.STATE_KEY] = cookie
        header = conn.headers.get("authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            username: str | None = None
            if scheme.lower() == "basic" and face == "scrapyd":
                try:
                    decoded = base64.b64decode(value.strip(), validate=True).decode()
                except (binascii.Error, ValueError):
                    return None
                username, _, token = decoded.partition(":")
            elif scheme.lower() == "bearer":
                token = value.strip()
            else:
                return None
            if not token:
                return None
            if sessions.matching_token(self.context.tokens, token) is not None:
                return accounts.CONFIG
            return accounts.token_identity(self.context, token, username)
        if cookie is None:
            return None
        if cookie.user_id is None:
            return accounts.CONFIG  # signed in with a configured token
        return accounts.session_identity(self.context, cookie.user_id, cookie.version)


def _unauthorized(face: str) -> Response:
    if face != "scrapyd":
        return error_response(401, "unauthorized", "a valid bearer token is required")
    # Scrapyd's own answer, body and all (its clients and tests read it); the realm says
    # what CrawlHub takes: an API token as the password.
    realm = 'Basic realm="CrawlHub: an API token as the password"'
    return PlainTextResponse("Unauthorized", status_code=401,
                             headers={"WWW-Authenticate": realm})  # fmt: skip


def _forbidden(face: str, message: str) -> Response:
    if face == "api":
        return error_response(403, "forbidden", message)
    if face == "scrapyd":
        return JSONResponse({"status": "error", "message": f"Forbidden: {message}",
                             "node_name": NODE_NAME}, status_code=403)  # fmt: skip
    return HTMLResponse(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Not allowed · '
        "CrawlHub</title></head><body><h1>Not allowed</h1>"
        f'<p>{html.escape(message)}.</p><p><a href="/">Back to the overview</a></p>'
        "</body></html>",
        status_code=403,
    )
