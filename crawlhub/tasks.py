"""Runs of spiders: create and enqueue, look up, list, cancel."""

import logging
import uuid
from typing import Any

from crawlhub.context import Context
from crawlhub.errors import Conflict
from crawlhub.repo import logs as log_repo
from crawlhub.repo import spiders as spider_repo
from crawlhub.repo import tasks as repo
from crawlhub.repo.models import LogLine, Task

logger = logging.getLogger(__name__)


def create_run(context: Context, ref: str, params: dict[str, Any], trigger: str = "manual") -> Task:
    """Insert a pending task for the spider's current version, then enqueue its message."""
    with context.db.session() as session:
        spider = spider_repo.get_spider(session, ref)
        if spider.current_version is None:
            raise Conflict(f"spider '{spider.name}' has no version yet: upload one first")
        if not spider.enabled and trigger != "test":
            raise Conflict(f"spider '{spider.name}' is disabled")
        task = repo.create_task(
            session,
            {
                "spider_id": spider.id,
                "version": spider.current_version,
                "trigger": trigger,
                "params": {**(spider.params or {}), **params},
                # A test run streams back to someone waiting: one attempt only.
                "max_retries": 0 if trigger == "test" else spider.max_retries,
            },
        )
    # Only after the commit: a worker must find the row the message points to.
    task.message_id = enqueue(context, task.id)
    return task


def enqueue(context: Context, task_id: uuid.UUID, delay_ms: int = 0) -> str | None:
    """Send a committed task's run message and record its id; None when the broker failed.

    The message carries the retries the task has left and its spider's backoff, for
    Dramatiq's Retries middleware. A task whose message could not be sent stays as it is
    and the ticker's sweep resends it; a task sent twice runs once (the claim is a CAS).
    """
    with context.db.session() as session:
        task = repo.get_task(session, task_id)
        spider = repo.spider_of(session, task)
        options: dict[str, Any] = {
            "max_retries": max(task.max_retries - task.retry_count, 0),
            "min_backoff": spider.retry_backoff_min_s * 1000,
            "max_backoff": spider.retry_backoff_max_s * 1000,
        }
    try:
        message = context.run_actor.send_with_options(
            args=(str(task_id),), delay=delay_ms or None, **options
        )
    except Exception as exc:  # the broker being down must not lose the committed task
        logger.error("task %s: enqueue failed (%s); it stays pending for the sweep", task_id, exc)
        return None
    # The Redis broker files a message under its own id (the key in `dramatiq:<queue>.msgs`).
    message_id = str(message.options.get("redis_message_id", message.message_id))
    with context.db.session() as session:
        repo.set_message_id(session, task_id, message_id)
    return message_id


def get_task(context: Context, ref: str) -> Task:
    """One task by id."""
    with context.db.session() as session:
        return repo.get_task(session, repo.parse_task_id(ref))


def list_tasks(
    context: Context,
    *,
    page: int,
    page_size: int,
    spider: str | None = None,
    status: str | None = None,
    trigger: str | None = None,
    schedule_id: uuid.UUID | None = None,
) -> tuple[list[Task], int]:
    """A page of tasks, newest first; `spider` is an id or a name."""
    with context.db.session() as session:
        spider_id = spider_repo.get_spider(session, spider).id if spider else None
        rows, total = repo.list_tasks(
            session, page=page, page_size=page_size, spider_id=spider_id, status=status,
            trigger=trigger, schedule_id=schedule_id,
        )  # fmt: skip
        return list(rows), total


def cancel(context: Context, ref: str) -> Task:
    """Cancel a task: at once when it has not started, within 3 s when it runs (SPEC §5)."""
    task_id = repo.parse_task_id(ref)
    with context.db.session() as session:
        before = repo.cancel_task(session, task_id)
        if before is None:
            status = repo.get_task(session, task_id).status
            raise Conflict(f"task is already {status}", details={"status": status})
        task = repo.get_task(session, task_id)
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
) -> list[LogLine]:
    """Persisted log lines of a task after a seq."""
    task_id = repo.parse_task_id(ref)
    with context.db.session() as session:
        repo.get_task(session, task_id)  # 404 for an unknown task
        rows = log_repo.list_lines(
            session, task_id, after_seq=after_seq, limit=limit, stream=stream, attempt=attempt
        )
        return list(rows)
