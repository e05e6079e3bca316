"""Reading a spider's output while it runs: log lines and items, batched into the database.

Reader threads (one per pipe, from a pool kept across runs) feed a sink, and the run's
supervisor flushes what is buffered every tick, so lines show up live whether the spider
prints a million lines or one line a minute. A log sink also flushes a full batch from its
reader; an item sink lets its reader parse on while the supervisor writes, until too much is
waiting.
"""

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import IO, Any, NamedTuple, TypeVar

import orjson
from sqlalchemy.orm import Session

from crawlhub import outages
from crawlhub.errors import Fenced
from crawlhub.messaging.livelog import LiveLog, LogEvent
from crawlhub.quality.stats import ItemStats
from crawlhub.repo import items as item_repo
from crawlhub.repo import logs as log_repo
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.bulk import commit_without_waiting
from crawlhub.repo.db import Database

logger = logging.getLogger(__name__)
R = TypeVar("R")

BATCH = 1000  # log lines per database write
# Items: the run's supervisor writes what is buffered every tick while the reader thread goes
# on parsing (double buffering); the reader writes itself only when this much is waiting.
ITEMS_BUFFERED = 20_000
ITEM_BYTES_BUFFERED = 32 * 1024 * 1024
CHUNK = 64 * 1024  # read size while skipping the rest of an over-long line
STDERR_TAIL = 20  # stderr lines kept for a failed task's error_message
# Distinct top-level item keys recorded per run (they give CSV exports their columns without a
# pass over the items). Past this many, the run records none and exports find the columns by
# reading the items: no unbounded list in memory or on the task.
MAX_ITEM_KEYS = 1000
# A batch of items at least this large commits without waiting for the WAL flush (the
# run's end waits for all of it); a smaller one saves the statement that says so instead.
LARGE_BATCH = 1000


