"""The ticker against real PostgreSQL: exactly-once fires, catch-up, overlap, sweep, reap."""

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crawlhub.context import Context
from crawlhub.housekeeping import steps as housekeeping
from crawlhub.repo import workers as worker_repo
from crawlhub.repo.models import ProjectVersion, Schedule, Spider, Task
from crawlhub.scheduling import firing
from tests.conftest import make_settings

T0 = datetime(2026, 6, 1, 13, 20, tzinfo=UTC)  # "now" after the downtime
HOUR = timedelta(hours=1)


@pytest.fixture
def context(pg_url: str, tmp_path: Path) -> Iterator[Context]:
    ctx = Context.build(make_settings(tmp_path, database_url=pg_url))
    yield ctx
    ctx.close()


def add_spider(context: Context, *, version: bool = True, enabled: bool = True) -> uuid.UUID:
    with context.db.session() as session:
        spider = Spider.standalone(name=f"s{uuid.uuid4().hex[:8]}", kind="python", entry="main:run",
                        enabled=enabled, current_version=1 if version else None)  # fmt: skip
        session.add(spider)
        session.flush()
        if version:
            session.add(ProjectVersion(project_id=spider.project_id, number=1, archive=b"x", format="py",
                                      filename="main.py", sha256="0" * 64, size=1, files=1))  # fmt: skip
        return spider.id


def add_schedule(context: Context, spider_id: uuid.UUID, cron: str, next_fire_at: datetime,
                 **fields: Any) -> uuid.UUID:  # fmt: skip
    with context.db.session() as session:
        schedule = Schedule(spider_id=spider_id, cron=cron, next_fire_at=next_fire_at, **fields)
        session.add(schedule)
        session.flush()
        return schedule.id


def tasks_of(context: Context, schedule_id: uuid.UUID) -> list[Task]:
    with context.db.session() as session:
        return list(session.scalars(
            select(Task).where(Task.schedule_id == schedule_id).order_by(Task.scheduled_for)
        ))  # fmt: skip


def schedule_row(context: Context, schedule_id: uuid.UUID) -> Schedule:
    with context.db.session() as session:
        row = session.get(Schedule, schedule_id)
        assert row is not None
        return row


def by_status(rows: list[Task]) -> dict[str, list[datetime]]:
    out: dict[str, list[datetime]] = {}
    for row in rows:
        assert row.scheduled_for is not None
        out.setdefault(f"{row.status}/{row.reason}" if row.reason else row.status, []).append(
            row.scheduled_for
        )
    return out


def test_two_tickers_over_1000_due_fires_produce_exactly_1000_tasks(context: Context) -> None:
    spider_id = add_spider(context)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with context.db.session() as session:
        session.add_all(
            Schedule(spider_id=spider_id, cron="0 0 * * *", next_fire_at=midnight, overlap="allow")
            for _ in range(1000)
        )
    errors: list[BaseException] = []

    def ticker() -> None:
        try:
            while firing.fire(context):
                pass
            firing.fire(context)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ticker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with context.db.session() as session:
        total = session.scalar(select(func.count()).select_from(Task))
        per_schedule = session.execute(
            select(Task.schedule_id, func.count()).group_by(Task.schedule_id)
        ).all()
        next_fires = set(session.scalars(select(Schedule.next_fire_at)))
    assert total == 1000
    assert len(per_schedule) == 1000 and all(count == 1 for _, count in per_schedule)
    assert next_fires == {midnight + timedelta(days=1)}


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("latest", {"pending": [T0 - timedelta(minutes=20)],
                    "skipped/missed": [T0 - timedelta(hours=2, minutes=20), T0 - timedelta(hours=1, minutes=20)]}),
        ("all", {"pending": [T0 - timedelta(hours=2, minutes=20), T0 - timedelta(hours=1, minutes=20),
                             T0 - timedelta(minutes=20)]}),
        ("none", {"skipped/missed": [T0 - timedelta(hours=2, minutes=20), T0 - timedelta(hours=1, minutes=20),
                                     T0 - timedelta(minutes=20)]}),
    ],
)  # fmt: skip
def test_hourly_schedule_after_three_hours_down_follows_its_catchup_policy(
    context: Context, catchup: str, expected: dict[str, list[datetime]]
) -> None:
    spider_id = add_spider(context)
    schedule_id = add_schedule(context, spider_id, "0 * * * *", T0 - timedelta(hours=2, minutes=20),
                               catchup=catchup)  # fmt: skip
    firing.fire(context, now=T0)
    assert by_status(tasks_of(context, schedule_id)) == expected
    row = schedule_row(context, schedule_id)
    assert row.next_fire_at == T0 + timedelta(minutes=40)
    assert row.last_fire_at == T0 - timedelta(minutes=20)
    firing.fire(context, now=T0)  # nothing is due any more
    assert by_status(tasks_of(context, schedule_id)) == expected


