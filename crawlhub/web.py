"""HTTP plumbing of the API: auth, body limits, the error envelope, spectree validation."""

import functools
import hmac
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from spectree import SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import SecureType
from spectree.plugins.base import Context as SpectreeContext
from spectree.plugins.starlette_plugin import StarlettePlugin
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crawlhub import __version__
from crawlhub.errors import (
    BadRequest,
    Conflict,
    CrawlhubError,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    TooLarge,
    Unauthorized,
)
from crawlhub.schemas import ErrorResponse

if TYPE_CHECKING:
    from crawlhub.context import Context

logger = logging.getLogger(__name__)

STATUS = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    InvalidInput: 422,
    ServiceUnavailable: 503,
}
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
JSON_TYPES = ("application/json", "application/problem+json")


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    """The error envelope of SPEC §8."""
    body = {"error": {"code": code, "message": message, "details": details}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
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


class Plugin(StarlettePlugin):
    """spectree's Starlette plugin: CrawlHub errors, sync handlers run in the thread pool."""

    async def request_validation(
        self, request: Request, query: Any, json_model: Any, form: Any, headers: Any, cookies: Any
    ) -> None:
        try:
            query_obj = None
            if query is not None:
                items = dict(request.query_params.multi_items())
                query_obj = query.model_validate(items)
            body_obj = None
            if json_model is not None:
                body_obj = json_model.model_validate(await read_json(request))
        except ValidationError as exc:
            raise InvalidInput("invalid request", details=validation_details(exc)) from exc
        request.context = SpectreeContext(query_obj, body_obj, None, None, None)  # type: ignore[attr-defined]

    async def validate(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not inspect.iscoroutinefunction(func):
            func = _in_threadpool(func)
        return await super().validate(func, *args, **kwargs)


M = TypeVar("M", bound=BaseModel)


def query_of(request: Request, model: type[M]) -> M:
    """The validated query string of a request handled by a spectree-decorated route."""
    value = request.context.query  # type: ignore[attr-defined]
    assert isinstance(value, model)
    return value


def body_of(request: Request, model: type[M]) -> M:
    """The validated JSON body of a request handled by a spectree-decorated route."""
    value = request.context.json  # type: ignore[attr-defined]
    assert isinstance(value, model)
    return value


def parse(model: type[M], data: Any) -> M:
    """Validate data as a model; InvalidInput (422) with pydantic's details otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("invalid request", details=validation_details(exc)) from exc


def _in_threadpool(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(func, *args, **kwargs)

    return wrapper


async def read_json(request: Request) -> Any:
    """The request's JSON body; an empty body reads as {}."""
    body = await request.body()
    if not body.strip():
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise BadRequest("expected a JSON body with Content-Type: application/json")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc


def make_spectree() -> SpecTree:
    """The spectree instance that validates requests and writes /api/openapi.json."""
    return SpecTree(
        "starlette",
        backend=Plugin,
        title="CrawlHub API",
        version=__version__,
        # spectree skips routes under its own path; keep it off /api and serve the spec ourselves.
        path="_spectree",
        page_templates={},
        mode="strict",
        annotations=False,
        validation_error_model=ErrorResponse,
        # Plain model names in components/schemas (model names are unique in crawlhub.schemas).
        naming_strategy=lambda model: model.__name__,
        nested_naming_strategy=lambda _parent, child: child,
        security_schemes=[
            SecurityScheme(
                name="bearer", data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer")
            )
        ],
        security={"bearer": []},
    )


spec = make_spectree()  # every route module decorates its handlers with this one instance


def errors(*statuses: int) -> dict[str, Any]:
    """spectree response declarations of the error envelope for these statuses."""
    return {f"HTTP_{status}": ErrorResponse for status in statuses}


def ctx(request: Request) -> "Context":
    """The process context the app was built with."""
    context: Context = request.app.state.ctx
    return context


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
            if int(length) > limit:
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
