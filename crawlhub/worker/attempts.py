"""One attempt of a task: claiming it, what it needs to start, and recording how it ended."""

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from crawlhub.alerting import alerts
from crawlhub.context import Context
from crawlhub.errors import InvalidInput
from crawlhub.quality import rules as quality_rules
from crawlhub.quality.rules import QualityRules
from crawlhub.repo import items as item_repo
from crawlhub.repo import logs as log_repo
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.db import Database
from crawlhub.repo.statuses import FINISHED as FINAL
from crawlhub.worker import verdicts
from crawlhub.worker.verdicts import Checks

logger = logging.getLogger(__name__)

USAGE_EXIT = 2  # the bootstrap's "entry not found / bad input" exit: retrying cannot help


@dataclass
class Outcome:
    """How a run attempt ended."""

    status: str  # completed | failed | cancelled | interrupted (worker shutdown)
    reason: str | None
    exit_code: int | None
    error_message: str | None = None

    @property
    def retryable(self) -> bool:
        """Failures another attempt may fix: not a cancel, not a spider that cannot start."""
        return self.status == "failed" and not (
            (self.reason == "exit_code" and self.exit_code == USAGE_EXIT)
            or self.reason == "environment"  # a build that failed fails the same way again
        )


@dataclass
class Ended:
    """What an attempt left the task as, for the actor to decide on its message."""

    status: str  # completed | failed | retrying | cancelled (or whatever it was changed to)
    retryable: bool


@dataclass(frozen=True)
class RunRef:
    """Which attempt of which task, and what recording its outcome needs to know."""

    task_id: uuid.UUID
    fence: int
    attempt: int
    spider_id: uuid.UUID
    spider_name: str
    alert_on_zero_items: bool


@dataclass
class Attempt:
    """Everything needed to start one attempt, read in the claim transaction."""

    task_id: uuid.UUID
    spider_id: uuid.UUID
    spider_name: str
    kind: str
    entry: str
    params: dict[str, Any]
    settings: dict[str, Any]  # Scrapy's, for this run
    env: dict[str, str]
    timeout_s: int
    alert_on_zero_items: bool
    dedup_keys: list[str] | None
    attempt: int
    first_seq: int
    fence: int  # the task's fencing token this attempt claimed it with
    version: int
    sha256: str
    filename: str
    version_id: uuid.UUID  # its package is read only where it is not extracted yet
    requirements: str | None  # None: the platform's environment
    limits: dict[str, int]  # the spider's own, over the defaults
    rules: QualityRules | None = None  # its data quality rules (the spider's, or its version's)

    @property
    def ref(self) -> RunRef:
        return RunRef(self.task_id, self.fence, self.attempt, self.spider_id, self.spider_name,
                      self.alert_on_zero_items)  # fmt: skip


CLAIM_PATIENCE_S = 30.0  # then the message goes back to the queue (no retry counted)


