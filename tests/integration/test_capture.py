"""The sinks between a spider's pipes and the database: batching, back-pressure, failures."""

import asyncio
import itertools
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from crawlhub import outages
from crawlhub.context import Context
from crawlhub.errors import ServiceUnavailable
from crawlhub.messaging.livelog import START, LiveLog, LiveRead, RedisLiveLog
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.models import Item, LogLine, Spider, Task
from crawlhub.worker import capture
from crawlhub.worker.capture import ItemSink, LogSink


def new_task(context: Context) -> tuple[uuid.UUID, uuid.UUID]:
    with context.db.session() as session:
        spider = Spider.standalone(name="sink", kind="python", entry="main:run")
        session.add(spider)
        session.flush()
        task = Task(spider_id=spider.id, trigger="manual", status="running")
        session.add(task)
        session.flush()
        return spider.id, task.id


def sinks(context: Context) -> tuple[LogSink, ItemSink, uuid.UUID]:
    spider_id, task_id = new_task(context)
    logs = LogSink(context.db, context.live, task_id, 1, fence=0, first_seq=1, max_lines=10_000)
    return logs, ItemSink(context.db, logs, spider_id, task_id, 1, fence=0), task_id


def stored(context: Context, task_id: uuid.UUID) -> tuple[int, int, int]:
    """(item rows, log rows, the task's items_count)."""
    with context.db.session() as session:
        items = session.scalar(select(func.count()).select_from(Item)) or 0
        lines = session.scalar(select(func.count()).select_from(LogLine)) or 0
        task = session.get(Task, task_id)
        assert task is not None
        return items, lines, task.items_count


def fail_once(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    """Make the next call of a repo write fail as a dropped database connection does."""
    real = getattr(module, name)
    calls = itertools.count()

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        if next(calls) == 0:
            raise OperationalError(name, {}, Exception("server closed the connection"))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing_once)


def test_the_item_reader_writes_only_when_the_supervisor_falls_behind(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capture, "ITEMS_BUFFERED", 10)
    _, items, task_id = sinks(context)
    for n in range(9):
        items.line(json.dumps({"n": n}).encode())
    assert stored(context, task_id) == (0, 0, 0)  # buffered for the supervisor's next tick
    items.line(b'{"n": 9}')  # the tenth: too much waiting, the reader writes
    assert stored(context, task_id) == (10, 0, 10)
    items.line(b'{"n": 10}')
    items.flush()  # what the supervisor does every tick
    assert stored(context, task_id) == (11, 0, 11)


def test_a_failing_write_pauses_the_reader_and_loses_nothing(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capture, "ITEMS_BUFFERED", 3)
    monkeypatch.setattr(capture, "BATCH", 3)
    monkeypatch.setattr(outages, "WAITS_S", (0.01,))
    logs, items, task_id = sinks(context)
    fail_once(monkeypatch, capture.item_repo, "insert_items")
    for n in range(3):
        items.line(json.dumps({"n": n}).encode())  # the third write fails: no exception here
    assert stored(context, task_id)[0] == 0
    items.line(b'{"n": 3}')  # the next line tries again, with everything kept
    assert stored(context, task_id) == (4, 0, 4)
    fail_once(monkeypatch, capture.log_repo, "insert_lines")
    for n in range(3):
        logs.line("stdout", f"line {n}".encode())  # a full batch: its write fails, no exception
    assert stored(context, task_id)[1] == 0
    logs.line("stdout", b"line 3")
    assert stored(context, task_id)[1] == 4
    with context.db.session() as session:
        data = session.scalars(select(Item.data).order_by(Item.id)).all()
    assert [d["n"] for d in data] == [0, 1, 2, 3]


def test_sinks_of_an_attempt_that_lost_its_task_write_nothing(context: Context) -> None:
    logs, items, task_id = sinks(context)
    items.line(b'{"n": 1}')
    logs.line("stdout", b"before")
    items.flush()
    logs.flush()
    assert stored(context, task_id) == (1, 1, 1)
    with context.db.session() as session:  # the reaper (or another claim) moves the fence
        task = session.get(Task, task_id)
        assert task is not None
        task.fence += 1
    items.line(b'{"n": 2}')
    logs.line("stdout", b"after")
    items.flush()
    logs.flush()
    assert items.fenced and logs.fenced
    assert stored(context, task_id) == (1, 1, 1)
    items.line(b'{"n": 3}')
    items.flush()  # and nothing later either, without asking the database again
    assert stored(context, task_id) == (1, 1, 1)


