"""Models of runs (tasks) and their log lines."""

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from crawlhub.errors import InvalidInput
from crawlhub.services.dispatch import MANUAL_PRIORITY, PRIORITY_BOUND
from crawlhub.services.runs import Cursor
from crawlhub.web.schemas.common import MAX_INT, Labels, Out, PageQuery, Strict, in_range

TaskStatus = Literal[
    "pending", "running", "retrying", "completed", "failed", "cancelled", "skipped"
]
Trigger = Literal["manual", "schedule", "test", "scrapyd", "retry"]
Verdict = Literal["pass", "warn", "fail"]
LogStream = Literal["stdout", "stderr", "system"]


class RunRequest(Strict):
    """Body of POST /api/spiders/{id}/run and /test-run (optional)."""

    params: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Scrapy settings of this run alone (`-s NAME=VALUE`), Scrapy spiders only",
    )
    requires: Labels | None = Field(
        None, description="labels a node must have to run it; default: its spider's"
    )
    priority: int = Field(
        MANUAL_PRIORITY, ge=-PRIORITY_BOUND, le=PRIORITY_BOUND,
        description="higher first among waiting runs of a project (a schedule's runs: 0)",
    )  # fmt: skip


class TaskOut(Out):
    id: uuid.UUID
    spider_id: uuid.UUID
    version: int | None
    schedule_id: uuid.UUID | None
    trigger: Trigger
    actor: str | None = Field(
        description="who started it (a user, or a token and its owner); null for a schedule's run"
    )
    job_id: str | None = Field(description="the job id a Scrapyd client gave it; usable as its id")
    scheduled_for: datetime | None
    params: dict[str, Any]
    settings: dict[str, Any]
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
    requires: list[str] | None = Field(description="labels a node must have to run it")
    priority: int = Field(description="higher first among waiting runs (manual 10, scheduled 0)")
    node_id: str | None = Field(description="the node (host:pid) that ran its last attempt")
    waiting_reason: str | None = Field(
        None, description="why a pending run does not start: `no node has labels …`, "
        "`spider limit 2`, `project limit 5`, `every slot is taken`, `no node takes runs …`, "
        "`due at …` (a schedule's jitter)",
    )  # fmt: skip
    verdict: Verdict | None = Field(
        description="its data quality verdict (null: its spider has no rules, or it did not "
        "complete)"
    )
    quality: dict[str, Any] | None = Field(
        description="what the verdict rests on: `reasons` (rule, observed, expected, level), "
        "`suspect`, per-field statistics of its items (`items`, `fields`) and the schema's "
        "findings (`schema`)"
    )
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    pid: int | None = Field(
        description="the process id of its (last) attempt's spider, as its worker sees it"
    )
    message_id: str | None
    created_at: datetime


def format_cursor(cursor: Cursor) -> str:
    """A run's place in the newest-first order as `before` takes it (the API's and the
    dashboard's): `<created_at in UTC, ISO 8601>,<task id>`, safe in a URL as it is."""
    when, task_id = cursor
    return f"{when.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')},{task_id}"


def parse_cursor(text: str) -> Cursor:
    """The cursor format_cursor wrote; ValueError for anything else."""
    when, comma, task_id = text.partition(",")
    try:
        moment = datetime.fromisoformat(when.strip()) if comma else None
        if moment is not None and moment.tzinfo is not None and in_range(moment):
            return moment, uuid.UUID(task_id.strip())
    except ValueError:
        pass
    raise ValueError("not a cursor: pass the `next_before` of a page as it is")


class TaskListQuery(PageQuery):
    DEEPER: ClassVar[str] = (
        "read on with keyset paging: pass the `next_before` of the last page as `before`"
    )

    spider_id: str | None = Field(None, max_length=64, description="spider id or name")
    status: TaskStatus | None = None
    trigger: Trigger | None = None
    verdict: Verdict | None = None
    schedule_id: uuid.UUID | None = None
    before: str | None = Field(
        None,
        max_length=100,
        description="keyset paging: the runs after this cursor (a page's `next_before`) in "
        "the same newest-first order, fast at any depth; `page` stays 1",
    )

    @field_validator("before")
    @classmethod
    def _cursor(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cursor(value)
        return value

    @model_validator(mode="after")
    def _one_way_of_paging(self) -> Self:
        if self.before is not None and self.page != 1:
            raise InvalidInput("use either `page` or `before`, not both")
        return self

    @property
    def cursor(self) -> Cursor | None:
        """The keyset cursor `before` holds, if any."""
        return None if self.before is None else parse_cursor(self.before)


class TaskPage(BaseModel):
    """Runs newest first: a page by number, or with `before` the runs after a cursor (then
    `total`, `page` and `total_pages` are null: keyset paging counts nothing)."""

    items: list[TaskOut]
    total: int | None
    total_exact: bool = Field(
        True, description="false: `total` is PostgreSQL's estimate (lists of over 10 000 runs)"
    )
    page: int | None
    page_size: int
    total_pages: int | None
    next_before: str | None = Field(
        None, description="pass as `before` for the runs after this page; null after the last"
    )

    @classmethod
    def numbered(cls, items: list[TaskOut], total: int, exact: bool, query: TaskListQuery) -> Self:
        """Page `query.page` of `total` runs; its next_before leads on by keyset."""
        full = len(items) == query.page_size
        more = full and (not exact or query.page * query.page_size < total)
        return cls(
            items=items, total=total, total_exact=exact, page=query.page,
            page_size=query.page_size, total_pages=(total + query.page_size - 1) // query.page_size,
            next_before=format_cursor((items[-1].created_at, items[-1].id)) if more else None,
        )  # fmt: skip

    @classmethod
    def keyset(cls, items: list[TaskOut], following: Cursor | None, page_size: int) -> Self:
        """The runs after a cursor, and the cursor of the ones after them (None: no more)."""
        return cls(
            items=items, total=None, page=None, page_size=page_size, total_pages=None,
            next_before=None if following is None else format_cursor(following),
        )  # fmt: skip


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