def worker_name() -> str:
    """host:pid:thread, recorded on the task that this thread runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


class Elsewhere(Exception):
    """The task needs labels this node does not have: another node is to take it."""

    def __init__(self, labels: list[str]) -> None:
        super().__init__(f"the run needs labels {', '.join(labels)}")
        self.labels = labels


def claim(db: Database, task_id: uuid.UUID, labels: frozenset[str] = frozenset()) -> Attempt | None:
    """Compare-and-set the task to running and gather what the attempt needs; Elsewhere when
    it needs labels this node (`labels`) lacks."""
    with db.session() as session:
        run = task_repo.claim_run(session, task_id, worker_name())
        if run is None:
            return None
        if run["requires"] and not labels.issuperset(run["requires"]):
            raise Elsewhere(run["requires"])  # the claim is rolled back with the transaction
        if run["items_count"] or run["items_invalid"] or run["items_duplicate"]:
            # A task that ran before (a failed or interrupted attempt) starts clean:
            # that attempt's items go, its log lines stay.
            item_repo.delete_task_items(session, task_id)
            task_repo.reset_item_counts(session, task_id)
        return Attempt(
            task_id=task_id,
            spider_id=run["spider_id"],
            spider_name=run["name"],
            kind=run["kind"],
            entry=run["entry"],
            params=dict(run["params"] or {}),
            settings=dict(run["settings"] or {}),
            env=dict(run["env"] or {}),
            timeout_s=run["timeout_s"],
            alert_on_zero_items=run["alert_on_zero_items"],
            dedup_keys=list(run["dedup_keys"]) if run["dedup_keys"] else None,
            attempt=run["retry_count"] + 1,
            # Log lines are only ever written by attempts: none before the first claim.
            first_seq=log_repo.last_seq(session, task_id) + 1 if run["fence"] > 1 else 1,
            fence=run["fence"],
            version=run["version"],
            sha256=run["sha256"],
            filename=run["filename"],
            version_id=run["version_id"],
            requirements=run["requirements"],
            limits=dict(run["limits"] or {}),
            rules=rules_of(run["quality"], run["version_quality"], run["name"], run["entry"]),
        )


def rules_of(own: dict[str, Any] | None, shipped: dict[str, Any] | None, name: str,
             entry: str) -> QualityRules | None:  # fmt: skip
    """A spider's rules in force, parsed (rules stored invalid, by an older release, are
    ignored with a warning)."""
    found, _ = quality_rules.in_force(own, shipped, name, entry)
    if not found:
        return None
    try:
        return quality_rules.parse(found)
    except InvalidInput as exc:
        logger.warning("spider %s: its quality rules are ignored: %s", name, exc.message)
        return None


@dataclass(frozen=True)
class Recorded:
    """An attempt's end as recorded: the task's status and the new alerts to notify."""

    status: str
    alerts: list[uuid.UUID]


def record(
    context: Context,
    a: RunRef,
    outcome: Outcome,
    stats: dict[str, Any] | None,
    items: int,
    checks: Checks | None = None,
    progress: dict[str, Any] | None = None,
    *,
    session: Session | None = None,
) -> Recorded:
    """End the attempt and, in the same transaction, store its data quality (`checks`) and
    raise the alerts it calls for; FENCED (and nothing written) when the task belongs to
    another attempt now. In the caller's `session` when given (which stores the attempt's
    last output), adding `progress` (`add_progress`'s arguments) to the task with its end."""
    if session is None:
        with context.db.session() as own:
            return record(context, a, outcome, stats, items, checks, progress, session=own)
    status = task_repo.end_attempt(
        session, a.task_id, a.fence, status=outcome.status, reason=outcome.reason,
        exit_code=outcome.exit_code, error_message=outcome.error_message, stats=stats,
        retry=outcome.retryable, progress=progress,
    )  # fmt: skip
    quality_alert = None
    if checks is not None and status in FINAL:
        quality_alert = verdicts.conclude(
            session, context, a.task_id, a.spider_id, a.spider_name, status, items, stats,
            checks)  # fmt: skip
    alert_id = None
    if status == "failed":
        alert_id = alerts.raise_alert(
            session, context, "task_failed", "error", failure_message(a, outcome),
            spider_id=a.spider_id, task_id=a.task_id,
        )  # fmt: skip
    elif status == "completed" and a.alert_on_zero_items and items == 0:
        alert_id = alerts.raise_alert(
            session, context, "zero_items", "warning",
            f"{a.spider_name}: run {a.task_id} completed with no items",
            spider_id=a.spider_id, task_id=a.task_id,
        )  # fmt: skip
    raised = [found for found in (alert_id, quality_alert) if found is not None]
    return Recorded(status, raised)


def notify(context: Context, done: Recorded) -> None:
    """After the commit: hand the new alerts to the alert actor."""
    for alert_id in done.alerts:
        alerts.notify_channels(context, alert_id)


def failure_message(a: RunRef, outcome: Outcome) -> str:
    """An alert's words for a failed run: how it ended and the error it printed last
    (the last line of its stderr, e.g. the exception of a traceback)."""
    lines = [line.strip() for line in (outcome.error_message or "").splitlines() if line.strip()]
    how = lines[0] if lines else outcome.reason
    cause = f": {lines[-1][:300]}" if len(lines) > 1 else ""
    return f"{a.spider_name}: run {a.task_id} failed after {a.attempt} attempt(s) ({how}){cause}"
