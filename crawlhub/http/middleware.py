"""ASGI middleware of the API: token auth on /api and the Scrapyd API, request body limits."""

import base64
import binascii
import hmac
import re
from collections.abc import Iterable

from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crawlhub.errors import TooLarge
from crawlhub.http.scrapyd import PREFIX, is_scrapyd_path
from crawlhub.web.responses import error_response


def is_api_path(path: str) -> bool:
    """Whether a request path is under /api (and so needs a token)."""
    return path == "/api" or path.startswith("/api/")


class BearerAuth:
    """Rejects /api requests without one of the configured tokens (constant-time compare).
    The Scrapyd API takes the token as a bearer token too, or as the password of HTTP basic
    auth (any user name), which is what scrapy.cfg's `username`/`password` send."""

    def __init__(self, app: ASGIApp, tokens: Iterable[str]) -> None:
        self.app = app
        self.tokens = [token.encode() for token in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            scrapyd = is_scrapyd_path(path)
            if scrapyd or is_api_path(path):
                header = dict(scope["headers"]).get(b"authorization", b"")
                if not self._valid(header, basic=scrapyd):
                    await _unauthorized(scrapyd)(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _valid(self, header: bytes, *, basic: bool) -> bool:
        scheme, _, token = header.partition(b" ")
        if basic and scheme.lower() == b"basic":
            try:
                token = base64.b64decode(token.strip(), validate=True).partition(b":")[2]
            except (binascii.Error, ValueError):
                return False
        elif scheme.lower() != b"bearer":
            return False
        if not token.strip():
            return False
        token = token.strip()
        # Compare against every token so timing does not reveal which one (or none) matched.
        matched = False
        for candidate in self.tokens:
            matched |= hmac.compare_digest(candidate, token)
        return matched


def _unauthorized(scrapyd: bool) -> Response:
    if not scrapyd:
        return error_response(401, "unauthorized", "a valid bearer token is required")
    # Scrapyd's own answer, body and all (its clients and tests read it); the realm says
    # what CrawlHub takes: an API token as the password (any user name), or as a bearer.
    realm = 'Basic realm="CrawlHub: an API token as the password"'
    return PlainTextResponse("Unauthorized", status_code=401,
                             headers={"WWW-Authenticate": realm})  # fmt: skip


class CollapseSlashes:
    """`scrapyd-client` joins its target URL and `/listprojects.json` into a doubled slash:
    Scrapyd paths are matched with runs of slashes as one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "//"):
            scope = {**scope, "path": re.sub("/{2,}", "/", scope["path"])}
        await self.app(scope, receive, send)


class BodyLimit:
    """Answers 413 for request bodies over the limit, by Content-Length or while streaming."""

    def __init__(
        self, app: ASGIApp, *, default: int, large: int, large_paths: re.Pattern[str]
    ) -> None:
        self.app = app
        self.default = default
        self.large = large
        self.large_paths = large_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.large if self.large_paths.match(scope["path"]) else self.default
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await error_response(400, "bad_request", "invalid Content-Length")(
                    scope, receive, send
                )
                return
            digits = length.lstrip(b"0")
            # Longer than the limit is over it; int() refuses over 4 300 digits anyway.
            if len(digits) > len(str(limit)) or int(digits or b"0") > limit:
                await _too_large(limit)(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge(f"request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> JSONResponse:
    return error_response(413, "too_large", f"request body is over the limit of {limit} bytes")
