"""Pagination shared by every list query, and counting that stays fast at millions of rows."""

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")

# Lists that grow without bound (runs, items) count exactly up to this many rows; above it
# they report PostgreSQL's estimate, so a page never waits on counting a million rows.
EXACT_COUNT_UP_TO = 10_000


def paginate(
    session: Session, stmt: Select[Any], page: int, page_size: int
) -> tuple[Sequence[Any], int]:
    """One page of `stmt`'s rows (first column) and the total number of rows."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    return page_of(session, stmt, page, page_size), total


def page_of(session: Session, stmt: Select[Any], page: int, page_size: int) -> Sequence[Any]:
    """One page of `stmt`'s rows (first column)."""
    return session.scalars(stmt.limit(page_size).offset((page - 1) * page_size)).all()


def count_rows(session: Session, stmt: Select[Any]) -> tuple[int, bool]:
    """How many rows `stmt` selects, and whether that is exact.

    Exact up to EXACT_COUNT_UP_TO (counting stops there: the cost is bounded); above it, on
    PostgreSQL, the planner's estimate for the query (never less than what was counted).
    SQLite counts exactly.
    """
    stmt = stmt.order_by(None)
    if session.get_bind().dialect.name != "postgresql":
        return session.scalar(select(func.count()).select_from(stmt.subquery())) or 0, True
    capped = stmt.limit(EXACT_COUNT_UP_TO + 1).subquery()
    counted = session.scalar(select(func.count()).select_from(capped)) or 0
    if counted <= EXACT_COUNT_UP_TO:
        return counted, True
    connection = session.connection()
    compiled = stmt.compile(dialect=connection.dialect)
    plan: Any = connection.exec_driver_sql(
        "EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params
    ).scalar()
    return max(int(plan[0]["Plan"]["Plan Rows"]), counted), False
