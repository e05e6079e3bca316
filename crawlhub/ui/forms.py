"""Reading dashboard forms and query strings: fields, pages, times, and the API's models
with their errors placed beside each field."""

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request

from crawlhub.errors import CrawlhubError, InvalidInput
from crawlhub.web.validation import parse_json

JSON_FIELDS = ("params", "env", "settings", "limits")  # form fields that hold a JSON object
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


def field(form: FormData, name: str) -> str:
    """A text field of a form, stripped ('' when absent or a file)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def listed(form: FormData, name: str) -> list[str] | None:
    """A comma-separated field as its items (None when it names none)."""
    return [part.strip() for part in field(form, name).split(",") if part.strip()] or None


def whole_number(raw: str | None, maximum: int = 2**31 - 1) -> int | None:
    """A query parameter as a number from 0 to ``maximum``; None for anything else (ASCII
    digits only: `str.isdigit` also takes "²", which `int` refuses)."""
    if raw is None or not WHOLE_NUMBER.fullmatch(raw):
        return None
    number = int(raw)
    return number if number <= maximum else None


def page_number(request: Request) -> int:
    """The `page` query parameter, 1 when absent or not a positive number."""
    return max(whole_number(request.query_params.get("page"), 999_999) or 1, 1)


def utc_time(raw: str, name: str) -> datetime | None:
    """A time from a form field (ISO 8601; without an offset it is read as UTC)."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{name}: not a date and time like 2026-03-08T14:30") from None
    return value


def validation_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic's errors by form field ('' for the form as a whole)."""
    found: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        found.setdefault(name, str(error["msg"]).removeprefix("Value error, "))
    return found


def parse_form(model: type[BaseModel], values: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """The form's values as the API's model, or the errors to show beside each field."""
    errors: dict[str, str] = {}
    for name in JSON_FIELDS:
        if isinstance(values.get(name), str):
            try:
                values[name] = parse_json(values[name] or "{}", name)
            except CrawlhubError as exc:
                errors[name] = f'{exc.message} (give an object like {{"key": "value"}})'
    try:
        return model.model_validate(values), errors
    except ValidationError as exc:
        return None, {**validation_errors(exc), **errors}
