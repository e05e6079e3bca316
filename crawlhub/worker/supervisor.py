"""Supervising one run attempt: its slot and work dir, the spider's sandboxed process, its
output, its limits, its end."""

import contextlib
import json
import logging
import os
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from crawlhub import metrics, outages
from crawlhub.alerting import alerts
from crawlhub.context import Context
from crawlhub.errors import NotFound, ServiceUnavailable
from crawlhub.registry import archives
from crawlhub.repo import projects as project_repo
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.tasks import FENCED
from crawlhub.sandbox import limits as run_limits
from crawlhub.sandbox import spawn
from crawlhub.sandbox.cgroups import Counters
from crawlhub.sandbox.limits import Limits
from crawlhub.sandbox.slots import Slot
from crawlhub.worker import environments, launchers, sandboxes, workdirs
from crawlhub.worker.attempts import CLAIM_PATIENCE_S, Attempt, Ended, Outcome, claim, record
from crawlhub.worker.capture import ItemSink, LogSink, read_lines
from crawlhub.worker.environments import BuildFailed, Runtime
from crawlhub.worker.outcomes import Entry, Recorder, send_again

logger = logging.getLogger(__name__)

TICK_S = 0.05  # supervisor loop period: live log flush (exit is noticed at once)
STATUS_EVERY_S = 0.5  # how often a running task's status is read (cancel detection)
ITEMS_EVERY_S = 0.25  # how often the supervisor stores the items read meanwhile
CANCEL_GRACE_S = 2.0  # SIGTERM → SIGKILL delay on cancel: the group is gone within 3 s
READER_GRACE_S = 1.0  # output readers get this long to finish before pipe holders are killed
ERROR_MESSAGE_CHARS = 4000
STATS_FILE = ".crawlhub-stats.json"
MAX_STATS_BYTES = 4 * 1024 * 1024  # Scrapy's stats of a big crawl are tens of KB
DISK_EVERY_S = 1.0  # how often the work dir is measured (more seldom when that is slow)


