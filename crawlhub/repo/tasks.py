"""Tasks (runs): creation, the claim compare-and-set, progress, completion, cancel."""

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, cast

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    String,
    Table,
    Uuid,
    bindparam,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from crawlhub.errors import Conflict, Fenced, NotFound
from crawlhub.repo import reach
from crawlhub.repo.db import get_or_404, id_prefix, now_of
from crawlhub.repo.lifecycle import (
    CANCEL,
    CLAIM,
    COMPLETE,
    DEAD_LETTER,
    INTERRUPT,
    REQUEUE,
    fail_attempt,
    moving,
    sync_options,
    transition,
    transition_returning,
)
from crawlhub.repo.models import LogLine, Project, ProjectVersion, Spider, Task
from crawlhub.repo.pages import count_rows, page_of

JOB_ID_CHARS = 128  # Task.job_id's length


def create_task(session: Session, fields: dict[str, Any]) -> Task:
    """Insert a pending task."""
    task = Task(status="pending", **fields)
    session.add(task)
    session.flush()
    return task


def get_task(session: Session, ref: uuid.UUID | str) -> Task:
    """One task by id (a UUID or its text) or by the job id a client gave it; NotFound
    otherwise."""
    if isinstance(ref, uuid.UUID):
        return get_or_404(session, Task, ref, "task")
    try:
        task = session.get(Task, uuid.UUID(ref))
    except ValueError:
        task = None
    if task is None and 0 < len(ref) <= JOB_ID_CHARS and "\x00" not in ref:
        task = session.scalar(select(Task).where(Task.job_id == ref))
    if task is None and id_prefix(ref) is not None:  # the first characters of its id
        return get_or_404(session, Task, ref, "task")
    if task is None:
        raise NotFound(f"task '{ref[:80]}' not found")
    reach.check(session, task, "task", ref)
    return task


def attempts_made(session: Session, task_id: uuid.UUID) -> int:
    """The number of the last attempt that started (each writes its `attempt N:` line first;
    0 when none did): what a requeue numbers on from, what a dead letter shows."""
    last: int | None = session.scalar(
        select(func.max(LogLine.attempt)).where(LogLine.task_id == task_id)
    )
    return last or 0


def with_spider_names(
    session: Session, task_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[Task, str]]:
    """Tasks by id with their spider's name (the ones that exist and the caller may see)."""
    if not task_ids:
        return {}
    rows = session.execute(
        select(Task, Spider.name).join(Spider, Spider.id == Task.spider_id)
        .where(Task.id.in_(task_ids), reach.visible_projects(Spider.project_id))
    ).all()  # fmt: skip
    return {task.id: (task, name) for task, name in rows}


def find_task(session: Session, task_id: uuid.UUID) -> Task | None:
    """One task, None when there is none."""
    return session.get(Task, task_id)


@dataclass(frozen=True)
class TaskFilter:
    """Which runs a list shows; every field optional."""

    spider_id: uuid.UUID | None = None
    status: str | None = None
    trigger: str | None = None
    schedule_id: uuid.UUID | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    verdict: str | None = None


def _filtered(where: TaskFilter) -> Select[Any]:
    stmt = reach.narrow(select(Task), Task).order_by(Task.created_at.desc(), Task.id.desc())
    if where.spider_id is not None:
        stmt = stmt.where(Task.spider_id == where.spider_id)
    if where.status is not None:
        stmt = stmt.where(Task.status == where.status)
    if where.trigger is not None:
        stmt = stmt.where(Task.trigger == where.trigger)
    if where.verdict is not None:
        stmt = stmt.where(Task.verdict == where.verdict)
    if where.schedule_id is not None:
        stmt = stmt.where(Task.schedule_id == where.schedule_id)
    if where.since is not None:
        stmt = stmt.where(Task.created_at >= where.since)
    if where.until is not None:
        stmt = stmt.where(Task.created_at < where.until)
    return stmt


def list_tasks(
    session: Session, where: TaskFilter, *, page: int, page_size: int
) -> tuple[Sequence[Task], int, bool]:
    """A page of tasks, newest first, with their count and whether it is exact (see
    `count_rows`: a million runs are not counted for every page)."""
    stmt = _filtered(where)
    return page_of(session, stmt, page, page_size), *count_rows(session, stmt)


