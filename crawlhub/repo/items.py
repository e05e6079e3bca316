"""Scraped items: batch ingest (with dedup), queries, keyset export batches, deletion."""

import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql
from sqlalchemy import Select, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crawlhub.repo.bulk import copy_out, copy_text
from crawlhub.repo.models import Item, LogLine, Spider, Task
from crawlhub.repo.pages import count_rows
from crawlhub.repo.types import utcnow

COLUMNS = ("spider_id", "task_id", "attempt", "data", "created_at")


@dataclass(frozen=True)
class ItemFilter:
    """Which items a query, an export or a deletion is about."""

    spider_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    # Items of these projects' spiders only (None: any): what a caller may read.
    projects: frozenset[uuid.UUID] | None = None


def insert_items(
    session: Session,
    spider_id: uuid.UUID,
    task_id: uuid.UUID,
    attempt: int,
    items: Sequence[tuple[bytes | str, dict[str, Any], str | None]],
) -> int:
    """Store a batch of (JSON text, object, dedup hash); returns how many were new.

    Without any dedup hash PostgreSQL takes the JSON texts through COPY, as one block of
    COPY's text format built by a few byte replacements (no Python work per row). With
    hashes the insert is ON CONFLICT (spider_id, dedup_hash) DO NOTHING: a duplicate is
    never stored, even when two runs race, and never checked for first.
    """
    if not items:
        return 0
    now = utcnow()
    dialect = session.get_bind().dialect.name
    deduped = any(h is not None for _, _, h in items)
    if not deduped and dialect == "postgresql":
        texts = [t.encode() if isinstance(t, str) else t for t, _, _ in items]
        block = _copy_block(f"{spider_id}\t{task_id}\t{attempt}\t", texts, f"\t{now.isoformat()}")
        copy_text(session, "item", COLUMNS, block)
        return len(items)
    rows = [
        {"spider_id": spider_id, "task_id": task_id, "attempt": attempt, "data": data,
         "dedup_hash": digest, "created_at": now}
        for _, data, digest in items
    ]  # fmt: skip
    if not deduped:
        session.execute(insert(Item), rows)
        return len(items)
    table_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        table_insert(Item.__table__)  # type: ignore[arg-type]
        .on_conflict_do_nothing(
            index_elements=["spider_id", "dedup_hash"], index_where=Item.dedup_hash.is_not(None)
        )
        .returning(Item.__table__.c.id)
    )
    # Only the rows actually inserted come back, so their count is the number of new items.
    return len(session.connection().execute(stmt, rows).all())


def _copy_block(head: str, texts: list[bytes], tail: str) -> bytes:
    """Rows of COPY's text format, each a text between the same cells: the texts joined by
    NUL (which stored JSON never holds) and escaped all at once, then split into rows."""
    joined = b"\x00".join(texts)
    if joined.count(b"\x00") != len(texts) - 1:
        raise ValueError("an item's JSON text holds NUL")  # the reader removes it: a bug
    escaped = (joined.replace(b"\\", b"\\\\").replace(b"\t", b"\\t")
               .replace(b"\r", b"\\r").replace(b"\n", b"\\n"))  # fmt: skip
    start, end = head.encode(), tail.encode() + b"\n"
    return start + escaped.replace(b"\x00", end + start) + end


def delete_task_items(session: Session, task_id: uuid.UUID, attempt: int | None = None) -> int:
    """Delete a task's items (of one attempt when given); returns the count."""
    stmt = delete(Item).where(Item.task_id == task_id)
    if attempt is not None:
        stmt = stmt.where(Item.attempt == attempt)
    return session.execute(stmt).rowcount or 0  # type: ignore[attr-defined]


def delete_for_tasks(session: Session, task_ids: Sequence[uuid.UUID]) -> int:
    """Delete the items of runs just deleted (items have no foreign key: the lifecycle deletes
    them). Called after the runs' own DELETE in the same transaction: that statement waits
    for a writer storing items of these runs, and this one, with a fresh snapshot, sees them."""
    if not task_ids:
        return 0
    result: Any = session.execute(delete(Item).where(Item.task_id.in_(task_ids)))
    return int(result.rowcount or 0)


def _filtered(stmt: Select[Any], where: ItemFilter) -> Select[Any]:
    if where.projects is not None:
        stmt = stmt.where(Item.spider_id.in_(
            select(Spider.id).where(Spider.project_id.in_(where.projects))))  # fmt: skip
    if where.spider_id is not None:
        stmt = stmt.where(Item.spider_id == where.spider_id)
    if where.task_id is not None:
        stmt = stmt.where(Item.task_id == where.task_id)
    if where.since is not None:
        stmt = stmt.where(Item.created_at >= where.since)
    if where.until is not None:
        stmt = stmt.where(Item.created_at < where.until)
    return stmt


