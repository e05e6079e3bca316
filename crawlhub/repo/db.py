"""Engine and session set-up; the database URL decides the dialect."""

import json
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from select import POLLIN, poll
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from sqlalchemy import ColumnElement, create_engine, event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session as Session  # re-exported for type hints outside repo/
from sqlalchemy.orm import sessionmaker

from crawlhub.errors import Ambiguous, GiveWay, NotFound, ServiceUnavailable
from crawlhub.repo import reach
from crawlhub.repo.types import utcnow

T = TypeVar("T")
# Errors PostgreSQL raises to make a transaction give way: tried again, like an outage.
ROLLBACKS = (
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.TransactionRollback,
)


def make_engine(url: str, *, pool_size: int = 10, pool_timeout_s: float = 30.0) -> Engine:
    """An engine for a postgresql+psycopg:// or sqlite:// URL, tuned for its dialect; a
    session waits `pool_timeout_s` for a free connection of the pool."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=False,
            pool_size=pool_size, max_overflow=pool_size, pool_timeout=pool_timeout_s,
            json_serializer=_json_text,
        )  # fmt: skip
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=pool_timeout_s,
        pool_recycle=1800,
    )  # fmt: skip
    event.listen(engine, "checkout", _alive)
    return engine


def _alive(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection's check as it is taken, without a round trip (a ping cost every
    transaction a third of a millisecond): an idle connection has nothing to read, one the
    server ended (a restart, a terminated backend) reads its last message or its end. Such a
    connection is dropped and the pool takes another; a statement on a connection that breaks
    later fails as an outage (ServiceUnavailable), which its caller tries again."""
    watch = poll()  # not select(): a worker's descriptors may lie above its limit of 1024
    try:
        watch.register(dbapi_connection.pgconn.socket, POLLIN)
    except (OSError, ValueError, psycopg.Error) as exc:  # closed already
        raise DisconnectionError(f"the connection is closed ({exc})") from exc
    if watch.poll(0):  # something to read, its end, or an error
        raise DisconnectionError("the server ended the connection")


def _json_text(value: Any) -> str:
    """JSON as SQLite stores it: UTF-8 text as it is (`£`, not `\\u00a3`), so that exports
    of the stored text read as the items did (PostgreSQL's jsonb keeps text so already)."""
    return json.dumps(value, ensure_ascii=False)


def accepts_any_password(url: str) -> bool:
    """Whether the PostgreSQL of `url` lets its user in with a wrong password (`trust`
    authentication: anyone who reaches it is in); False for SQLite or when it cannot tell."""
    if not url.startswith("postgresql"):
        return False
    parts = urlsplit(url.replace("+psycopg", "", 1))
    host = parts.hostname or "localhost"
    netloc = f"{quote(parts.username or '', safe='')}:{secrets.token_hex(16)}@{host}"
    wrong = urlunsplit((parts.scheme, netloc + (f":{parts.port}" if parts.port else ""),
                        parts.path, parts.query, ""))  # fmt: skip
    try:
        psycopg.connect(wrong, connect_timeout=5).close()
    except psycopg.Error:
        return False
    return True


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Python's sqlite3 opens its own transactions; we issue BEGIN ourselves (see below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


READ_ONLY = "crawlhub_read_only"  # execution option of the engine read-only sessions use


