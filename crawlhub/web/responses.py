"""Responses of the API: the error envelope, the one map from errors to statuses, and
JSON rendered straight from pydantic models."""

import json
import logging
from collections.abc import Generator
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from crawlhub.errors import (
    BadRequest,
    Conflict,
    CrawlhubError,
    Forbidden,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    TooLarge,
    Unauthorized,
)

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a 503 (database or Redis unreachable) asks clients to wait
STATUS = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    InvalidInput: 422,
    ServiceUnavailable: 503,
}
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    """The error envelope of SPEC §8."""
    body = {"error": {"code": code, "message": message, "details": details}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(exc: CrawlhubError) -> int:
    """The HTTP status of an error, from the nearest class in the tree."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


async def crawlhub_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CrawlhubError)
    return error_response(status_of(exc), exc.code, exc.message, exc.details)


async def http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", "internal server error; see the server log")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    CrawlhubError: crawlhub_error,
    HTTPException: http_error,
    Exception: server_error,
}


class ModelResponse(JSONResponse):
    """A JSON response rendered straight from a pydantic model (spectree trusts its class)."""

    def __init__(self, model: BaseModel, status_code: int = 200) -> None:
        self._model_class = type(model)
        super().__init__(model, status_code=status_code)

    def render(self, content: Any) -> bytes:
        return content.model_dump_json().encode()  # type: ignore[no-any-return]


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as JSON-safe dicts without documentation links."""
    return json.loads(exc.json(include_url=False, include_input=False))  # type: ignore[no-any-return]


class ClosingStream(StreamingResponse):
    """A response streamed from a generator (run in the thread pool) that is closed as the
    response ends, however it ends. A client gone mid-way otherwise left the generator
    suspended, with what it held (an export's COPY and its pooled connection), until the
    garbage collector came to it: a few dropped downloads could take the pool."""

    def __init__(self, content: Generator[bytes, None, None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._content = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Not running meanwhile: a cancelled response waits for the chunk being made.
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(self._content.close)
                except Exception as exc:  # what closing it raised must not hide the rest
                    logger.warning("closing a streamed response failed: %s", exc)
