"""Models of scraped items: filters, exports, pages."""

import uuid
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from crawlhub.repo.tasks import JOB_ID_CHARS
from crawlhub.web.schemas.common import (
    MAX_BIGINT,
    MAX_OFFSET_ROWS,
    MAX_PAGE,
    Out,
    Strict,
    check_depth,
    in_range,
)

RUN_REF = "run id, its first characters (unique), or its Scrapyd job id"


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("times must carry a UTC offset, e.g. 2026-03-08T00:00:00Z")
    return in_range(value)


class DataFilter(Strict):
    spider_id: str | None = Field(None, max_length=64, description="spider id or name")
    task_id: str | None = Field(None, max_length=JOB_ID_CHARS, description=RUN_REF)
    since: datetime | None = Field(None, description="created at or after (ISO 8601 with offset)")
    until: datetime | None = Field(None, description="created before (ISO 8601 with offset)")

    @field_validator("since", "until")
    @classmethod
    def _times(cls, value: datetime | None) -> datetime | None:
        return _aware(value)


class DataQuery(DataFilter):
    page: int = Field(
        1, ge=1, le=MAX_PAGE, description=f"page * page_size <= {MAX_OFFSET_ROWS}; then after_id"
    )
    page_size: int = Field(100, ge=1, le=1000)
    after_id: int | None = Field(
        None, ge=0, le=MAX_BIGINT, description="keyset paging: items after this id"
    )

    @model_validator(mode="after")
    def _not_too_deep(self) -> Self:
        if self.after_id is None:  # with after_id, page plays no part
            deeper = "read on with keyset paging: pass the `next_after_id` of a page as `after_id`"
            check_depth(self.page, self.page_size, deeper)
        return self


class ExportQuery(DataFilter):
    fields: str | None = Field(None, max_length=4096, description="CSV/XLSX columns: a,b,c")
    excel: bool = Field(False, description="CSV for Excel: UTF-8 BOM, formulas neutralised")


class DeleteQuery(Strict):
    spider_id: str | None = Field(None, max_length=64, description="spider id or name")
    task_id: str | None = Field(None, max_length=JOB_ID_CHARS, description=RUN_REF)


class ItemOut(Out):
    id: int
    spider_id: uuid.UUID
    task_id: uuid.UUID
    attempt: int
    created_at: datetime
    data: dict[str, Any]


class DataPage(BaseModel):
    """Items in id order; with after_id (keyset paging) total is null. next_after_id leads on
    while more items follow (null after the last)."""

    items: list[ItemOut]
    total: int | None
    total_exact: bool = Field(
        True, description="false: `total` is PostgreSQL's estimate (over 10 000 items)"
    )
    page: int | None
    page_size: int
    total_pages: int | None
    next_after_id: int | None
