"""The PostgreSQL COPY fast paths for bulk inserts: rows one by one, or a block of COPY text."""

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def copy_rows(
    session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> bool:
    """COPY rows into a table inside the session's transaction; False when not on PostgreSQL."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return False
    driver = connection.connection.driver_connection
    assert driver is not None
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
    return True


def copy_text(session: Session, table: str, columns: Sequence[str], block: bytes) -> None:
    """COPY rows already in COPY's text format into a table, inside the session's transaction
    (PostgreSQL only)."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(block)


def commit_without_waiting(session: Session) -> None:
    """Let this transaction's commit return before its WAL reaches the disk (PostgreSQL's
    synchronous_commit off, for this transaction only). For the batches of a run that is
    not over: a crash loses at most the last fraction of a second of them, whole (their
    counts with them), and that attempt counts for nothing then; the run's ending commits
    later and waits for the WAL up to it, so a finished run has all of its batches."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
