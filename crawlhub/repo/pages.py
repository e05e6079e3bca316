"""Offset pagination shared by every list query."""

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")


def paginate(
    session: Session, stmt: Select[Any], page: int, page_size: int
) -> tuple[Sequence[Any], int]:
    """One page of `stmt`'s rows (first column) and the total number of rows."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(stmt.limit(page_size).offset((page - 1) * page_size)).all()
    return rows, total
