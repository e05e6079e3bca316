"""The task state machine: every change of a task's status is one of these transitions.

Each transition is a compare-and-set (`UPDATE … WHERE id = :id AND status IN (:sources)`),
so two processes racing over one task (a worker finishing, a user cancelling, the reaper)
never both win; the loser sees False and leaves the task as the winner made it.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Row, Update, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from crawlhub.repo.models import Task
from crawlhub.repo.statuses import ACTIVE, CLAIMABLE


@dataclass(frozen=True)
class Transition:
    """A named move of a task to `target`, allowed only from one of `sources`."""

    name: str
    sources: tuple[str, ...]
    target: str


# The whole table (docs/guide/runs.md, "Run lifecycle", shows it too). `pending` and
# `skipped` tasks are born by INSERT; everything after that moves through here.
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
    stmt = _move(task_id, move, when, values).returning(Task.id)
    return session.execute(stmt, execution_options=sync_options(session)).first() is not None


def transition_returning(session: Session, task_id: uuid.UUID, move: Transition,
                         columns: Sequence[InstrumentedAttribute[Any]], **values: Any
                         ) -> Row[Any] | None:  # fmt: skip
    """`transition`, returning these columns of the task as it is after the move (None when it
    did not move), in the same statement."""
    stmt = moving(task_id, move, columns, **values)
    return session.execute(stmt, execution_options=sync_options(session)).first()


def moving(task_id: "uuid.UUID | BindParameter[uuid.UUID]", move: Transition,
           columns: Sequence[InstrumentedAttribute[Any]], **values: Any) -> Update:  # fmt: skip
    """The statement of `transition_returning`, to be run within another (a CTE); the task's
    id may be a bound parameter, for a statement built once."""
    return _move(task_id, move, (), values).returning(*columns)


def sync_options(session: Session) -> dict[str, Any]:
    """Execution options of an UPDATE of tasks: bring those this session holds up to date,
    as the ORM does by default; without one loaded, skip the ORM's evaluation of the
    statement (a worker's sessions never load one: it cost them a millisecond per run)."""
    held = any(isinstance(held, Task) for held in session.identity_map.values())
    return {} if held else {"synchronize_session": False}


def _move(task_id: "uuid.UUID | BindParameter[uuid.UUID]", move: Transition,
          when: tuple[ColumnElement[bool], ...], values: dict[str, Any]) -> Update:  # fmt: skip
    return (
        update(Task)
        .where(Task.id == task_id, Task.status.in_(move.sources), *when)
        .values(status=move.target, **values)
    )


def fail_attempt(
    session: Session,
    task_id: uuid.UUID,
    *,
    retry: bool,
    now: ColumnElement[datetime] | datetime,
    when: tuple[ColumnElement[bool], ...] = (),
    **values: Any,
) -> str | None:
    """End a running attempt as a failure: `retrying` (its retry counted) while retries remain
    and `retry` allows it, else `failed` at `now`; the new status, None when it was not running
    (or `when` did not hold)."""
    if retry and transition(
        session, task_id, RETRY, when=(Task.retry_count < Task.max_retries, *when),
        retry_count=Task.retry_count + 1, **values,
    ):  # fmt: skip
        return RETRY.target
    if transition(session, task_id, FAIL, when=when, finished_at=now, **values):
        return FAIL.target
    return None
