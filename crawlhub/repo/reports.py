"""Read-only aggregates over runs for the dashboard: each query walks an index, bounded by
time or by a short list of ids, so it stays fast with millions of runs."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from crawlhub.repo import reach
from crawlhub.repo.models import LogLine, Schedule, Spider, Task
from crawlhub.repo.statuses import FINISHED

RECENT_RUNS = 20  # a spider's success rate is over its last this many finished runs
RECENT_SCAN = 200  # ... found among its last this many runs (and attention among as many)


def running(session: Session, limit: int) -> list[tuple[Any, str]]:
    """Running tasks, oldest first, with their spider's name: (task, spider name)."""
    rows = session.execute(
        select(Task, Spider.name)
        .join(Spider, Spider.id == Task.spider_id)
        .where(Task.status == "running", reach.visible_projects(Spider.project_id))
        .order_by(Task.started_at)
        .limit(limit)
    ).all()
    return [(row, name) for row, name in rows]


def recent(
    session: Session,
    since: datetime,
    limit: int,
    *,
    status: str,
    reason: str | None = None,
    items: int | None = None,
) -> list[tuple[Any, str]]:
    """Recent runs of one status (optionally one reason, or one item count), newest first,
    with their spider's name: (task, spider name). With a reason or an item count, looked for
    among the newest RECENT_SCAN runs of the status only (a bounded walk, whatever a day
    holds)."""
    of_status: tuple[ColumnElement[bool], ...] = (Task.status == status, Task.created_at >= since)
    if reason is not None or items is not None:
        newest = select(Task.id).where(*of_status).order_by(Task.created_at.desc())
        of_status = (Task.id.in_(newest.limit(RECENT_SCAN).scalar_subquery()),)
    stmt = (
        select(Task, Spider.name)
        .join(Spider, Spider.id == Task.spider_id)
        .where(*of_status, reach.visible_projects(Spider.project_id))
    )
    if reason is not None:
        stmt = stmt.where(Task.reason == reason)
    if items is not None:
        stmt = stmt.where(Task.items_count == items)
    rows = session.execute(stmt.order_by(Task.created_at.desc()).limit(limit)).all()
    return [(row, name) for row, name in rows]


def last_output_at(session: Session, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, datetime]:
    """When each task last printed a line (its newest line, by the primary key): one query,
    one index probe per task."""
    if not task_ids:
        return {}
    newest = (
        select(LogLine.ts)
        .where(LogLine.task_id == Task.id)
        .order_by(LogLine.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(select(Task.id, newest).where(Task.id.in_(task_ids)))
    return {task_id: ts for task_id, ts in rows if ts is not None}


def next_fires(session: Session, limit: int) -> list[tuple[Any, str]]:
    """The soonest fires of enabled schedules: (schedule, spider name)."""
    rows = session.execute(
        select(Schedule, Spider.name)
        .join(Spider, Spider.id == Schedule.spider_id)
        .where(
            Schedule.enabled.is_(True),
            Schedule.next_fire_at.is_not(None),
            reach.visible_projects(Spider.project_id),
        )
        .order_by(Schedule.next_fire_at)
        .limit(limit)
    ).all()
    return [(row, name) for row, name in rows]


def last_runs(session: Session, spider_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Task]:
    """Each spider's newest run."""
    return _newest(session, Task.spider_id, spider_ids)


def _newest(
    session: Session, column: InstrumentedAttribute[Any], ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Task]:
    """The newest task of each id in a column (one index walk each: ids are a page's)."""
    found: dict[uuid.UUID, Task] = {}
    for ident in ids:
        task = session.scalar(
            select(Task).where(column == ident)
            .order_by(Task.created_at.desc(), Task.id.desc()).limit(1)
        )  # fmt: skip
        if task is not None:
            found[ident] = task
    return found


def success_rates(session: Session, spider_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, float]:
    """The share of completed runs among each spider's last RECENT_RUNS finished ones (among
    its last RECENT_SCAN runs: a spider whose newest thousands of runs are skipped fires, or
    not over, costs one short index walk, not all of them)."""
    rates: dict[uuid.UUID, float] = {}
    for spider_id in spider_ids:
        newest = (
            select(Task.status, Task.created_at)
            .where(Task.spider_id == spider_id)
            .order_by(Task.created_at.desc())
            .limit(RECENT_SCAN)
            .subquery()
        )
        statuses = session.scalars(
            select(newest.c.status)
            .where(newest.c.status.in_(FINISHED), newest.c.status != "skipped")
            .order_by(newest.c.created_at.desc())
            .limit(RECENT_RUNS)
        ).all()
        if statuses:
            rates[spider_id] = statuses.count("completed") / len(statuses)
    return rates


def spider_next_fires(
    session: Session, spider_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    """Each spider's soonest scheduled fire."""
    if not spider_ids:
        return {}
    rows = session.execute(
        select(Schedule.spider_id, func.min(Schedule.next_fire_at))
        .where(Schedule.spider_id.in_(spider_ids), Schedule.enabled.is_(True))
        .group_by(Schedule.spider_id)
    ).all()
    return {spider_id: when for spider_id, when in rows if when is not None}


def schedule_outcomes(session: Session, schedule_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Task]:
    """Each schedule's newest run."""
    return _newest(session, Task.schedule_id, schedule_ids)


def spider_history(session: Session, spider_id: uuid.UUID, limit: int) -> Sequence[Task]:
    """A spider's newest finished runs, oldest first (for its charts)."""
    rows = session.scalars(
        select(Task)
        .where(
            Task.spider_id == spider_id,
            Task.status.in_(("completed", "failed")),
            Task.started_at.is_not(None),
        )
        .order_by(Task.created_at.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))
