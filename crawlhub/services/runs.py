"""Runs of spiders: create and enqueue, look up, list, cancel, requeue, read their logs."""

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dramatiq.common import compute_backoff

from crawlhub.context import Context
from crawlhub.errors import Conflict
from crawlhub.messaging import messages, queues
from crawlhub.messaging.keys import RUN_ACTOR
from crawlhub.registry import projects
from crawlhub.registry.spiders import check_scrapy_settings
from crawlhub.repo import items as item_repo
from crawlhub.repo import logs as log_repo
from crawlhub.repo import projects as project_repo
from crawlhub.repo import reach
from crawlhub.repo import spiders as spider_repo
from crawlhub.repo import tasks as repo
from crawlhub.repo import users as user_repo
from crawlhub.repo.db import Session
from crawlhub.repo.models import LogLine, Spider, Task
from crawlhub.repo.statuses import FINISHED
from crawlhub.services import dispatch

logger = logging.getLogger(__name__)

CANCEL_SETTLE_S = 5.0  # how long a log stream waits for a cancelled run's last lines


def create_run(
    context: Context, ref: str, params: dict[str, Any], trigger: str = "manual",
    settings: dict[str, Any] | None = None, *, version: int | None = None,
    job_id: str | None = None, requires: list[str] | None = None,
    priority: int = dispatch.MANUAL_PRIORITY,
) -> Task:  # fmt: skip
    """Insert a pending task for the spider's current version (or `version`), then let the
    dispatcher send it when a slot is free. ``settings`` are Scrapy settings of this run
    alone; ``job_id`` a client's own name for the run (Scrapyd's jobid), unique;
    ``requires`` the labels a node must have to run it (default: the spider's); ``priority``
    higher first among waiting runs. The task comes back told why it waits, if it does."""
    # Created and sent in one transaction: a worker that takes the message finds it.
    with dispatch.deciding(context) as (session, done):
        spider = spider_repo.get_spider(session, ref)
        settings = check_scrapy_settings(settings or {}, spider.kind)
        if (refused := projects.refusal(session, spider, version)) is not None:
            raise Conflict(refused)
        if not spider.enabled and trigger != "test":
            raise Conflict(f"spider '{spider.name}' is disabled")
        task = repo.create_task(
            session,
            {
                "spider_id": spider.id,
                "version": version or spider.current_version,
                "trigger": trigger,
                "job_id": job_id,
                "params": {**(spider.params or {}), **params},
                "settings": settings,
                "requires": requires if requires is not None else spider.requires,
                "priority": priority,
                # A test run streams back to someone waiting: one attempt only.
                "max_retries": 0 if trigger == "test" else spider.max_retries,
                "actor": actor.name if (actor := user_repo.ACTOR.get()) else None,
            },
        )
        user_repo.audit(session, "run.start", f"spider:{spider.name}",
                        after={"run": str(task.id), "trigger": trigger})  # fmt: skip
    task.message_id = done.sent.get(task.id)
    return done.tell(task)


@dataclass(frozen=True)
class Send:
    """One run message to send: the task, its delay and its Retries options."""

    task_id: uuid.UUID
    delay_ms: int = 0
    options: dict[str, Any] | None = None  # read from the task and spider when not given


def run_options(max_retries_left: int, spider: Spider) -> dict[str, Any]:
    """The Retries options of a spider's run message with this many retries left."""
    return dispatch.run_options(max_retries_left, spider.retry_backoff_min_s,
                                spider.retry_backoff_max_s)  # fmt: skip


def enqueue(context: Context, task_id: uuid.UUID, delay_ms: int = 0) -> str | None:
    """Send one committed task's run message (see enqueue_many); its message id or None."""
    return enqueue_many(context, [Send(task_id, delay_ms)]).get(task_id)


def retry_delay_ms(retries_before: int, spider: Spider) -> int:
    """The spider's backoff before retry number `retries_before + 1`: Dramatiq's formula,
    as its Retries middleware spaces the retries of a failed message."""
    _, delay = compute_backoff(retries_before, factor=spider.retry_backoff_min_s * 1000,
                               max_backoff=spider.retry_backoff_max_s * 1000)  # fmt: skip
    return int(delay)


def enqueue_retry(context: Context, task_id: uuid.UUID) -> None:
    """Send the run message of a task that is `retrying` after its spider's backoff (a retry
    whose message was not left to Dramatiq: the run was recorded late, or reaped)."""
    with context.db.read() as session:
        task = repo.get_task(session, task_id)
        delay = retry_delay_ms(max(task.retry_count - 1, 0), repo.spider_of(session, task))
    enqueue(context, task_id, delay)


