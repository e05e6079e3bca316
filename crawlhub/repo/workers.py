"""Worker processes: their registration, heartbeat and who is online."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Interval, Select, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from crawlhub.errors import NotFound
from crawlhub.repo.db import db_now, now_of
from crawlhub.repo.models import Task, WorkerProcess
from crawlhub.repo.types import utcnow

FORGET_AFTER = timedelta(days=7)  # a stopped or lost worker's row is kept this long
MISSED_BEATS = 3  # a worker silent for this many heartbeats is no longer online


def register(session: Session, worker_id: str, *, host: str, pid: int, version: str,
             threads: int, labels: list[str], machine: dict[str, Any]) -> None:  # fmt: skip
    """Record a worker process at its start (a row left by an earlier process of the same
    host and pid is replaced, its drain kept); stopped and long-lost workers' rows are
    dropped."""
    now = db_now(session)
    draining = bool(session.scalar(
        select(WorkerProcess.draining).where(WorkerProcess.id == worker_id)))  # fmt: skip
    session.execute(delete(WorkerProcess).where(
        (WorkerProcess.id == worker_id) | (WorkerProcess.last_seen_at < now - FORGET_AFTER)
    ))  # fmt: skip
    session.add(WorkerProcess(id=worker_id, host=host, pid=pid, version=version,
                              threads=threads, started_at=now, last_seen_at=now,
                              labels=labels, machine=machine, draining=draining))  # fmt: skip


def beat(session: Session, worker_id: str, machine: dict[str, Any]) -> bool | None:
    """Refresh a worker's heartbeat and what it read of its machine: whether it is draining,
    None when its row is gone (then it registers again)."""
    moved = session.execute(
        update(WorkerProcess).where(WorkerProcess.id == worker_id)
        .values(last_seen_at=now_of(session), stopped_at=None, machine=machine)
        .returning(WorkerProcess.draining)
    ).first()  # fmt: skip
    return None if moved is None else bool(moved[0])


def set_draining(session: Session, worker_id: str, draining: bool) -> WorkerProcess:
    """Drain a worker (it finishes its runs, takes no new ones) or resume it; NotFound."""
    node = None
    if len(worker_id) <= 200 and "\x00" not in worker_id:  # else no row can have it
        node = session.get(WorkerProcess, worker_id, with_for_update=True)
    if node is None:
        raise NotFound(f"node '{worker_id[:200]}' not found")
    node.draining = draining
    session.flush()
    return node


def nodes(session: Session) -> Sequence[WorkerProcess]:
    """Every known worker (stopped and lost ones too, until forgotten), oldest first."""
    return session.scalars(select(WorkerProcess).order_by(WorkerProcess.started_at)).all()


def running_by_worker(session: Session) -> dict[str, int]:
    """How many runs each worker process runs now (a run's `worker` is host:pid:thread)."""
    rows = session.execute(select(Task.worker).where(Task.status == "running"))
    counts: dict[str, int] = {}
    for (worker,) in rows:
        if worker:
            key = worker.rsplit(":", 1)[0]
            counts[key] = counts.get(key, 0) + 1
    return counts


def stopped(session: Session, worker_id: str) -> None:
    """Mark a worker stopped (it left cleanly)."""
    session.execute(
        update(WorkerProcess).where(WorkerProcess.id == worker_id)
        .values(stopped_at=now_of(session))
    )  # fmt: skip


def online(session: Session, heartbeat_s: float) -> Sequence[WorkerProcess]:
    """Workers that have not stopped and heartbeated within MISSED_BEATS heartbeats, oldest
    first."""
    silent_for = timedelta(seconds=MISSED_BEATS * heartbeat_s)
    return session.scalars(
        select(WorkerProcess)
        .where(WorkerProcess.stopped_at.is_(None),
               WorkerProcess.last_seen_at >= db_now(session) - silent_for)
        .order_by(WorkerProcess.started_at)
    ).all()  # fmt: skip


@dataclass(frozen=True)
class Taker:
    """A live node that takes runs: its id, labels and slots."""

    id: str
    labels: frozenset[str]
    slots: int


@lru_cache(maxsize=4)
def _takers_query(dialect: str) -> "Select[str, list[str] | None, int]":
    """Built once per dialect: it is on every run's start path."""
    seen = WorkerProcess.last_seen_at
    since = (func.clock_timestamp() - bindparam("silent_for", type_=Interval())
             if dialect == "postgresql" else bindparam("since", type_=seen.type))  # fmt: skip
    return select(WorkerProcess.id, WorkerProcess.labels, WorkerProcess.threads).where(
        WorkerProcess.stopped_at.is_(None), WorkerProcess.draining.is_(False),
        seen >= since)  # fmt: skip


def takers(session: Session, heartbeat_s: float) -> list[Taker]:
    """The nodes that take runs: online (heard from within MISSED_BEATS heartbeats), not
    drained."""
    silent_for = timedelta(seconds=MISSED_BEATS * heartbeat_s)
    dialect = session.get_bind().dialect.name
    since = {"silent_for": silent_for} if dialect == "postgresql" else {
        "since": utcnow() - silent_for}  # fmt: skip
    rows = session.execute(_takers_query(dialect), since)
    return [Taker(node_id, frozenset(labels or ()), slots) for node_id, labels, slots in rows]
