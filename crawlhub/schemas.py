"""Pydantic models of the HTTP API: request bodies, query strings and responses."""

import re
import uuid
from datetime import datetime
from typing import Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
PYTHON_ENTRY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$", re.ASCII)
SCRAPY_ENTRY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_TIMEOUT_S = 7 * 24 * 3600
# Bounds that keep numbers from the query string inside the database's integer columns.
MAX_PAGE = 1_000_000
MAX_INT = 2**31 - 1
MAX_BIGINT = 2**63 - 1

SpiderKind = Literal["scrapy", "python"]
T = TypeVar("T")


class Strict(BaseModel):
    """Request models reject unknown fields so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """Response models read ORM objects by attribute."""

    model_config = ConfigDict(from_attributes=True)


# --- errors and pages -------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The envelope of every error response."""

    error: ErrorBody


class PageQuery(Strict):
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(20, ge=1, le=100)


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    total: int
    total_exact: bool = Field(
        True, description="false: `total` is PostgreSQL's estimate (lists of over 10 000 runs)"
    )
    page: int
    page_size: int
    total_pages: int

    @classmethod
    def of(cls, items: list[T], total: int, query: PageQuery, *, exact: bool = True) -> Self:
        """A page built from its rows, the total count and the query that asked for it."""
        pages = (total + query.page_size - 1) // query.page_size
        return cls(items=items, total=total, total_exact=exact, page=query.page,
                   page_size=query.page_size, total_pages=pages)  # fmt: skip


# --- health -----------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


# --- spiders ----------------------------------------------------------------------------


def check_env(env: dict[str, str]) -> dict[str, str]:
    """Environment names must be shell-safe and not shadow CrawlHub's own variables."""
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise ValueError(f"env name '{name}' is not a valid variable name")
        if name.upper().startswith("CRAWLHUB_"):
            raise ValueError(f"env name '{name}' is reserved (CRAWLHUB_*)")
        if "\x00" in value:
            raise ValueError(f"env value of '{name}' contains a NUL byte")
    return env


def check_dedup_keys(keys: list[str] | None) -> list[str] | None:
    """Dedup keys are distinct, non-empty field names."""
    if keys is None:
        return None
    if len(set(keys)) != len(keys):
        raise ValueError("dedup_keys must not repeat a field")
    return keys


def check_entry(kind: str, entry: str) -> None:
    """A python entry is `module:function`; a scrapy entry is a spider name."""
    if kind == "python" and not PYTHON_ENTRY.match(entry):
        raise ValueError(f"entry '{entry}' must be 'module:function' for a python spider")
    if kind == "scrapy" and not SCRAPY_ENTRY.match(entry):
        raise ValueError(f"entry '{entry}' is not a valid Scrapy spider name")


# The only spider field a client may set to null (null turns dedup off).
NULLABLE_FIELDS = frozenset({"dedup_keys", "retention_days"})


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
    kind: SpiderKind = "python"
    entry: str | None = Field(None, max_length=255)

    @model_validator(mode="after")
    def _entry(self) -> Self:
        if self.entry is not None:
            check_entry(self.kind, self.entry)
        return self


class SpiderPatch(SpiderFields):
    """Body of PATCH /api/spiders/{id}; absent fields stay as they are."""

    name: str | None = Field(None, pattern=SLUG)
    kind: SpiderKind | None = None
    entry: str | None = Field(None, max_length=255)


class SpiderOut(Out):
    id: uuid.UUID
    name: str
    kind: SpiderKind
    entry: str
    params: dict[str, Any]
    env: dict[str, str]
    timeout_s: int
    max_retries: int
    retry_backoff_min_s: int
    retry_backoff_max_s: int
    dedup_keys: list[str] | None
    alert_on_zero_items: bool
    enabled: bool
    retention_days: int | None
    current_version: int | None
    created_at: datetime
    updated_at: datetime


class SpiderListQuery(PageQuery):
    kind: SpiderKind | None = None
    enabled: bool | None = None


class SpiderPage(Page[SpiderOut]):
    pass


class VersionUpload(BaseModel):
    """Multipart body of POST /api/spiders/{id}/versions."""

    file: bytes = Field(
        description="a .zip or .tar.gz of the project, or a single .py file",
        json_schema_extra={"format": "binary"},
    )


class VersionOut(Out):
    number: int
    spider_id: uuid.UUID
    format: str
    filename: str
    sha256: str
    size: int
    files: int
    created_at: datetime


class VersionPage(Page[VersionOut]):
    pass