def _sqlite_begin(connection: Any) -> None:
    # A writing transaction takes the write lock at BEGIN, which avoids SQLite's
    # deadlock-on-upgrade between threads; a read-only one starts deferred and reads its
    # snapshot beside the writer (WAL), so page views and log polls never queue on writes.
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class Database:
    """An engine plus the session factory every process uses."""

    def __init__(self, url: str, *, pool_size: int = 10, pool_timeout_s: float = 30.0) -> None:
        self.engine = make_engine(url, pool_size=pool_size, pool_timeout_s=pool_timeout_s)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        readers = self.engine.execution_options(**{READ_ONLY: True})
        self._reads = sessionmaker(readers, expire_on_commit=False)
        # One query outside a transaction (no BEGIN, no COMMIT): the per-request credential
        # look-ups. SQLite reads in its read-only transactions.
        lookups = (readers if self.dialect == "sqlite"
                   else self.engine.execution_options(isolation_level="AUTOCOMMIT"))  # fmt: skip
        self._lookups = sessionmaker(lookups, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """`postgresql` or `sqlite`."""
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error; a database
        that cannot be reached (or is busy) raises ServiceUnavailable; a deadlock, a
        serialization failure or an exhausted pool raises GiveWay (both outages to retry)."""
        with self._transaction(self._sessions) as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session that only reads: on SQLite it does not take the write lock."""
        with self._transaction(self._reads) as session:
            yield session

    @contextmanager
    def lookup(self) -> Iterator[Session]:
        """A session for a single read outside a transaction (PostgreSQL autocommit)."""
        with self._transaction(self._lookups) as session:
            yield session

    @contextmanager
    def _transaction(self, factory: sessionmaker[Session]) -> Iterator[Session]:
        try:
            with factory.begin() as session:
                yield session
        except (OperationalError, InterfaceError) as exc:
            if isinstance(exc.orig, ROLLBACKS):
                raise GiveWay(f"the database asked to try again ({type(exc.orig).__name__})") \
                    from exc  # fmt: skip
            raise ServiceUnavailable(
                f"the database is unavailable ({type(exc.orig).__name__})"
            ) from exc
        except PoolTimeout as exc:
            raise GiveWay("no free database connection in this process's pool") from exc

    def connection_room(self) -> int | None:
        """How many connections the server lets ordinary users hold (PostgreSQL's
        max_connections less those reserved for superusers); None on SQLite."""
        if self.dialect != "postgresql":
            return None
        with self.engine.connect() as conn:
            most = int(conn.execute(text("SHOW max_connections")).scalar_one())
            kept = int(conn.execute(text("SHOW superuser_reserved_connections")).scalar_one())
        return most - kept

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


class Named(Protocol):
    """A table whose rows have an id and a unique name (spiders, projects)."""

    id: Any
    name: Any


N = TypeVar("N", bound=Named)
MAX_NAME = 64  # of a spider or a project


def get_by_ref(
    session: Session, model: type[N], ref: str, what: str, *, for_update: bool = False
) -> N:
    """The row with this id or this name, else the one whose id starts with `ref` (8 hex
    digits at least); NotFound naming `what` otherwise."""
    try:
        where = model.id == uuid.UUID(ref)
    except ValueError:  # not an id: a name, else an id's first characters
        if len(ref) > MAX_NAME or "\x00" in ref:
            # No stored name can match, and PostgreSQL rejects NUL in text parameters.
            raise NotFound(f"{what} '{ref[:80]}' not found") from None
        where = model.name == ref
    row = _one(session, model, where, for_update)
    digits = id_prefix(ref)
    if row is None and digits is not None and len(digits) >= SHORT_NAMED_MIN:
        row = _one(session, model, model.id == resolve_id(session, model, ref, what), for_update)
    if row is None:
        raise NotFound(f"{what} '{ref}' not found")
    reach.check(session, row, what, ref)
    return row


def _one(session: Session, model: type[N], where: Any, for_update: bool) -> N | None:
    """The row meeting `where` among those the caller may see."""
    stmt = reach.narrow(select(model).where(where), model)
    row: N | None = session.scalar(stmt.with_for_update() if for_update else stmt)
    return row


def find_by_name(session: Session, model: type[N], name: str) -> N | None:
    """The row of this name, if any (among those the caller may see; Forbidden when the
    request's action is not allowed on it)."""
    row = _one(session, model, model.name == name, False)
    if row is not None:
        reach.check(session, row, model.__name__.lower(), name)
    return row


def get_or_404(session: Session, model: type[T], ref: uuid.UUID | str, what: str) -> T:
    """The row of `model` with this id (a UUID, its text, or its first characters when no
    other id starts with them); NotFound naming `what` otherwise."""
    key = resolve_id(session, model, ref, what)
    row = session.get(model, key)
    if row is not None and reach.limited():  # the caller may not see every project's rows
        reach.check(session, row, what, key)
    if row is None:
        raise NotFound(f"{what} '{key}' not found")
    return row


SHORT_ID_MIN = 4  # hex digits of the shortest id prefix accepted (the dashboard shows 8)
# Where a ref may also be a name (spiders, projects), a prefix must be as long as the
# dashboard shows: a missing name such as "cafe" is not taken for an id starting so.
SHORT_NAMED_MIN = 8
SHOWN_MATCHES = 5


def id_prefix(ref: str) -> str | None:
    """The hex digits of `ref` when it can be the start of an id (dashes allowed)."""
    digits = ref.replace("-", "").lower()
    if SHORT_ID_MIN <= len(digits) < 32 and all(c in "0123456789abcdef" for c in digits):
        return digits
    return None


def resolve_id(session: Session, model: Any, ref: uuid.UUID | str, what: str) -> uuid.UUID:
    """The id `ref` names: an id itself, or the one id of `model` starting with `ref`'s
    characters (NotFound when none does; Ambiguous, listing them, when several do). The
    prefix is a range of ids, so the primary key's index finds it at any size."""
    if isinstance(ref, uuid.UUID):
        return ref
    try:
        return uuid.UUID(ref)
    except ValueError:
        pass
    digits = id_prefix(ref)
    if digits is None:
        raise NotFound(f"{what} '{ref[:80]}' not found")
    low, high = (uuid.UUID(digits.ljust(32, fill)) for fill in "0f")
    found = session.scalars(reach.narrow(
        select(model.id).where(model.id >= low, model.id <= high).order_by(model.id)
        .limit(SHOWN_MATCHES + 1), model)
    ).all()  # fmt: skip
    if not found:
        raise NotFound(f"{what} '{ref}' not found")
    if len(found) > 1:
        shown = ", ".join(str(key) for key in found[:SHOWN_MATCHES])
        more = " and more" if len(found) > SHOWN_MATCHES else ""
        raise Ambiguous(f"{what} '{ref}' is ambiguous: it starts {shown}{more}; give more of it")
    key: uuid.UUID = found[0]
    return key


def db_now(session: Session) -> datetime:
    """The database clock (PostgreSQL's clock_timestamp()); this process's clock on SQLite,
    where the database lives in this process."""
    if session.get_bind().dialect.name == "postgresql":
        value: datetime = session.execute(text("SELECT clock_timestamp()")).scalar_one()
        return value
    return utcnow()


def now_of(session: Session) -> "ColumnElement[datetime] | datetime":
    """The database clock as a value to write in a statement: heartbeats, leases and run times
    are all stamped and compared on one clock, whatever the clocks of the workers say."""
    if session.get_bind().dialect.name == "postgresql":
        return func.clock_timestamp()
    return utcnow()