def test_every_minute_schedule_after_a_day_down_stays_bounded(context: Context) -> None:
    spider_id = add_spider(context)
    schedule_id = add_schedule(context, spider_id, "* * * * *", T0 - timedelta(days=1))
    firing.fire(context, now=T0)
    rows = tasks_of(context, schedule_id)
    statuses = by_status(rows)
    assert statuses["pending"] == [T0]
    assert len(statuses["skipped/missed"]) == firing.CATCHUP_LIMIT - 1
    assert max(statuses["skipped/missed"]) == T0 - timedelta(minutes=1)
    assert schedule_row(context, schedule_id).next_fire_at == T0 + timedelta(minutes=1)


def test_starting_deadline_turns_a_late_fire_into_missed(context: Context) -> None:
    spider_id = add_spider(context)
    late = add_schedule(
        context, spider_id, "0 * * * *", T0 - timedelta(minutes=20), starting_deadline_s=600
    )
    ok = add_schedule(
        context, spider_id, "0 * * * *", T0 - timedelta(minutes=20), starting_deadline_s=3600
    )
    firing.fire(context, now=T0)
    assert by_status(tasks_of(context, late)) == {"skipped/missed": [T0 - timedelta(minutes=20)]}
    assert by_status(tasks_of(context, ok)) == {"pending": [T0 - timedelta(minutes=20)]}


def test_catchup_none_still_runs_a_fire_that_is_on_time(context: Context) -> None:
    spider_id = add_spider(context)
    schedule_id = add_schedule(
        context, spider_id, "0 * * * *", T0 - timedelta(minutes=20), catchup="none"
    )
    firing.fire(context, now=T0 - timedelta(minutes=20) + timedelta(seconds=2))
    assert by_status(tasks_of(context, schedule_id)) == {"pending": [T0 - timedelta(minutes=20)]}


@pytest.mark.parametrize("overlap", ["forbid", "replace", "allow"])
def test_overlap_policy_with_the_previous_run_still_running(context: Context, overlap: str) -> None:
    spider_id = add_spider(context)
    schedule_id = add_schedule(context, spider_id, "*/5 * * * *", T0, overlap=overlap)
    with context.db.session() as session:
        previous = Task(spider_id=spider_id, schedule_id=schedule_id, trigger="schedule",
                        scheduled_for=T0 - timedelta(minutes=5), status="running", started_at=T0)  # fmt: skip
        session.add(previous)
    firing.fire(context, now=T0 + timedelta(seconds=1))
    rows = {row.scheduled_for: row for row in tasks_of(context, schedule_id)}
    old, new = rows[T0 - timedelta(minutes=5)], rows[T0]
    if overlap == "forbid":
        assert (old.status, new.status, new.reason) == ("running", "skipped", "overlap")
    elif overlap == "replace":
        assert (old.status, old.reason, new.status) == ("cancelled", "overlap", "pending")
    else:
        assert (old.status, new.status) == ("running", "pending")


def test_restart_inside_the_repeated_hour_does_not_fire_again(context: Context) -> None:
    spider_id = add_spider(context)
    first_0130 = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT; 06:30Z is 01:30 EST
    schedule_id = add_schedule(
        context, spider_id, "30 1 * * *", first_0130, timezone="America/New_York"
    )
    firing.fire(context, now=first_0130 + timedelta(seconds=1))
    # The ticker restarts during the second 01:xx and runs again: nothing more is due.
    firing.fire(context, now=datetime(2026, 11, 1, 6, 31, tzinfo=UTC))
    assert [t.scheduled_for for t in tasks_of(context, schedule_id)] == [first_0130]
    assert schedule_row(context, schedule_id).next_fire_at == datetime(
        2026, 11, 2, 6, 30, tzinfo=UTC
    )