# --- tasks ------------------------------------------------------------------------------

TaskStatus = Literal[
    "pending", "running", "retrying", "completed", "failed", "cancelled", "skipped"
]
Trigger = Literal["manual", "schedule", "test"]
LogStream = Literal["stdout", "stderr", "system"]


class RunRequest(Strict):
    """Body of POST /api/spiders/{id}/run and /test-run (optional)."""

    params: dict[str, Any] = {}


class TaskOut(Out):
    id: uuid.UUID
    spider_id: uuid.UUID
    version: int | None
    schedule_id: uuid.UUID | None
    trigger: Trigger
    scheduled_for: datetime | None
    params: dict[str, Any]
    status: TaskStatus
    reason: str | None
    retry_count: int
    max_retries: int
    exit_code: int | None
    error_message: str | None
    items_count: int
    items_duplicate: int
    items_invalid: int
    log_lines: int
    stats: dict[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    message_id: str | None
    created_at: datetime


class TaskListQuery(PageQuery):
    spider_id: str | None = Field(None, max_length=64, description="spider id or name")
    status: TaskStatus | None = None
    trigger: Trigger | None = None
    schedule_id: uuid.UUID | None = None


class TaskPage(Page[TaskOut]):
    pass


class LogQuery(Strict):
    after_seq: int = Field(0, ge=0, le=MAX_INT)
    limit: int = Field(500, ge=1, le=1000)
    stream: LogStream | None = None
    attempt: int | None = Field(None, ge=1, le=MAX_INT)


class LogStreamQuery(Strict):
    after_seq: int = Field(0, ge=0, le=MAX_INT)


class LogLineOut(Out):
    seq: int
    attempt: int
    stream: LogStream
    ts: datetime
    text: str


class LogPage(BaseModel):
    """Persisted log lines in seq order; pass next_after_seq back to read on."""

    items: list[LogLineOut]
    next_after_seq: int


# --- schedules --------------------------------------------------------------------------

Overlap = Literal["forbid", "allow", "replace"]
Catchup = Literal["latest", "all", "none"]
MAX_JITTER_S = 3600


class ScheduleFields(Strict):
    """Fields a schedule can be created or patched with."""

    cron: str | None = Field(None, min_length=1, max_length=255)
    timezone: str | None = Field(None, min_length=1, max_length=64)
    params: dict[str, Any] | None = None
    enabled: bool | None = None
    overlap: Overlap | None = None
    catchup: Catchup | None = None
    starting_deadline_s: int | None = Field(None, ge=1, le=366 * 86_400)
    jitter_s: int | None = Field(None, ge=0, le=MAX_JITTER_S)

    @model_validator(mode="after")
    def _no_explicit_nulls(self) -> Self:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name != "starting_deadline_s":
                raise ValueError(f"{name} must not be null")
        return self


class ScheduleCreate(ScheduleFields):
    """Body of POST /api/spiders/{id}/schedules."""

    cron: str = Field(min_length=1, max_length=255)


class SchedulePatch(ScheduleFields):
    """Body of PATCH /api/schedules/{id}; absent fields stay as they are."""


class ScheduleOut(Out):
    id: uuid.UUID
    spider_id: uuid.UUID
    cron: str
    timezone: str
    params: dict[str, Any]
    enabled: bool
    overlap: Overlap
    catchup: Catchup
    starting_deadline_s: int | None
    jitter_s: int
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SchedulePage(Page[ScheduleOut]):
    pass


class PreviewQuery(Strict):
    n: int = Field(10, ge=1, le=1000)
    after: datetime | None = Field(None, description="ISO 8601 time with offset; default now")

    @field_validator("after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("after must carry a UTC offset, e.g. 2026-03-08T00:00:00Z")
        return value


class FireTime(BaseModel):
    utc: datetime
    local: datetime


class Preview(BaseModel):
    """The next fire times of a schedule, in UTC and in its own zone."""

    items: list[FireTime]


# --- alerts and channels ----------------------------------------------------------------

Level = Literal["info", "warning", "error"]
ChannelKind = Literal["webhook", "slack", "dingtalk", "feishu", "wecom", "email"]
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AlertOut(Out):
    id: uuid.UUID
    type: str
    level: Level
    message: str
    spider_id: uuid.UUID | None
    task_id: uuid.UUID | None
    is_read: bool
    count: int
    created_at: datetime
    last_seen_at: datetime


class AlertListQuery(PageQuery):
    level: Level | None = None
    is_read: bool | None = None
    spider_id: str | None = Field(None, max_length=64, description="spider id or name")


class AlertPage(Page[AlertOut]):
    pass


class Count(BaseModel):
    count: int


class ChannelFields(Strict):
    """Fields a channel can be created or patched with."""

    kind: ChannelKind | None = None
    target: str | None = Field(None, min_length=3, max_length=2048)
    secret: str | None = Field(None, max_length=512)
    min_level: Level | None = None
    spider_id: str | None = Field(None, max_length=64, description="spider id or name")
    enabled: bool | None = None


def check_target(kind: str, target: str) -> None:
    """An e-mail channel needs an address; the others an http(s) URL."""
    if kind == "email":
        if not EMAIL.match(target):
            raise ValueError(f"target '{target[:80]}' is not an e-mail address")
    elif not target.startswith(("https://", "http://")):
        raise ValueError("target must be an http:// or https:// URL")


class ChannelCreate(ChannelFields):
    """Body of POST /api/channels."""

    kind: ChannelKind
    target: str = Field(min_length=3, max_length=2048)

    @model_validator(mode="after")
    def _target(self) -> Self:
        check_target(self.kind, self.target)
        return self


class ChannelPatch(ChannelFields):
    """Body of PATCH /api/channels/{id}; absent fields stay; null clears secret or spider."""

    @model_validator(mode="after")
    def _no_explicit_nulls(self) -> Self:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in ("secret", "spider_id"):
                raise ValueError(f"{name} must not be null")
        return self


class ChannelOut(Out):
    """A channel; its secret is never returned, only whether it has one."""

    id: uuid.UUID
    kind: ChannelKind
    target: str
    has_secret: bool
    min_level: Level
    spider_id: uuid.UUID | None
    enabled: bool
    created_at: datetime


class ChannelPage(Page[ChannelOut]):
    pass


class DeliveryOut(Out):
    channel_id: uuid.UUID
    status: str
    attempts: int
    last_error: str | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]


class ChannelTest(BaseModel):
    delivered: bool
    error: str | None


# --- queues -----------------------------------------------------------------------------


class QueueOut(BaseModel):
    name: str
    ready: int
    delayed: int
    in_flight: int
    dead_lettered: int


class WorkerOut(BaseModel):
    id: str
    last_heartbeat: datetime


class Queues(BaseModel):
    """Per-queue message counts and the live workers (from Dramatiq's heartbeats)."""

    queues: list[QueueOut]
    workers: list[WorkerOut]


class DeadLetter(BaseModel):
    message_id: str
    actor: str
    task_id: str | None
    error: str | None
    retries: int
    dead_at: datetime


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    total: int


class Requeued(BaseModel):
    requeued: str
    task_id: str | None


class DeadLetterQuery(Strict):
    limit: int = Field(100, ge=1, le=1000)


# --- data -------------------------------------------------------------------------------


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("times must carry a UTC offset, e.g. 2026-03-08T00:00:00Z")
    return value


class DataFilter(Strict):
    spider_id: str | None = Field(None, max_length=64, description="spider id or name")
    task_id: uuid.UUID | None = None
    since: datetime | None = Field(None, description="created at or after (ISO 8601 with offset)")
    until: datetime | None = Field(None, description="created before (ISO 8601 with offset)")

    @field_validator("since", "until")
    @classmethod
    def _times(cls, value: datetime | None) -> datetime | None:
        return _aware(value)


class DataQuery(DataFilter):
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(100, ge=1, le=1000)
    after_id: int | None = Field(
        None, ge=0, le=MAX_BIGINT, description="keyset paging: items after this id"
    )


class ExportQuery(DataFilter):
    fields: str | None = Field(None, max_length=4096, description="CSV/XLSX columns: a,b,c")
    excel: bool = Field(False, description="CSV for Excel: UTF-8 BOM, formulas neutralised")


class DeleteQuery(Strict):
    spider_id: str | None = Field(None, max_length=64)
    task_id: uuid.UUID | None = None


class ItemOut(Out):
    id: int
    spider_id: uuid.UUID
    task_id: uuid.UUID
    attempt: int
    created_at: datetime
    data: dict[str, Any]


class DataPage(BaseModel):
    """Items in id order; with after_id (keyset paging) total is null and next_after_id leads on."""

    items: list[ItemOut]
    total: int | None
    total_exact: bool = Field(
        True, description="false: `total` is PostgreSQL's estimate (over 10 000 items)"
    )
    page: int | None
    page_size: int
    total_pages: int | None
    next_after_id: int | None
