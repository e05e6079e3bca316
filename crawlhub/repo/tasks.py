"""Tasks (runs): creation, the claim compare-and-set, progress, completion, cancel."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from crawlhub.errors import NotFound
from crawlhub.repo.db import get_or_404
from crawlhub.repo.models import CLAIMABLE, FINISHED, Spider, Task
from crawlhub.repo.pages import count_rows, page_of
from crawlhub.repo.types import utcnow


def parse_task_id(ref: str) -> uuid.UUID:
    """A task id from a path or query parameter; NotFound when it is not a UUID."""
    try:
        return uuid.UUID(ref)
    except ValueError:
        raise NotFound(f"task '{ref[:80]}' not found") from None


def create_task(session: Session, fields: dict[str, Any]) -> Task:
    """Insert a pending task."""
    task = Task(status="pending", **fields)
    session.add(task)
    session.flush()
    return task


def get_task(session: Session, task_id: uuid.UUID) -> Task:
    """One task; NotFound otherwise."""
    return get_or_404(session, Task, task_id, "task")


def list_tasks(
    session: Session,
    *,
    page: int,
    page_size: int,
    spider_id: uuid.UUID | None = None,
    status: str | None = None,
    trigger: str | None = None,
    schedule_id: uuid.UUID | None = None,
) -> tuple[Sequence[Task], int, bool]:
    """A page of tasks, newest first, with their count and whether it is exact (see
    `count_rows`: a million runs are not counted for every page)."""
    stmt = select(Task).order_by(Task.created_at.desc(), Task.id.desc())
    if spider_id is not None:
        stmt = stmt.where(Task.spider_id == spider_id)
    if status is not None:
        stmt = stmt.where(Task.status == status)
    if trigger is not None:
        stmt = stmt.where(Task.trigger == trigger)
    if schedule_id is not None:
        stmt = stmt.where(Task.schedule_id == schedule_id)
    return page_of(session, stmt, page, page_size), *count_rows(session, stmt)


def set_message_ids(session: Session, message_ids: dict[uuid.UUID, str]) -> None:
    """Record the broker messages that carry tasks (one executemany UPDATE)."""
    table = cast(Table, Task.__table__)
    session.connection().execute(
        update(table).where(table.c.id == bindparam("task_id")),
        [{"task_id": task_id, "message_id": m} for task_id, m in message_ids.items()],
    )


def claim_task(session: Session, task_id: uuid.UUID, worker: str) -> Task | None:
    """Move a pending or retrying task to running (compare-and-set); None when not claimable."""
    now = utcnow()
    claimed = session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status.in_(CLAIMABLE))
        .values(status="running", started_at=now, heartbeat_at=now, worker=worker, finished_at=None)
        .returning(Task.id)
    ).first()
    if claimed is None:
        return None
    session.expire_all()
    return session.get(Task, task_id)


def heartbeat(session: Session, task_id: uuid.UUID) -> str | None:
    """Refresh a running task's heartbeat; returns its status (None when it is gone)."""
    session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status == "running")
        .values(heartbeat_at=utcnow())
    )
    status: str | None = session.scalar(select(Task.status).where(Task.id == task_id))
    return status


def task_status(session: Session, task_id: uuid.UUID) -> str | None:
    """A task's status, None when it is gone."""
    status: str | None = session.scalar(select(Task.status).where(Task.id == task_id))
    return status


def add_progress(
    session: Session,
    task_id: uuid.UUID,
    *,
    items: int = 0,
    duplicates: int = 0,
    invalid: int = 0,
    log_lines: int = 0,
) -> None:
    """Add counts to a task (called per ingest batch, so the API shows progress)."""
    session.execute(
        update(Task)
        .where(Task.id == task_id)
        .values(
            items_count=Task.items_count + items,
            items_duplicate=Task.items_duplicate + duplicates,
            items_invalid=Task.items_invalid + invalid,
            log_lines=Task.log_lines + log_lines,
        )
    )


