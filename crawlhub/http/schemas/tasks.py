"""Models of runs (tasks) and their log lines."""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from crawlhub.http.schemas.common import MAX_INT, Out, Page, PageQuery, Strict

TaskStatus = Literal[
    "pending", "running", "retrying", "completed", "failed", "cancelled", "skipped"
]
Trigger = Literal["manual", "schedule", "test"]
LogStream = Literal["stdout", "stderr", "system"]


class RunRequest(Strict):
    """Body of POST /api/spiders/{id}/run and /test-run (optional)."""

    params: dict[str, Any] = Field(default_factory=dict)


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
