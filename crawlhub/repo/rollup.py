"""Finished runs per hour of their creation, spider and status (`run_hour`), kept as runs end:
what the overview charts and counts, read in a few hundred rows whatever the number of runs.

The database keeps it (triggers on `task`, migration 0020), in the statement that changes a
run: a run is counted when it reaches a final status (or is born in one, as a skipped fire),
taken out when it leaves it (a requeue), and its items follow its count. Runs not over
(pending, running, retrying) are few and read from `task` itself.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, literal_column, select
from sqlalchemy.orm import Session

from crawlhub.repo import reach
from crawlhub.repo.models import RunHour, Task
from crawlhub.repo.statuses import ACTIVE


def hour_of(moment: datetime) -> datetime:
    """The hour bucket of a moment (UTC)."""
    return moment.replace(minute=0, second=0, microsecond=0)


def finished_by_hour(session: Session, since: datetime) -> list[tuple[datetime, str, int, int]]:
    """Finished runs created from the hour of `since` on: (hour, status, runs, items)."""
    stmt = (
        select(RunHour.hour, RunHour.status, func.sum(RunHour.runs), func.sum(RunHour.items))
        .where(RunHour.hour >= hour_of(since), reach.visible_spiders(RunHour.spider_id))
        .group_by(RunHour.hour, RunHour.status)
        .having(func.sum(RunHour.runs) > 0)  # a row left at 0 by a requeue
    )
    return [(hour, status, int(runs), int(items))
            for hour, status, runs, items in session.execute(stmt)]  # fmt: skip


def active_by_hour(session: Session, since: datetime) -> list[tuple[datetime, str, int, int]]:
    """Runs not over created from the hour of `since` on: (hour, status, runs, items)."""
    # The statuses as constants in the SQL: the partial index ix_task_not_over matches.
    not_over = Task.status.in_([literal_column(f"'{status}'") for status in ACTIVE])
    where = (not_over, Task.created_at >= hour_of(since), reach.visible(Task))
    if session.get_bind().dialect.name == "postgresql":
        hour = func.date_trunc("hour", func.timezone("UTC", Task.created_at))
        stmt = select(hour, Task.status, func.count(), func.sum(Task.items_count))
        rows = session.execute(stmt.where(*where).group_by(hour, Task.status))
        return [(h.replace(tzinfo=since.tzinfo), status, int(n), int(items or 0))
                for h, status, n, items in rows]  # fmt: skip
    stmt = select(Task.created_at, Task.status, Task.items_count).where(*where)
    return [(hour_of(created), status, 1, items or 0)
            for created, status, items in session.execute(stmt)]  # fmt: skip


def by_hour(session: Session, since: datetime) -> list[tuple[datetime, str, int, int]]:
    """Every run created from the hour of `since` on, by hour and status, with its items."""
    return finished_by_hour(session, since) + active_by_hour(session, since)


def prune(session: Session, before: datetime, limit: int) -> int:
    """Forget up to `limit` hours' rows older than `before` (far past any chart)."""
    hours = select(RunHour.hour).where(RunHour.hour < before).distinct().limit(limit)
    result: Any = session.execute(delete(RunHour).where(RunHour.hour.in_(hours.scalar_subquery())))
    return int(result.rowcount or 0)
