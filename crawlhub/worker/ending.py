"""How an attempt ended: its limits checked (the kernel's counts, the work dir measured),
Scrapy's final stats read safely, and its end stored and recorded through any outage."""

import json
import logging
import os
import stat
import time
from typing import Any

from sqlalchemy.orm import Session

from crawlhub import metrics, outages
from crawlhub.context import Context
from crawlhub.errors import Fenced, ServiceUnavailable
from crawlhub.repo.tasks import FENCED
from crawlhub.sandbox import limits as run_limits
from crawlhub.sandbox.limits import Limits
from crawlhub.sandbox.slots import Slot
from crawlhub.worker.attempts import Attempt, Outcome, Recorded, notify, record
from crawlhub.worker.capture import LogSink, Totals, store_last
from crawlhub.worker.outcomes import Entry, Recorder, send_again
from crawlhub.worker.output import Output
from crawlhub.worker.staging import STATS_FILE, Process, Staging
from crawlhub.worker.verdicts import Checks

logger = logging.getLogger(__name__)

MAX_STATS_BYTES = 4 * 1024 * 1024  # Scrapy's stats of a big crawl are tens of KB
DISK_EVERY_S = 1.0  # how often the work dir is measured (more seldom when that is slow)


class LimitWatch:
    """Whether a run went over one of its limits, and the failure that names it."""

    def __init__(self, slot: Slot, limits: Limits, logs: LogSink) -> None:
        self.slot = slot
        self.limits = limits
        self.logs = logs
        self._next_disk_check = 0.0

    def over_limit(self, proc: "Process", code: int) -> Outcome | None:
        """How a run that went over a limit fails, None if it did not: over its memory or
        process limit (the kernel's counts in its cgroup), or, when it failed, holding more
        than its disk and file limits, or a file as large as its disk limit (the kernel
        refused to make it larger: `RLIMIT_FSIZE`)."""
        counters = proc.counters()
        over = None
        if counters is not None and counters.oom_kills:
            over = ("memory_mb", f"the kernel killed {counters.oom_kills} of its processes")
        elif counters is not None and counters.forks_refused:
            over = ("processes", f"{counters.forks_refused} forks were refused")
        elif code != 0:
            over = run_limits.usage([self.slot.root], self.limits).over(self.limits)
        if over is None:
            return None
        return self.failure(over[0], over[1], code)

    def over_disk(self, now: float) -> Outcome | None:
        """Measure the work dir now and then: the outcome of a run over its disk or file
        limit (its spider is stopped), else None."""
        if now < self._next_disk_check:
            return None
        began = time.monotonic()
        over = run_limits.usage([self.slot.root], self.limits).over(self.limits)
        # Never more than a tenth of the time on measuring, however many files it holds.
        self._next_disk_check = now + max(DISK_EVERY_S, 10 * (time.monotonic() - began))
        return None if over is None else self.failure(*over, None)

    def failure(self, name: str, what: str, code: int | None) -> Outcome:
        reason, words = run_limits.REASONS[name]
        value = getattr(self.limits, name)
        unit = " MB" if name.endswith("_mb") else ""
        message = f"over its {words} limit of {value}{unit}: {what}"
        self.logs.system(f"spider failed: {message}")
        return Outcome("failed", reason, code, message)


