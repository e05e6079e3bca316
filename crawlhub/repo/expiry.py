"""What the data lifecycle deletes: old finished runs, old alerts and their deliveries, the
packages of old versions. Every query works in bounded batches and never touches what is
current (a run not over, the current version, a version a run not over needs)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from crawlhub.repo import items
from crawlhub.repo.models import (
    Alert,
    AuditEvent,
    Delivery,
    Project,
    ProjectVersion,
    SignInFailures,
    Spider,
    Task,
)
from crawlhub.repo.statuses import ACTIVE, FINISHED

PRUNED = b""  # the archive of a version whose package was dropped


def old_tasks(session: Session, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` finished runs that ended (or were made) before `cutoff`, with
    their items and log lines; how many went."""
    ended = func.coalesce(Task.finished_at, Task.created_at)
    ids = session.scalars(
        select(Task.id).where(Task.status.in_(FINISHED), ended < cutoff).limit(limit)
    ).all()
    if not ids:
        return 0
    result: Any = session.execute(delete(Task).where(Task.id.in_(ids)))
    items.delete_for_tasks(session, ids)
    return int(result.rowcount or 0)


def old_alerts(session: Session, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` alerts last seen before `cutoff` (their deliveries with them)."""
    ids = select(Alert.id).where(Alert.last_seen_at < cutoff).limit(limit)
    result: Any = session.execute(delete(Alert).where(Alert.id.in_(ids.scalar_subquery())))
    return int(result.rowcount or 0)


def old_audit_events(session: Session, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` audit events older than `cutoff` (CRAWLHUB_AUDIT_RETENTION_DAYS)."""
    ids = select(AuditEvent.id).where(AuditEvent.at < cutoff).limit(limit)
    result: Any = session.execute(
        delete(AuditEvent).where(AuditEvent.id.in_(ids.scalar_subquery()))
    )
    return int(result.rowcount or 0)


def old_sign_in_failures(session: Session, cutoff: datetime, limit: int) -> int:
    """Forget up to `limit` counts of failed sign-ins last failed before `cutoff` and not
    locked now (a name guessed once must not stay a row forever)."""
    ids = (select(SignInFailures.key)
           .where(SignInFailures.last_failed_at < cutoff,
                  (SignInFailures.locked_until.is_(None)) | (SignInFailures.locked_until < cutoff))
           .limit(limit))  # fmt: skip
    result: Any = session.execute(
        delete(SignInFailures).where(SignInFailures.key.in_(ids.scalar_subquery()))
    )
    return int(result.rowcount or 0)


def old_deliveries(session: Session, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` deliveries that ended (delivered or given up) before `cutoff`."""
    ids = select(Delivery.id).where(Delivery.status != "pending", Delivery.updated_at < cutoff)
    result: Any = session.execute(
        delete(Delivery).where(Delivery.id.in_(ids.limit(limit).scalar_subquery()))
    )
    return int(result.rowcount or 0)


def prunable_versions(session: Session, keep: int, limit: int) -> Sequence[Any]:
    """Up to `limit` versions whose package may go: older than each project's newest `keep`,
    not its current one, not one a run not over needs, not pruned already."""
    later = aliased(ProjectVersion)
    newer = (
        select(func.count())
        .where(later.project_id == ProjectVersion.project_id,
               later.number > ProjectVersion.number)
        .scalar_subquery()
    )  # fmt: skip
    needed = (
        select(Task.id)
        .join(Spider, Spider.id == Task.spider_id)
        .where(Spider.project_id == ProjectVersion.project_id,
               Task.version == ProjectVersion.number, Task.status.in_(ACTIVE))
        .exists()
    )  # fmt: skip
    current = select(Project.current_version).where(Project.id == ProjectVersion.project_id)
    stmt = (
        select(ProjectVersion.id)
        .where(newer >= keep, ~needed,
               or_(ProjectVersion.number != current.scalar_subquery(),
                   current.scalar_subquery().is_(None)),
               func.length(ProjectVersion.archive) > 0)
        .limit(limit)
    )  # fmt: skip
    return session.scalars(stmt).all()


def prune_archives(session: Session, version_ids: Sequence[Any]) -> int:
    """Drop the packages of these versions (their rows, labels and history stay)."""
    if not version_ids:
        return 0
    result: Any = session.execute(
        update(ProjectVersion).where(ProjectVersion.id.in_(version_ids)).values(archive=PRUNED)
    )
    return int(result.rowcount or 0)
