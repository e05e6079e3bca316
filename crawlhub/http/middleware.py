"""ASGI middleware of the API: bearer-token auth on /api, request body limits."""

import hmac
import re
from collections.abc import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crawlhub.errors import TooLarge
from crawlhub.http.responses import error_response


def is_api_path(path: str) -> bool:
    """Whether a request path is under /api (and so needs a token)."""
    return path == "/api" or path.startswith("/api/")


class BearerAuth:
    """Rejects /api requests without one of the configured tokens (constant-time compare)."""

    def __init__(self, app: ASGIApp, tokens: Iterable[str]) -> None:
        self.app = app
        self.tokens = [token.encode() for token in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and is_api_path(scope["path"]):
            header = dict(scope["headers"]).get(b"authorization", b"")
            if not self._valid(header):
                response = error_response(401, "unauthorized", "a valid bearer token is required")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _valid(self, header: bytes) -> bool:
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return False
        token = token.strip()
        # Compare against every token so timing does not reveal which one (or none) matched.
        matched = False
        for candidate in self.tokens:
            matched |= hmac.compare_digest(candidate, token)
        return matched


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