def test_a_fenced_out_attempt_whose_line_numbers_the_next_one_took_is_fenced_not_failed(
    context: Context,
) -> None:
    """A stalled attempt that wakes after the next attempt stored lines with the numbers it
    would use (both count from the last line stored before the claim): its flush finds
    itself fenced out, it does not fail on the taken numbers."""
    logs, _, task_id = sinks(context)
    logs.line("stdout", b"first")
    logs.flush()
    with context.db.session() as session:  # claimed again: the next attempt's fence
        task = session.get(Task, task_id)
        assert task is not None
        task.fence += 1
    current = LogSink(context.db, context.live, task_id, 2, fence=1, first_seq=2,
                      max_lines=10_000)  # fmt: skip
    current.line("stdout", b"second attempt")
    current.flush()
    logs.line("stdout", b"stale")  # number 2, which the next attempt took
    logs.flush()
    assert logs.fenced and not current.fenced
    assert stored(context, task_id) == (0, 2, 0)


def ending(task_id: uuid.UUID) -> Any:
    """What a run's record does in store_last's transaction: check the fence and add the
    last counts (Fenced), then end the task."""

    def end(session: Any, totals: capture.Totals, progress: dict[str, Any]) -> capture.Totals:
        task_repo.add_progress(session, task_id, 0, **progress)
        session.get(Task, task_id).status = "completed"
        return totals

    return end


def test_the_last_items_lines_and_outcome_are_one_transaction_that_loses_nothing(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs, items, task_id = sinks(context)
    items.line(b'{"n": 1}')
    items.flush()
    for n in (2, 3, 4):
        items.line(json.dumps({"n": n}).encode())
    logs.line("stdout", b"last line")
    said: list[capture.Totals] = []

    def summary(totals: capture.Totals) -> str | None:
        said.append(totals)
        return f"completed: {totals.items} items" if len(said) == 1 else None

    # The outcome's write fails (the connection drops): nothing of the transaction is kept,
    # and everything it took is given back for the next try.
    def failing(session: Any, totals: capture.Totals, progress: Any) -> capture.Totals:
        raise OperationalError("end_attempt", {}, Exception("server closed the connection"))

    with pytest.raises(ServiceUnavailable):
        capture.store_last(context.db, items, logs, summary, failing)
    assert stored(context, task_id) == (1, 0, 1)
    with context.db.session() as session:
        assert session.get(Task, task_id).status == "running"  # type: ignore[union-attr]
    assert items.count == 1 and items.waiting == 3

    totals = capture.store_last(context.db, items, logs, summary, ending(task_id))
    assert totals == capture.Totals(4, 0)
    assert stored(context, task_id) == (4, 2, 4)  # the spider's line and the summary, once
    with context.db.session() as session:
        task = session.get(Task, task_id)
        assert task is not None and task.status == "completed" and task.log_lines == 1
        texts = session.scalars(select(LogLine.text).order_by(LogLine.seq)).all()
    assert texts == ["last line", "completed: 4 items"]
    assert items.count == 4 and items.waiting == 0


def test_the_last_write_of_a_fenced_out_attempt_writes_nothing_and_says_so(
    context: Context,
) -> None:
    logs, items, task_id = sinks(context)
    items.line(b'{"n": 1}')
    logs.line("stdout", b"stale")
    with context.db.session() as session:  # reaped: another attempt's fence
        task = session.get(Task, task_id)
        assert task is not None
        task.fence += 1
    done = capture.store_last(context.db, items, logs, lambda _: "the end", ending(task_id))
    assert done is None and items.fenced and logs.fenced
    assert stored(context, task_id) == (0, 0, 0)
    with context.db.session() as session:
        assert session.get(Task, task_id).status == "running"  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_fenced_out_attempts_lines_never_reach_live_readers(
    context: Context, kind: str, request: pytest.FixtureRequest
) -> None:
    """Publishing is fenced like the database write: a stale attempt that wakes up (its task
    reaped and claimed again) puts nothing on the live stream that SSE readers follow, in
    Redis as in the in-process stream."""
    live: LiveLog = context.live
    if kind == "redis":
        live = RedisLiveLog(request.getfixturevalue("redis_url"))
    _, task_id = new_task(context)
    stale = LogSink(context.db, live, task_id, 1, fence=0, first_seq=1, max_lines=10_000)
    stale.line("stdout", b"before")
    stale.flush()
    with context.db.session() as session:  # reaped and claimed again meanwhile
        task = session.get(Task, task_id)
        assert task is not None
        task.fence += 1
    stale.line("stdout", b"stale line")
    stale.flush()
    assert stale.fenced
    current = LogSink(context.db, live, task_id, 2, fence=1, first_seq=2, max_lines=10_000)
    current.line("stdout", b"new attempt")
    current.flush()

    async def read_once() -> LiveRead:
        try:
            return await live.read(str(task_id), START, 100)
        finally:
            await live.aclose()

    read = asyncio.run(read_once())
    if kind == "redis":
        live.close()
    assert [(e.seq, e.attempt, e.text) for e in read.events] == [
        (1, 1, "before"), (2, 2, "new attempt")]  # fmt: skip
