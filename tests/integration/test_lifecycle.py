"""The task state machine on both databases: each transition moves only from its sources,
races have one winner, and the named steps built on it keep their rules."""

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawlhub.context import Context
from crawlhub.errors import Conflict, Fenced
from crawlhub.repo import lifecycle
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.models import Spider, Task
from tests.conftest import make_settings

STATUSES = ("pending", "running", "retrying", "completed", "failed", "cancelled", "skipped")


def add_task(context: Context, status: str, **fields: object) -> uuid.UUID:
    with context.db.session() as session:
        spider = Spider.standalone(name=f"s{uuid.uuid4().hex[:8]}", kind="python", entry="main:run")
        session.add(spider)
        session.flush()
        task = Task(spider_id=spider.id, trigger="manual", status=status, **fields)
        session.add(task)
        session.flush()
        return task.id


def status_of(context: Context, task_id: uuid.UUID) -> str:
    with context.db.session() as session:
        status = task_repo.task_status(session, task_id)
    assert status is not None
    return status


@pytest.mark.parametrize("move", lifecycle.TRANSITIONS, ids=lambda m: m.name)
def test_each_transition_moves_only_from_its_sources(
    context: Context, move: lifecycle.Transition
) -> None:
    for status in STATUSES:
        task_id = add_task(context, status)
        with context.db.session() as session:
            moved = lifecycle.transition(session, task_id, move)
        assert moved is (status in move.sources), (move.name, status)
        assert status_of(context, task_id) == (move.target if moved else status)


def test_every_status_a_task_can_reach_is_reached_by_a_transition() -> None:
    targets = {move.target for move in lifecycle.TRANSITIONS}
    sources = {status for move in lifecycle.TRANSITIONS for status in move.sources}
    # `skipped` is only ever inserted; everything else is both reached and left (or final).
    assert targets | {"skipped"} == set(STATUSES)
    assert sources <= set(STATUSES) - {"skipped"}


def test_a_failed_attempt_retries_while_retries_remain_then_fails(context: Context) -> None:
    task_id = add_task(context, "running", retry_count=0, max_retries=1)
    now = datetime.now(UTC)
    with context.db.session() as session:
        assert lifecycle.fail_attempt(session, task_id, retry=True, now=now) == "retrying"
    with context.db.session() as session:
        assert lifecycle.transition(session, task_id, lifecycle.CLAIM)
        assert lifecycle.fail_attempt(session, task_id, retry=True, now=now) == "failed"
        task = task_repo.get_task(session, task_id)
        assert (task.retry_count, task.finished_at is not None) == (1, True)


def test_a_failure_that_retrying_cannot_help_fails_at_once(context: Context) -> None:
    task_id = add_task(context, "running", retry_count=0, max_retries=3)
    with context.db.session() as session:
        status = lifecycle.fail_attempt(session, task_id, retry=False, now=datetime.now(UTC))
    assert status == "failed"


def test_ending_an_attempt_of_a_cancelled_task_keeps_it_cancelled(context: Context) -> None:
    task_id = add_task(context, "cancelled", reason="user")
    with context.db.session() as session:
        status = task_repo.end_attempt(session, task_id, 0, status="completed", reason=None,
                                       exit_code=0, error_message=None, stats={"pages": 1},
                                       retry=True)  # fmt: skip
    assert status == "cancelled"
    with context.db.session() as session:
        task = task_repo.get_task(session, task_id)
        assert (task.status, task.reason, task.exit_code, task.stats) == (
            "cancelled",
            "user",
            0,
            {"pages": 1},
        )


def test_each_claim_and_each_reap_moves_the_fence(context: Context) -> None:
    task_id = add_task(context, "pending", max_retries=2)
    with context.db.session() as session:
        task = task_repo.claim_task(session, task_id, "w1")
        assert task is not None and task.fence == 1
        assert task_repo.mark_lost(session, task_id, "lost") == "retrying"
        assert task_repo.get_task(session, task_id).fence == 2
        again = task_repo.claim_task(session, task_id, "w2")
        assert again is not None and again.fence == 3


def test_an_attempt_that_lost_its_fence_writes_nothing(context: Context) -> None:
    task_id = add_task(context, "running", fence=7, max_retries=3)
    with context.db.session() as session:
        assert task_repo.heartbeat(session, task_id, 6, beat=True) == task_repo.FENCED
        assert task_repo.heartbeat(session, task_id, 7, beat=True) == "running"
    with pytest.raises(Fenced), context.db.session() as session:
        task_repo.add_progress(session, task_id, 6, items=1)
    with context.db.session() as session:
        ended = task_repo.end_attempt(session, task_id, 6, status="failed", reason="exit_code",
                                      exit_code=1, error_message="old", stats={"x": 1},
                                      retry=True)  # fmt: skip
        assert ended == task_repo.FENCED
        task = task_repo.get_task(session, task_id)
        assert (task.status, task.retry_count, task.exit_code, task.stats) == (
            "running",
            0,
            None,
            None,
        )


def test_requeueing_a_run_that_has_not_finished_is_a_conflict(context: Context) -> None:
    task_id = add_task(context, "running")
    with pytest.raises(Conflict), context.db.session() as session:
        task_repo.requeue_task(session, task_id)
    assert status_of(context, task_id) == "running"


@pytest.fixture
def pg_context(pg_url: str, tmp_path: Path) -> Iterator[Context]:
    """A context on PostgreSQL, whose row locks make two writers really race."""
    ctx = Context.build(make_settings(tmp_path, database_url=pg_url))
    yield ctx
    ctx.close()


def race(context: Context, task_id: uuid.UUID, *moves: lifecycle.Transition) -> list[str]:
    """Run the moves at once on one task; the targets of those that moved it."""
    barrier = threading.Barrier(len(moves))
    won: list[str] = []

    def attempt(move: lifecycle.Transition) -> None:
        barrier.wait()
        with context.db.session() as session:
            if lifecycle.transition(session, task_id, move):
                won.append(move.target)

    threads = [threading.Thread(target=attempt, args=(move,)) for move in moves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won


def test_a_cancel_racing_a_completion_has_exactly_one_winner(pg_context: Context) -> None:
    for _ in range(20):
        task_id = add_task(pg_context, "running")
        won = race(pg_context, task_id, lifecycle.CANCEL, lifecycle.COMPLETE)
        assert len(won) == 1
        assert status_of(pg_context, task_id) == won[0]