class Process(Protocol):
    """A spider's process tree: started in its sandbox, or forked by a warm launcher."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def counters(self) -> Counters | None: ...

    def kill_tree(self) -> None: ...

    def close(self) -> None: ...


SHUTDOWN_KILL_GRACE_S = 3.0


def execute(context: Context, task_id: uuid.UUID, recorder: Recorder) -> Ended | None:
    """Run a task if it can be claimed; None when it could not (duplicate delivery, cancelled).
    ServiceUnavailable when the database stayed unreachable for the claim: nothing ran."""
    attempt = outages.patiently(lambda: claim(context.db, task_id), "claim", task_id,
                                CLAIM_PATIENCE_S)  # fmt: skip
    if attempt is None:
        logger.info("task %s is not claimable; message acknowledged and ignored", task_id)
        return None
    return Run(context, attempt, recorder).run()


class Run:
    """One attempt of one task, from work dir to recorded outcome."""

    def __init__(self, context: Context, attempt: Attempt, recorder: Recorder) -> None:
        self.context = context
        self.recorder = recorder
        self.db = db = context.db
        self.live = live = context.live
        self.settings = settings = context.settings
        self.a = attempt
        self.logs = LogSink(
            db, live, attempt.task_id, attempt.attempt, fence=attempt.fence,
            first_seq=attempt.first_seq, max_lines=settings.max_log_lines,
        )  # fmt: skip
        self.items = ItemSink(
            db, self.logs, attempt.spider_id, attempt.task_id, attempt.attempt,
            attempt.dedup_keys, fence=attempt.fence,
        )  # fmt: skip
        self.work: Path | None = None
        self.work_fd: int | None = None  # the work dir as it was made (renames do not fool it)
        self.runtime: Runtime | None = None
        self.slot: Slot | None = None
        self.limits: Limits = sandboxes.limits_of(settings, attempt.limits)
        self._next_items_flush = 0.0
        self._next_disk_check = 0.0
        self._summarized = False  # the run's last line ("completed after …") is written

    def run(self) -> Ended:
        """The attempt in a slot of this worker, which is emptied after it."""
        with sandboxes.slot(self.settings) as taken:
            self.slot = taken
            try:
                return self._attempt()
            finally:
                if self.work_fd is not None:
                    os.close(self.work_fd)

    def _attempt(self) -> Ended:
        started = time.monotonic()
        try:
            outcome = self._run()
        except Exception as exc:
            if outages.is_outage(exc):  # not the spider's failure: the run starts again
                self.logs.system(f"CrawlHub could not run the spider: {exc}; the run goes "
                                 "back to the queue")  # fmt: skip
                outcome = Outcome("interrupted", "outage", None, str(exc))
            else:
                logger.exception("task %s: run failed inside CrawlHub", self.a.task_id)
                outcome = Outcome("failed", "error", None, f"{type(exc).__name__}: {exc}")
                self.logs.system(f"CrawlHub could not run the spider: {outcome.error_message}")
        duration = time.monotonic() - started
        stats = self._stats()
        if self.a.kind == "scrapy" and stats is not None:
            hint = zero_pages_hint(stats)
            if hint:
                self.logs.system(hint)
        # Kept before anything else is tried: an outage never turns it into a retry.
        entry = Entry(self.a.ref, outcome, stats)
        self.recorder.ledger.write(entry)
        try:
            self._finish(entry, duration, self.settings.record_patience_s)
        except ServiceUnavailable:
            self.recorder.adopt(entry, lambda: self._finish(entry, duration, 0, adopted=True))
            return Ended("recording", False)
        self.recorder.ledger.remove(entry)
        return Ended(entry.recorded_as, outcome.retryable)

    def _finish(self, entry: Entry, duration: float, patience_s: float, *,
                adopted: bool = False) -> None:  # fmt: skip
        """Store the last items and log lines and record the outcome (in `entry.status`),
        trying for `patience_s` while an outage blocks it; then ServiceUnavailable. A run
        the recorder `adopted` (its message is gone) is sent again when it is to run again."""
        task_id, outcome = self.a.task_id, entry.outcome
        if not entry.flushed:
            outages.patiently(self.items.flush, "storing the last items", task_id, patience_s)
            if not self._summarized:
                self._summarized = True
                self.logs.system(
                    f"{outcome.status} after {duration:.2f} s: {self.items.count} items, "
                    f"{self.items.duplicates} duplicates, {self.items.invalid} invalid, "
                    f"{self.logs.produced} log lines"
                )
            outages.patiently(self.logs.flush, "storing the last log lines", task_id, patience_s)
            entry.items, entry.flushed = self.items.count, True
            self.recorder.ledger.write(entry)
        if outcome.status == FENCED:
            status, alert_id = FENCED, None
        else:
            status, alert_id = outages.patiently(
                lambda: record(self.context, self.a.ref, outcome, entry.stats, entry.items),
                "recording the outcome", task_id, patience_s,
            )  # fmt: skip
        entry.recorded_as = status
        if adopted:
            send_again(self.context, task_id, status)
        metrics.RUNS.labels(status).inc()
        metrics.RUN_SECONDS.observe(duration)
        metrics.ITEMS.inc(self.items.count)
        metrics.DUPLICATES.inc(self.items.duplicates)
        if status == "retrying":
            self.logs.system(f"attempt {self.a.attempt} failed; the run will be retried")
            self._flush_quietly()
        if status == FENCED:
            logger.warning("task %s: attempt %d (fence %d) lost its task to another attempt "
                           "(reaped or claimed again): its spider is stopped and nothing it did "
                           "after that was kept", self.a.task_id, self.a.attempt,
                           self.a.fence)  # fmt: skip
        else:  # the live stream belongs to the attempt that owns the task now
            try:
                self.live.finish(str(self.a.task_id))
            except Exception as exc:  # Redis down: readers fall back on the database
                logger.warning("task %s: could not end its live log: %s", self.a.task_id, exc)
        alerts.notify_channels(self.context, alert_id)
        logger.info(
            "task %s attempt %d %s (reason %s, exit %s) in %.2f s, %d items",
            self.a.task_id, self.a.attempt, status, outcome.reason, outcome.exit_code, duration,
            self.items.count,
        )  # fmt: skip

    def _run(self) -> Outcome:
        self.work = self._prepare()
        try:
            self.runtime = self._runtime()
        except BuildFailed as exc:
            self.logs.system(f"the project's environment cannot be built: {exc.message}")
            return Outcome("failed", "environment", None, exc.message)
        proc, outputs, how = self._start(self._command())
        assert self.slot is not None
        who = f" as uid {self.slot.uid}" if self.slot.uid is not None else ""
        self.logs.system(
            f"attempt {self.a.attempt}: {self.a.kind} spider {self.a.spider_name} "
            f"version {self.a.version} ({self.a.entry}){who}, {how}"
        )
        self.logs.system(f"limits: {self.limits.describe()}")
        pipes = {os.fstat(output.fileno()).st_ino for output in outputs}
        readers = self._start_readers(*outputs)
        try:
            outcome = self._supervise(proc)
            self._drain(readers, pipes)
        finally:
            proc.close()
        return outcome

    def _start(self, command: list[str]) -> tuple["Process", list[IO[bytes]], str]:
        """Start the spider: forked from its environment's warm launcher when it can be,
        else in an interpreter of its own, in its slot's sandbox either way. Returns the
        process, its stdout, stderr and item pipes, and how it started."""
        assert self.runtime is not None and self.work is not None and self.slot is not None
        runtime, work, taken = self.runtime, self.work, self.slot
        cgroup = f"run-{self.a.task_id}-{self.a.fence}"
        how = "cold start"
        if launchers.POOL.take_loss(str(self.a.task_id)):
            how = "cold start (no warm start: its launcher died under its last attempt)"
        elif self.settings.warm_start:
            key, start = sandboxes.launcher(self.settings, runtime, self.a.kind, taken)
            try:
                return *self._spawn(lambda fds: launchers.launch(
                    key, start, command[3:], self._environment(launchers.ITEMS_FD), str(work),
                    fds, cgroup, self.limits,
                ), taken), "warm start"  # fmt: skip
            except launchers.Unavailable as exc:
                how = f"cold start (no warm start: {exc})"
        view = sandboxes.view(self.settings, runtime, taken, work, self.limits)
        isolation = sandboxes.isolation_of(self.settings)

        def cold(fds: tuple[int, int, int]) -> spawn.Sandboxed:
            spec = spawn.Spec(command, self._environment(fds[2]), view, self.limits, cgroup)
            return spawn.start(isolation, taken, spec, stdout=fds[0], stderr=fds[1],
                               pass_fds=(fds[2],))  # fmt: skip

        return *self._spawn(cold, taken), how

    @staticmethod
    def _spawn(
        start: Callable[[tuple[int, int, int]], "Process"], taken: Slot
    ) -> tuple["Process", list[IO[bytes]]]:
        """Start a process on three new pipes (stdout, stderr, items), given their write
        ends, which are then its alone (and its user's, so that it may open them again as
        /dev/fd/N); returns it and the read ends (closed when it did not start)."""
        pipes = [os.pipe() for _ in range(3)]
        try:
            for _, write in pipes:
                taken.hand_over_pipe(write)
            proc = start((pipes[0][1], pipes[1][1], pipes[2][1]))
        except BaseException:
            for read, _ in pipes:
                os.close(read)
            raise
        finally:
            for _, write in pipes:
                os.close(write)
        return proc, [os.fdopen(read, "rb") for read, _ in pipes]

    def _drain(self, readers: list[threading.Thread], pipes: set[int]) -> None:
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
                self._status(beat=True)
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

    def _prepare(self) -> Path:
        """The run's work dir in its slot: a copy of the version, given to the slot's user."""
        assert self.slot is not None
        limits = archives.Limits.of(self.settings)
        module = archives.module_path(self.a.entry) if self.a.kind == "python" else "main.py"
        source = workdirs.extracted_version(
            self.settings.data_dir, self.a.sha256, self._archive, self.a.filename, module, limits
        )
        # Named by the fence, unique per claim: a fenced-out attempt that cleans up late never
        # removes the directory of the attempt that owns the task now.
        work = workdirs.fresh_workdir(source, self.slot.root / f"{self.a.task_id}-{self.a.fence}")
        self.slot.hand_over(work)
        self.work_fd = os.open(work, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return work

    def _archive(self) -> bytes:
        """The version's package (read only when this machine has not extracted it yet)."""
        with self.db.read() as session:
            version = project_repo.version_by_id(session, self.a.version_id)
        if version is None:
            raise NotFound(f"version {self.a.version} of spider {self.a.spider_name} is gone")
        if not version.archive:
            raise NotFound(f"the package of version {self.a.version} was dropped by retention "
                           "(CRAWLHUB_KEEP_VERSIONS); deploy it again to run it")  # fmt: skip
        return version.archive

    def _runtime(self) -> Runtime:
        """The platform's environment, or the project's (built now when this machine has
        not got it yet, its build log going into the run's log)."""
        assert self.slot is not None
        if not self.a.requirements:
            return environments.platform_runtime(self.settings)
        ready = environments.built(self.settings, self.a.requirements, self.a.kind)
        if ready is not None:  # the usual case: no thread, no lock
            return ready
        built: list[Runtime | BaseException] = []
        taken = self.slot

        def build() -> None:
            try:
                built.append(environments.ensure(
                    self.settings, self.a.requirements or "", self.a.kind, self.logs.system,
                    sandboxes.builder(self.settings, taken),
                )[1])  # fmt: skip
            except BaseException as exc:  # handed to the run's thread
                built.append(exc)

        # A build (or waiting for another worker's) may take minutes: the task keeps its
        # lease and the build log shows live meanwhile. A cancel is acted on once it ends.
        builder = threading.Thread(target=build, name="env-build", daemon=True)
        builder.start()
        while builder.is_alive():
            builder.join(self.settings.heartbeat_s)
            if builder.is_alive():
                self._status(beat=True)
                self._flush_quietly()
        if isinstance(built[0], BaseException):
            raise built[0]
        return built[0]

    def _command(self) -> list[str]:
        assert self.runtime is not None
        base = [self.runtime.python, "-m", "crawlhub.child.bootstrap", self.a.kind, self.a.entry]
        if self.a.kind == "python":
            return base
        for key, value in self.a.params.items():
            base += ["-a", f"{key}={_text(value)}"]
        for name, value in self.a.settings.items():
            base += ["-s", f"{name}={_text(value)}"]
        return base

    def _environment(self, items_fd: int) -> dict[str, str]:
        assert self.work is not None and self.runtime is not None and self.slot is not None
        env = sandboxes.base_env(self.settings, self.runtime, self.slot, self.work)
        runtime_paths = {name: env[name] for name in self.runtime.variables()}
        env.update(self.a.env)
        env.update(
            {
                "CRAWLHUB_TASK_ID": str(self.a.task_id),
                "CRAWLHUB_SPIDER": self.a.spider_name,
                "CRAWLHUB_ATTEMPT": str(self.a.attempt),
                "CRAWLHUB_PARAMS": json.dumps(self.a.params),
                "CRAWLHUB_ITEMS_FD": str(items_fd),
                "CRAWLHUB_STATS_PATH": str(self.work / STATS_FILE),
            }
        )
        for name, value in runtime_paths.items():  # before the spider's own
            env[name] = f"{value}:{self.a.env[name]}" if self.a.env.get(name) else value
        return env

    def _start_readers(
        self, stdout: IO[bytes], stderr: IO[bytes], items: IO[bytes]
    ) -> list[threading.Thread]:
        line_cap, item_cap = self.settings.max_log_line_bytes, self.settings.max_item_bytes

        def pump_log(stream: str, pipe: IO[bytes]) -> None:
            with pipe:
                for raw, dropped in read_lines(pipe, line_cap):
                    self.logs.line(stream, raw, dropped)

        def pump_items() -> None:
            with items:
                for raw, dropped in read_lines(items, item_cap):
                    self.items.line(raw, dropped)

        threads = [
            threading.Thread(target=self._guard(pump_log), args=("stdout", stdout)),
            threading.Thread(target=self._guard(pump_log), args=("stderr", stderr)),
            threading.Thread(target=self._guard(pump_items)),
        ]
        for thread in threads:
            thread.daemon = True
            thread.start()
        return threads

    def _guard(self, target: Any) -> Any:
        def guarded(*args: Any) -> None:
            try:
                target(*args)
            except Exception:
                logger.exception("task %s: output reader failed", self.a.task_id)

        return guarded

    def _supervise(self, proc: "Process") -> Outcome:
        started = time.monotonic()
        deadline = started + self.a.timeout_s
        shutdown_deadline: float | None = None
        next_status = started + STATUS_EVERY_S
        next_beat = started + self.settings.heartbeat_s
        while True:
            # Waiting first: a run shorter than a tick is flushed once, when it has ended.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=TICK_S)  # returns as soon as the spider exits
            code = proc.poll()
            if code is not None:
                break
            now = time.monotonic()
            self._flush_quietly()
            if self.context.stopping.is_set():
                if shutdown_deadline is None:
                    shutdown_deadline = now + self.settings.shutdown_grace_s
                    self.logs.system("worker is shutting down: waiting for the spider to finish")
                elif now >= shutdown_deadline:
                    self.logs.system(
                        "worker is shutting down: stopping the spider; the run starts again "
                        "on another worker"
                    )
                    self._stop(proc, min(self.settings.kill_grace_s, SHUTDOWN_KILL_GRACE_S))
                    return Outcome("interrupted", "shutdown", proc.returncode)
            if now >= deadline:
                self.logs.system(f"timeout after {self.a.timeout_s} s: stopping the spider")
                self._stop(proc, self.settings.kill_grace_s)
                return Outcome("failed", "timeout", proc.returncode,
                               f"timed out after {self.a.timeout_s} s")  # fmt: skip
            if now >= next_status:
                next_status = now + STATUS_EVERY_S
                status = self._status(beat=now >= next_beat)
                if now >= next_beat:
                    next_beat = now + self.settings.heartbeat_s
                if status == FENCED:
                    break
                if status != "running":
                    self.logs.system(f"task is {status}: stopping the spider")
                    self._stop(proc, CANCEL_GRACE_S)
                    return Outcome("cancelled", "user", proc.returncode)
            if self.logs.fenced or self.items.fenced:
                break
            over = self._over_disk(now)
            if over is not None:
                self._stop(proc, 0)
                return over
        proc.kill_tree()  # what the spider started and left behind, or all of it when fenced
        if code is None:  # fenced out: another attempt owns the task, this one just stops
            proc.wait()
            return Outcome(FENCED, FENCED, proc.returncode)
        if isinstance(proc, launchers.Launched) and proc.lost:
            # CrawlHub's failure, not the spider's: it starts again, cold, and counts no retry.
            self.logs.system("the warm launcher this run was started from died, and the spider "
                             "with it: the run starts again (no retry counted)")  # fmt: skip
            launchers.POOL.lost_under(str(self.a.task_id))
            return Outcome("interrupted", "launcher", code, "its warm launcher died")
        over = self._over_limit(proc, code)
        if over is not None:
            return over
        if code == 0:
            return Outcome("completed", None, 0)
        tail = "\n".join(self.logs.stderr_tail)[-ERROR_MESSAGE_CHARS:]
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        self.logs.system(f"spider failed: {how}")
        return Outcome("failed", "exit_code", code, f"{how}\n{tail}".strip())

    def _over_limit(self, proc: "Process", code: int) -> Outcome | None:
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
        elif code != 0 and self.slot is not None:
            over = run_limits.usage([self.slot.root], self.limits).over(self.limits)
        if over is None:
            return None
        return self._limit_failure(over[0], over[1], code)

    def _over_disk(self, now: float) -> Outcome | None:
        """Measure the work dir now and then: the outcome of a run over its disk or file
        limit (its spider is stopped), else None."""
        if now < self._next_disk_check or self.slot is None:
            return None
        began = time.monotonic()
        over = run_limits.usage([self.slot.root], self.limits).over(self.limits)
        # Never more than a tenth of the time on measuring, however many files it holds.
        self._next_disk_check = now + max(DISK_EVERY_S, 10 * (time.monotonic() - began))
        return None if over is None else self._limit_failure(*over, None)

    def _limit_failure(self, name: str, what: str, code: int | None) -> Outcome:
        reason, words = run_limits.REASONS[name]
        value = getattr(self.limits, name)
        unit = " MB" if name.endswith("_mb") else ""
        message = f"over its {words} limit of {value}{unit}: {what}"
        self.logs.system(f"spider failed: {message}")
        return Outcome("failed", reason, code, message)

    def _status(self, *, beat: bool) -> str | None:
        try:
            with self.db.session() as session:
                return task_repo.heartbeat(session, self.a.task_id, self.a.fence, beat=beat)
        except Exception as exc:  # the database restarting must not kill the run
            logger.warning("task %s: status check failed: %s", self.a.task_id, exc)
            return "running"

    def _flush_quietly(self) -> None:
        try:
            self.logs.flush()
            now = time.monotonic()
            if now >= self._next_items_flush:  # a few large batches: a commit each
                self._next_items_flush = now + ITEMS_EVERY_S
                self.items.flush()
        except Exception as exc:
            logger.warning("task %s: flush failed, will retry: %s", self.a.task_id, exc)

    def _stop(self, proc: "Process", grace: float) -> None:
        """SIGTERM to the spider's process group, SIGKILL after the grace period to every
        process of its tree, in its group or not."""
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            if grace:
                self.logs.system(f"still running {grace:g} s after SIGTERM: SIGKILL")
        proc.kill_tree()
        proc.wait()

    def _stats(self) -> dict[str, Any] | None:
        """Scrapy's final stats, as the stats extension left them in the work dir: opened
        relative to the work dir as it was made, a regular file of the slot's user with no
        other name, never through a link or a FIFO, at most MAX_STATS_BYTES."""
        if self.work_fd is None:
            return None
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(STATS_FILE, flags, dir_fd=self.work_fd)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(fd)
            owner = self.slot.uid if self.slot is not None and self.slot.uid is not None \
                else os.geteuid()  # fmt: skip
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != owner \
                    or info.st_size > MAX_STATS_BYTES:  # fmt: skip
                self.logs.system("the crawl's stats file is not a plain file of the run's: "
                                 "ignored")  # fmt: skip
                return None
            data = file.read(MAX_STATS_BYTES + 1)
        try:
            stats = json.loads(data)
        except ValueError:
            return None
        return stats if isinstance(stats, dict) and len(data) <= MAX_STATS_BYTES else None


def _text(value: Any) -> str:
    """A spider argument or setting on Scrapy's command line: strings as they are, else JSON."""
    return value if isinstance(value, str) else json.dumps(value)


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


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, sig)
