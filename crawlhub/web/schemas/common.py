"""Models every resource shares: strict requests, pages, the error envelope, health."""

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from crawlhub.config import LABEL
from crawlhub.errors import InvalidInput

# A page by number is an OFFSET: the database reads and drops every row before it. Pages
# may end at most this deep (page * page_size); deeper, lists answer 422 and name their
# keyset cursor, which is as fast on the millionth row as on the first.
MAX_OFFSET_ROWS = 100_000
# Bounds that keep numbers from the query string inside the database's integer columns.
MAX_PAGE = MAX_OFFSET_ROWS  # page_size is at least 1
MAX_INT = 2**31 - 1
MAX_BIGINT = 2**63 - 1

T = TypeVar("T")


def in_range(value: datetime | None) -> datetime | None:
    """A time that UTC (and so the database) can hold: 0001-01-01T00:00+14:00 cannot."""
    if value is None:
        return None
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time out of range: it falls before year 1 or after 9999 in UTC") from None
    return value


class Strict(BaseModel):
    """Request models reject unknown fields so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    """Response models read ORM objects by attribute."""

    model_config = ConfigDict(from_attributes=True)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The envelope of every error response."""

    error: ErrorBody


def check_depth(page: int, page_size: int, deeper: str) -> None:
    """Refuse (422) a page by number that ends past MAX_OFFSET_ROWS; `deeper` tells the
    client how to read on.

    Raised as InvalidInput rather than ValueError (pydantic lets it through unchanged) so
    that the error's message itself, not only its details, says what to do.
    """
    if page * page_size > MAX_OFFSET_ROWS:
        raise InvalidInput(
            f"page {page} at page_size {page_size} ends at row {page * page_size}, past row "
            f"{MAX_OFFSET_ROWS}, the deepest a page by number reaches (page * page_size <= "
            f"{MAX_OFFSET_ROWS}); {deeper}",
            details={"page": page, "page_size": page_size, "max_rows": MAX_OFFSET_ROWS},
            code="page_too_deep",
        )


class PageQuery(Strict):
    # How to read past MAX_OFFSET_ROWS; lists with a keyset cursor name it.
    DEEPER: ClassVar[str] = "narrow the list with its filters"

    page: int = Field(1, ge=1, le=MAX_PAGE, description=f"page * page_size <= {MAX_OFFSET_ROWS}")
    page_size: int = Field(20, ge=1, le=100)

    @model_validator(mode="after")
    def _not_too_deep(self) -> Self:
        check_depth(self.page, self.page_size, self.DEEPER)
        return self


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


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


class Count(BaseModel):
    count: int


# Labels a node must have to run something: `browser`, `region=eu` (CRAWLHUB_WORKER_LABELS).
Label = Annotated[str, StringConstraints(pattern=LABEL.pattern)]
Labels = Annotated[list[Label], Field(max_length=20)]
