"""The worker's outcome ledger: what an earlier worker process left is recorded at the next
start, as it ended when its items were stored, else handed back to the queue."""

import time
import uuid
from datetime import UTC, datetime

import pytest
from dramatiq import Message
from dramatiq.common import dq_name

from crawlhub.context import Context
from crawlhub.messaging.keys import RUNS_QUEUE
from crawlhub.repo.models import Spider, Task
from crawlhub.worker.attempts import Outcome, RunRef
from crawlhub.worker.outcomes import Entry, Recorder
from tests.integration.test_activity import add_spider, add_task


def running_task(context: Context) -> tuple[RunRef, uuid.UUID]:
    spider = add_spider(context, "left")
    task_id = add_task(context, spider, "running", datetime.now(UTC), fence=3, max_retries=2,
                       started_at=datetime.now(UTC))  # fmt: skip
    return RunRef(task_id, 3, 1, spider, "left", alert_on_zero_items=False), task_id


def recorded(context: Context, task_id: uuid.UUID) -> Task:
    deadline = time.monotonic() + 10
    while True:
        with context.db.session() as session:
            task = session.get(Task, task_id)
            assert task is not None
            if task.status != "running":
                return task
        assert time.monotonic() < deadline, "the recorder never recorded it"
        time.sleep(0.05)


def recorded_at_next_start(context: Context, task_id: uuid.UUID, left: int) -> Task:
    """A worker starting after the one that left `left` outcomes: the task once recorded."""
    recorder = Recorder(context)
    try:
        assert recorder.resume() == left
        task = recorded(context, task_id)
        deadline = time.monotonic() + 10
        while list(recorder.ledger.root.glob("*.json")):  # recorded, then dropped
            assert time.monotonic() < deadline, list(recorder.ledger.root.iterdir())
            time.sleep(0.05)
        return task
    finally:
        recorder.stop()


@pytest.mark.parametrize("flushed", [True, False])
def test_an_outcome_left_in_the_ledger_is_recorded_at_the_next_start(
    context: Context, flushed: bool
) -> None:
    run, task_id = running_task(context)
    left = Recorder(context)
    left.ledger.write(Entry(run, Outcome("completed", None, 0), {"pages": 3}, items=7,
                            flushed=flushed))  # fmt: skip
    stale = Entry(
        RunRef(uuid.uuid4(), 1, 1, run.spider_id, "left", False),
        Outcome("failed", "exit_code", 1, "exit code 1"),
        None,
        flushed=True,
    )
    left.ledger.write(stale)  # its task is gone: fenced out, dropped
    (left.ledger.root / "junk.json").write_text("{not json")
    alive = Recorder(context)  # another worker sharing the data dir, still running
    alive.ledger.write(Entry(RunRef(uuid.uuid4(), 1, 1, run.spider_id, "left", False),
                             Outcome("completed", None, 0), None))  # fmt: skip
    left.stop()  # its process is gone: its folder's lock is free
    task = recorded_at_next_start(context, task_id, 2)
    if flushed:  # its items were stored: it ended as it did
        assert (task.status, task.exit_code, task.stats, task.retry_count) == (
            "completed", 0, {"pages": 3}, 0)  # fmt: skip
    else:  # its last items died with that worker: it runs again, no retry counted
        assert (task.status, task.retry_count, task.reason) == ("pending", 0, "shutdown")
        assert task.fence == 3  # the next claim moves it
    assert not left.ledger.root.exists()  # taken over, then removed
    assert len(alive.ledger.entries()) == 1  # a live worker's entry is left to it
    alive.stop()


def test_a_failed_outcome_recorded_late_is_retried_after_its_spiders_backoff(
    context: Context,
) -> None:
    """A run that failed while the database was away is recorded `retrying` later, by the
    recorder: its new message waits the spider's backoff, as Dramatiq's retry would have."""
    run, task_id = running_task(context)
    with context.db.session() as session:
        spider = session.get(Spider, run.spider_id)
        assert spider is not None
        spider.retry_backoff_min_s, spider.retry_backoff_max_s = 40, 80
    left = Recorder(context)
    left.ledger.write(Entry(run, Outcome("failed", "exit_code", 1, "exit code 1"), None,
                            flushed=True))  # fmt: skip
    left.stop()
    task = recorded_at_next_start(context, task_id, 1)
    assert (task.status, task.retry_count) == ("retrying", 1)
    delayed = context.broker.queues[dq_name(RUNS_QUEUE)]  # type: ignore[attr-defined]
    sent = [Message.decode(delayed.get_nowait()) for _ in range(delayed.qsize())]
    assert [m.args for m in sent] == [(str(task_id),)]
    wait_s = (sent[0].options["eta"] - time.time() * 1000) / 1000
    assert 35 < wait_s <= 80  # the first retry's backoff: 40 s, up to twice with jitter
