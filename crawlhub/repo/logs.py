"""Persisted log lines of task runs."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import LargeBinary, cast, func, insert, select
from sqlalchemy.orm import Session

from crawlhub.repo.bulk import copy_rows
from crawlhub.repo.models import LogLine

LogRow = tuple[int, int, str, datetime, str]  # attempt, seq, stream, ts, text
COLUMNS = ("task_id", "attempt", "seq", "stream", "ts", "text")


def insert_lines(session: Session, task_id: uuid.UUID, rows: Sequence[LogRow]) -> None:
    """Store a batch of log lines (COPY on PostgreSQL)."""
    if not rows:
        return
    if copy_rows(session, "log_line", COLUMNS, [(task_id, *row) for row in rows]):
        return
    session.execute(
        insert(LogLine),
        [
            {"task_id": task_id, "attempt": a, "seq": q, "stream": s, "ts": t, "text": x}
            for a, q, s, t, x in rows
        ],
    )


def last_seq(session: Session, task_id: uuid.UUID) -> int:
    """The highest stored seq of a task, 0 when it has none."""
    return session.scalar(select(func.max(LogLine.seq)).where(LogLine.task_id == task_id)) or 0


def list_lines(
    session: Session,
    task_id: uuid.UUID,
    *,
    after_seq: int = 0,
    limit: int | None = 1000,
    stream: str | None = None,
    attempt: int | None = None,
    before_seq: int | None = None,
    search: str | None = None,
) -> Sequence[LogLine]:
    """Stored lines of a task in seq order, after `after_seq` (all of them when limit is None);
    with `before_seq`, the last `limit` lines before it instead. `search` keeps the lines
    that contain it, ignoring case."""
    stmt = select(LogLine).where(LogLine.task_id == task_id, LogLine.seq > after_seq)
    if stream is not None:
        stmt = stmt.where(LogLine.stream == stream)
    if attempt is not None:
        stmt = stmt.where(LogLine.attempt == attempt)
    if search:
        if session.get_bind().dialect.name == "postgresql":  # twice ILIKE's speed, no escaping
            caseless = _caseless_run(search)
            if len(caseless) >= 3:  # a line that matches holds it as it is: lower() fewer lines
                stmt = stmt.where(func.strpos(LogLine.text, caseless) > 0)
            stmt = stmt.where(func.strpos(func.lower(LogLine.text), func.lower(search)) > 0)
        else:
            stmt = stmt.where(LogLine.text.icontains(search, autoescape=True))
    if before_seq is not None:
        newest = stmt.where(LogLine.seq < before_seq).order_by(LogLine.seq.desc()).limit(limit)
        return list(reversed(session.scalars(newest).all()))
    return session.scalars(stmt.order_by(LogLine.seq).limit(limit)).all()


def _caseless_run(text: str) -> str:
    """The longest run of ASCII characters other than letters (digits, spaces, punctuation) in
    text: no character lowers into one of them, so a line that matches text ignoring case
    holds the run as it is."""
    runs = "".join(c if c.isascii() and not c.isalpha() else "\n" for c in text).split("\n")
    return max(runs, key=len)


def text_bytes(session: Session, task_id: uuid.UUID) -> int:
    """The size of a task's log as text: each line's UTF-8 bytes and its newline."""
    return text_bytes_of(session, [task_id]).get(task_id, 0)


def text_bytes_of(session: Session, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The size of some tasks' logs as text (tasks without lines are left out)."""
    if not task_ids:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        size = func.octet_length(LogLine.text)
    else:  # SQLite: the length of a blob is in bytes
        size = func.length(cast(LogLine.text, LargeBinary))
    stmt = (
        select(LogLine.task_id, func.sum(size + 1))
        .where(LogLine.task_id.in_(task_ids))
        .group_by(LogLine.task_id)
    )
    return {task_id: int(total or 0) for task_id, total in session.execute(stmt).all()}
