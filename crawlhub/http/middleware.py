"""ASGI middleware of the API: Scrapyd paths' slashes, request body limits (who may do what
is `crawlhub.http.access`)."""

import re

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crawlhub.errors import TooLarge
from crawlhub.http.scrapyd import PREFIX
from crawlhub.web.responses import error_response


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
