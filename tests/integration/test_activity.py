"""What the dashboard counts, on both databases: health, attention, runs per hour, spiders."""

import uuid
from datetime import UTC, datetime, timedelta

from crawlhub.context import Context
from crawlhub.repo.models import LogLine, Schedule, Spider, Task
from crawlhub.services import activity


def add_spider(context: Context, name: str) -> uuid.UUID:
    with context.db.session() as session:
        spider = Spider.standalone(name=name, kind="python", entry="main:run", current_version=1)
        session.add(spider)
        session.flush()
        return spider.id


def add_task(context: Context, spider_id: uuid.UUID, status: str, created: datetime,
             **fields: object) -> uuid.UUID:  # fmt: skip
    with context.db.session() as session:
        task = Task(spider_id=spider_id, trigger="manual", status=status, created_at=created,
                    **fields)  # fmt: skip
        session.add(task)
        session.flush()
        return task.id


def test_overview_counts_the_last_day_and_names_what_needs_attention(context: Context) -> None:
    now = datetime.now(UTC)
    spider = add_spider(context, "news")
    for hours in (1, 2, 3):
        add_task(context, spider, "completed", now - timedelta(hours=hours), items_count=10,
                 started_at=now - timedelta(hours=hours), finished_at=now)  # fmt: skip
    add_task(context, spider, "completed", now - timedelta(days=3), items_count=99)  # not today
    failed = add_task(context, spider, "failed", now - timedelta(minutes=30), reason="exit_code",
                      error_message="exit code 1\nTraceback …\nValueError: layout changed")  # fmt: skip
    empty = add_task(context, spider, "completed", now - timedelta(minutes=20), items_count=0)
    missed = add_task(context, spider, "skipped", now - timedelta(minutes=10), reason="missed")
    silent = add_task(context, spider, "running", now - timedelta(minutes=40),
                      started_at=now - timedelta(minutes=40))  # fmt: skip
    chatty = add_task(context, spider, "running", now - timedelta(minutes=40),
                      started_at=now - timedelta(minutes=40))  # fmt: skip
    with context.db.session() as session:
        session.add(LogLine(task_id=chatty, seq=1, attempt=1, stream="stdout", ts=now, text="hi"))
        session.add(LogLine(task_id=silent, seq=1, attempt=1, stream="stdout",
                            ts=now - timedelta(minutes=39), text="started"))  # fmt: skip
        session.add(Schedule(spider_id=spider, cron="0 3 * * *", timezone="Asia/Tokyo",
                             next_fire_at=datetime(2030, 1, 1, 18, 0, tzinfo=UTC)))  # fmt: skip

    view = activity.overview(context)

    health = view.health
    assert (health.running, health.failed_24h, health.items_24h) == (2, 1, 30)
    assert health.finished_24h == 5 and health.success_rate_24h == 4 / 5
    assert health.workers == 0  # only worker processes count, and none runs here
    kinds = {(a.kind, a.task_id) for a in view.attention}
    assert kinds == {("failed", failed), ("zero_items", empty), ("missed", missed),
                     ("stalled", silent)}  # fmt: skip
    [failure] = [a for a in view.attention if a.kind == "failed"]
    assert failure.detail == "ValueError: layout changed" and failure.spider == "news"
    assert {task.id for task, _ in view.running} == {silent, chatty}
    [fire] = view.fires
    assert fire.local == datetime(2030, 1, 2, 3, 0, tzinfo=fire.local.tzinfo)  # 03:00 Tokyo
    assert len(view.day) == 24 and len(view.week) == 24 * 7
    assert sum(h.total for h in view.day) == 8
    assert sum(h.total for h in view.week) == 9
    assert sum(h.counts.get("active", 0) for h in view.day) == 2  # running ones
    assert view.day[-1].start == now.replace(minute=0, second=0, microsecond=0)


def test_spider_records_have_their_last_run_next_fire_and_success_rate(context: Context) -> None:
    now = datetime.now(UTC)
    busy, idle = add_spider(context, "busy"), add_spider(context, "idle")
    for n, status in enumerate(["completed", "failed", "completed", "completed", "skipped"]):
        add_task(context, busy, status, now - timedelta(minutes=50 - n))
    newest = add_task(context, busy, "running", now)
    with context.db.session() as session:
        busy_row, idle_row = session.get(Spider, busy), session.get(Spider, idle)
        session.add(
            Schedule(spider_id=busy, cron="* * * * *", next_fire_at=now + timedelta(hours=2))
        )
        session.add(
            Schedule(spider_id=busy, cron="* * * * *", next_fire_at=now + timedelta(hours=1))
        )
    assert busy_row is not None and idle_row is not None

    records = activity.spider_records(context, [busy_row, idle_row])

    assert records[0].last_run is not None and records[0].last_run.id == newest
    assert records[0].success_rate == 3 / 4  # skipped fires are not runs
    assert records[0].next_fire is not None
    assert abs(records[0].next_fire - (now + timedelta(hours=1))) < timedelta(seconds=1)
    assert (records[1].last_run, records[1].next_fire, records[1].success_rate) == (
        None,
        None,
        None,
    )


def test_the_hourly_rollup_follows_every_run_through_its_ends_and_requeues(
    context: Context,
) -> None:
    """The overview's counts come from `run_hour`, kept by the database as runs change: after
    runs end (born finished, by transitions), are requeued, end again and have items counted
    or removed, it holds exactly what a scan of `task` finds."""
    from sqlalchemy import func, select, update

    from crawlhub.repo import lifecycle, rollup
    from crawlhub.repo import tasks as task_repo

    now = datetime.now(UTC)
    spider, other = add_spider(context, "news"), add_spider(context, "shop")
    made = [add_task(context, s, status, now - timedelta(hours=h), items_count=n)
            for s, status, h, n in ((spider, "pending", 0, 0), (spider, "running", 1, 5),
                                    (spider, "completed", 2, 7), (other, "skipped", 0, 0),
                                    (other, "failed", 30, 3), (other, "running", 0, 2))]  # fmt: skip
    pending, running, completed, _, failed, running_other = made
    with context.db.session() as session:
        assert lifecycle.transition(session, running, lifecycle.COMPLETE, items_count=9)
        task_repo.requeue_task(session, completed)  # taken out of "completed"
        task_repo.reset_item_counts(session, completed)
        assert lifecycle.transition(session, running_other, lifecycle.FAIL)
        assert lifecycle.transition(session, pending, lifecycle.CANCEL)
        session.execute(update(Task).where(Task.id == failed).values(items_count=1))

    def scanned() -> dict[tuple[datetime, str], tuple[int, int]]:
        found: dict[tuple[datetime, str], tuple[int, int]] = {}
        with context.db.read() as session:
            for created, status, items in session.execute(
                select(Task.created_at, Task.status, Task.items_count)
            ):
                key = (rollup.hour_of(created), status)
                runs_n, items_n = found.get(key, (0, 0))
                found[key] = (runs_n + 1, items_n + items)
        return found

    with context.db.read() as session:
        kept = {(h, s): (r, i) for h, s, r, i in rollup.by_hour(session, now - timedelta(days=3))}
        finished = session.scalar(select(func.sum(rollup.RunHour.runs)))
    assert kept == scanned()
    assert finished == 5  # one completed (9 items), two failed, one cancelled, one skipped
    assert kept[(rollup.hour_of(now - timedelta(hours=1)), "completed")] == (1, 9)
    assert kept[(rollup.hour_of(now - timedelta(hours=30)), "failed")] == (1, 1)
