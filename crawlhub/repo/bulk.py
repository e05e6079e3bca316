"""The PostgreSQL COPY fast paths: bulk inserts (rows one by one, or a block of COPY text)
and COPY … TO STDOUT read at libpq's pace."""

from collections.abc import Generator, Iterable, Sequence
from typing import Any

import psycopg
from psycopg import errors, generators, pq, sql
from psycopg.abc import PQGen
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


def copy_out(
    driver: psycopg.Connection[Any], statement: sql.Composed
) -> Generator[memoryview, None, None]:
    """The rows of a COPY … TO STDOUT, each as libpq hands it over.

    psycopg's own iteration runs two generators and a wait for every row, which cost an
    export twice the CPU of everything else it does in Python; here a row that has already
    arrived is one call, and a wait runs only when none has. psycopg's Copy still starts the
    COPY and, when the reader stops early (a client gone), cancels it and drains it.
    """
    pgconn = driver.pgconn
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        while True:
            size, row = pgconn.get_copy_data(1)  # a row; 0: none has arrived yet; -1: the end
            if size > 0:
                yield row
            elif size == 0:
                driver.wait(_readable(pgconn))
            else:
                break
        # The COPY is over: its result, read as psycopg's Copy would have (which is told so,
        # or its exit would ask libpq for rows of a COPY no longer in progress).
        result = driver.wait(generators.fetch_many(pgconn))[0]
        copy._finished = True
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise errors.error_from_result(result, encoding=driver.info.encoding)


def _readable(pgconn: pq.abc.PGconn) -> PQGen[None]:
    while not (yield generators.WAIT_R):
        continue
    pgconn.consume_input()


def commit_without_waiting(session: Session) -> None:
    """Let this transaction's commit return before its WAL reaches the disk (PostgreSQL's
    synchronous_commit off, for this transaction only). For the batches of a run that is
    not over: a crash loses at most the last fraction of a second of them, whole (their
    counts with them), and that attempt counts for nothing then; the run's ending commits
    later and waits for the WAL up to it, so a finished run has all of its batches."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