def tasks_before(
    session: Session, where: TaskFilter, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> Sequence[Task]:
    """Up to `limit` tasks older than a (created_at, id) cursor, newest first (keyset paging:
    as fast on the last page of a million runs as on the first)."""
    stmt = _filtered(where)
    if before is not None:
        stmt = stmt.where(tuple_(Task.created_at, Task.id) < tuple_(*before))
    return session.scalars(stmt.limit(limit)).all()


def set_message_ids(session: Session, message_ids: Mapping[uuid.UUID, str | None]) -> None:
    """Record the broker messages that carry tasks, or None: held (one executemany UPDATE)."""
    table = cast(Table, Task.__table__)
    session.connection().execute(
        update(table).where(table.c.id == bindparam("task_id")),
        [{"task_id": task_id, "message_id": m} for task_id, m in message_ids.items()],
    )


CLAIMED = (Task.id, Task.spider_id, Task.version, Task.params, Task.settings, Task.requires,
           Task.retry_count, Task.fence, Task.items_count, Task.items_invalid,
           Task.items_duplicate)  # fmt: skip


def claim_task(session: Session, task_id: uuid.UUID, worker: str) -> Row[Any] | None:
    """Move a pending or retrying task to running (compare-and-set): its CLAIMED columns as
    they are then, None when it was not claimable."""
    values = _claim_values(now_of(session), worker)
    return transition_returning(session, task_id, CLAIM, CLAIMED, **values)


def _claim_values(now: Any, worker: Any) -> dict[str, Any]:
    return {"started_at": now, "heartbeat_at": now, "worker": worker, "finished_at": None,
            "fence": Task.fence + 1}  # fmt: skip


def claim_run(session: Session, task_id: uuid.UUID, worker: str) -> dict[str, Any] | None:
    """`claim_task`, with what the attempt needs of the spider and version it runs (`run_of`'s
    columns) beside the CLAIMED ones; None when the task was not claimable. PostgreSQL does
    it in one statement (the claim's UPDATE in a CTE, joined); SQLite in two (its RETURNING
    cannot name another table)."""
    if session.get_bind().dialect.name != "postgresql":
        task = claim_task(session, task_id, worker)
        if task is None:
            return None
        _versioned(task.version)
        return {**task._asdict(), **run_of(session, task.spider_id, task.version)._asdict()}
    row = session.execute(_claim_run(), {"task_id": task_id, "worker": worker}).first()
    if row is None:
        return None
    _versioned(row.version)
    if row.version_id is None:
        _missing(session, row.spider_id, row.version)
    return row._asdict()


@functools.cache
def _claim_run() -> Select[Any]:
    """claim_run's statement on PostgreSQL, built once (building it took half a millisecond)."""
    values = _claim_values(func.clock_timestamp(), bindparam("worker", type_=String))
    task_id = bindparam("task_id", type_=Uuid[uuid.UUID]())
    claimed = moving(task_id, CLAIM, CLAIMED, **values).cte("claimed")
    return (
        select(claimed, *RUN_OF)
        .select_from(claimed)
        .outerjoin(Spider, Spider.id == claimed.c.spider_id)
        .outerjoin(ProjectVersion, (ProjectVersion.project_id == Spider.project_id)
                   & (ProjectVersion.number == claimed.c.version))
    )  # fmt: skip


def _versioned(version: int | None) -> None:
    if version is None:
        raise RuntimeError("task has no spider version")  # guarded at creation


FENCED = "fenced"  # what an attempt reads when its task belongs to another attempt now


def heartbeat(session: Session, task_id: uuid.UUID, fence: int, *, beat: bool) -> str | None:
    """A running attempt's view of its task: its status (None when gone), or FENCED when
    the task moved on to another attempt; `beat` refreshes the heartbeat of a running one."""
    if beat:
        session.execute(
            update(Task)
            .where(Task.id == task_id, Task.status == "running", Task.fence == fence)
            .values(heartbeat_at=now_of(session)),
            execution_options=sync_options(session),
        )
    row = session.execute(select(Task.status, Task.fence).where(Task.id == task_id)).first()
    if row is None:
        return None
    return row.status if row.fence == fence else FENCED


def task_status(session: Session, task_id: uuid.UUID) -> str | None:
    """A task's status, None when it is gone."""
    status: str | None = session.scalar(select(Task.status).where(Task.id == task_id))
    return status


def add_progress(session: Session, task_id: uuid.UUID, fence: int, **counts: Any) -> None:
    """Add an attempt's counts (`progress_values`' arguments) to its task (called per ingest
    batch, so the API shows progress), and record its items' keys when they grew (none, when
    there were too many to keep) and the process id of the attempt's spider when it started.

    It holds the task until the transaction ends; Fenced when the attempt no longer owns it:
    a claim or a reap that commits first makes it fail (and the transaction with it), one that
    waits for it sees the transaction's writes. Log lines are written after it (their numbers
    would clash with the next attempt's); items may be written before it, their counts coming
    from their insert (a duplicate key is skipped, never refused, so nothing clashes)."""
    owned = session.execute(
        update(Task)
        .where(Task.id == task_id, Task.fence == fence)
        .values(**progress_values(**counts))
        .returning(Task.id),
        execution_options=sync_options(session),
    ).first()
    if owned is None:
        raise Fenced(f"task {task_id}: attempt with fence {fence} no longer owns it")


def progress_values(
    *,
    items: int = 0,
    duplicates: int = 0,
    invalid: int = 0,
    log_lines: int = 0,
    item_keys: list[str] | None = None,
    keys_unknown: bool = False,
    pid: int | None = None,
) -> dict[str, Any]:
    """The task's columns that `add_progress` (and `end_attempt`'s `progress`) set: the
    counts added, the items' keys when they grew, the spider's process id once known."""
    more: dict[str, Any] = {}
    if item_keys is not None:
        more["item_keys"] = None if keys_unknown else item_keys
    if pid is not None:
        more["pid"] = pid
    return {
        **more,
        "items_count": Task.items_count + items,
        "items_duplicate": Task.items_duplicate + duplicates,
        "items_invalid": Task.items_invalid + invalid,
        "log_lines": Task.log_lines + log_lines,
    }


def end_attempt(
    session: Session,
    task_id: uuid.UUID,
    fence: int,
    *,
    status: str,
    reason: str | None,
    exit_code: int | None,
    error_message: str | None,
    stats: dict[str, Any] | None,
    retry: bool,
    progress: dict[str, Any] | None = None,
) -> str:
    """End a running attempt: completed, failed, or retrying while retries remain; with
    `progress` (`add_progress`'s arguments), the attempt's last counts added in the same
    statement.

    Returns the task's status afterwards; a task that is no longer running (cancelled
    meanwhile) keeps its status and only gets the exit code, stats and counts recorded. An
    attempt that no longer owns its task (reaped, claimed again) writes nothing and gets
    FENCED. Like `add_progress`, it holds the task until the transaction ends."""
    now = now_of(session)
    recorded: dict[str, Any] = {"exit_code": exit_code, "stats": stats, "heartbeat_at": now,
                                **(progress_values(**progress) if progress else {})}  # fmt: skip
    ending = {**recorded, "reason": reason, "error_message": error_message}
    mine = (Task.fence == fence,)  # the move holds the task: a claim or a reap waits for it
    moved: str | None = None  # the status it moved to
    if status == "interrupted":  # its worker is shutting down: back to the queue as it was
        if transition(session, task_id, INTERRUPT, when=mine, message_id=None, worker=None,
                      **ending):  # fmt: skip
            moved = INTERRUPT.target
    elif status == "failed":
        moved = fail_attempt(session, task_id, retry=retry, now=now, when=mine, **ending)
    else:
        move = COMPLETE if status == "completed" else CANCEL
        if transition(session, task_id, move, when=mine, finished_at=now, **ending):
            moved = move.target
    if moved is not None:
        return moved
    # Not moved: another attempt owns the task now, or it is no longer running (cancelled).
    row = session.execute(
        select(Task.status, Task.fence).where(Task.id == task_id).with_for_update()
    ).first()
    if row is None or row.fence != fence:  # a task gone has no attempt of this one's
        return FENCED
    if row.status == "cancelled":  # cancelled while it ran: it ended only now
        recorded["finished_at"] = now
    session.execute(update(Task).where(Task.id == task_id).values(**recorded))
    return str(row.status)


def hand_back_running(session: Session, message: str) -> list[uuid.UUID]:
    """Every running task back to pending, its attempt fenced out (when the only worker that
    could run them was stopped without handing them back)."""
    back = []
    for task_id in session.scalars(select(Task.id).where(Task.status == "running")).all():
        if transition(session, task_id, INTERRUPT, message_id=None, worker=None,
                      reason="shutdown", error_message=message, fence=Task.fence + 1):  # fmt: skip
            back.append(task_id)
    return back


def running_on(session: Session, worker_prefix: str) -> int:
    """How many tasks run on the workers whose names start with a prefix (host:pid:)."""
    count: int = session.scalar(
        select(func.count()).select_from(Task)
        .where(Task.status == "running", Task.worker.startswith(worker_prefix, autoescape=True))
    ) or 0  # fmt: skip
    return count


def requeue_task(session: Session, task_id: uuid.UUID) -> None:
    """Make a finished task pending again for a fresh series of attempts, as many as its
    spider's retries allow. Attempts are numbered on from the last one (`retry_count`
    counts the attempts before the next one), so the log keeps one attempt 1."""
    task = get_or_404(session, Task, task_id, "task")
    done = attempts_made(session, task_id)
    allowed = 0 if task.trigger == "test" else spider_of(session, task).max_retries
    requeued = transition(
        session, task_id, REQUEUE, retry_count=done, max_retries=done + allowed,
        message_id=None, reason=None, error_message=None, exit_code=None, finished_at=None,
        started_at=None,
    )  # fmt: skip
    if not requeued:
        status = task_status(session, task_id)
        if status is None:
            raise NotFound(f"task '{task_id}' not found")
        raise Conflict(f"task is {status}: only a finished run can be requeued",
                       details={"status": status})  # fmt: skip


def reset_item_counts(session: Session, task_id: uuid.UUID) -> None:
    """Zero a task's item counters (a new attempt starts from no items)."""
    session.execute(
        update(Task)
        .where(Task.id == task_id)
        .values(items_count=0, items_duplicate=0, items_invalid=0, item_keys=None)
    )


def cancel_task(session: Session, task_id: uuid.UUID, reason: str = "user") -> str | None:
    """Cancel a task that has not finished; returns the status it had, None if already finished."""
    before = session.scalar(select(Task.status).where(Task.id == task_id).with_for_update())
    if before is None:
        raise NotFound(f"task '{task_id}' not found")
    if not transition(session, task_id, CANCEL, reason=reason, finished_at=now_of(session)):
        return None
    return before


def mark_dead_lettered(session: Session, task_id: uuid.UUID, message: str) -> bool:
    """Fail a task that was still waiting for the run message that got dead-lettered."""
    return transition(session, task_id, DEAD_LETTER, reason="error", error_message=message,
                      finished_at=now_of(session))  # fmt: skip


def mark_lost(session: Session, task_id: uuid.UUID, message: str) -> str | None:
    """Hand a running task whose worker went silent to the failure path: `retrying` while
    retries remain, else `failed` (reason `lost`); the new status, None if it moved on. The
    fence moves too: the silent attempt, should it wake up, writes nothing more."""
    return fail_attempt(session, task_id, retry=True, now=now_of(session), reason="lost",
                        error_message=message, fence=Task.fence + 1)  # fmt: skip


def _lock_oldest(
    session: Session, limit: int, order: Any, *conditions: ColumnElement[bool]
) -> Sequence[Task]:
    """Lock up to `limit` matching tasks, oldest first; rows another ticker holds are skipped."""
    return session.scalars(
        select(Task)
        .where(*conditions)
        .order_by(order)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def waiting(session: Session, created_before: datetime, limit: int) -> Sequence[Task]:
    """The oldest pending tasks that were sent a message (to check the broker still has it)."""
    return _lock_oldest(session, limit, Task.created_at, Task.status == "pending",
                        Task.message_id.is_not(None), Task.created_at < created_before)  # fmt: skip


def stale_retrying(session: Session, ended_before: datetime, limit: int) -> Sequence[Task]:
    """Retrying tasks whose last attempt ended before a time (their retry never came), locked."""
    return _lock_oldest(session, limit, Task.heartbeat_at, Task.status == "retrying",
                        Task.heartbeat_at < ended_before)  # fmt: skip


def hold_pending(session: Session) -> int:
    """Make every pending task held again (its message is gone); how many."""
    moved = session.execute(update(Task).where(Task.status == "pending").values(message_id=None))
    return cast(int, getattr(moved, "rowcount", 0))


def retrying_ids(session: Session) -> Sequence[uuid.UUID]:
    """Every retrying task (to re-send after the in-process broker restarted)."""
    return session.scalars(select(Task.id).where(Task.status == "retrying")).all()


def stale_running(session: Session, heartbeat_before: datetime, limit: int) -> Sequence[Task]:
    """Running tasks whose worker stopped refreshing their heartbeat, locked."""
    return _lock_oldest(session, limit, Task.heartbeat_at, Task.status == "running",
                        Task.heartbeat_at < heartbeat_before)  # fmt: skip


def count_in(session: Session, statuses: Sequence[str], cap: int | None = None) -> int:
    """How many tasks are in these statuses (counting stops at `cap`)."""
    ids = reach.narrow(select(Task.id), Task).where(Task.status.in_(statuses))
    if cap is not None:
        ids = ids.limit(cap)
    count: int = session.scalar(select(func.count()).select_from(ids.subquery())) or 0
    return count


def job_id_taken(session: Session, job_id: str) -> bool:
    """Whether a task carries this client job id."""
    return session.scalar(select(Task.id).where(Task.job_id == job_id)) is not None


RUN_ORDERS = {"created": Task.created_at, "started": Task.started_at,
              "finished": Task.finished_at.desc().nulls_last()}  # fmt: skip


def runs_with_names(
    session: Session, statuses: Sequence[str], order: str, *,
    project_id: uuid.UUID | None = None, limit: int | None = None,
) -> list[tuple[Task, str, Spider, str | None]]:  # fmt: skip
    """Tasks in some statuses with their project's name, their spider and the label of the
    version they run (Scrapyd's job listing)."""
    stmt = (
        select(Task, Project.name, Spider, ProjectVersion.label)
        .join(Spider, Spider.id == Task.spider_id)
        .join(Project, Project.id == Spider.project_id)
        .outerjoin(ProjectVersion, (ProjectVersion.project_id == Project.id)
                   & (ProjectVersion.number == Task.version))
        .where(Task.status.in_(statuses), reach.visible_projects(Project.id))
        .order_by(RUN_ORDERS[order])
    )  # fmt: skip
    if project_id is not None:
        stmt = stmt.where(Spider.project_id == project_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [(t, n, s, label) for t, n, s, label in session.execute(stmt).all()]


def touched_at() -> ColumnElement[datetime]:
    """When a run last changed: its end, else its start, else its creation."""
    return func.coalesce(Task.finished_at, Task.started_at, Task.created_at)


def projects_with_runs(session: Session) -> list[tuple[str, datetime]]:
    """Projects that have started runs, by name, with when their newest run last changed
    (the folders of Scrapyd's logs/ and items/ listings)."""
    stmt = (
        select(Project.name, func.max(touched_at()))
        .join(Spider, Spider.project_id == Project.id)
        .join(Task, Task.spider_id == Spider.id)
        .where(Task.started_at.is_not(None), reach.visible_projects(Project.id))
        .group_by(Project.name)
        .order_by(Project.name)
    )
    return [(name, moment) for name, moment in session.execute(stmt).all()]


def spiders_with_runs(session: Session, project_id: uuid.UUID) -> list[tuple[Spider, datetime]]:
    """A project's spiders that have started runs, with when their newest run last changed."""
    newest = (
        select(Task.spider_id, func.max(touched_at()).label("moment"))
        .where(Task.started_at.is_not(None))
        .group_by(Task.spider_id)
        .subquery()
    )
    stmt = (
        select(Spider, newest.c.moment)
        .join(newest, newest.c.spider_id == Spider.id)
        .where(Spider.project_id == project_id)
    )
    return [(spider, moment) for spider, moment in session.execute(stmt).all()]


def newest_started(session: Session, spider_id: uuid.UUID, limit: int) -> list[Task]:
    """A spider's newest runs that started, newest first."""
    stmt = (
        select(Task)
        .where(Task.spider_id == spider_id, Task.started_at.is_not(None))
        .order_by(Task.created_at.desc(), Task.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def set_quality(
    session: Session, task_id: uuid.UUID, verdict: str | None, quality: dict[str, Any]
) -> None:
    """Store a run's data quality verdict and what it rests on."""
    session.execute(update(Task).where(Task.id == task_id).values(verdict=verdict,
                                                                  quality=quality))  # fmt: skip


def retry_once(session: Session, task_id: uuid.UUID, trigger: str) -> uuid.UUID | None:
    """A new pending run like this one, with `trigger`, unless it is itself such a run (once
    only), held for the dispatcher."""
    task = session.get(Task, task_id)
    if task is None or task.trigger == trigger:
        return None
    again = create_task(session, {
        "spider_id": task.spider_id, "version": task.version, "trigger": trigger,
        "params": dict(task.params or {}), "settings": dict(task.settings or {}),
        "requires": task.requires, "priority": task.priority, "max_retries": task.max_retries,
        "actor": f"quality check of {task.id}",
    })  # fmt: skip
    return again.id


def suspect_runs(
    session: Session, spider_id: uuid.UUID | None, task_id: uuid.UUID | None,
    projects: frozenset[uuid.UUID] | None, limit: int,
) -> list[uuid.UUID]:  # fmt: skip
    """Runs (of a spider, or one run, or those of some projects) whose data is suspect."""
    stmt = select(Task.id).where(Task.verdict == "fail",
                                 Task.quality["suspect"].as_boolean().is_(True))  # fmt: skip
    if task_id is not None:
        stmt = stmt.where(Task.id == task_id)
    elif spider_id is not None:
        stmt = stmt.where(Task.spider_id == spider_id)
    if projects is not None:
        stmt = stmt.where(Task.spider_id.in_(
            select(Spider.id).where(Spider.project_id.in_(projects))))  # fmt: skip
    return list(session.scalars(stmt.order_by(Task.created_at.desc()).limit(limit)))


def with_quality(session: Session, spider_id: uuid.UUID, limit: int) -> Sequence[Task]:
    """A spider's newest finished runs that recorded item statistics, newest first."""
    return session.scalars(
        select(Task)
        .where(Task.spider_id == spider_id, Task.status.in_(("completed", "failed")),
               Task.quality.is_not(None))
        .order_by(Task.created_at.desc(), Task.id.desc())
        .limit(limit)
    ).all()  # fmt: skip


def recent_item_counts(
    session: Session, spider_id: uuid.UUID, params: dict[str, Any], before: uuid.UUID, limit: int
) -> list[int]:
    """The item counts of a spider's last completed runs with these params (not `before`)."""
    stmt = (
        select(Task.items_count, Task.params)
        .where(Task.spider_id == spider_id, Task.status == "completed", Task.id != before)
        .order_by(Task.created_at.desc())
        .limit(limit * 4)  # params are compared here: JSON equality differs by dialect
    )
    counts = [count for count, given in session.execute(stmt) if (given or {}) == params]
    return counts[:limit]


def count_by_status(session: Session) -> dict[str, int]:
    """How many tasks are in each status."""
    stmt = reach.narrow(select(Task.status, func.count()), Task).group_by(Task.status)
    rows = session.execute(stmt).all()
    return {status: count for status, count in rows}


# What an attempt needs of the spider it runs (its id is the task's spider_id) and of the
# version it runs: the spider's columns by their names, the version's `version_id`, ….
RUN_OF = (Spider.name, Spider.kind, Spider.entry, Spider.env, Spider.timeout_s,
          Spider.alert_on_zero_items, Spider.dedup_keys, Spider.limits, Spider.quality,
          ProjectVersion.id.label("version_id"), ProjectVersion.sha256.label("sha256"),
          ProjectVersion.filename.label("filename"),
          ProjectVersion.requirements.label("requirements"),
          ProjectVersion.quality.label("version_quality"))  # fmt: skip


def run_of(session: Session, spider_id: uuid.UUID, number: int) -> Row[Any]:
    """RUN_OF of a spider and its version `number`, in one query."""
    row = session.execute(
        select(*RUN_OF)
        .join(ProjectVersion, ProjectVersion.project_id == Spider.project_id)
        .where(Spider.id == spider_id, ProjectVersion.number == number)
    ).first()  # fmt: skip
    if row is None:
        _missing(session, spider_id, number)
    return row


def _missing(session: Session, spider_id: uuid.UUID, number: int) -> NoReturn:
    """NotFound saying which of a spider and its version `number` is missing."""
    spider = session.get(Spider, spider_id)
    if spider is None:
        raise NotFound(f"spider '{spider_id}' not found")
    raise NotFound(f"project '{spider.project.name}' has no version {number}")


def spider_of(session: Session, task: Task) -> Spider:
    """The spider a task belongs to."""
    spider = session.get(Spider, task.spider_id)
    if spider is None:
        raise NotFound(f"spider of task '{task.id}' not found")
    return spider
