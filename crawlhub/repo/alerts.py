"""Alerts (folded repeats), notification channels and per-channel deliveries."""

import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.orm import Session

from crawlhub.repo import reach
from crawlhub.repo.db import get_or_404
from crawlhub.repo.models import Alert, Channel, Delivery
from crawlhub.repo.pages import paginate
from crawlhub.repo.types import utcnow

LEVELS = ("info", "warning", "error")


def raise_alert(
    session: Session,
    *,
    type: str,
    level: str,
    message: str,
    spider_id: uuid.UUID | None,
    task_id: uuid.UUID | None,
    fold_after: datetime,
) -> tuple[Alert, bool]:
    """Record an alert, folding it into one of the same type and spider seen since fold_after.

    Returns the alert and whether it is new (only new alerts are delivered to channels).
    """
    if session.get_bind().dialect.name == "postgresql":
        # Serialise concurrent raises of one (type, spider) so they fold instead of racing.
        key = zlib.crc32(f"{type}:{spider_id}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    spider_match = Alert.spider_id.is_(None) if spider_id is None else Alert.spider_id == spider_id
    existing = session.scalar(
        select(Alert)
        .where(Alert.type == type, spider_match, Alert.last_seen_at >= fold_after)
        .order_by(Alert.last_seen_at.desc())
        .limit(1)
        .with_for_update()
    )
    now = utcnow()
    if existing is not None:
        existing.count += 1
        existing.last_seen_at = now
        existing.message = message
        existing.task_id = task_id
        existing.is_read = False
        if LEVELS.index(level) > LEVELS.index(existing.level):
            existing.level = level
        session.flush()
        return existing, False
    alert = Alert(type=type, level=level, message=message, spider_id=spider_id, task_id=task_id,
                  created_at=now, last_seen_at=now)  # fmt: skip
    session.add(alert)
    session.flush()
    return alert, True


def get_alert(session: Session, ref: uuid.UUID | str) -> Alert:
    """One alert; NotFound otherwise."""
    return get_or_404(session, Alert, ref, "alert")


def mark_read(session: Session, ref: uuid.UUID | str) -> Alert:
    """Mark one alert read and return it."""
    alert = get_alert(session, ref)
    alert.is_read = True
    session.flush()
    return alert


def list_alerts(
    session: Session,
    *,
    page: int,
    page_size: int,
    level: str | None = None,
    is_read: bool | None = None,
    spider_id: uuid.UUID | None = None,
) -> tuple[Sequence[Alert], int]:
    """A page of alerts, most recently seen first."""
    stmt = reach.narrow(select(Alert), Alert).order_by(Alert.last_seen_at.desc(), Alert.id)
    if level is not None:
        stmt = stmt.where(Alert.level == level)
    if is_read is not None:
        stmt = stmt.where(Alert.is_read.is_(is_read))
    if spider_id is not None:
        stmt = stmt.where(Alert.spider_id == spider_id)
    return paginate(session, stmt, page, page_size)


def unread_count(session: Session) -> int:
    """How many alerts are unread."""
    return (
        session.scalar(
            reach.narrow(select(func.count()).select_from(Alert), Alert).where(
                Alert.is_read.is_(False)
            )
        )
        or 0
    )


def mark_all_read(session: Session) -> int:
    """Mark every unread alert read (of the projects where the caller may); returns how many
    changed."""
    stmt = (
        update(Alert)
        .where(Alert.is_read.is_(False), reach.visible(Alert, acting=True))
        .values(is_read=True)
    )
    return session.execute(stmt).rowcount or 0  # type: ignore[attr-defined]


def latest_alert_of_task(session: Session, task_id: uuid.UUID) -> Alert | None:
    """The last alert that names a task."""
    return session.scalar(
        select(Alert).where(Alert.task_id == task_id).order_by(Alert.last_seen_at.desc()).limit(1)
    )


# --- channels and deliveries -----------------------------------------------------------


def get_channel(session: Session, ref: uuid.UUID | str) -> Channel:
    """One channel; NotFound otherwise."""
    return get_or_404(session, Channel, ref, "channel")


def list_channels(session: Session, *, page: int, page_size: int) -> tuple[Sequence[Channel], int]:
    """A page of channels, oldest first."""
    return paginate(
        session, select(Channel).order_by(Channel.created_at, Channel.id), page, page_size
    )


def create_channel(session: Session, fields: dict[str, Any]) -> Channel:
    """Insert a channel."""
    channel = Channel(**fields)
    session.add(channel)
    session.flush()
    return channel


def update_channel(session: Session, channel: Channel, changes: dict[str, Any]) -> Channel:
    """Apply checked changes to a channel."""
    for key, value in changes.items():
        setattr(channel, key, value)
    session.flush()
    return channel


def delete_channel(session: Session, ref: uuid.UUID | str) -> None:
    """Delete a channel and its delivery records."""
    session.delete(get_channel(session, ref))
    session.flush()


def channels_for(session: Session, alert: Alert) -> Sequence[Channel]:
    """Enabled channels whose minimum level and spider filter match an alert."""
    levels = LEVELS[: LEVELS.index(alert.level) + 1]
    return session.scalars(
        select(Channel)
        .where(
            Channel.enabled.is_(True),
            Channel.min_level.in_(levels),
            or_(Channel.spider_id.is_(None), Channel.spider_id == alert.spider_id),
        )
        .order_by(Channel.created_at)
    ).all()


def queue_deliveries(session: Session, alert: Alert, now: datetime) -> int:
    """Write a pending delivery of an alert to every matching channel (the outbox), in the
    alert's own transaction; how many."""
    channels = channels_for(session, alert)
    for channel in channels:
        session.add(Delivery(alert_id=alert.id, channel_id=channel.id, status="pending",
                             attempts=0, next_attempt_at=now))  # fmt: skip
    session.flush()
    return len(channels)


@dataclass(frozen=True)
class Outgoing:
    """A claimed delivery and what sending it needs."""

    delivery_id: uuid.UUID
    alert_id: uuid.UUID
    channel_id: uuid.UUID
    kind: str
    target: str
    secret: str | None
    attempts: int


def claim_deliveries(
    session: Session, now: datetime, hold_until: datetime, limit: int,
    alert_id: uuid.UUID | None = None,
) -> list[Outgoing]:  # fmt: skip
    """Claim due pending deliveries (of one alert, or any), skipping those another process
    holds, and hide them until `hold_until`: whoever claims one sends it."""
    stmt = (
        select(Delivery, Channel)
        .join(Channel, Channel.id == Delivery.channel_id)
        .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
        .with_for_update(of=Delivery, skip_locked=True)
    )
    if alert_id is not None:
        stmt = stmt.where(Delivery.alert_id == alert_id)
    claimed = []
    for delivery, channel in session.execute(stmt).all():
        delivery.next_attempt_at = hold_until
        claimed.append(Outgoing(delivery.id, delivery.alert_id, channel.id, channel.kind,
                                channel.target, channel.secret, delivery.attempts))  # fmt: skip
    session.flush()
    return claimed


def record_delivery(
    session: Session, delivery_id: uuid.UUID, error: str | None, retry_at: datetime | None
) -> None:
    """Record one attempt: `delivered`; or, failed, `pending` again until `retry_at`, or
    `failed` for good when there is no next attempt."""
    status = "delivered" if error is None else ("pending" if retry_at else "failed")
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(attempts=Delivery.attempts + 1, last_error=error, status=status,
                next_attempt_at=retry_at if error is not None else None)
    )  # fmt: skip


def deliveries_of(
    session: Session, alert_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Delivery]]:
    """Every delivery record of some alerts (one query), by alert."""
    found: dict[uuid.UUID, list[Delivery]] = {alert_id: [] for alert_id in alert_ids}
    if alert_ids:
        for delivery in session.scalars(
            select(Delivery).where(Delivery.alert_id.in_(alert_ids)).order_by(Delivery.created_at)
        ):
            found[delivery.alert_id].append(delivery)
    return found
