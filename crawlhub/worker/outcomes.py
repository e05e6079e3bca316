"""A finished attempt's outcome, kept by the worker until the database has it.

The outcome is written to the worker's ledger (`$CRAWLHUB_DATA_DIR/outcomes/`, out of every
spider's sight) before anything else is tried; then the run's last items and log lines are
stored and the outcome recorded. When an outage outlasts `CRAWLHUB_RECORD_PATIENCE_S`, the
run's thread hands the rest to this process's recorder, which tries again every heartbeat or
sooner, however long it takes, and the run's message is acknowledged: the outcome is never
turned into a retry of the spider. The ticker reaps no run within a lease of getting the
database back, and the recorder tries within a heartbeat, so nothing is charged meanwhile.

A worker that stops with outcomes still waiting records them at its next start: an entry
whose items were all stored is recorded as it ended; one whose last items died with the
process is handed back to the queue, as an interrupted run is (no retry counted).
"""

import contextlib
import fcntl
import json
import logging
import os
import queue
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crawlhub import outages
from crawlhub.context import Context
from crawlhub.repo.tasks import FENCED
from crawlhub.services import dispatch, runs
from crawlhub.worker.attempts import Outcome, RunRef, notify, record

logger = logging.getLogger(__name__)


@dataclass
class Entry:
    """One attempt's outcome in the ledger."""

    run: RunRef
    outcome: Outcome
    stats: dict[str, Any] | None
    items: int = 0
    flushed: bool = False  # its last items, log lines and outcome are stored (one commit)
    recorded_as: str = ""  # the task's status once recorded

    @property
    def name(self) -> str:
        return f"{self.run.task_id}-{self.run.fence}.json"


class Ledger:
    """A worker process's outcome files, one per finished attempt not yet recorded, in a
    folder of its own (`outcomes/<pid>-<random>/`) that it holds locked while it lives: the
    workers sharing a data dir never take each other's, and the next one to start takes
    over the folders of processes that are gone (their lock is free)."""

    def __init__(self, data_dir: Path) -> None:
        self.base = data_dir / "outcomes"
        self.root = self.base / f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock: int | None = None

    def _own(self) -> None:
        """Make this process's folder, locked before anyone can see it."""
        if self._lock is not None:
            return
        self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
        making = self.base / f".{self.root.name}"
        making.mkdir(mode=0o700)
        self._lock = _locked(making / LOCK, blocking=True)
        making.rename(self.root)

    def close(self) -> None:
        """Let go of the folder (what is in it is taken over at a later start)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def take_over(self) -> None:
        """Move the entries of the folders whose process is gone into this one."""
        self._own()
        for folder in self.base.iterdir():
            if folder == self.root or folder.name.startswith(".") or not folder.is_dir():
                continue
            lock = _locked(folder / LOCK, blocking=False)
            if lock is None:  # its process lives
                continue
            try:
                for path in folder.glob("*.json"):
                    path.replace(self.root / path.name)
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                os.close(lock)

    def write(self, entry: Entry) -> None:
        """Write (or rewrite) an entry whole: a new file renamed into place.

        Not synced to disk, on purpose: the ledger outlives an outage and the death of its
        process (the kernel keeps what was written), which is what it is for; a machine
        that crashes loses its runs' heartbeats too, and the reaper's lease handles those
        runs as it handles every crash. Syncing cost 6 ms of each run's end here.
        """
        self._own()
        body = {**asdict(entry), "run": {**asdict(entry.run), "task_id": str(entry.run.task_id),
                                         "spider_id": str(entry.run.spider_id)}}  # fmt: skip
        partial = self.root / f".{entry.name}.{os.getpid()}"
        partial.write_text(json.dumps(body))
        partial.replace(self.root / entry.name)

    def remove(self, entry: Entry) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / entry.name).unlink()

    def entries(self) -> list[Entry]:
        """Every entry in this process's folder, oldest first (unreadable ones are logged and
        dropped)."""
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                data = json.loads(path.read_text())
                run = data.pop("run")
                found.append(Entry(
                    run=RunRef(**{**run, "task_id": uuid.UUID(run["task_id"]),
                                  "spider_id": uuid.UUID(run["spider_id"])}),
                    outcome=Outcome(**data.pop("outcome")), **data,
                ))  # fmt: skip
            except (OSError, ValueError, TypeError, KeyError) as exc:
                logger.error("outcome file %s cannot be read (%s): dropped", path, exc)
                path.unlink(missing_ok=True)
        return found


def send_again(context: Context, task_id: uuid.UUID, status: str) -> None:
    """Send the run message of a task recorded after its message was acknowledged, when the
    task is to run again: at once when handed back, after its spider's backoff when
    retrying. If this fails, the ticker's sweep sends it."""
    if status == "pending":
        dispatch.quietly(context)
    elif status == "retrying":
        runs.enqueue_retry(context, task_id)


