"""Models of spiders and their versions."""

import uuid
from datetime import datetime
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from crawlhub.registry.spiders import HIDDEN, check_dedup_keys, check_entry, check_env, hidden_env
from crawlhub.sandbox import limits as run_limits
from crawlhub.web.schemas.common import Labels, Out, Page, PageQuery, Strict
from crawlhub.web.schemas.projects import SLUG, SpiderKind, not_an_id

MAX_TIMEOUT_S = 7 * 24 * 3600

# The spider fields a client may set to null (null turns dedup off, limits to the defaults).
NULLABLE_FIELDS = frozenset(
    {"dedup_keys", "retention_days", "limits", "requires", "max_concurrent_runs"}
)


class SpiderFields(Strict):
    """Fields a spider can be created or patched with."""

    params: dict[str, Any] | None = None
    env: dict[str, str] | None = None
    timeout_s: int | None = Field(None, ge=1, le=MAX_TIMEOUT_S)
    max_retries: int | None = Field(None, ge=0, le=20)
    retry_backoff_min_s: int | None = Field(None, ge=1, le=86_400)
    retry_backoff_max_s: int | None = Field(None, ge=1, le=86_400)
    dedup_keys: list[str] | None = Field(None, min_length=1, max_length=16)
    alert_on_zero_items: bool | None = None
    enabled: bool | None = None
    retention_days: int | None = Field(None, ge=1, le=36_500)
    limits: dict[str, int] | None = Field(
        None, description="its runs' own limits over the defaults: memory_mb, processes "
        "(tasks), open_files (per process), disk_mb and files (work dir); null: the defaults",
    )  # fmt: skip
    requires: Labels | None = Field(
        None, description="labels a node must have to run it (`browser`, `region=eu`); null: any"
    )
    max_concurrent_runs: int | None = Field(
        None, ge=1, le=10_000, description="how many of its runs may run at once; null: no limit"
    )

    @field_validator("limits")
    @classmethod
    def _limits(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        return None if value is None else run_limits.check(value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else check_env(value)

    @field_validator("dedup_keys")
    @classmethod
    def _dedup(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not key or len(key) > 255 for key in value):
            raise ValueError("dedup_keys must be field names of 1 to 255 characters")
        return check_dedup_keys(value)

    @model_validator(mode="after")
    def _no_explicit_nulls(self) -> Self:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in NULLABLE_FIELDS:
                raise ValueError(f"{name} must not be null")
        return self

    @model_validator(mode="after")
    def _backoff(self) -> Self:
        low, high = self.retry_backoff_min_s, self.retry_backoff_max_s
        if low is not None and high is not None and low > high:
            raise ValueError("retry_backoff_min_s must not exceed retry_backoff_max_s")
        return self


class SpiderCreate(SpiderFields):
    """Body of POST /api/spiders."""

    name: str = Field(pattern=SLUG)
    kind: SpiderKind = Field("python", description="a spider in a project has the project's")
    entry: str | None = Field(None, max_length=255)
    project: str | None = Field(
        None, max_length=64, description="the project (id or name) it is an entry of; "
        "default: a new project of the spider's name",
    )  # fmt: skip

    name_not_an_id = field_validator("name")(not_an_id)

    @model_validator(mode="after")
    def _entry(self) -> Self:
        if self.entry is not None:
            check_entry(self.kind, self.entry)
        return self


class SpiderPatch(SpiderFields):
    """Body of PATCH /api/spiders/{id}; absent fields stay as they are."""

    name: str | None = Field(None, pattern=SLUG)

    name_not_an_id = field_validator("name")(not_an_id)
    kind: SpiderKind | None = None
    entry: str | None = Field(None, max_length=255)


class SpiderOut(Out):
    id: uuid.UUID
    name: str
    project: str = Field(description="the name of its project")
    project_id: uuid.UUID
    kind: SpiderKind
    entry: str
    params: dict[str, Any]
    env: dict[str, str] = Field(
        description=f"names only: every value reads '{HIDDEN}' (a value sent back as "
        f"'{HIDDEN}' keeps what is stored)"
    )
    timeout_s: int
    max_retries: int
    retry_backoff_min_s: int
    retry_backoff_max_s: int
    dedup_keys: list[str] | None
    requires: list[str] | None
    max_concurrent_runs: int | None
    alert_on_zero_items: bool
    enabled: bool
    retention_days: int | None
    limits: dict[str, int]
    current_version: int | None
    created_at: datetime
    updated_at: datetime

    @field_validator("project", mode="before")
    @classmethod
    def _project_name(cls, value: Any) -> Any:
        return getattr(value, "name", value)

    @field_validator("env", mode="before")
    @classmethod
    def _hidden(cls, value: Any) -> Any:
        return hidden_env(value)


class SpiderListQuery(PageQuery):
    kind: SpiderKind | None = None
    enabled: bool | None = None
    project: str | None = Field(None, max_length=64, description="a project's id or name")


class SpiderPage(Page[SpiderOut]):
    pass
