"""Schedules, and the queries the ticker claims its work with."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crawlhub.errors import NotFound
from crawlhub.repo import reach
from crawlhub.repo.db import resolve_id
from crawlhub.repo.models import Schedule, Spider, Task
from crawlhub.repo.pages import paginate
from crawlhub.repo.statuses import ACTIVE
from crawlhub.repo.types import utcnow


def get_schedule(session: Session, ref: str, *, for_update: bool = False) -> Schedule:
    """One schedule by id; NotFound otherwise."""
    schedule_id = resolve_id(session, Schedule, ref, "schedule")
    stmt = select(Schedule).where(Schedule.id == schedule_id)
    if for_update:
        stmt = stmt.with_for_update()
    schedule = session.scalar(stmt)
    if schedule is None:
        raise NotFound(f"schedule '{schedule_id}' not found")
    reach.check(session, schedule, "schedule", schedule_id)
    return schedule


def list_schedules(
    session: Session, spider_id: uuid.UUID, *, page: int, page_size: int
) -> tuple[Sequence[Schedule], int]:
    """A page of a spider's schedules, oldest first."""
    stmt = (
        select(Schedule)
        .where(Schedule.spider_id == spider_id)
        .order_by(Schedule.created_at, Schedule.id)
    )
    return paginate(session, stmt, page, page_size)


def list_all(
    session: Session, *, page: int, page_size: int
) -> tuple[list[tuple[Schedule, str]], int]:
    """A page of every schedule with its spider's name, soonest next fire first."""
    stmt = (
        select(Schedule, Spider.name)
        .join(Spider, Spider.id == Schedule.spider_id)
        .where(reach.visible_projects(Spider.project_id))
        .order_by(Schedule.next_fire_at.asc().nulls_last(), Schedule.id)
    )
    total = session.scalar(reach.narrow(select(func.count()).select_from(Schedule), Schedule)) or 0
    rows = session.execute(stmt.limit(page_size).offset((page - 1) * page_size)).all()
    return [(schedule, name) for schedule, name in rows], total


def create_schedule(session: Session, fields: dict[str, Any]) -> Schedule:
    """Insert a schedule."""
    schedule = Schedule(**fields)
    session.add(schedule)
    session.flush()
    return schedule


def update_schedule(session: Session, schedule: Schedule, changes: dict[str, Any]) -> Schedule:
    """Apply checked changes to a locked schedule."""
    for key, value in changes.items():
        setattr(schedule, key, value)
    session.flush()
    return schedule


def advance(
    session: Session, schedule: Schedule, *, next_fire_at: datetime, last_fire_at: datetime
) -> None:
    """Move a claimed schedule past the fires just recorded."""
    schedule.next_fire_at, schedule.last_fire_at = next_fire_at, last_fire_at


def delete_schedule(session: Session, schedule: Schedule) -> None:
    """Delete a schedule; its past tasks stay, detached from it."""
    session.delete(schedule)
    session.flush()


def claim_due(session: Session, now: datetime, limit: int) -> Sequence[Schedule]:
    """Lock up to `limit` enabled schedules due at `now`; rows another ticker holds are skipped."""
    stmt = (
        select(Schedule)
        .where(Schedule.enabled.is_(True), Schedule.next_fire_at <= now)
        .order_by(Schedule.next_fire_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(stmt).all()


def earliest_fire(session: Session) -> datetime | None:
    """The next time any enabled schedule is due."""
    value: datetime | None = session.scalar(
        select(func.min(Schedule.next_fire_at)).where(Schedule.enabled.is_(True))
    )
    return value


def active_tasks(session: Session, schedule_id: uuid.UUID) -> Sequence[Task]:
    """A schedule's tasks that are pending, running or retrying."""
    return session.scalars(
        select(Task).where(Task.schedule_id == schedule_id, Task.status.in_(ACTIVE))
    ).all()


def spider_of(session: Session, schedule: Schedule) -> Spider:
    """The spider a schedule runs."""
    spider = session.get(Spider, schedule.spider_id)
    if spider is None:
        raise NotFound(f"spider of schedule '{schedule.id}' not found")
    return spider


def insert_fire(session: Session, fields: dict[str, Any]) -> uuid.UUID | None:
    """Insert the task of one fire unless that (schedule, scheduled_for) exists; its id if new."""
    values = {"id": uuid.uuid4(), "created_at": utcnow(), **fields}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(Task)
        .values(values)
        .on_conflict_do_nothing(index_elements=["schedule_id", "scheduled_for"])
        .returning(Task.id)
    )
    inserted = session.execute(stmt).scalar()
    return inserted if isinstance(inserted, uuid.UUID) else None