LOCK = ".lock"


def _locked(path: Path, *, blocking: bool) -> int | None:
    """An open descriptor holding an exclusive lock on `path` (None: another holds it)."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@dataclass
class _Job:
    entry: Entry
    finish: Callable[[], None]  # stores what is left and records; raises on an outage
    tries: int = 0
    due: float = field(default_factory=time.monotonic)


class Recorder:
    """This process's thread that finishes the runs an outage kept from being recorded."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.ledger = Ledger(context.settings.data_dir)
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def adopt(self, entry: Entry, finish: Callable[[], None]) -> None:
        """Take over a run whose ending is still to be recorded (its entry is in the ledger):
        `finish` is tried until it stops meeting an outage."""
        self._start()
        self._jobs.put(_Job(entry, finish))

    def resume(self) -> int:
        """At a worker's start: record what earlier processes of this data dir left."""
        self.ledger.take_over()
        left = self.ledger.entries()
        for entry in left:
            logger.warning("task %s: recording the outcome an earlier worker left (%s)",
                           entry.run.task_id, entry.outcome.status)  # fmt: skip
            self.adopt(entry, lambda entry=entry: self._record_left(entry))  # type: ignore[misc]
        return len(left)

    def stop(self) -> None:
        """Stop trying (what is left stays in the ledger for the next start)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=5)
        self.ledger.close()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="crawlhub-recorder",
                                                daemon=True)  # fmt: skip
                self._thread.start()

    def _loop(self) -> None:
        waiting: list[_Job] = []
        while True:
            timeout = None
            if waiting:
                timeout = max(min(job.due for job in waiting) - time.monotonic(), 0)
            try:
                job = self._jobs.get(timeout=timeout)
                if job is None:
                    return
                waiting.append(job)
            except queue.Empty:
                pass
            now = time.monotonic()
            for job in [job for job in waiting if job.due <= now]:
                if self._try(job):
                    waiting.remove(job)

    def _try(self, job: _Job) -> bool:
        """One try at finishing a job: True when it is done (recorded, or fenced out)."""
        try:
            job.finish()
        except Exception as exc:
            if not outages.is_outage(exc):
                logger.exception("task %s: recording its outcome failed", job.entry.run.task_id)
            job.tries += 1
            job.due = time.monotonic() + outages.wait_s(
                job.tries - 1, self.context.settings.heartbeat_s
            )
            return False
        self.ledger.remove(job.entry)
        return True

    def _record_left(self, entry: Entry) -> None:
        """Record an entry an earlier process left: as it ended when its items were stored,
        else hand the run back to the queue (its last items are gone with that process)."""
        if entry.flushed:
            done = record(self.context, entry.run, entry.outcome, entry.stats, entry.items)
        else:
            back = Outcome(
                "interrupted",
                "shutdown",
                entry.outcome.exit_code,
                "the worker stopped before this run's last items were stored",
            )
            done = record(self.context, entry.run, back, entry.stats, entry.items)
        status = done.status
        send_again(self.context, entry.run.task_id, status)
        if status == FENCED:
            logger.warning("task %s: its outcome came too late (another attempt owns it)",
                           entry.run.task_id)  # fmt: skip
        notify(self.context, done)
