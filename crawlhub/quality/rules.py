"""A spider's data quality rules (docs/guide/quality.md): what its runs' items and health must
look like, each bound a failure threshold or a warning and a failure threshold.

Set through the API, the CLI or the dashboard, or shipped in the project's `crawlhub.toml`
(`[quality.<spider>]`, versioned with each deploy); the spider's own rules win over its
version's.
"""

import tomllib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crawlhub.errors import InvalidInput

MAX_COVERAGE_FIELDS = 100
MAX_PATH = 200  # characters of a field path (`price`, `offer.price`)


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Band(Rule):
    """A warning threshold and a failure threshold (either may be left out)."""

    warn: float | None = Field(None, ge=0)
    fail: float | None = Field(None, ge=0)


# A bare number is a failure threshold.
Bound = Annotated[float, Field(ge=0)] | Band


def levels(bound: Bound) -> list[tuple[str, float]]:
    """(level, threshold) pairs of a bound, failure first."""
    if isinstance(bound, Band):
        return [
            (lvl, v) for lvl, v in (("fail", bound.fail), ("warn", bound.warn)) if v is not None
        ]
    return [("fail", float(bound))]


class ItemCount(Rule):
    """Bounds on the number of items a run stores: absolute, and relative to the median of
    the last `runs` completed runs with the same params."""

    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)
    warn_below: float | None = Field(None, ge=0, le=10, description="share of the median")
    fail_below: float | None = Field(None, ge=0, le=10, description="share of the median")
    runs: int = Field(5, ge=1, le=100, description="completed runs the median is taken over")


class Health(Rule):
    """How a run went, whatever its items."""

    finish_reasons: list[str] | None = Field(
        None, max_length=20, description="Scrapy's finish_reason values allowed"
    )
    max_error_lines: Bound | None = None
    max_warning_lines: Bound | None = None
    max_status_share: dict[str, Bound] = Field(
        default_factory=dict,
        description="share of responses by HTTP status: `403`, `429`, `5xx`, `4xx`",
    )
    max_retries: Bound | None = None
    max_download_exceptions: Bound | None = None
    max_stderr_lines: Bound | None = None
    min_duration_s: float | None = Field(None, ge=0)
    max_duration_s: float | None = Field(None, ge=0)

    @field_validator("max_status_share")
    @classmethod
    def _statuses(cls, value: dict[str, Bound]) -> dict[str, Bound]:
        for key in value:
            if not (key in ("4xx", "5xx") or (key.isdigit() and 100 <= int(key) <= 599)):
                raise ValueError(f"'{key}' is not an HTTP status, 4xx or 5xx")
        return value


class QualityRules(Rule):
    """Every rule is optional; `on_fail` says what a failing verdict does besides its alert."""

    schema_: dict[str, Any] | None = Field(
        None, alias="schema", description="a JSON Schema every item is validated against"
    )
    max_invalid_share: Bound | None = Field(
        None, description="share of items the schema refuses (default: warn above 0)"
    )
    coverage: dict[str, Bound] = Field(
        default_factory=dict,
        description="least share of items where a field (a dotted path) is present and not empty",
    )
    items: ItemCount | None = None
    max_duplicate_share: Bound | None = Field(
        None, description="share of items dropped by the spider's dedup keys"
    )
    health: Health | None = None
    on_fail: Literal["nothing", "suspect", "retry"] = Field(
        "nothing",
        description="suspect: exports of the run say its data is suspect; retry: run it once more",
    )

    @field_validator("coverage")
    @classmethod
    def _paths(cls, value: dict[str, Bound]) -> dict[str, Bound]:
        if len(value) > MAX_COVERAGE_FIELDS:
            raise ValueError(f"at most {MAX_COVERAGE_FIELDS} fields")
        for path in value:
            if not path or len(path) > MAX_PATH or "\x00" in path:
                raise ValueError(f"a field path is 1 to {MAX_PATH} characters")
        return value

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            compile_schema(value)
        return value

    def dump(self) -> dict[str, Any]:
        """As stored and shown: by alias, without what is unset."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)


def _no_retrieval(uri: str) -> Any:
    raise ValueError(f"a $ref to another document ({uri[:200]}) is not followed: put what it "
                     "refers to in the schema's $defs")  # fmt: skip


def compile_schema(schema: dict[str, Any]) -> Any:
    """A validator for a JSON Schema (jsonschema-rs); ValueError for a schema that is not one.
    A `$ref` to another document is refused, never fetched: the web and worker processes
    fetch nothing a rule names."""
    import jsonschema_rs

    try:
        return jsonschema_rs.validator_for(schema, retriever=_no_retrieval)
    except (jsonschema_rs.ValidationError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"not a valid JSON Schema: {first[:300]}") from None


def parse(value: Any, where: str = "quality") -> QualityRules:
    """Rules from JSON (or TOML) data; InvalidInput naming each mistake."""
    try:
        return QualityRules.model_validate(value)
    except ValidationError as exc:
        problems = [f"{where}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                    for e in exc.errors()]  # fmt: skip
        raise InvalidInput("; ".join(problems)[:2000], details=problems) from None


def in_force(own: dict[str, Any] | None, shipped: dict[str, Any] | None, name: str,
             entry: str) -> tuple[dict[str, Any] | None, str | None]:  # fmt: skip
    """A spider's rules in force and where they come from: its own ("spider"), else those
    its version's crawlhub.toml gives it by its name or its Scrapy name ("version")."""
    if own is not None:
        return own, "spider"
    given = shipped or {}
    found = given.get(name, given.get(entry))
    return (found, "version") if found else (None, None)


CONFIG_FILE = "crawlhub.toml"


def from_project_file(text: bytes) -> dict[str, dict[str, Any]]:
    """The rules a project ships in crawlhub.toml, by spider name (`[quality.<spider>]`);
    InvalidInput for a file that is not TOML or rules that are not rules."""
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"{CONFIG_FILE}: {exc}") from None
    section = data.get("quality", {})
    if not isinstance(section, dict):
        raise InvalidInput(f"{CONFIG_FILE}: [quality] is a table of spiders")
    found: dict[str, dict[str, Any]] = {}
    for spider, rules in section.items():
        found[spider] = parse(rules, f"{CONFIG_FILE}: quality.{spider}").dump()
    return found
