"""Supervising one run attempt: it takes a slot, gets its spider started (`staging`), reads
its output (`output`), watches its timeout, cancel, limits and the worker's shutdown, and
ends it (`ending`)."""

import contextlib
import logging
import os
import signal
import subprocess
import time
import uuid

from crawlhub import outages
from crawlhub.context import Context
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.tasks import FENCED
from crawlhub.sandbox.limits import Limits
from crawlhub.worker import launchers, sandboxes
from crawlhub.worker.attempts import CLAIM_PATIENCE_S, Attempt, Ended, Outcome, claim
from crawlhub.worker.ending import Ending, LimitWatch, read_stats, zero_pages_hint
from crawlhub.worker.environments import BuildFailed
from crawlhub.worker.outcomes import Recorder
from crawlhub.worker.output import Output
from crawlhub.worker.staging import Process, Staging

logger = logging.getLogger(__name__)

TICK_S = 0.05  # supervisor loop period: live log flush (exit is noticed at once)
STATUS_EVERY_S = 0.5  # how often a running task's status is read (cancel detection)
CANCEL_GRACE_S = 2.0  # SIGTERM → SIGKILL delay on cancel: the group is gone within 3 s
ERROR_MESSAGE_CHARS = 4000
SHUTDOWN_KILL_GRACE_S = 3.0


def execute(context: Context, task_id: uuid.UUID, recorder: Recorder) -> Ended | None:
    """Run a task if it can be claimed; None when it could not (duplicate delivery, cancelled).
    ServiceUnavailable when the database stayed unreachable for the claim, Elsewhere when it
    needs labels this node lacks: nothing ran."""
    labels = frozenset(context.settings.labels)
    attempt = outages.patiently(lambda: claim(context.db, task_id, labels), "claim", task_id,
                                CLAIM_PATIENCE_S)  # fmt: skip
    if attempt is None:
        logger.info("task %s is not claimable; message acknowledged and ignored", task_id)
        return None
    return Run(context, attempt, recorder).run()


class Run:
    """One attempt of one task, from its slot to its recorded outcome."""

    def __init__(self, context: Context, attempt: Attempt, recorder: Recorder) -> None:
        self.context = context
        self.db = context.db
        self.settings = context.settings
        self.a = attempt
        self.recorder = recorder
        self.output = Output(context, attempt)
        self.logs, self.items = self.output.logs, self.output.items
        self.limits: Limits = sandboxes.limits_of(context.settings, attempt.limits)

    def run(self) -> Ended:
        """The attempt in a slot of this worker, which is emptied after it."""
        with sandboxes.slot(self.settings) as taken:
            staging = Staging(self.context, self.a, taken, self.limits, self.logs,
                              self._keep_lease)  # fmt: skip
            try:
                return self._attempt(staging, LimitWatch(taken, self.limits, self.logs))
            finally:
                staging.close()

    def _attempt(self, staging: Staging, watch: LimitWatch) -> Ended:
        started = time.monotonic()
        try:
            outcome = self._run(staging, watch)
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
        stats = read_stats(staging, self.logs)
        if self.a.kind == "scrapy" and stats is not None:
            hint = zero_pages_hint(stats)
            if hint:
                self.logs.system(hint)
        status = Ending(self.context, self.a, self.output, self.recorder).close(
            outcome, stats, duration)  # fmt: skip
        return Ended(status, outcome.retryable and status != "recording")

    def _run(self, staging: Staging, watch: LimitWatch) -> Outcome:
        staging.work = staging.prepare()
        try:
            staging.runtime = staging.prepare_runtime()
        except BuildFailed as exc:
            self.logs.system(f"the project's environment cannot be built: {exc.message}")
            return Outcome("failed", "environment", None, exc.message)
        proc, outputs, how = staging.start(staging.command())
        self.logs.pid = proc.pid  # stored with the line below: Scrapyd's clients show it
        who = f" as uid {staging.slot.uid}" if staging.slot.uid is not None else ""
        self.logs.system(
            f"attempt {self.a.attempt}: {self.a.kind} spider {self.a.spider_name} "
            f"version {self.a.version} ({self.a.entry}){who}, {how}"
        )
        self.logs.system(f"limits: {self.limits.describe()}")
        pipes = {os.fstat(output.fileno()).st_ino for output in outputs}
        readers = self.output.start_readers(*outputs)
        try:
            outcome = self._supervise(proc, watch)
            self.output.drain(readers, pipes, self._keep_lease)
        finally:
            proc.close()
        if outcome.reason == "exit_code":  # said once its last stderr lines are read
            self.logs.system(f"spider failed: {outcome.error_message}")
            tail = "\n".join(self.logs.stderr_tail)[-ERROR_MESSAGE_CHARS:]
            outcome.error_message = f"{outcome.error_message}\n{tail}".strip()
        return outcome

    def _supervise(self, proc: Process, watch: LimitWatch) -> Outcome:
        started = time.monotonic()
        deadline = started + self.a.timeout_s
        shutdown_deadline: float | None = None
        next_status = started + STATUS_EVERY_S
        next_beat = started + self.settings.heartbeat_s
        while True:
            # Waiting first: a run shorter than a tick is flushed once, when it has ended.
            with contextlib.suppress(subprocess.TimeoutExpired):
                # Returns as soon as the spider exits; no wait while items are ready to store.
                proc.wait(timeout=0 if self.output.busy() else TICK_S)
            code = proc.poll()
            if code is not None:
                break
            now = time.monotonic()
            self.output.flush_quietly()
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
            if self.output.fenced:
                break
            over = watch.over_disk(now)
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
        over = watch.over_limit(proc, code)
        if over is not None:
            return over
        if code == 0:
            return Outcome("completed", None, 0)
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return Outcome("failed", "exit_code", code, how)  # its stderr's tail added once read

    def _keep_lease(self) -> None:
        """Heartbeat and store what is buffered (while an environment builds, while the
        output is drained)."""
        self._status(beat=True)
        self.output.flush_quietly()

    def _status(self, *, beat: bool) -> str | None:
        try:
            with self.db.session() as session:
                return task_repo.heartbeat(session, self.a.task_id, self.a.fence, beat=beat)
        except Exception as exc:  # the database restarting must not kill the run
            logger.warning("task %s: status check failed: %s", self.a.task_id, exc)
            return "running"

    def _stop(self, proc: Process, grace: float) -> None:
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


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, sig)
