"""The task state machine: every change of a task's status is one of these transitions.

Each transition is a compare-and-set (`UPDATE … WHERE id = :id AND status IN (:sources)`),
so two processes racing over one task (a worker finishing, a user cancelling, the reaper)
never both win; the loser sees False and leaves the task as the winner made it.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.orm import Session

from crawlhub.repo.models import ACTIVE, CLAIMABLE, Task


@dataclass(frozen=True)
class Transition:
    """A named move of a task to `target`, allowed only from one of `sources`."""

    name: str
    sources: tuple[str, ...]
    target: str


# The whole table (README "Run lifecycle" shows it too). `pending` and `skipped` tasks are
# born by INSERT; everything after that moves through here.
CLAIM = Transition("claim", CLAIMABLE, "running")  # a worker starts an attempt
COMPLETE = Transition("complete", ("running",), "completed")  # the spider exited 0
RETRY = Transition("retry", ("running",), "retrying")  # an attempt failed, retries remain
FAIL = Transition("fail", ("running",), "failed")  # an attempt failed, none remain
INTERRUPT = Transition("interrupt", ("running",), "pending")  # its worker shut down
CANCEL = Transition("cancel", ACTIVE, "cancelled")  # by a user, or replaced by a new fire
DEAD_LETTER = Transition("dead_letter", CLAIMABLE, "failed")  # its message was dead-lettered
REQUEUE = Transition("requeue", ("failed", "cancelled", "completed"), "pending")  # run again
TRANSITIONS = (CLAIM, COMPLETE, RETRY, FAIL, INTERRUPT, CANCEL, DEAD_LETTER, REQUEUE)


def transition(
    session: Session,
    task_id: uuid.UUID,
    move: Transition,
    *,
    when: tuple[ColumnElement[bool], ...] = (),
    **values: Any,
) -> bool:
    """Move a task along `move` with `values` set, if its status allows it (and `when`
    holds); whether it moved."""
    moved = session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status.in_(move.sources), *when)
        .values(status=move.target, **values)
        .returning(Task.id)
    ).first()
    return moved is not None


def fail_attempt(
    session: Session, task_id: uuid.UUID, *, retry: bool, now: datetime, **values: Any
) -> str | None:
    """End a running attempt as a failure: `retrying` (its retry counted) while retries remain
    and `retry` allows it, else `failed` at `now`; the new status, None when it was not running."""
    if retry and transition(
        session, task_id, RETRY, when=(Task.retry_count < Task.max_retries,),
        retry_count=Task.retry_count + 1, **values,
    ):  # fmt: skip
        return RETRY.target
    if transition(session, task_id, FAIL, finished_at=now, **values):
        return FAIL.target
    return None
