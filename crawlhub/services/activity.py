"""What runs have been doing, for the dashboard: health, what needs attention, what runs now,
what fires next, runs per hour by outcome, and each spider's recent record."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from crawlhub.context import Context
from crawlhub.messaging import queues
from crawlhub.messaging.keys import RUNS_QUEUE
from crawlhub.repo import reports, rollup
from crawlhub.repo import workers as worker_repo
from crawlhub.repo.db import db_now
from crawlhub.repo.models import Schedule, Spider, Task, WorkerProcess
from crawlhub.services import runs

DAY = timedelta(hours=24)
WEEK = timedelta(days=7)
STALLED_AFTER = timedelta(minutes=10)  # a running spider silent this long needs a look
ATTENTION_LIMIT = 10  # rows per kind of problem
OUTCOMES = ("completed", "failed", "cancelled", "skipped", "active")  # chart series


@dataclass
class Health:
    """The strip at the top of the overview."""

    workers: int
    ready: int
    delayed: int
    dead: int
    running: int
    failed_24h: int
    finished_24h: int
    success_rate_24h: float | None
    items_24h: int


@dataclass
class Attention:
    """One thing an operator should look at."""

    kind: str  # failed | dead_letter | zero_items | stalled | missed
    spider: str | None
    task_id: uuid.UUID | None
    at: datetime | None
    detail: str


@dataclass
class Fire:
    """A schedule's next fire, in UTC and in its own zone."""

    schedule: Schedule
    spider: str
    local: datetime


@dataclass
class Hour:
    """Runs created in one hour, by outcome."""

    start: datetime
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Overview:
    """Everything the overview page shows."""

    now: datetime
    health: Health
    attention: list[Attention]
    running: list[tuple[Task, str]]
    fires: list[Fire]
    day: list[Hour]
    week: list[Hour]


def overview(context: Context, *, running_limit: int = 50, fires_limit: int = 10) -> Overview:
    """The overview, read in one transaction plus one look at the broker."""
    counts = queues.overview(context.broker)
    dead, _ = runs.dead_letters(context, RUNS_QUEUE, ATTENTION_LIMIT)
    with context.db.read() as session:
        now = db_now(session)
        workers = worker_repo.online(session, context.settings.heartbeat_s)
        # Runs by the hour of their creation: the finished ones from the rollup kept as runs
        # end, the few not over from `task`. "24 h" is the day chart's 24 hours.
        hourly = rollup.by_hour(session, now - WEEK)
        running = reports.running(session, running_limit)
        fires = reports.next_fires(session, fires_limit)
        problems = [
            *_attention(
                reports.recent(session, now - DAY, ATTENTION_LIMIT, status="failed"), "failed"
            ),
            *_attention(
                reports.recent(session, now - DAY, ATTENTION_LIMIT, status="completed", items=0),
                "zero_items",
            ),
            *_attention(
                reports.recent(
                    session, now - DAY, ATTENTION_LIMIT, status="skipped", reason="missed"
                ),
                "missed",
            ),
        ]
        last_output = reports.last_output_at(session, [task.id for task, _ in running])
    day_start = rollup.hour_of(now) - DAY + timedelta(hours=1)
    by_status: dict[str, int] = {}
    items = 0
    for hour, status, runs_n, items_n in hourly:
        if hour >= day_start:
            by_status[status] = by_status.get(status, 0) + runs_n
            items += items_n
    finished = sum(by_status.get(s, 0) for s in ("completed", "failed", "cancelled"))
    health = Health(
        workers=len(workers),
        ready=sum(q.ready for q in counts),
        delayed=sum(q.delayed for q in counts),
        dead=sum(q.dead_lettered for q in counts),
        running=len(running),
        failed_24h=by_status.get("failed", 0),
        finished_24h=finished,
        success_rate_24h=by_status.get("completed", 0) / finished if finished else None,
        items_24h=items,
    )
    for task, spider in running:
        since = last_output.get(task.id) or task.started_at
        if since is not None and now - since > STALLED_AFTER:
            problems.append(
                Attention("stalled", spider, task.id, since, "no log output since then")
            )
    problems += [
        Attention(
            "dead_letter",
            d.spider,
            d.task_id,
            d.message.dead_at,
            d.error or f"{d.message.actor} message",
        )
        for d in dead
    ]
    return Overview(
        now=now,
        health=health,
        attention=problems,
        running=running,
        fires=[
            Fire(s, name, s.next_fire_at.astimezone(ZoneInfo(s.timezone)))
            for s, name in fires
            if s.next_fire_at is not None
        ],
        day=_hours(hourly, now, DAY),
        week=_hours(hourly, now, WEEK),
    )


def running_now(context: Context, limit: int = 50) -> tuple[datetime, list[tuple[Task, str]]]:
    """The database clock and the running tasks with their spiders' names."""
    with context.db.read() as session:
        return db_now(session), reports.running(session, limit)


def _attention(rows: list[tuple[Task, str]], kind: str) -> list[Attention]:
    found = []
    for task, spider in rows:
        # An error message ends with the stderr tail, whose last line is usually the exception.
        lines = (task.error_message or task.reason or kind).strip().splitlines()
        when = task.finished_at or task.created_at
        found.append(Attention(kind, spider, task.id, when, lines[-1] if lines else kind))
    return found


def _hours(
    hourly: list[tuple[datetime, str, int, int]], now: datetime, span: timedelta
) -> list[Hour]:
    """Hourly buckets covering `span` up to now, oldest first, with every outcome counted."""
    last = now.replace(minute=0, second=0, microsecond=0)
    count = int(span / timedelta(hours=1))
    buckets = {last - timedelta(hours=i): Hour(last - timedelta(hours=i)) for i in range(count)}
    for start, status, n, _ in hourly:
        bucket = buckets.get(start)
        if bucket is not None:
            outcome = status if status in OUTCOMES else "active"
            bucket.counts[outcome] = bucket.counts.get(outcome, 0) + n
    return [buckets[key] for key in sorted(buckets)]


@dataclass
class SpiderRecord:
    """A spider with its last run, next fire and recent success rate."""

    spider: Spider
    last_run: Task | None
    next_fire: datetime | None
    success_rate: float | None


def spider_records(context: Context, spiders: list[Spider]) -> list[SpiderRecord]:
    """The record of each spider of a page."""
    ids = [s.id for s in spiders]
    with context.db.read() as session:
        last = reports.last_runs(session, ids)
        fires = reports.spider_next_fires(session, ids)
        rates = reports.success_rates(session, ids)
    return [SpiderRecord(s, last.get(s.id), fires.get(s.id), rates.get(s.id)) for s in spiders]


def spider_history(context: Context, spider_id: uuid.UUID, limit: int = 30) -> list[Task]:
    """A spider's last finished runs, oldest first (items and duration per run)."""
    with context.db.read() as session:
        return list(reports.spider_history(session, spider_id, limit))


def workers_online(context: Context) -> list[WorkerProcess]:
    """The worker processes heartbeating their registration (a ticker or a web process never
    counts), oldest first."""
    with context.db.read() as session:
        return list(worker_repo.online(session, context.settings.heartbeat_s))
