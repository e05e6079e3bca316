"""Worker processes: their registration, heartbeat and who is online."""

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from crawlhub.repo.db import db_now, now_of
from crawlhub.repo.models import WorkerProcess

FORGET_AFTER = timedelta(days=7)  # a stopped or lost worker's row is kept this long
MISSED_BEATS = 3  # a worker silent for this many heartbeats is no longer online


def register(session: Session, worker_id: str, *, host: str, pid: int, version: str,
             threads: int) -> None:  # fmt: skip
    """Record a worker process at its start (a row left by an earlier process of the same
    host and pid is replaced); stopped and long-lost workers' rows are dropped."""
    now = db_now(session)
    session.execute(delete(WorkerProcess).where(
        (WorkerProcess.id == worker_id) | (WorkerProcess.last_seen_at < now - FORGET_AFTER)
    ))  # fmt: skip
    session.add(WorkerProcess(id=worker_id, host=host, pid=pid, version=version,
                              threads=threads, started_at=now, last_seen_at=now))  # fmt: skip


def beat(session: Session, worker_id: str) -> bool:
    """Refresh a worker's heartbeat; False when its row is gone (then it registers again)."""
    moved = session.execute(
        update(WorkerProcess).where(WorkerProcess.id == worker_id)
        .values(last_seen_at=now_of(session), stopped_at=None).returning(WorkerProcess.id)
    ).first()  # fmt: skip
    return moved is not None


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