class Ending:
    """The end of an attempt: its last items and log lines stored, its outcome recorded (with
    its alert), its live stream closed, its figures counted."""

    def __init__(self, context: Context, attempt: Attempt, output: Output,
                 recorder: Recorder) -> None:  # fmt: skip
        self.context = context
        self.a = attempt
        self.logs, self.items = output.logs, output.items
        self.output = output
        self.recorder = recorder
        self._summarized = False  # the run's last line ("completed after …") is written

    def close(self, outcome: Outcome, stats: dict[str, Any] | None, duration: float) -> str:
        """Keep the outcome in the ledger, then store and record it; the task's status, or
        "recording" when an outage outlasted the patience and the recorder took it over."""
        # Kept before anything else is tried: an outage never turns it into a retry.
        entry = Entry(self.a.ref, outcome, stats)
        self.recorder.ledger.write(entry)
        try:
            self.finish(entry, duration, self.context.settings.record_patience_s)
        except ServiceUnavailable:
            logger.warning("task %s: the database is still unavailable; its outcome (%s) is "
                           "kept and will be recorded when it is back", self.a.task_id,
                           outcome.status)  # fmt: skip
            self.recorder.adopt(entry, lambda: self.finish(entry, duration, 0, adopted=True))
            return "recording"
        self.recorder.ledger.remove(entry)
        return entry.recorded_as

    def finish(self, entry: Entry, duration: float, patience_s: float, *,
                adopted: bool = False) -> None:  # fmt: skip
        """Store the last items and log lines and record the outcome (in `entry.status`),
        trying for `patience_s` while an outage blocks it; then ServiceUnavailable. A run
        the recorder `adopted` (its message is gone) is sent again when it is to run again."""
        task_id, outcome = self.a.task_id, entry.outcome
        if outcome.status == FENCED:
            done = Recorded(FENCED, [])
        elif entry.flushed:  # stored and recorded by an earlier try: recorded again, unchanged
            done = outages.patiently(
                lambda: record(self.context, self.a.ref, outcome, entry.stats, entry.items),
                "recording the outcome", task_id, patience_s,
            )  # fmt: skip
        else:

            def summary(totals: Totals) -> str | None:
                if self._summarized:  # added by a try that failed: given back with its lines
                    return None
                self._summarized = True
                return (f"{outcome.status} after {duration:.2f} s: {totals.items} items, "
                        f"{totals.duplicates} duplicates, {self.items.invalid} invalid, "
                        f"{self.logs.produced} log lines")  # fmt: skip

            def recorded(session: Session, totals: Totals, progress: dict[str, Any]) -> Recorded:
                stats = self.items.stats
                checks = None if stats is None else Checks(
                    self.a.rules, stats.snapshot(), totals.duplicates, self.logs.stderr_lines,
                    duration, self.a.params, self.a.kind == "scrapy")  # fmt: skip
                entry.items = totals.items
                done = record(self.context, self.a.ref, outcome, entry.stats, totals.items,
                              checks, progress, session=session)  # fmt: skip
                if done.status == FENCED:  # nothing of this attempt is kept
                    raise Fenced(f"task {task_id}: attempt {self.a.attempt} was fenced out")
                return done

            def store() -> Recorded:  # the last items, log lines and the outcome: one commit
                done = store_last(self.context.db, self.items, self.logs, summary, recorded)
                return Recorded(FENCED, []) if done is None else done

            done = outages.patiently(store, "storing the last output and the outcome",
                                     task_id, patience_s)  # fmt: skip
            entry.flushed = True
        entry.recorded_as = status = done.status
        if adopted:
            send_again(self.context, task_id, status)
        metrics.RUNS.labels(status).inc()
        metrics.RUN_SECONDS.observe(duration)
        metrics.ITEMS.inc(self.items.count)
        metrics.DUPLICATES.inc(self.items.duplicates)
        if status == "retrying":
            self.logs.system(f"attempt {self.a.attempt} failed; the run will be retried")
            self.output.flush_quietly()
        if status == FENCED:
            logger.warning("task %s: attempt %d (fence %d) lost its task to another attempt "
                           "(reaped or claimed again): its spider is stopped and nothing it did "
                           "after that was kept", self.a.task_id, self.a.attempt,
                           self.a.fence)  # fmt: skip
        else:  # the live stream belongs to the attempt that owns the task now
            try:
                self.context.live.finish(str(self.a.task_id))
            except Exception as exc:  # Redis down: readers fall back on the database
                logger.warning("task %s: could not end its live log: %s", self.a.task_id, exc)
        notify(self.context, done)
        # The console's one line per attempt (the run's own lines are there at DEBUG).
        ended = "failed, to be retried" if status == "retrying" else status
        why = "" if outcome.reason is None else f" ({outcome.reason}, exit {outcome.exit_code})"
        logger.info("task %s: %s attempt %d %s%s after %.2f s, %d items", self.a.task_id,
                    self.a.ref.spider_name, self.a.attempt, ended, why, duration,
                    self.items.count)  # fmt: skip


def read_stats(staging: Staging, logs: LogSink) -> dict[str, Any] | None:
    """Scrapy's final stats, as the stats extension left them in the work dir: opened
    relative to the work dir as it was made, a regular file of the slot's user with no
    other name, never through a link or a FIFO, at most MAX_STATS_BYTES."""
    if staging.work_fd is None:
        return None
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(STATS_FILE, flags, dir_fd=staging.work_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        owner = staging.slot.uid if staging.slot.uid is not None else os.geteuid()
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != owner \
                or info.st_size > MAX_STATS_BYTES:  # fmt: skip
            logs.system("the crawl's stats file is not a plain file of the run's: ignored")
            return None
        data = file.read(MAX_STATS_BYTES + 1)
    try:
        stats = json.loads(data)
    except ValueError:
        return None
    return stats if isinstance(stats, dict) and len(data) <= MAX_STATS_BYTES else None


def zero_pages_hint(stats: dict[str, Any]) -> str | None:
    """Why a Scrapy crawl got no page, read from its final stats (None if it got one)."""
    if stats.get("response_received_count"):
        return None
    failures = {
        key.rsplit("/", 1)[-1].rsplit(".", 1)[-1]: count
        for key, count in stats.items()
        if key.startswith("downloader/exception_type_count/")
    }
    filtered = {key: count for key, count in stats.items()
                if key.endswith("/filtered") and isinstance(count, int)}  # fmt: skip
    reason = f" (finish reason: {stats['finish_reason']})" if stats.get("finish_reason") else ""
    if failures:
        what = ", ".join(f"{count} x {name}" for name, count in sorted(failures.items()))
        return f"Scrapy crawled 0 pages: every request failed to download: {what}{reason}"
    if filtered:
        what = ", ".join(f"{key} {count}" for key, count in sorted(filtered.items()))
        return f"Scrapy crawled 0 pages: its requests were filtered out ({what}){reason}"
    if not stats.get("scheduler/enqueued") and not stats.get("downloader/request_count"):
        return (
            f"Scrapy crawled 0 pages: the spider made no request{reason}. Check its "
            "`start_urls` or `start()` (or `start_requests()`) and the arguments of the run."
        )
    return f"Scrapy crawled 0 pages{reason}"
