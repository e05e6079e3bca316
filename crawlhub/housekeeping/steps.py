"""The ticker's housekeeping steps: sweep runs whose message went missing, reap runs whose
worker went silent, recover dead workers' messages, delete expired data.

Each step claims its rows with FOR UPDATE SKIP LOCKED in one short transaction, so any number
of tickers can run at once; messages are sent only after the commit.
"""

import logging
import uuid
from datetime import timedelta

from crawlhub.alerting import alerts
from crawlhub.context import Context
from crawlhub.housekeeping import retention
from crawlhub.messaging import queues
from crawlhub.messaging.broker import WakingRedisBroker
from crawlhub.messaging.keys import QUEUES
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.db import db_now
from crawlhub.services import dispatch, runs

logger = logging.getLogger(__name__)

LOST_MESSAGE_AFTER_S = 60  # a pending task this old is checked against the broker
SWEEP_BATCH = 200
RETRY_GRACE = timedelta(minutes=2)  # a retry's delayed message is in the broker long before
STALE_RETRY = timedelta(days=1, hours=1)  # in-process broker: a retry waits at most a day
REAP_BATCH = 100


def sweep(context: Context) -> bool:
    """Dispatch the held runs that may start, and send again the runs the broker lost.

    A pending run sent over a minute ago, or a retrying one whose last attempt ended over
    RETRY_GRACE ago, is looked up in the broker by its task id (the id of its message
    changes when a delayed retry becomes due); missing, it is sent again. A duplicate is
    harmless: a run message for a task that is not claimable is acknowledged and ignored.
    """
    with context.db.session() as session:
        now = db_now(session)
        waiting = [t.id for t in task_repo.waiting(
            session, now - timedelta(seconds=LOST_MESSAGE_AFTER_S), SWEEP_BATCH)]  # fmt: skip
        retrying_rows = task_repo.stale_retrying(session, now - RETRY_GRACE, SWEEP_BATCH)
        retrying = [t.id for t in retrying_rows]
        # Oldest first, so the ones past a day (the in-process broker's rule) are among them.
        long_retrying = [
            t.id
            for t in retrying_rows
            if t.heartbeat_at is not None and t.heartbeat_at < now - STALE_RETRY
        ]
    lost: list[uuid.UUID] = []
    if waiting or retrying:
        queued = queues.queued_tasks(context.broker, [str(t) for t in waiting + retrying])
        if queued is None:  # the in-process broker loses nothing while its process lives
            lost = long_retrying
        else:
            lost = [task_id for task_id in waiting + retrying if str(task_id) not in queued]
    for task_id in lost:
        logger.warning("task %s: re-sending its run message (not in the broker)", task_id)
    runs.enqueue_many(context, [runs.Send(task_id) for task_id in lost])
    return len(dispatch.dispatch(context)) == dispatch.ROUND_LIMIT


def reap(context: Context) -> bool:
    """Hand running tasks whose worker stopped heartbeating to the failure path (SPEC §5.6).

    A lost task with retries left becomes `retrying` and gets a new message after its
    backoff; otherwise it fails with reason `lost` and a `task_lost` alert, in one commit.
    """
    lease = timedelta(seconds=context.settings.lease_s)
    retries: list[tuple[uuid.UUID, int]] = []
    new_alerts: list[uuid.UUID | None] = []
    with context.db.session() as session:
        now = db_now(session)
        stale = task_repo.stale_running(session, now - lease, REAP_BATCH)
        for task in stale:
            since = task.heartbeat_at.isoformat() if task.heartbeat_at else "the start"
            message = f"lost: worker {task.worker} sent no heartbeat since {since}"
            retries_before = task.retry_count  # the transition below may refresh `task`
            status = task_repo.mark_lost(session, task.id, message)
            spider = task_repo.spider_of(session, task)
            if status == "retrying":
                delay = runs.retry_delay_ms(retries_before, spider)
                retries.append((task.id, delay))
                logger.warning("task %s lost (worker %s); retry %d in %d ms", task.id, task.worker,
                               retries_before + 1, delay)  # fmt: skip
            elif status == "failed":
                logger.warning(
                    "task %s lost (worker %s stopped heartbeating); failed", task.id, task.worker
                )
                new_alerts.append(alerts.raise_alert(
                    session, context, "task_lost", "error",
                    f"{spider.name}: run {task.id} was lost (its worker {task.worker} stopped)",
                    spider_id=spider.id, task_id=task.id,
                ))  # fmt: skip
    runs.enqueue_many(context, [runs.Send(task_id, delay) for task_id, delay in retries])
    for alert_id in new_alerts:
        alerts.notify_channels(context, alert_id)
    return len(stale) == REAP_BATCH


def deliver(context: Context) -> bool:
    """Send the alert deliveries that are due (retries, and any whose message was lost)."""
    return alerts.deliver_due(context)


def maintain(context: Context) -> bool:
    """Recover dead workers' unacknowledged messages now rather than by Dramatiq's chance."""
    if isinstance(context.broker, WakingRedisBroker):
        for queue in QUEUES:
            context.broker.maintain(queue)
    return False


def expire(context: Context) -> bool:
    """The data lifecycle: items and log lines past their retention (per spider, or the
    global default), then finished runs, alerts, deliveries and old versions' packages."""
    with context.db.session() as session:
        now = db_now(session)
    gone = retention.expire(context.db, context.settings.retention_days, now)
    gone += retention.expire_history(context.db, context.settings, now)
    return gone > 0


def hand_back_interrupted(context: Context) -> int:
    """At the start of the only worker there is (embedded mode): runs still `running` were
    cut short when it last stopped (a forced stop, a crash); they go back to the queue at once
    rather than after the lease, and count no retry."""
    with context.db.session() as session:
        back = task_repo.hand_back_running(
            session, "CrawlHub stopped during this run; handed back when it started again"
        )
    for task_id in back:
        logger.warning("task %s was running when CrawlHub last stopped: handed back", task_id)
    return len(back)


def resend_pending(context: Context) -> int:
    """After the in-process broker lost its queue on restart: pending runs are held again
    and dispatched, retrying ones sent again."""
    with context.db.session() as session:
        held = task_repo.hold_pending(session)
        retrying = list(task_repo.retrying_ids(session))
    runs.enqueue_many(context, [runs.Send(task_id) for task_id in retrying])
    dispatch.dispatch(context)
    return held + len(retrying)