def test_fire_of_a_spider_without_a_version_is_recorded_and_a_disabled_spider_is_passed_over(
    context: Context,
) -> None:
    empty = add_schedule(
        context, add_spider(context, version=False), "0 * * * *", T0 - timedelta(minutes=20)
    )
    off = add_schedule(
        context, add_spider(context, enabled=False), "0 * * * *", T0 - timedelta(minutes=20)
    )
    firing.fire(context, now=T0)
    [row] = tasks_of(context, empty)
    assert (row.status, row.reason) == ("skipped", "error")
    assert row.error_message is not None and "has no version yet" in row.error_message
    assert tasks_of(context, off) == []
    assert schedule_row(context, off).next_fire_at == T0 + timedelta(minutes=40)


def test_paused_schedules_are_not_claimed(context: Context) -> None:
    spider_id = add_spider(context)
    paused = add_schedule(context, spider_id, "0 * * * *", T0 - HOUR, enabled=False)
    firing.fire(context, now=T0)
    assert tasks_of(context, paused) == []


def test_reap_fails_a_running_task_whose_worker_vanished(context: Context) -> None:
    spider_id = add_spider(context)
    now = datetime.now(UTC)
    with context.db.session() as session:
        stale = Task(
            spider_id=spider_id,
            trigger="manual",
            status="running",
            worker="gone:1:t",
            heartbeat_at=now - timedelta(minutes=5),
            started_at=now - timedelta(minutes=6),
        )
        fresh = Task(spider_id=spider_id, trigger="manual", status="running", worker="alive:1:t",
                     heartbeat_at=now, started_at=now)  # fmt: skip
        session.add_all([stale, fresh])
    housekeeping.reap(context)
    with context.db.session() as session:
        reaped, kept = session.get(Task, stale.id), session.get(Task, fresh.id)
        assert reaped is not None and kept is not None
        assert (reaped.status, reaped.reason) == ("failed", "lost")
        assert "gone:1:t" in (reaped.error_message or "")
        assert kept.status == "running"


def test_sweep_sends_runs_whose_enqueue_failed(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    spider_id = add_spider(context)
    schedule_id = add_schedule(context, spider_id, "0 * * * *", T0)
    with context.db.session() as session:  # a node that takes runs: the fire is sent to it
        worker_repo.register(session, "host:1", host="host", pid=1, version="t", threads=2,
                             labels=[], machine={})  # fmt: skip

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(context.broker, "enqueue", broker_down)
    firing.fire(context, now=T0 + timedelta(seconds=1))  # committed, but the send fails
    [task] = tasks_of(context, schedule_id)
    assert task.status == "pending" and task.message_id is None  # held again
    monkeypatch.undo()
    housekeeping.sweep(context)  # the sweep dispatches
    [task] = tasks_of(context, schedule_id)
    assert task.message_id is not None
    queued = context.broker.queues  # type: ignore[attr-defined]
    assert queued["crawlhub.runs"].qsize() == 1


def test_sweep_resends_a_retry_whose_message_never_came(context: Context) -> None:
    spider_id = add_spider(context)
    now = datetime.now(UTC)
    with context.db.session() as session:
        stuck = Task(
            spider_id=spider_id,
            trigger="manual",
            status="retrying",
            retry_count=1,
            max_retries=3,
            heartbeat_at=now - timedelta(days=2),
        )
        waiting = Task(spider_id=spider_id, trigger="manual", status="retrying", retry_count=1,
                       max_retries=3, heartbeat_at=now - timedelta(minutes=5))  # fmt: skip
        session.add_all([stuck, waiting])
    housekeeping.sweep(context)
    with context.db.session() as session:
        assert session.get(Task, stuck.id).message_id is not None  # type: ignore[union-attr]
        assert session.get(Task, waiting.id).message_id is None  # type: ignore[union-attr]
    assert context.broker.queues["crawlhub.runs"].qsize() == 1  # type: ignore[attr-defined]


def test_a_fire_carries_its_schedules_scrapy_settings_and_merged_params(context: Context) -> None:
    spider_id = add_spider(context)
    schedule_id = add_schedule(context, spider_id, "0 * * * *", T0 - timedelta(minutes=1),
                               params={"site": "a"}, settings={"DOWNLOAD_DELAY": 2})  # fmt: skip
    firing.fire(context, now=T0)
    [task] = tasks_of(context, schedule_id)
    assert (task.params, task.settings) == ({"site": "a"}, {"DOWNLOAD_DELAY": 2})
