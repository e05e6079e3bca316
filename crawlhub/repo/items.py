"""Scraped items: batch ingest."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from crawlhub.repo.bulk import copy_rows
from crawlhub.repo.models import Item
from crawlhub.repo.types import utcnow

COLUMNS = ("spider_id", "task_id", "attempt", "data", "created_at")


def insert_items(
    session: Session,
    spider_id: uuid.UUID,
    task_id: uuid.UUID,
    attempt: int,
    items: Sequence[tuple[str, dict[str, Any]]],
) -> int:
    """Store a batch of items, each as (JSON text, parsed object); returns how many were stored.

    PostgreSQL takes the JSON text through COPY; SQLite gets the parsed objects.
    """
    if not items:
        return 0
    now = utcnow()
    rows = ((spider_id, task_id, attempt, text, now) for text, _ in items)
    if copy_rows(session, "item", COLUMNS, rows):
        return len(items)
    session.execute(
        insert(Item),
        [
            {"spider_id": spider_id, "task_id": task_id, "attempt": attempt, "data": data,
             "created_at": now}
            for _, data in items
        ],
    )  # fmt: skip
    return len(items)


def delete_task_items(session: Session, task_id: uuid.UUID, attempt: int | None = None) -> int:
    """Delete a task's items (of one attempt when given); returns the count."""
    stmt = delete(Item).where(Item.task_id == task_id)
    if attempt is not None:
        stmt = stmt.where(Item.attempt == attempt)
    return session.execute(stmt).rowcount or 0  # type: ignore[attr-defined]
