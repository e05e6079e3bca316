"""Request validation and the OpenAPI document: spectree on Starlette, with CrawlHub's errors."""

import functools
import inspect
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from spectree import SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import SecureType
from spectree.plugins.base import Context as SpectreeContext
from spectree.plugins.starlette_plugin import StarlettePlugin
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from crawlhub import __version__
from crawlhub.context import Context
from crawlhub.errors import BadRequest, InvalidInput
from crawlhub.web.responses import validation_details
from crawlhub.web.schemas.common import ErrorResponse

JSON_TYPES = ("application/json", "application/problem+json")
MAX_JSON_DEPTH = 64  # far deeper than any request needs; PostgreSQL and Python stop later


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
    return parse_json(body)


def parse_json(text: str | bytes, what: str = "body") -> Any:
    """JSON as the API reads it, for request bodies and the dashboard's JSON fields alike:
    no NaN or infinite numbers, no number of thousands of digits, nesting at most
    MAX_JSON_DEPTH (400), no NUL or lone surrogate in a string (422 naming where)."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise BadRequest(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: also a 5 000-digit number
        raise BadRequest(f"{what} is not valid JSON: {exc}") from exc
    check_json(value, what)
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    # 1e400 reads as infinity, which PostgreSQL's jsonb refuses and SQLite would store as a
    # bare `Infinity` that is not JSON.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large for a JSON number (a double)")
    return value


def check_json(value: Any, what: str = "body") -> None:
    """Refuse what PostgreSQL cannot store or what no request needs: nesting deeper than
    MAX_JSON_DEPTH, NUL characters and lone surrogates in any key or string (422 naming
    where)."""
    stack: list[tuple[Any, str, int]] = [(value, what, 1)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            for key, child in node.items():
                _check_text(key, f"{path} (a key)")
                stack.append((child, f"{path}.{key[:40]}", depth + 1))
        elif isinstance(node, list):
            stack.extend((child, f"{path}[{n}]", depth + 1) for n, child in enumerate(node))
        elif isinstance(node, str):
            _check_text(node, path)


def _check_text(text: str, path: str) -> None:
    problem = None
    if "\x00" in text:
        problem = "contains a NUL character"
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            problem = "contains a lone surrogate (not valid Unicode)"
    if problem:
        raise InvalidInput(f"{path} {problem}", details=[{"loc": path, "msg": problem}])


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
        # Plain model names in components/schemas (unique across crawlhub.web.schemas).
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


def ctx(request: Request) -> Context:
    """The process context the app was built with."""
    context: Context = request.app.state.ctx
    return context