def dedup_hash(item: dict[str, Any], keys: list[str]) -> str | None:
    """sha256 of the canonical JSON of the item's key fields; None when one is missing."""
    if any(key not in item for key in keys):
        return None  # stored, never deduplicated (documented)
    canonical = json.dumps(
        [item[key] for key in keys], sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def read_lines(pipe: IO[bytes], max_bytes: int) -> Iterator[tuple[bytes, int]]:
    """Lines of a pipe without their newline, cut at max_bytes, with the byte count cut off."""
    while True:
        line = pipe.readline(max_bytes + 1)
        if not line:
            return
        if line.endswith(b"\n"):
            yield line[:-1], 0
            continue
        if len(line) <= max_bytes:  # last line, no newline at EOF
            yield line, 0
            return
        dropped = len(line) - max_bytes
        kept = line[:max_bytes]
        while True:  # skip the rest of the line without holding it
            rest = pipe.readline(CHUNK)
            if not rest:
                break
            if rest.endswith(b"\n"):
                dropped += len(rest) - 1
                break
            dropped += len(rest)
        yield kept, dropped


def read_batches(pipe: IO[bytes], max_bytes: int) -> Iterator[list[tuple[bytes, int]]]:
    """The lines of a pipe as they arrive, in batches (the lines ended by one read of up to
    the pipe's buffer), without their newline, cut at max_bytes with the byte count cut off
    (as read_lines). Lines pass through C (split, zip), not a Python step each."""
    pieces: list[bytes] = []  # the line not ended yet: its pieces kept (≤ max_bytes in all)
    kept = cut = 0  # its bytes kept, and dropped

    def extend(piece: bytes) -> None:
        nonlocal kept, cut
        room = max_bytes - kept
        pieces.append(piece[:room])
        kept += min(len(piece), room)
        cut += max(len(piece) - room, 0)

    while True:
        chunk = pipe.read1()  # type: ignore[attr-defined]
        if not chunk:
            if kept or cut:  # the last line, with no newline at EOF
                yield [(b"".join(pieces), cut)]
            return
        parts = chunk.split(b"\n")
        if len(parts) == 1:
            extend(chunk)
            continue
        extend(parts[0])
        batch = [(b"".join(pieces), cut)]
        pieces, kept, cut = [], 0, 0
        middle = parts[1:-1]
        if max(map(len, middle), default=0) <= max_bytes:
            batch.extend(zip(middle, repeat(0)))
        else:
            batch.extend((m[:max_bytes], max(len(m) - max_bytes, 0)) for m in middle)
        extend(parts[-1])
        yield batch


def clean_text(raw: bytes) -> str:
    """Bytes as text: invalid UTF-8 replaced, NUL removed (PostgreSQL rejects it in text)."""
    text = raw.decode("utf-8", "replace")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text.rstrip("\r")


# JSON that Python parses but PostgreSQL's jsonb rejects: \u0000, lone surrogates, NaN/Infinity.
NEEDS_CLEANING = re.compile(rb"\\u0000|\\u[dD][89abAB]|\\u[dD][c-fC-F]|NaN|Infinity")


def _no_constant(_name: str) -> None:
    return None  # NaN and ±Infinity become null


# One decoder for every line: json.loads with an option builds a new one per call.
_decode = json.JSONDecoder(parse_constant=_no_constant).decode


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        # NUL removed; lone surrogates (from \udXXX escapes) replaced, as UTF-8 cannot hold them.
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_clean_json(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


class LogSink:
    """Numbers, caps, persists and publishes one run attempt's log lines."""

    def __init__(
        self,
        db: Database,
        live: LiveLog,
        task_id: uuid.UUID,
        attempt: int,
        *,
        fence: int,
        first_seq: int,
        max_lines: int,
    ) -> None:
        self.db = db
        self.live = live
        self.task_id = task_id
        self.fence = fence
        self.fenced = False  # set when the task turns out to belong to another attempt
        self.key = str(task_id)
        self.attempt = attempt
        self.max_lines = max_lines
        self.seq = first_seq - 1
        self.stored = 0
        self.produced = 0
        self.unsaved_count = 0
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self.capped = False
        self.pid: int | None = None  # the spider's process id, recorded with the next flush
        self._buffer: list[LogEvent] = []
        self.stderr_lines = 0  # printed on stderr (a data quality rule may bound them)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def line(self, stream: str, raw: bytes, dropped: int = 0) -> None:
        """Take one line from a pipe (called by reader threads)."""
        text = clean_text(raw)
        if dropped:
            text += f" …[line truncated: {dropped} more bytes]"
        if stream == "stderr":
            self.stderr_tail.append(text)
            self.stderr_lines += 1
        self._add(stream, text, counted=True)

    def system(self, text: str, *, flush: bool = True) -> None:
        """Add a line of CrawlHub's own about the run (never capped; on the console at DEBUG:
        it shows one line per attempt, from `worker.ending`). `flush=False`: never written
        from here, even when the buffer is full (its writer holds the sink)."""
        logger.debug("task %s: %s", self.task_id, text)
        self._add("system", text, counted=False, force=True, flush=flush)

    def _add(self, stream: str, text: str, *, counted: bool, force: bool = False,
             flush: bool = True) -> None:  # fmt: skip
        full = False
        with self._lock:
            if counted:
                self.produced += 1
                self.unsaved_count += 1
            if self.stored >= self.max_lines and not force:
                if not self.capped:
                    self.capped = True
                    cap_text = (
                        f"log limit of {self.max_lines} lines reached: "
                        "further lines are counted but not stored"
                    )
                    self._append("system", cap_text)
                return
            self._append(stream, text)
            full = flush and len(self._buffer) >= BATCH
        if full:
            outages.pause(self.flush, self.task_id)

    def _append(self, stream: str, text: str) -> None:
        self.seq += 1
        self.stored += 1
        self._buffer.append(LogEvent(self.seq, self.attempt, stream, time.time(), text))

    def flush(self) -> None:
        """Persist and publish what is buffered (thread-safe, order-preserving); nothing once
        the attempt is fenced out."""
        with self._flush_lock:
            taken = self.take()
            if taken is None:
                return
            try:
                with self.db.session() as session:
                    task_repo.add_progress(session, self.task_id, self.fence,
                                           **taken.progress())  # fmt: skip
                    self.write(session, taken)
            except Fenced:
                self.fenced = True  # these lines belong to an attempt that no longer counts
            except Exception:
                self.give_back(taken)
                raise

    def take(self) -> "TakenLines | None":
        """The buffered lines and counts, for one write (the caller holds `_flush_lock`);
        None when there is nothing to write."""
        with self._lock:
            taken = TakenLines(self._buffer, self.unsaved_count, self.pid)
            self._buffer, self.unsaved_count, self.pid = [], 0, None
        if self.fenced or (not taken.lines and not taken.counted and taken.pid is None):
            return None
        return taken

    def write(self, session: Session, taken: "TakenLines") -> None:
        """Insert the lines taken, after the task's progress (the fence check) is written."""
        rows = [
            (e.attempt, e.seq, e.stream, datetime.fromtimestamp(e.ts, UTC), e.text)
            for e in taken.lines
        ]
        log_repo.insert_lines(session, self.task_id, rows)
        # Published while this transaction holds the task: no other attempt can take it
        # meanwhile, so a fenced-out attempt's lines never reach live readers. Should the
        # commit fail, the lines are published again with their numbers, which readers have
        # already passed.
        self._publish(taken.lines)

    def give_back(self, taken: "TakenLines") -> None:
        """Keep lines whose write failed for the next flush: none may be lost."""
        with self._lock:
            self._buffer[:0] = taken.lines
            self.unsaved_count += taken.counted
            self.pid = self.pid or taken.pid

    def _publish(self, batch: list[LogEvent]) -> None:
        try:
            self.live.publish(self.key, batch)
        except Exception as exc:  # live delivery is best effort; the database is the record
            logger.warning("task %s: live log publish failed: %s", self.task_id, exc)


class ItemSink:
    """Validates and stores one run attempt's items in batches."""

    def __init__(
        self,
        db: Database,
        logs: LogSink,
        spider_id: uuid.UUID,
        task_id: uuid.UUID,
        attempt: int,
        dedup_keys: list[str] | None = None,
        *,
        fence: int,
        stats: ItemStats | None = None,
    ) -> None:
        self.db = db
        # Per-field statistics (and schema checks) of every item read, as it is read (None:
        # CRAWLHUB_ITEM_STATISTICS is off).
        self.stats = stats
        self.fence = fence
        self.fenced = False  # set when the task turns out to belong to another attempt
        self.dedup_keys = dedup_keys
        self.duplicates = 0
        self.logs = logs
        self.spider_id = spider_id
        self.task_id = task_id
        self.attempt = attempt
        self.count = 0
        self.invalid = 0
        self._buffer: list[tuple[bytes, dict[str, Any], str | None]] = []
        self._buffered_bytes = 0
        # Top-level keys of the items, first-seen order, recorded on the task with the items.
        self._keys: dict[str, None] = {}
        self._keys_grew = False
        self._too_many_keys = False  # past MAX_ITEM_KEYS: none recorded
        self._invalid_unsaved = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def line(self, raw: bytes, dropped: int = 0) -> None:
        """Take one JSON line from the item channel."""
        self.lines([(raw, dropped)])

    def lines(self, batch: list[tuple[bytes, int]]) -> None:
        """Take a batch of JSON lines from the item channel (called by the reader thread)."""
        # One search of the whole batch: most batches need no line looked at again.
        suspect = NEEDS_CLEANING.search(b"\n".join(raw for raw, _ in batch)) is not None
        texts: list[bytes] = []
        values: list[dict[str, Any]] = []
        for raw, dropped in batch:
            if dropped:
                self._reject(f"item line of {len(raw) + dropped} bytes is over the size limit")
                continue
            try:  # orjson: strict UTF-8 and RFC 8259, no NUL byte; 4x json's speed
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = None  # the thorough path below says what is wrong, or mends it
            if type(value) is dict and not (suspect and NEEDS_CLEANING.search(raw)):
                texts.append(raw)  # a valid JSON object PostgreSQL accepts: stored as it came
                values.append(value)
                continue
            item = self._thorough(raw)
            if item is not None:
                texts.append(item[0])
                values.append(item[1])
        if not values:
            return
        keys = self.dedup_keys
        digests = [dedup_hash(v, keys) for v in values] if keys else repeat(None)
        if self.stats is not None:  # only this reader thread adds; read once it has ended
            self.stats.add_many(values)
        with self._lock:
            self._buffer.extend(zip(texts, values, digests, strict=False))  # digests may repeat
            self._buffered_bytes += sum(map(len, texts))
            if not self._too_many_keys:
                known = self._keys.keys()
                for value in values:
                    if not known >= value.keys():
                        self._keys.update(dict.fromkeys(value))
                        self._keys_grew = True
                        if len(self._keys) > MAX_ITEM_KEYS:
                            self._too_many_keys = True
                            self._keys.clear()
                            break
            behind = (
                len(self._buffer) >= ITEMS_BUFFERED or self._buffered_bytes >= ITEM_BYTES_BUFFERED
            )
        if behind:  # the supervisor's flushes do not keep up: write here, slowing the spider
            outages.pause(self.flush, self.task_id)

    def _thorough(self, raw: bytes) -> tuple[bytes, dict[str, Any]] | None:
        """A line orjson did not take as it is: parsed by json, mended (NUL, lone surrogates,
        NaN and infinity; a non-object wrapped), or rejected; None for a blank line too."""
        if not raw.strip():
            return None
        decoded = raw.decode("utf-8", "replace").replace("\x00", "")
        try:
            value = _decode(decoded)
        except (ValueError, RecursionError) as exc:
            self._reject(f"malformed item line ({exc}): {decoded[:200]}")
            return None
        value = _clean_json(value if isinstance(value, dict) else {"value": value})
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(), value

    @property
    def waiting(self) -> int:
        """Items read and not stored yet."""
        return len(self._buffer)

    def _reject(self, message: str) -> None:
        with self._lock:
            self.invalid += 1
            self._invalid_unsaved += 1
            first = self.invalid <= 10
        if first:
            self.logs.system(message)
        elif self.invalid == 11:
            self.logs.system("more malformed item lines: counted in items_invalid, not logged")

    def flush(self) -> None:
        """Store what is buffered and add it to the task's counts; nothing once the attempt is
        fenced out."""
        with self._flush_lock:
            taken = self.take()
            if taken is None:
                return
            try:
                with self.db.session() as session:
                    if len(taken.items) >= LARGE_BATCH:  # the next batch is stored sooner
                        commit_without_waiting(session)
                    self.write(session, taken)
                    task_repo.add_progress(session, self.task_id, self.fence,
                                           **taken.progress())  # fmt: skip
            except Fenced:
                self.fenced = True  # these items belong to an attempt that no longer counts
                return
            except Exception:
                self.give_back(taken)
                raise
            self.kept(taken)

    def take(self) -> "TakenItems | None":
        """The buffered items, for one write (the caller holds `_flush_lock`); None when there
        is nothing to write."""
        with self._lock:
            keys: list[str] | None = None
            if self._keys_grew:
                keys = [] if self._too_many_keys else list(self._keys)
            taken = TakenItems(self._buffer, self._invalid_unsaved, keys, self._too_many_keys)
            self._buffer, self._invalid_unsaved = [], 0
            self._buffered_bytes = 0
            self._keys_grew = False
        if self.fenced or (not taken.items and not taken.invalid):
            return None
        return taken

    def write(self, session: Session, taken: "TakenItems") -> None:
        """Insert the items taken (before the task's progress: their counts come from it)."""
        taken.stored = item_repo.insert_items(
            session, self.spider_id, self.task_id, self.attempt, taken.items
        )

    def give_back(self, taken: "TakenItems") -> None:
        """Keep items whose write failed for the next flush: none may be lost."""
        with self._lock:
            self._buffer[:0] = taken.items
            self._invalid_unsaved += taken.invalid
            self._buffered_bytes += sum(len(text) for text, _, _ in taken.items)
            self._keys_grew = self._keys_grew or taken.keys is not None

    def kept(self, taken: "TakenItems") -> None:
        """Count what a committed write stored."""
        stored, skipped = taken.counts()
        with self._lock:
            self.count += stored
            self.duplicates += skipped


class Totals(NamedTuple):
    """A run's items once its last batch is stored."""

    items: int
    duplicates: int


def store_last(
    db: Database,
    items: ItemSink,
    logs: LogSink,
    summary: Callable[[Totals], str | None],
    then: Callable[[Session, Totals, dict[str, Any]], R],
) -> R | None:
    """Store an attempt's last items and log lines and, in the same transaction, what `then`
    writes with the run's totals and the counts still to add to its task (`add_progress`'s
    arguments): its outcome, one commit at a run's end where there were three. `then` checks
    the fence (raising Fenced) before the lines are written, as `add_progress` does. `summary`
    gives the run's last log line (None: it was added by an earlier try). Nothing is lost to a
    failure (what was taken is given back for the next try); None, with nothing written, when
    the attempt turns out to be fenced out."""
    with items._flush_lock, logs._flush_lock:
        if items.fenced or logs.fenced:
            return None
        kept_items, kept_lines = items.take(), None
        try:
            with db.session() as session:
                if kept_items is not None:
                    items.write(session, kept_items)
                stored, skipped = (0, 0) if kept_items is None else kept_items.counts()
                totals = Totals(items.count + stored, items.duplicates + skipped)
                last_line = summary(totals)
                if last_line is not None:
                    logs.system(last_line, flush=False)
                kept_lines = logs.take()
                progress = {**(kept_items.progress() if kept_items else {}),
                            **(kept_lines.progress() if kept_lines else {})}  # fmt: skip
                done = then(session, totals, progress)
                if kept_lines is not None:  # after the fence check: their numbers could clash
                    logs.write(session, kept_lines)
        except Fenced:
            items.fenced = logs.fenced = True
            return None
        except Exception:
            if kept_items is not None:
                items.give_back(kept_items)
            if kept_lines is not None:
                logs.give_back(kept_lines)
            raise
        if kept_items is not None:
            items.kept(kept_items)
        return done


@dataclass
class TakenLines:
    """Log lines taken from a sink for one write, with the lines counted meanwhile."""

    lines: list[LogEvent]
    counted: int
    pid: int | None

    def progress(self) -> dict[str, Any]:
        return {"log_lines": self.counted, "pid": self.pid}


@dataclass
class TakenItems:
    """Items taken from a sink for one write; `stored` once written (duplicates skipped)."""

    items: list[tuple[bytes, dict[str, Any], str | None]]
    invalid: int
    keys: list[str] | None  # the run's item keys when they grew since the last write
    keys_unknown: bool
    stored: int = 0

    def counts(self) -> tuple[int, int]:
        """How many were stored, and how many skipped as duplicates."""
        return self.stored, len(self.items) - self.stored

    def progress(self) -> dict[str, Any]:
        stored, skipped = self.counts()
        return {
            "items": stored, "duplicates": skipped,
            "invalid": self.invalid, "item_keys": self.keys, "keys_unknown": self.keys_unknown,
        }  # fmt: skip
