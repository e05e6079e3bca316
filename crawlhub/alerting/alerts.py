"""Alerts: raised with the state change that causes them, folded, delivered to channels."""

import logging
import uuid
from datetime import timedelta
from typing import Any

from crawlhub import metrics, outages
from crawlhub.alerting import senders, targets
from crawlhub.context import Context
from crawlhub.messaging import messages
from crawlhub.repo import alerts as repo
from crawlhub.repo import spiders as spider_repo
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.db import Session
from crawlhub.repo.models import Alert, Delivery
from crawlhub.repo.types import utcnow

logger = logging.getLogger(__name__)

DELIVERY_BATCH = 50  # deliveries claimed at once
RETRY_MARGIN_MS = 250  # a retry's message arrives this long after the delivery is due
CLAIM_HOLD = timedelta(minutes=2)  # a claimed delivery whose sender vanished is sent again then


def raise_alert(
    session: Session,
    context: Context,
    type: str,
    level: str,
    message: str,
    *,
    spider_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Record an alert in the caller's transaction; its id when new (to notify after commit)."""
    now = utcnow()
    fold_after = now - timedelta(seconds=context.settings.alert_fold_s)
    alert, new = repo.raise_alert(
        session, type=type, level=level, message=message, spider_id=spider_id, task_id=task_id,
        fold_after=fold_after,
    )  # fmt: skip
    if new:  # the outbox: its deliveries commit with it, so no notification can be lost
        repo.queue_deliveries(session, alert, now)
    logger.info("alert %s %s (%s)%s: %s", type, alert.id, level, "" if new else " folded", message)
    return alert.id if new else None


def notify_channels(context: Context, alert_id: uuid.UUID | None, delay_ms: int = 0) -> None:
    """Hand a new alert to the alert actor (after the commit that recorded it and its
    deliveries); if the message cannot be sent, the ticker sends the deliveries."""
    if alert_id is None:
        return
    try:
        messages.send_alert(context.broker, {"alert_id": str(alert_id)}, delay_ms=delay_ms)
    except Exception as exc:  # the deliveries are committed: the outbox step sends them
        logger.warning("alert %s: could not queue its delivery (%s); the ticker sends it",
                       alert_id, exc)  # fmt: skip


def payload_of(session: Session, alert: Alert) -> dict[str, Any]:
    """The JSON a channel receives for an alert."""
    spider = spider_repo.name_of(session, alert.spider_id) if alert.spider_id else None
    return {
        "id": str(alert.id),
        "type": alert.type,
        "level": alert.level,
        "message": alert.message,
        "spider_id": str(alert.spider_id) if alert.spider_id else None,
        "spider": spider,
        "task_id": str(alert.task_id) if alert.task_id else None,
        "count": alert.count,
        "created_at": alert.created_at.isoformat(),
        "last_seen_at": alert.last_seen_at.isoformat(),
    }


def deliver(context: Context, alert_id: uuid.UUID) -> None:
    """Send an alert's due deliveries now (the alert actor's fast path after its commit)."""
    _send_due(context, alert_id)


def deliver_due(context: Context) -> bool:
    """Send every delivery that is due: new ones whose message was lost, and retries (the
    ticker's step); True when a full batch was sent."""
    return _send_due(context, None) == DELIVERY_BATCH


def _send_due(context: Context, alert_id: uuid.UUID | None) -> int:
    """Claim due deliveries, send each, record each; one channel's failure, whatever it is
    (an unusable URL, DNS, TLS, a timeout, SMTP), is recorded on its own delivery only. A
    target the channel rules refuse fails at once; other failures are tried again later."""
    with context.db.session() as session:
        now = utcnow()
        claimed = repo.claim_deliveries(session, now, now + CLAIM_HOLD, DELIVERY_BATCH, alert_id)
        payloads = {a: payload_of(session, repo.get_alert(session, a))
                    for a in {c.alert_id for c in claimed}}  # fmt: skip
    for out in claimed:
        error: str | None = None
        final = False  # a refused target: no later attempt can succeed
        try:
            senders.send(out.kind, out.target, out.secret, payloads[out.alert_id],
                         context.settings, delivery_id=str(out.delivery_id))  # fmt: skip
        except senders.DeliveryFailed as exc:
            error, final = exc.message, isinstance(exc, senders.DeliveryRefused)
        except Exception as exc:  # anything else about this channel stays with this channel
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:  # the record and the log show no part of a URL but its host
            error = targets.scrub(error, out.target)
        attempts = out.attempts + 1
        retry_at = None
        if error is not None and not final and attempts < outages.DELIVERY_TRIES:
            delay = outages.DELIVERY_WAITS_S[min(attempts, len(outages.DELIVERY_WAITS_S)) - 1]
            retry_at = utcnow() + timedelta(seconds=delay)
        with context.db.session() as session:
            repo.record_delivery(session, out.delivery_id, error, retry_at)
        metrics.DELIVERIES.labels(out.kind, "delivered" if error is None else "failed").inc()
        if error is None:
            logger.info("alert %s delivered to %s channel %s", out.alert_id, out.kind,
                        out.channel_id)  # fmt: skip
        elif retry_at is not None:
            logger.warning("alert %s to %s channel %s failed (%s); attempt %d at %s",
                           out.alert_id, out.kind, out.channel_id, error, attempts + 1,
                           retry_at.isoformat())  # fmt: skip
            # The fast path to the next attempt; if this message is lost, the ticker's
            # outbox step sends the delivery all the same once it is due.
            due_ms = int((retry_at - utcnow()).total_seconds() * 1000) + RETRY_MARGIN_MS
            notify_channels(context, out.alert_id, delay_ms=max(due_ms, 0))
        elif final:
            logger.error("alert %s to %s channel %s refused; not retried: %s",
                         out.alert_id, out.kind, out.channel_id, error)  # fmt: skip
        else:
            logger.error("alert %s to %s channel %s failed %d times; giving up: %s",
                         out.alert_id, out.kind, out.channel_id, attempts, error)  # fmt: skip
    return len(claimed)


def handle_dead_letter(context: Context, message: dict[str, Any]) -> None:
    """A run message exhausted its retries: make sure its task ended and someone was told."""
    try:
        task_id = uuid.UUID(str(message["args"][0]))
    except (KeyError, IndexError, ValueError):
        task_id = None
    new_alert = None
    with context.db.session() as session:
        task = task_repo.find_task(session, task_id) if task_id else None
        if (
            task is not None
            and task.status == "failed"
            and repo.latest_alert_of_task(session, task.id)
        ):
            logger.info("run message of task %s dead-lettered; its failure was alerted", task.id)
            return
        status = task.status if task is not None else None
        if task is not None and task_repo.mark_dead_lettered(
            session, task.id, "its run message reached the dead-letter set"
        ):
            status = "failed"
        new_alert = raise_alert(
            session, context, "dead_letter", "error",
            f"message {message.get('message_id')} of actor {message.get('actor_name')} "
            f"reached the dead-letter set" + (f" (task {task_id}, {status})" if task else ""),
            spider_id=task.spider_id if task else None, task_id=task.id if task else None,
        )  # fmt: skip
    notify_channels(context, new_alert)


def list_alerts(
    context: Context, *, page: int, page_size: int, level: str | None,
    is_read: bool | None, spider: str | None,
) -> tuple[list[Alert], int]:  # fmt: skip
    """A page of alerts, most recently seen first; `spider` is an id or a name."""
    with context.db.read() as session:
        spider_id = spider_repo.get_spider(session, spider).id if spider else None
        rows, total = repo.list_alerts(session, page=page, page_size=page_size, level=level,
                                       is_read=is_read, spider_id=spider_id)  # fmt: skip
        return list(rows), total


def unread_count(context: Context) -> int:
    """How many alerts are unread."""
    with context.db.read() as session:
        return repo.unread_count(session)


def mark_read(context: Context, alert_ref: str) -> Alert:
    """Mark one alert read and return it."""
    with context.db.session() as session:
        return repo.mark_read(session, alert_ref)


def mark_all_read(context: Context) -> int:
    """Mark every alert read; returns how many changed."""
    with context.db.session() as session:
        return repo.mark_all_read(session)


def deliveries(context: Context, ref: str) -> list[Delivery]:
    """The delivery records of an alert."""
    with context.db.read() as session:
        alert_id = repo.get_alert(session, ref).id
        return repo.deliveries_of(session, [alert_id])[alert_id]


def deliveries_by_alert(
    context: Context, alert_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[Delivery]]:
    """The delivery records of a page of alerts, read at once."""
    with context.db.read() as session:
        return repo.deliveries_of(session, alert_ids)
