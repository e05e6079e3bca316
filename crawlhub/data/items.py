"""Scraped items: select, page, export as a stream, delete."""

import contextlib
import logging
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from crawlhub.data import formats
from crawlhub.errors import BadRequest, InvalidInput, NotFound
from crawlhub.repo import items as repo
from crawlhub.repo import reach
from crawlhub.repo import spiders as spider_repo
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.db import Database
from crawlhub.repo.items import ItemFilter
from crawlhub.repo.models import Item
from crawlhub.repo.users import audit

logger = logging.getLogger(__name__)

EXPORT_BATCH = 5000  # rows per keyset query while exporting (fewer when rows are large)
FIRST_EXPORT_BATCH = 16  # the first query's rows, before their size is known
COPY_BATCH = 100_000  # rows per COPY (and per transaction, read whole before it is sent)
FIRST_COPY_BATCH = 200  # the first batch: its rows reach the client within milliseconds
# An export holds at most about this much of a batch at once, whatever its items weigh
# (up to CRAWLHUB_MAX_ITEM_BYTES each): later batches take as many rows as fit.
BATCH_BYTES = 16 * 1024 * 1024


def _rows_that_fit(largest: int, most: int) -> int:
    """How many rows of about `largest` bytes a batch may take: half of BATCH_BYTES' worth, so
    that rows somewhat larger than the last batch's largest still fit in a batch held whole."""
    return max(1, min(most, BATCH_BYTES // 2 // max(largest, 1)))


@dataclass
class Selection:
    """A resolved item filter and the names its export file is called after."""

    where: ItemFilter
    spider_name: str | None
    task_id: uuid.UUID | None


def select(
    db: Database,
    *,
    spider: str | None = None,
    task: uuid.UUID | str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Selection:
    """Resolve a spider (id or name) and a run (id, its first characters, or its Scrapyd job
    id) into an item filter; 404 when either is unknown, or the run is not the spider's.

    A run's items are all its spider's: with a run, the filter names the run alone (the
    spider's condition besides it cost PostgreSQL its index of a run's items)."""
    with db.read() as session:
        spider_row = spider_repo.get_spider(session, spider) if spider else None
        if task is not None:
            task_row = task_repo.get_task(session, task)
            task = task_row.id
            if spider_row is None:
                spider_row = task_repo.spider_of(session, task_row)
            elif spider_row.id != task_row.spider_id:
                raise NotFound(f"run {task} is not a run of spider '{spider_row.name}'")
    spider_id = spider_row.id if spider_row is not None and task is None else None
    where = ItemFilter(spider_id, task, since, until, reach.readable_projects())
    return Selection(where, spider_row.name if spider_row else None, task)


@dataclass(frozen=True)
class Page:
    """A page of items: the total and whether it is exact (no total with keyset paging), and
    whether more items follow the last one."""

    rows: list[Item]
    total: int | None
    exact: bool
    more: bool


def page(
    db: Database, selection: Selection, *, page: int, page_size: int, after_id: int | None
) -> Page:
    """A page of items by number, or, with after_id, the ones after that id (keyset)."""
    with db.read() as session:
        if after_id is not None:
            rows = repo.list_items(session, selection.where, limit=page_size + 1,
                                   after_id=after_id)  # fmt: skip
            return Page(list(rows[:page_size]), None, True, len(rows) > page_size)
        rows = repo.list_items(
            session, selection.where, limit=page_size + 1, offset=(page - 1) * page_size
        )
        total, exact = repo.count_items(session, selection.where)
        return Page(list(rows[:page_size]), total, exact, len(rows) > page_size)


def _batches(db: Database, where: ItemFilter, upto: int) -> Iterator[formats.Batch]:
    """The selection up to an id in keyset batches, each read in its own short transaction;
    a batch takes as many rows as half of BATCH_BYTES holds of the largest row of the last one."""
    after, size = 0, FIRST_EXPORT_BATCH
    while True:
        with db.read() as session:
            rows = repo.export_batch(session, where, after, size, upto)
        if not rows:
            return
        yield rows
        after = rows[-1][0]
        size = _rows_that_fit(max(len(text) for _, text in rows), EXPORT_BATCH)


def export_stream(
    db: Database, selection: Selection, fmt: str, *, fields: list[str] | None, excel: bool
) -> formats.Chunks:
    """The export file of a selection, as a stream of byte chunks (close it when stopping
    early: it may hold a COPY and a pooled connection meanwhile).

    The selection is fixed at its highest id when the export starts, so items a running
    spider adds meanwhile neither lengthen the export nor miss their CSV column.
    """
    where = selection.where
    with db.read() as session:
        upto = repo.max_id(session, where)
    columns: list[str] | None = None
    if fmt in ("csv", "xlsx"):
        columns = fields if fields is not None else _columns(db, where, upto)
    if fmt == "xlsx":
        assert columns is not None
        return formats.xlsx(_batches(db, where, upto), columns)
    if db.dialect == "postgresql":  # PostgreSQL writes the rows itself
        defuse = formats.FORMULA_STARTS if excel else ()
        lines = _copied(db, where, upto, columns, defuse)
    elif columns is not None:
        return formats.csv_rows(_batches(db, where, upto), columns, excel=excel)
    else:
        lines = formats.jsonl(_batches(db, where, upto))
    if columns is not None:
        return _headed(formats.csv_header(columns, excel=excel), lines)
    return formats.json_array(lines) if fmt == "json" else lines


def _headed(header: bytes, rest: formats.Chunks) -> formats.Chunks:
    yield header
    yield from rest  # closed with this generator


def _copied(
    db: Database, where: ItemFilter, upto: int, columns: list[str] | None, defuse: tuple[str, ...]
) -> formats.Chunks:
    """The selection up to an id as COPY writes it (JSON lines, or CSV rows of columns), in
    batches of up to COPY_BATCH rows. Each batch is read whole in its own short transaction
    and only then yielded, in chunks of whole lines: a client that reads slowly never holds a
    pooled connection or an open transaction. Memory stays within about BATCH_BYTES: a batch
    that turns out larger is sent as it is read (its transaction held meanwhile), and the
    next take as many rows as fit, by the largest row of the last.

    Where the selection's ids are packed (the last batch had rows for at least half of its
    ids, as a run's items and most spiders' are), the next batch is the next `size` ids,
    which hold at most `size` rows: no query for where it ends (one a batch, before its
    COPY, on the way to the client)."""
    after, size = 0, FIRST_COPY_BATCH  # a small first batch: the first byte goes out at once
    packed = False
    while after < upto:
        end = min(upto, after + size) if packed else None
        end, count, largest = yield from _copy_batch(db, where, after, end, upto, size,
                                                     columns, defuse)  # fmt: skip
        packed = count * 2 >= end - after
        after = end
        if count:  # an empty range of ids says nothing of the rows' size
            size = _rows_that_fit(largest, COPY_BATCH)


def _copy_batch(
    db: Database, where: ItemFilter, after: int, end: int | None, upto: int, size: int,
    columns: list[str] | None, defuse: tuple[str, ...],
) -> Generator[bytes, None, tuple[int, int, int]]:  # fmt: skip
    """One batch of `_copied`: the rows in (after, end] (end: where `size` rows end, when not
    given), yielded in chunks of whole lines once its transaction is over (or as they are
    read, past BATCH_BYTES); returns its end, its row count and its largest row."""
    chunks: list[bytes] = []
    held = largest = count = 0
    buffer = bytearray()
    chunk = formats.CHUNK  # a local: the loop below runs once per row
    as_sent = repo.json_lines if columns is None else bytes
    with db.read() as session:
        if end is None:
            end = repo.batch_end(session, where, after, upto, size)
        rows = repo.copy_export(session, where, after, end, columns, defuse)
        assert rows is not None
        # Closed here, should the client go mid-batch: the COPY is cancelled on its own
        # connection before the session hands that back to the pool (a connection given back
        # mid-COPY hung the next rollback on it).
        with contextlib.closing(rows):
            for row in rows:
                count += 1
                length = len(row)
                if length > largest:  # not max(): a call per row cost the export 7 %
                    largest = length
                buffer += row
                if len(buffer) >= chunk:
                    chunks.append(as_sent(buffer))
                    held += len(buffer)
                    buffer.clear()
                    if held >= BATCH_BYTES:  # too large to hold: send it as it comes
                        yield from chunks
                        chunks.clear()
    if buffer:
        chunks.append(as_sent(buffer))
    yield from chunks  # after the commit: the connection is back in the pool
    return end, count, largest


def _columns(db: Database, where: ItemFilter, upto: int) -> list[str]:
    with db.read() as session:
        keys = repo.recorded_keys(session, where)
        if keys is None:
            keys = repo.first_seen_keys(session, where, upto)
    return keys if keys is not None else formats.keys_in_order(_batches(db, where, upto))


def parse_fields(raw: str | None) -> list[str] | None:
    """`a,b,c` as a list of columns; InvalidInput when it names none."""
    if raw is None:
        return None
    fields = [f.strip() for f in raw.split(",") if f.strip()]
    if any("\x00" in f for f in fields):
        raise InvalidInput("fields: a column name contains a NUL character")
    if not fields:
        raise InvalidInput("fields names no column: give a comma-separated list like url,title")
    return list(dict.fromkeys(fields))


def filename(selection: Selection, fmt: str, *, suspect: bool = False) -> str:
    """`<spider>-<task or date>.<ext>` (`-SUSPECT` before the extension when some of the
    data failed its quality checks)."""
    spider = selection.spider_name or "items"
    tail = str(selection.task_id) if selection.task_id else datetime.now(UTC).strftime("%Y-%m-%d")
    return f"{spider}-{tail}{'-SUSPECT' if suspect else ''}.{fmt}"


SUSPECT_SHOWN = 5


def suspect_runs(db: Database, selection: Selection) -> list[uuid.UUID]:
    """The runs of a selection whose data is marked suspect (their quality verdict failed and
    their spider's rules say so), up to SUSPECT_SHOWN + 1."""
    where = selection.where
    with db.read() as session:
        return task_repo.suspect_runs(session, where.spider_id, where.task_id, where.projects,
                                      SUSPECT_SHOWN + 1)  # fmt: skip


def delete(db: Database, selection: Selection) -> int:
    """Delete the items of a task or a spider; returns how many."""
    if selection.where.spider_id is None and selection.where.task_id is None:
        raise BadRequest("give task_id or spider_id: deleting every item at once is not offered")
    with db.session() as session:
        count = repo.delete_items(session, ItemFilter(selection.where.spider_id,
                                                      selection.where.task_id))  # fmt: skip
        audit(session, "items.delete", f"run:{selection.task_id}" if selection.task_id
              else f"spider:{selection.spider_name}", after={"deleted": count})  # fmt: skip
    logger.info("deleted %d item(s) of %s", count, selection.task_id or selection.spider_name)
    return count