def end_attempt(
    session: Session,
    task_id: uuid.UUID,
    *,
    status: str,
    reason: str | None,
    exit_code: int | None,
    error_message: str | None,
    stats: dict[str, Any] | None,
    retry: bool,
) -> str:
    """End a running attempt: completed, failed, or retrying while retries remain.

    Returns the task's status afterwards; a task that is no longer running (cancelled or
    reaped meanwhile) keeps its status and only gets the exit code and stats recorded.
    """
    task = session.scalar(select(Task).where(Task.id == task_id).with_for_update())
    if task is None:
        raise NotFound(f"task '{task_id}' not found")
    now = utcnow()
    task.exit_code, task.stats, task.heartbeat_at = exit_code, stats, now
    if task.status != "running":
        return task.status
    task.reason, task.error_message = reason, error_message
    if status == "interrupted":  # its worker is shutting down: back to the queue as it was
        task.status, task.message_id, task.worker = "pending", None, None
        return task.status
    if status == "failed" and retry and task.retry_count < task.max_retries:
        task.status = "retrying"
        task.retry_count += 1
    else:
        task.status = status
        task.finished_at = now
    return task.status


def requeue_task(session: Session, task_id: uuid.UUID) -> Task:
    """Make a finished task pending again for a fresh series of attempts (retry counter reset)."""
    task = session.scalar(select(Task).where(Task.id == task_id).with_for_update())
    if task is None:
        raise NotFound(f"task '{task_id}' not found")
    task.status, task.retry_count, task.message_id = "pending", 0, None
    task.reason = task.error_message = task.exit_code = None
    task.finished_at = task.started_at = None
    return task


def reset_item_counts(session: Session, task_id: uuid.UUID) -> None:
    """Zero a task's item counters (a new attempt starts from no items)."""
    session.execute(
        update(Task)
        .where(Task.id == task_id)
        .values(items_count=0, items_duplicate=0, items_invalid=0)
    )


def cancel_task(session: Session, task_id: uuid.UUID, reason: str = "user") -> str | None:
    """Cancel a task that has not finished; returns the status it had, None if already finished."""
    before = session.scalar(select(Task.status).where(Task.id == task_id).with_for_update())
    if before is None:
        raise NotFound(f"task '{task_id}' not found")
    if before in FINISHED:
        return None
    session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status.notin_(FINISHED))
        .values(status="cancelled", reason=reason, finished_at=utcnow())
    )
    return before


def _lock_oldest(
    session: Session, limit: int, order: Any, *conditions: ColumnElement[bool]
) -> Sequence[Task]:
    """Lock up to `limit` matching tasks, oldest first; rows another ticker holds are skipped."""
    return session.scalars(
        select(Task)
        .where(*conditions)
        .order_by(order)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def unsent(session: Session, created_before: datetime, limit: int) -> Sequence[Task]:
    """Pending tasks whose message was never sent, locked."""
    return _lock_oldest(session, limit, Task.created_at, Task.status == "pending",
                        Task.message_id.is_(None), Task.created_at < created_before)  # fmt: skip


def waiting(session: Session, created_before: datetime, limit: int) -> Sequence[Task]:
    """The oldest pending tasks that were sent a message (to check the broker still has it)."""
    return _lock_oldest(session, limit, Task.created_at, Task.status == "pending",
                        Task.message_id.is_not(None), Task.created_at < created_before)  # fmt: skip


def stale_retrying(session: Session, ended_before: datetime, limit: int) -> Sequence[Task]:
    """Retrying tasks whose last attempt ended before a time (their retry never came), locked."""
    return _lock_oldest(session, limit, Task.heartbeat_at, Task.status == "retrying",
                        Task.heartbeat_at < ended_before)  # fmt: skip


def pending_ids(session: Session) -> Sequence[uuid.UUID]:
    """Every pending or retrying task (to re-send after the in-process broker restarted)."""
    return session.scalars(select(Task.id).where(Task.status.in_(CLAIMABLE))).all()


def stale_running(session: Session, heartbeat_before: datetime, limit: int) -> Sequence[Task]:
    """Running tasks whose worker stopped refreshing their heartbeat, locked."""
    return _lock_oldest(session, limit, Task.heartbeat_at, Task.status == "running",
                        Task.heartbeat_at < heartbeat_before)  # fmt: skip


def count_by_status(session: Session) -> dict[str, int]:
    """How many tasks are in each status."""
    rows = session.execute(select(Task.status, func.count()).group_by(Task.status)).all()
    return {status: count for status, count in rows}


def spider_of(session: Session, task: Task) -> Spider:
    """The spider a task belongs to."""
    spider = session.get(Spider, task.spider_id)
    if spider is None:
        raise NotFound(f"spider of task '{task.id}' not found")
    return spider
