"""What the dispatcher reads: held runs (pending, not sent yet) best first per spider, how
many runs each spider has under way, and the lock that makes one dispatcher decide at a time.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, func, literal_column, or_, select, text
from sqlalchemy.orm import Session

from crawlhub.repo.models import Project, Spider, Task
from crawlhub.repo.types import utcnow

DISPATCH_LOCK = 7_341_204_129  # pg_advisory_xact_lock key: one dispatcher decides at a time


def lock(session: Session) -> None:
    """Hold the dispatch lock until the transaction ends (PostgreSQL; SQLite has one writer
    and its callers hold a process lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DISPATCH_LOCK})


def under_way() -> ColumnElement[bool]:
    """A run that takes, or is about to take, a place under its spider's and project's
    limits: running, retrying (its next attempt is coming), or sent and not yet claimed."""
    # Constants in the SQL, not parameters: a prepared statement's generic plan still
    # matches the partial index of runs under way (ix_task_under_way).
    return or_(Task.status.in_((_literal("running"), _literal("retrying"))),
               (Task.status == _literal("pending")) & Task.message_id.is_not(None))  # fmt: skip


def _literal(status: str) -> ColumnElement[str]:
    return literal_column(f"'{status}'")


@dataclass
class Active:
    """The runs under way: per spider and per project, running per node (a run's `worker`
    is host:pid:thread, its node host:pid), and how many are sent and not claimed yet."""

    spiders: dict[uuid.UUID, int] = field(default_factory=dict)
    projects: dict[uuid.UUID, int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)
    unclaimed: int = 0


@lru_cache(maxsize=1)
def _active_query() -> "Select[uuid.UUID, uuid.UUID, str, str | None, int]":
    return (
        select(Task.spider_id, Spider.project_id, Task.status, Task.worker, func.count())
        .join(Spider, Spider.id == Task.spider_id)
        .where(under_way())
        .group_by(Task.spider_id, Spider.project_id, Task.status, Task.worker)
    )


def active(session: Session) -> Active:
    """The runs under way, counted in one query."""
    found = Active()
    for spider_id, project_id, status, worker, count in session.execute(_active_query()):
        found.spiders[spider_id] = found.spiders.get(spider_id, 0) + count
        found.projects[project_id] = found.projects.get(project_id, 0) + count
        if status == "pending":  # sent (held runs are not under way)
            found.unclaimed += count
        elif status == "running" and worker:
            node = worker.rsplit(":", 1)[0]
            found.nodes[node] = found.nodes.get(node, 0) + count
    return found


@dataclass(frozen=True)
class Held:
    """A held run with what the dispatcher decides on."""

    id: uuid.UUID
    spider_id: uuid.UUID
    project_id: uuid.UUID
    priority: int
    created_at: datetime
    requires: frozenset[str]
    retries_left: int
    backoff_min_s: int
    backoff_max_s: int


@dataclass(frozen=True)
class Caps:
    """A spider's limit and its project's (None: none)."""

    spider: int | None
    project: int | None


@lru_cache(maxsize=4)
def _held_query(dialect: str) -> Select[Any]:
    """The held-runs query of a dialect, built once (it is on every run's start path)."""
    now = (func.clock_timestamp() if dialect == "postgresql"
           else bindparam("now", type_=Task.due_at.type))  # fmt: skip
    ranked = (
        select(
            Task.id,
            Task.spider_id,
            Task.priority,
            Task.created_at,
            Task.requires,
            (Task.max_retries - Task.retry_count).label("retries_left"),
            func.row_number()
            .over(partition_by=Task.spider_id, order_by=(Task.priority.desc(), Task.created_at))
            .label("rank"),
        )
        .where(
            Task.status == "pending",
            Task.message_id.is_(None),
            or_(Task.due_at.is_(None), Task.due_at <= now),
        )
        .subquery()
    )
    return (
        select(ranked, Spider.project_id, Spider.max_concurrent_runs.label("spider_cap"),
               Spider.retry_backoff_min_s, Spider.retry_backoff_max_s,
               Project.max_concurrent_runs.label("project_cap"))
        .join(Spider, Spider.id == ranked.c.spider_id)
        .join(Project, Project.id == Spider.project_id)
        .where(ranked.c.rank <= bindparam("per_spider"))
        .order_by(ranked.c.spider_id, ranked.c.rank)
    )  # fmt: skip


def held(session: Session, per_spider: int) -> tuple[list[Held], dict[uuid.UUID, Caps]]:
    """The best `per_spider` held runs of each spider (priority, then age), and the limits of
    those spiders and their projects."""
    dialect = session.get_bind().dialect.name
    params: dict[str, Any] = {"per_spider": per_spider}
    if dialect != "postgresql":
        params["now"] = utcnow()
    rows = session.execute(_held_query(dialect), params).all()
    found, caps = [], {}
    for row in rows:
        found.append(Held(row.id, row.spider_id, row.project_id, row.priority, row.created_at,
                          frozenset(row.requires or ()), max(row.retries_left, 0),
                          row.retry_backoff_min_s, row.retry_backoff_max_s))  # fmt: skip
        caps[row.spider_id] = Caps(row.spider_cap, row.project_cap)
    return found, caps


def caps_of(session: Session, spider_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[
        uuid.UUID, Caps]]:  # fmt: skip
    """Each spider's project and limits."""
    rows = session.execute(
        select(Spider.id, Spider.project_id, Spider.max_concurrent_runs,
               Project.max_concurrent_runs)
        .join(Project, Project.id == Spider.project_id)
        .where(Spider.id.in_(list(spider_ids)))
    ).all()  # fmt: skip
    return {row[0]: (row[1], Caps(row[2], row[3])) for row in rows}
