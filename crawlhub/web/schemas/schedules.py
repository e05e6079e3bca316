"""Models of schedules and their fire-time preview."""

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from crawlhub.web.schemas.common import Labels, Out, Page, Strict, in_range

Overlap = Literal["forbid", "allow", "replace"]
Catchup = Literal["latest", "all", "none"]
MAX_JITTER_S = 3600


class ScheduleFields(Strict):
    """Fields a schedule can be created or patched with."""

    cron: str | None = Field(None, min_length=1, max_length=255)
    timezone: str | None = Field(None, min_length=1, max_length=64)
    params: dict[str, Any] | None = None
    settings: dict[str, Any] | None = Field(None, description="Scrapy settings of its runs")
    enabled: bool | None = None
    overlap: Overlap | None = None
    catchup: Catchup | None = None
    starting_deadline_s: int | None = Field(None, ge=1, le=366 * 86_400)
    jitter_s: int | None = Field(None, ge=0, le=MAX_JITTER_S)
    requires: Labels | None = Field(
        None, description="labels a node must have to run its runs; null: its spider's"
    )

    @model_validator(mode="after")
    def _no_explicit_nulls(self) -> Self:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in ("starting_deadline_s", "requires"):
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
    settings: dict[str, Any]
    enabled: bool
    overlap: Overlap
    catchup: Catchup
    starting_deadline_s: int | None
    jitter_s: int
    requires: list[str] | None
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
        return in_range(value)


class FireTime(BaseModel):
    utc: datetime
    local: datetime


class Preview(BaseModel):
    """The next fire times of a schedule, in UTC and in its own zone."""

    items: list[FireTime]