def enqueue_many(context: Context, sends: Sequence[Send]) -> dict[uuid.UUID, str]:
    """Send committed tasks' run messages and record their ids in one transaction.

    A message carries the retries its task has left and its spider's backoff, for
    Dramatiq's Retries middleware. A task whose message could not be sent stays as it is
    and the ticker's sweep resends it; a task sent twice runs once (the claim is a CAS).
    """
    missing = [s.task_id for s in sends if s.options is None]
    looked_up: dict[uuid.UUID, dict[str, Any]] = {}
    if missing:
        with context.db.session() as session:
            for task_id in missing:
                task = repo.get_task(session, task_id)
                spider = repo.spider_of(session, task)
                looked_up[task_id] = run_options(task.max_retries - task.retry_count, spider)
    sent: dict[uuid.UUID, str] = {}
    for send in sends:
        options = send.options if send.options is not None else looked_up[send.task_id]
        try:
            sent[send.task_id] = messages.send_run(
                context.broker, send.task_id, delay_ms=send.delay_ms, **options
            )
        except Exception as exc:  # the broker being down must not lose the committed task
            logger.error("task %s: enqueue failed (%s); it stays for the sweep", send.task_id, exc)
    if sent:
        with context.db.session() as session:
            repo.set_message_ids(session, sent)
    return sent


def get_task(context: Context, ref: uuid.UUID | str) -> Task:
    """One task by id (a pending one says why it waits, if it does)."""
    with context.db.read() as session:
        task = repo.get_task(session, ref)
        return dispatch.tell_waiting(context, session, [task])[0]


