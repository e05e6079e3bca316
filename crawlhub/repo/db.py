"""Engine and session set-up; the database URL decides the dialect."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as Session  # re-exported for type hints outside repo/
from sqlalchemy.orm import sessionmaker

from crawlhub.errors import NotFound

T = TypeVar("T")


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for a postgresql+psycopg:// or sqlite:// URL, tuned for its dialect."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=False
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Python's sqlite3 opens its own transactions; we issue BEGIN ourselves (see below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    # Taking the write lock at BEGIN avoids SQLite's deadlock-on-upgrade between threads.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine plus the session factory every process uses."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.engine = make_engine(url, pool_size=pool_size)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """`postgresql` or `sqlite`."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def parse_id(ref: uuid.UUID | str, what: str) -> uuid.UUID:
    """An id from a path or query parameter; NotFound naming `what` when it is not a UUID."""
    if isinstance(ref, uuid.UUID):
        return ref
    try:
        return uuid.UUID(ref)
    except ValueError:
        raise NotFound(f"{what} '{ref[:80]}' not found") from None


def get_or_404(session: Session, model: type[T], ref: uuid.UUID | str, what: str) -> T:
    """The row of `model` with this id (a UUID or its text); NotFound naming `what` otherwise."""
    key = parse_id(ref, what)
    row = session.get(model, key)
    if row is None:
        raise NotFound(f"{what} '{key}' not found")
    return row