def list_items(
    session: Session, where: ItemFilter, *, limit: int, offset: int = 0, after_id: int | None = None
) -> Sequence[Item]:
    """Items in id order: a page by offset, or the next `limit` after an id (keyset)."""
    stmt = _filtered(select(Item), where).order_by(Item.id).limit(limit)
    stmt = stmt.where(Item.id > after_id) if after_id is not None else stmt.offset(offset)
    return session.scalars(stmt).all()


def count_items(session: Session, where: ItemFilter) -> tuple[int, bool]:
    """How many items match, and whether that is exact (see `count_rows`)."""
    return count_rows(session, _filtered(select(Item.id), where))


def max_id(session: Session, where: ItemFilter) -> int:
    """The highest item id of a selection (0 when empty): an export's fixed upper bound."""
    return session.scalar(_filtered(select(func.max(Item.id)), where)) or 0


def export_batch(
    session: Session, where: ItemFilter, after_id: int, limit: int, upto: int
) -> list[tuple[int, str]]:
    """The next (id, JSON text) rows in (after_id, upto], for exports in keyset batches."""
    if session.get_bind().dialect.name == "postgresql":
        data: Any = Item.data.cast(postgresql.TEXT)  # jsonb's text, not a Python round trip
    else:
        data = func.json(Item.data)
    stmt = _filtered(select(Item.id, data), where).where(Item.id > after_id, Item.id <= upto)
    rows = session.execute(stmt.order_by(Item.id).limit(limit)).all()
    return [(row[0], row[1]) for row in rows]


def batch_end(session: Session, where: ItemFilter, after_id: int, upto: int, limit: int) -> int:
    """The id closing the next batch of `limit` rows after after_id (upto when fewer are left)."""
    stmt = _filtered(select(Item.id), where).where(Item.id > after_id, Item.id <= upto)
    end = session.scalar(stmt.order_by(Item.id).offset(limit - 1).limit(1))
    return upto if end is None else int(end)


