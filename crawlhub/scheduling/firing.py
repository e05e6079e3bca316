"""The ticker's fire step: claim due schedules, record their fires as tasks, advance them.

One short transaction claims the due schedules with FOR UPDATE SKIP LOCKED, so any number of
tickers can run at once; the new runs' messages are sent only after the commit.
"""

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from crawlhub import metrics
from crawlhub.alerting import alerts
from crawlhub.context import Context
from crawlhub.registry import projects
from crawlhub.repo import schedules as repo
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.db import Session, db_now
from crawlhub.repo.models import Schedule, Spider
from crawlhub.scheduling.cron import Cron
from crawlhub.services import dispatch

logger = logging.getLogger(__name__)

FIRE_BATCH = 100  # schedules claimed per fire transaction
CATCHUP_LIMIT = 100  # most recent missed fires considered (run with `all`, recorded otherwise)
ON_TIME_S = 60  # with catchup `none`, a fire at most this late still runs (no starting deadline)
BACKLOG_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=32),
                   timedelta(days=366), timedelta(days=5 * 366))  # fmt: skip


@lru_cache(maxsize=100_000)
def cron_of(expr: str, timezone: str, schedule_id: uuid.UUID) -> Cron:
    """A schedule's parsed cron (validated when the schedule was saved), cached."""
    return Cron(expr, timezone, hash_id=str(schedule_id))


@dataclass
class Fires:
    """What one due schedule does this round."""

    run: list[datetime]
    missed: list[datetime]
    overlap: list[datetime]


def recent_fires(cron: Cron, first: datetime, now: datetime, n: int) -> list[datetime]:
    """The last n fires in [first, now], ascending (first is a due fire)."""
    head = [first, *cron.fires_between(first, now, n)]
    if len(head) <= n:
        return head
    for window in BACKLOG_WINDOWS:  # a long backlog: look back from now until n fires are found
        start = max(first, now - window)
        fires = cron.fires_between(start - timedelta(microseconds=1), now, 10**6)
        if len(fires) >= n or start == first:
            return fires[-n:]
    return head[-n:]


def plan(schedule: Schedule, fires: list[datetime], now: datetime, has_active: bool) -> Fires:
    """Apply the catch-up, starting-deadline and overlap policies to a schedule's due fires."""
    deadline = schedule.starting_deadline_s
    candidates: list[datetime]
    missed: list[datetime]
    if schedule.catchup == "all":
        candidates, missed = fires, []
    elif schedule.catchup == "none":
        on_time = (now - fires[-1]).total_seconds() <= (deadline or ON_TIME_S)
        candidates, missed = (fires[-1:], fires[:-1]) if on_time else ([], fires)
    else:  # latest
        candidates, missed = fires[-1:], fires[:-1]
    run: list[datetime] = []
    for fire in candidates:
        if deadline is not None and (now - fire).total_seconds() > deadline:
            missed.append(fire)
        else:
            run.append(fire)
    if has_active and schedule.overlap == "forbid" and run:
        return Fires([], sorted(missed), run)
    return Fires(run, sorted(missed), [])


def fire(context: Context, now: datetime | None = None) -> bool:
    """Claim due schedules, record their fires as tasks and advance them; True when busy.

    `now` is the database clock; tests pass a time to replay downtime deterministically.
    """
    new_alerts: list[uuid.UUID | None] = []
    with context.db.session() as session:
        now = now or db_now(session)
        due = repo.claim_due(session, now, FIRE_BATCH)
        spiders: dict[uuid.UUID, Spider] = {}
        for schedule in due:
            if schedule.spider_id not in spiders:
                spiders[schedule.spider_id] = repo.spider_of(session, schedule)
            spider = spiders[schedule.spider_id]
            decided = _fire_one(session, schedule, spider, now)
            skipped = len(decided.missed) + len(decided.overlap)
            if skipped:
                new_alerts.append(alerts.raise_alert(
                    session, context, "schedule_skipped", "info",
                    f"{spider.name}: schedule {schedule.id} skipped {skipped} fire(s) "
                    f"({len(decided.missed)} missed, {len(decided.overlap)} overlapping)",
                    spider_id=spider.id,
                ))  # fmt: skip
    if due:
        dispatch.dispatch(context)
    for alert_id in new_alerts:
        alerts.notify_channels(context, alert_id)
    return len(due) == FIRE_BATCH


def _fire_one(session: Session, schedule: Schedule, spider: Spider, now: datetime) -> Fires:
    cron = cron_of(schedule.cron, schedule.timezone, schedule.id)
    assert schedule.next_fire_at is not None
    fires = recent_fires(cron, schedule.next_fire_at, now, CATCHUP_LIMIT)
    repo.advance(session, schedule, next_fire_at=cron.next_after(now), last_fire_at=fires[-1])
    if not spider.enabled:
        logger.info("schedule %s: spider %s is disabled; fire at %s not run", schedule.id,
                    spider.name, fires[-1].isoformat())  # fmt: skip
        return Fires([], [], [])
    # Overlap only matters to forbid and replace; allow skips the query.
    active = repo.active_tasks(session, schedule.id) if schedule.overlap != "allow" else []
    decided = plan(schedule, fires, now, bool(active))
    base = {"spider_id": spider.id, "version": spider.current_version, "schedule_id": schedule.id,
            "trigger": "schedule", "params": {**(spider.params or {}), **(schedule.params or {})},
            "settings": dict(schedule.settings or {}),
            "requires": schedule.requires if schedule.requires is not None else spider.requires,
            "max_retries": spider.max_retries}  # fmt: skip
    for when, reason in [
        *((f, "missed") for f in decided.missed),
        *((f, "overlap") for f in decided.overlap),
    ]:
        repo.insert_fire(session, {**base, "scheduled_for": when, "status": "skipped",
                                   "reason": reason, "finished_at": now})  # fmt: skip
    refused = projects.refusal(session, spider) if decided.run else None
    if refused is not None:
        for when in decided.run:
            repo.insert_fire(session, {**base, "scheduled_for": when, "status": "skipped",
                                       "reason": "error", "finished_at": now,
                                       "error_message": refused})  # fmt: skip
        return decided
    if decided.run and active and schedule.overlap == "replace":
        for task in active:
            task_repo.cancel_task(session, task.id, reason="overlap")
    for when in decided.run:
        # Held for the dispatcher; a jittered fire is due its jitter later (the ticker's
        # sweep dispatches it then, within its period).
        jitter = _jitter_ms(schedule, when)
        due = {"due_at": now + timedelta(milliseconds=jitter)} if jitter else {}
        task_id = repo.insert_fire(session, {**base, "scheduled_for": when, "status": "pending",
                                             **due})  # fmt: skip
        if task_id is not None:
            metrics.LATENESS.observe(max((now - when).total_seconds(), 0.0))
    logger.info("schedule %s fired: %d run, %d missed, %d overlap; next at %s", schedule.id,
                len(decided.run), len(decided.missed), len(decided.overlap),
                schedule.next_fire_at.isoformat())  # fmt: skip
    return decided


def _jitter_ms(schedule: Schedule, when: datetime) -> int:
    """A stable delay in [0, jitter_s) for one fire, so every ticker computes the same one."""
    if schedule.jitter_s <= 0:
        return 0
    digest = hashlib.sha256(f"{schedule.id}:{when.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (schedule.jitter_s * 1000)


def seconds_until_due(context: Context) -> float | None:
    """Seconds until the earliest enabled schedule is due (by the database clock)."""
    with context.db.read() as session:
        earliest = repo.earliest_fire(session)
        if earliest is None:
            return None
        return (earliest - db_now(session)).total_seconds()
