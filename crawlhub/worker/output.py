"""An attempt's output while it runs: the reader threads of its pipes, the sinks they feed
(log lines, items), the supervisor's periodic flushes, and the end of reading."""

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from crawlhub.context import Context
from crawlhub.quality.stats import ItemStats
from crawlhub.worker.attempts import Attempt
from crawlhub.worker.capture import ItemSink, LogSink, read_batches, read_lines

logger = logging.getLogger(__name__)

ITEMS_EVERY_S = 0.25  # how often the supervisor stores the items read meanwhile
# ... or at once when this many are waiting: the database then writes one batch while the
# reader parses the next (at the pace of a busy spider, a batch every ~50 ms).
ITEMS_AT_ONCE = 5000
READER_GRACE_S = 1.0  # output readers get this long to finish before pipe holders are killed


class Reading:
    """A pipe being read by a thread of the pool: alive until its reader returns."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.target, self.args = target, args
        self.done = threading.Event()

    def is_alive(self) -> bool:
        return not self.done.is_set()

    def join(self, timeout: float | None = None) -> None:
        self.done.wait(timeout)


class ReaderPool:
    """The threads that read runs' pipes, each kept for the next pipe once its own ends: a
    run's start used to wait for three new threads to start. A pipe someone still holds
    open keeps its thread (as it kept its own before); the pool grows by what is busy."""

    def __init__(self) -> None:
        self._pipes: queue.SimpleQueue[Reading] = queue.SimpleQueue()
        self._idle = 0  # threads waiting for a pipe, less the pipes already given to them
        self._lock = threading.Lock()

    def start(self, target: Callable[..., None], *args: Any) -> Reading:
        """Read a pipe with `target(*args)` on an idle thread, or on a new one."""
        reading = Reading(target, args)
        with self._lock:
            new = self._idle == 0
            if not new:
                self._idle -= 1  # that thread's next pipe is this one
        self._pipes.put(reading)
        if new:
            threading.Thread(target=self._serve, name="output-reader", daemon=True).start()
        return reading

    def _serve(self) -> None:
        while True:
            reading = self._pipes.get()
            try:
                reading.target(*reading.args)
            except BaseException:  # the thread lives on: a pipe may already be counted on it
                logger.exception("output reader failed")
            with self._lock:
                self._idle += 1
            reading.done.set()


READERS = ReaderPool()


class Output:
    """The log and item sinks of one attempt, and the threads that read its pipes."""

    def __init__(self, context: Context, attempt: Attempt) -> None:
        self.settings = settings = context.settings
        self.a = attempt
        self.logs = LogSink(
            context.db, context.live, attempt.task_id, attempt.attempt, fence=attempt.fence,
            first_seq=attempt.first_seq, max_lines=settings.max_log_lines,
        )  # fmt: skip
        self.items = ItemSink(
            context.db, self.logs, attempt.spider_id, attempt.task_id, attempt.attempt,
            attempt.dedup_keys, fence=attempt.fence,
            stats=ItemStats(attempt.rules) if settings.item_statistics else None,
        )  # fmt: skip
        self._next_items_flush = 0.0

    @property
    def fenced(self) -> bool:
        """Whether a write found the task owned by another attempt."""
        return self.logs.fenced or self.items.fenced

    def start_readers(
        self, stdout: IO[bytes], stderr: IO[bytes], items: IO[bytes]
    ) -> list[Reading]:
        line_cap, item_cap = self.settings.max_log_line_bytes, self.settings.max_item_bytes

        def pump_log(stream: str, pipe: IO[bytes]) -> None:
            with pipe:
                for raw, dropped in read_lines(pipe, line_cap):
                    self.logs.line(stream, raw, dropped)

        def pump_items() -> None:
            with items:
                for batch in read_batches(items, item_cap):
                    self.items.lines(batch)

        return [
            READERS.start(self._guard(pump_log), "stdout", stdout),
            READERS.start(self._guard(pump_log), "stderr", stderr),
            READERS.start(self._guard(pump_items)),
        ]

    def _guard(self, target: Any) -> Any:
        def guarded(*args: Any) -> None:
            try:
                target(*args)
            except Exception:
                logger.exception("task %s: output reader failed", self.a.task_id)

        return guarded

    def drain(self, readers: list["Reading"], pipes: set[int], beat: Callable[[], None]) -> None:
        """Let the output readers reach the end of the pipes. A process the spider started
        that escaped its group (setsid, a double fork) may still hold them open: after a
        moment it is found by its open pipes and killed, so the worker never waits on it,
        and it keeps heartbeating meanwhile."""
        deadline = time.monotonic() + READER_GRACE_S
        next_beat = time.monotonic() + self.settings.heartbeat_s
        killed = False
        while any(reader.is_alive() for reader in readers):
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + self.settings.heartbeat_s
                beat()
            if now >= deadline:
                if killed:
                    self.logs.system("output still open after the spider ended; stopped reading it")
                    return
                holders = pipe_holders(pipes)
                for pid in holders:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                if holders:
                    self.logs.system(
                        f"killed {len(holders)} process(es) the spider left running that still "
                        f"held its output open (pid {', '.join(map(str, holders))})"
                    )
                killed = True
                deadline = now + READER_GRACE_S
            for reader in readers:
                reader.join(0.05)

    def busy(self) -> bool:
        """Whether a batch of items is ready to store now."""
        return self.items.waiting >= ITEMS_AT_ONCE

    def flush_quietly(self) -> None:
        try:
            self.logs.flush()
            now = time.monotonic()
            if now >= self._next_items_flush or self.busy():  # large batches: a commit each
                self._next_items_flush = now + ITEMS_EVERY_S
                self.items.flush()
        except Exception as exc:
            logger.warning("task %s: flush failed, will retry: %s", self.a.task_id, exc)


def pipe_holders(pipes: set[int]) -> list[int]:
    """The processes (other than this one) with one of these pipes (by inode) open."""
    me, found = os.getpid(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
        except OSError:  # gone meanwhile, or not ours to look at
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{entry.name}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("pipe:[") and int(link[6:-1]) in pipes:
                found.append(int(entry.name))
                break
    return found