def copy_export(
    session: Session,
    where: ItemFilter,
    after_id: int,
    upto: int,
    columns: list[str] | None,
    defuse: tuple[str, ...] = (),
) -> Generator[memoryview, None, None] | None:
    """Items in (after_id, upto] as PostgreSQL itself writes them, one chunk per row; None
    when not on PostgreSQL.

    Without columns: JSON lines in COPY's text format, to be read through `json_lines`.
    With columns: CSV rows, strings as they are, null or missing as "" (quoted, so a row is
    never a blank line), other values as JSON text; a string starting with one of `defuse`
    gets a leading quote. No Python object per item.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return None
    if columns is None:
        cells: sql.Composable = sql.SQL("data")
        options = sql.SQL("FORMAT text")
    else:
        cells = sql.SQL(", ").join(_csv_cell(sql.Literal(c), defuse) for c in columns)
        options = sql.SQL("FORMAT csv")
    conditions: list[sql.Composable] = [sql.SQL("id > {} AND id <= {}").format(after_id, upto)]
    for name, value, operator in (
        ("spider_id", where.spider_id, "="),
        ("task_id", where.task_id, "="),
        ("created_at", where.since, ">="),
        ("created_at", where.until, "<"),
    ):
        if value is not None:
            conditions.append(sql.SQL(f"{name} {operator} {{}}").format(sql.Literal(value)))
    if where.projects is not None:
        conditions.append(sql.SQL(
            "spider_id IN (SELECT id FROM spider WHERE project_id = ANY({}::uuid[]))"
        ).format(sql.Literal([str(p) for p in where.projects])))  # fmt: skip
    statement = sql.SQL("COPY (SELECT {} FROM item WHERE {} ORDER BY id) TO STDOUT ({})").format(
        cells, sql.SQL(" AND ").join(conditions), options
    )
    driver = connection.connection.driver_connection
    assert driver is not None
    # Statement literals only, no parameters: a % in a key must not be taken for one.
    return copy_out(driver, statement)


def json_lines(rows: bytes | bytearray) -> bytes:
    """Whole rows of a JSON-lines `copy_export` as the JSON lines they hold. COPY's text
    format doubles every backslash and escapes control characters; jsonb's text has none of
    the latter (it escapes them itself), so undoing the doubling is all, and it runs over
    many rows at once. (Its CSV format, unescaped, cost PostgreSQL 10 % more: it looks at
    every byte for quotes.)"""
    return bytes(rows).replace(b"\\\\", b"\\")


def _csv_cell(key: sql.Literal, defuse: tuple[str, ...]) -> sql.Composable:
    text = sql.SQL("(data->>{})").format(key)
    shown = sql.SQL("coalesce({}, '')").format(text)
    if not defuse:
        return shown
    starts = sql.SQL(", ").join(map(sql.Literal, defuse))
    return sql.SQL(
        "CASE WHEN jsonb_typeof(data->{}) = 'string' AND left({}, 1) IN ({})"
        " THEN '''' || {} ELSE {} END"
    ).format(key, text, starts, text, shown)


def recorded_keys(session: Session, where: ItemFilter) -> list[str] | None:
    """The columns of a selection from the keys its runs recorded as their items were stored,
    run after run; None when a run holding items of it recorded none (older runs), or the
    selection is by time (a superset would do, but a scan is exact)."""
    if where.since is not None or where.until is not None:
        return None
    stmt = select(Task.item_keys).where(Task.items_count > 0).order_by(Task.created_at, Task.id)
    if where.task_id is not None:
        stmt = stmt.where(Task.id == where.task_id)
    elif where.spider_id is not None:
        stmt = stmt.where(Task.spider_id == where.spider_id)
    else:
        return None
    keys: dict[str, None] = {}
    found = False
    for recorded in session.scalars(stmt):
        if recorded is None:
            return None
        keys.update(dict.fromkeys(recorded))
        found = True
    return list(keys) if found else None


def first_seen_keys(session: Session, where: ItemFilter, upto: int) -> list[str] | None:
    """Top-level keys of the selection ordered by the first item they appear in.

    PostgreSQL answers in one query; elsewhere None (the caller scans the items itself).
    """
    if session.get_bind().dialect.name != "postgresql":
        return None
    inner = _filtered(select(Item.id, func.jsonb_object_keys(Item.data).label("key")), where)
    inner = inner.where(Item.id <= upto)
    sub = inner.where(func.jsonb_typeof(Item.data) == "object").subquery()
    rows = session.execute(
        select(sub.c.key).group_by(sub.c.key).order_by(func.min(sub.c.id), sub.c.key)
    ).all()
    return [row[0] for row in rows]


def delete_items(session: Session, where: ItemFilter) -> int:
    """Delete the matching items; returns how many."""
    stmt = delete(Item)
    if where.spider_id is not None:
        stmt = stmt.where(Item.spider_id == where.spider_id)
    if where.task_id is not None:
        stmt = stmt.where(Item.task_id == where.task_id)
    return session.execute(stmt).rowcount or 0  # type: ignore[attr-defined]


def expire_batch(
    session: Session, spider_id: uuid.UUID | None, cutoff: datetime, limit: int
) -> int:
    """Delete up to `limit` items and log lines older than cutoff (of one spider, or of
    spiders without their own retention); returns how many rows went."""
    items = select(Item.id).where(Item.created_at < cutoff).limit(limit)
    lines = select(LogLine.task_id, LogLine.seq).where(LogLine.ts < cutoff)
    if spider_id is not None:
        items = items.where(Item.spider_id == spider_id)
        lines = lines.join(Task, Task.id == LogLine.task_id).where(Task.spider_id == spider_id)
    else:
        own = select(Spider.id).where(Spider.retention_days.is_not(None))
        items = items.where(Item.spider_id.notin_(own))
        lines = lines.join(Task, Task.id == LogLine.task_id).where(Task.spider_id.notin_(own))
    result: Any = session.execute(delete(Item).where(Item.id.in_(items.scalar_subquery())))
    gone = int(result.rowcount or 0)
    keys = session.execute(lines.limit(limit)).all()
    for task_id in {k[0] for k in keys}:
        seqs = [k[1] for k in keys if k[0] == task_id]
        result = session.execute(
            delete(LogLine).where(LogLine.task_id == task_id, LogLine.seq.in_(seqs))
        )
        gone += int(result.rowcount or 0)
    return gone


def spiders_with_retention(session: Session) -> Sequence[tuple[uuid.UUID, int]]:
    """(spider id, retention days) of spiders with their own retention."""
    rows = session.execute(
        select(Spider.id, Spider.retention_days).where(Spider.retention_days.is_not(None))
    ).all()
    return [(spider_id, days) for spider_id, days in rows if days is not None]