def spider_projects(context: Context, spider_ids: set[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """The project of each spider rows refer to, for lists whose buttons go by its role."""
    with context.db.read() as session:
        return spider_repo.projects_by_id(session, sorted(spider_ids))


def spider_names(context: Context, spider_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The names of the spiders rows refer to, for lists that show them."""
    with context.db.read() as session:
        return spider_repo.names_by_id(session, sorted(spider_ids))


def task_and_spider(context: Context, ref: str) -> tuple[Task, Spider, str | None]:
    """A run, the spider it belongs to and the label of the version it runs (its page shows
    the spider's name, the version's number and label)."""
    with context.db.read() as session:
        task = dispatch.tell_waiting(context, session, [repo.get_task(session, ref)])[0]
        spider = spider_repo.get_spider(session, str(task.spider_id))
        label = project_repo.version_label(session, spider.project_id, task.version)
        return task, spider, label


def duration_s(task: Task) -> float:
    """How long a finished run took (0 for one that never started)."""
    if task.started_at is None or task.finished_at is None:
        return 0.0
    return max((task.finished_at - task.started_at).total_seconds(), 0.0)


def lines_over(task: Task, stream_ended: bool) -> bool:
    """Whether no more log lines can come: finished, and a cancelled run's process has
    stopped (its stream ended, or it was cancelled before starting, or long enough ago)."""
    if task.status not in FINISHED:
        return False
    if task.status != "cancelled" or task.started_at is None or stream_ended:
        return True
    # Cancelled while running: its worker writes the last lines within a few seconds.
    finished = task.finished_at.timestamp() if task.finished_at else time.time()
    return time.time() - finished > CANCEL_SETTLE_S


@dataclass(frozen=True)
class RunQuery:
    """Which runs to list: `spider` is an id or a name; times bound `created_at`."""

    spider: str | None = None
    status: str | None = None
    trigger: str | None = None
    schedule_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    verdict: str | None = None


def _filter(session: Session, query: RunQuery) -> repo.TaskFilter:
    spider_id = spider_repo.get_spider(session, query.spider).id if query.spider else None
    return repo.TaskFilter(spider_id, query.status, query.trigger, query.schedule_id,
                           query.since, query.until, query.verdict)  # fmt: skip


def list_tasks(
    context: Context, query: RunQuery, *, page: int, page_size: int
) -> tuple[list[Task], int, bool]:
    """A page of tasks, newest first, the total and whether it is exact."""
    with context.db.read() as session:
        rows, total, exact = repo.list_tasks(
            session, _filter(session, query), page=page, page_size=page_size
        )
        return dispatch.tell_waiting(context, session, list(rows)), total, exact


Cursor = tuple[datetime, uuid.UUID]


def runs_before(
    context: Context, query: RunQuery, before: Cursor | None, limit: int
) -> tuple[list[Task], Cursor | None]:
    """Up to `limit` runs older than a cursor, newest first, and the cursor of the next page
    (None on the last)."""
    with context.db.read() as session:
        rows = list(repo.tasks_before(session, _filter(session, query), before, limit + 1))
        dispatch.tell_waiting(context, session, rows[:limit])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].created_at, rows[-1].id) if more and rows else None


def run_again(context: Context, ref: str) -> Task:
    """A new manual run of a run's spider with the same params and settings."""
    task = get_task(context, ref)
    return create_run(context, str(task.spider_id), dict(task.params or {}),
                      settings=dict(task.settings or {}), requires=task.requires)  # fmt: skip


def cancel(context: Context, ref: str) -> Task:
    """Cancel a task: at once when it has not started, within 3 s when it runs (SPEC §5)."""
    with context.db.session() as session:
        task_id = repo.get_task(session, ref).id
        before = repo.cancel_task(session, task_id)
        if before is None:
            status = repo.get_task(session, task_id).status
            raise Conflict(f"task is already {status}", details={"status": status})
        task = repo.get_task(session, task_id)
        user_repo.audit(session, "run.cancel", f"run:{task_id}", before={"status": before},
                        after={"status": task.status})  # fmt: skip
    logger.info("task %s cancelled by user (was %s)", task_id, before)
    return task


def log_lines(
    context: Context,
    ref: str,
    *,
    after_seq: int,
    limit: int,
    stream: str | None = None,
    attempt: int | None = None,
    before_seq: int | None = None,
    search: str | None = None,
) -> list[LogLine]:
    """Persisted log lines of a task after a seq (or the last ones before a seq), optionally
    of one stream or attempt, or containing a text."""
    with context.db.read() as session:
        task_id = repo.get_task(session, ref).id  # 404 for an unknown task
        rows = log_repo.list_lines(
            session, task_id, after_seq=after_seq, limit=limit, stream=stream, attempt=attempt,
            before_seq=before_seq, search=search,
        )  # fmt: skip
        return list(rows)


def new_lines(
    context: Context, task_id: uuid.UUID, after_seq: int, limit: int | None
) -> list[LogLine]:
    """Persisted lines of a known task after a seq (what live readers poll)."""
    with context.db.read() as session:
        return list(log_repo.list_lines(session, task_id, after_seq=after_seq, limit=limit))


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter as people read it: a run's spider, its own error and its attempts."""

    message: queues.DeadMessage
    task_id: uuid.UUID | None  # the run's, when it is a run's letter
    spider: str | None
    error: str | None  # the last line of the run's error when it is a run's, else the message's
    attempts: int  # how many times it was tried


def dead_letters(context: Context, queue: str, limit: int) -> tuple[list[DeadLetter], int]:
    """The newest dead letters of a queue, each run's told by its task."""
    found, total = queues.dead_letters(context.broker, queue, limit)
    ids = {m.message_id: task_id for m in found if (task_id := _task_of(m)) is not None}
    with context.db.read() as session:
        named = repo.with_spider_names(session, list(ids.values()))
        made = {task_id: repo.attempts_made(session, task_id) for task_id in named}
    letters = []
    for m in found:
        known = named.get(ids[m.message_id]) if m.message_id in ids else None
        if known is None and reach.limited():  # not one of the caller's projects' runs
            total -= 1
            continue
        if known is None:  # another actor's message, or a run deleted since
            letters.append(DeadLetter(m, None, None, m.error, m.retries))
            continue
        task, spider = known
        # An error message ends with the stderr tail, whose last line is usually the exception.
        lines = (task.error_message or task.reason or m.error or "").strip().splitlines()
        letters.append(DeadLetter(m, task.id, spider, lines[-1] if lines else None,
                                  made[task.id]))  # fmt: skip
    return letters, total


def _task_of(message: queues.DeadMessage) -> uuid.UUID | None:
    """The run a dead letter is of (None: another actor's, or arguments that are not an id)."""
    try:
        return uuid.UUID(message.task_id) if message.task_id else None
    except ValueError:
        return None


def requeue_dead_letter(context: Context, queue: str, message_id: str) -> str | None:
    """Take a dead letter out and run it again: a run becomes a fresh pending series of
    attempts (its items gone, its logs kept); another message is sent again as it was.
    Returns the run's task id, if it was a run.

    The task moves first and the dead letter goes after: a requeue that meets a conflict (the
    run was requeued meanwhile) or an outage leaves the dead letter where it was."""
    message = queues.find(context.broker, queue, message_id)
    if message.actor != RUN_ACTOR or not message.task_id:
        reach.require_everywhere("requeue another actor's message")
        queues.resend(context.broker, queue, message)
        queues.remove(context.broker, queue, message_id)
        return None
    task_id = uuid.UUID(message.task_id)
    with context.db.session() as session:
        repo.requeue_task(session, task_id)
        item_repo.delete_task_items(session, task_id)
        repo.reset_item_counts(session, task_id)
        user_repo.audit(session, "run.requeue", f"run:{task_id}",
                        after={"queue": queue, "message": message_id})  # fmt: skip
    queues.remove(context.broker, queue, message_id)
    dispatch.dispatch(context)
    logger.info("dead letter %s requeued: task %s is pending again", message_id, task_id)
    return message.task_id
