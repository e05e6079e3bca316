"""The data lifecycle, on the database: items and log lines past their spider's (or the
default) retention, finished runs, alerts and deliveries past theirs, the packages of old
versions. (Each worker collects its own disk: extracted versions and environments unused
for CRAWLHUB_ENV_TTL_DAYS, run work dirs when their slot is given back.)"""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from crawlhub.config import Settings
from crawlhub.repo import expiry, rollup
from crawlhub.repo import items as repo
from crawlhub.repo.db import Database, Session
from crawlhub.services import accounts

logger = logging.getLogger(__name__)

RETENTION_BATCH = 5000  # rows per delete transaction
RETENTION_ROUNDS = 20  # batches per retention step, so one step stays short
TASK_BATCH = 100  # finished runs per delete (their items and log lines go with them)
VERSION_BATCH = 20  # packages dropped per transaction
ROLLUP_MIN_DAYS = 8  # run counts per hour kept at least this long (the week chart)


def expire(db: Database, default_days: int | None, now: datetime) -> int:
    """Delete items and log lines past their retention, in bounded batches; returns the count."""
    with db.session() as session:
        policies: list[tuple[uuid.UUID | None, int]] = list(repo.spiders_with_retention(session))
    if default_days is not None:
        policies.append((None, default_days))
    gone = 0
    for spider_id, days in policies:
        cutoff = now - timedelta(days=days)
        for _ in range(RETENTION_ROUNDS):
            with db.session() as session:
                deleted = repo.expire_batch(session, spider_id, cutoff, RETENTION_BATCH)
            gone += deleted
            if deleted < RETENTION_BATCH:
                break
    if gone:
        logger.info("retention: deleted %d expired item(s) and log line(s)", gone)
    return gone


def expire_history(db: Database, settings: Settings, now: datetime) -> int:
    """Delete finished runs, alerts and deliveries past their retention and drop the packages
    of versions past CRAWLHUB_KEEP_VERSIONS, in bounded batches; returns the count."""
    steps: list[tuple[str, Callable[[Session], int]]] = [
        ("finished run(s)", lambda s: expiry.old_tasks(
            s, now - timedelta(days=settings.task_retention_days), TASK_BATCH)),
        ("alert(s)", lambda s: expiry.old_alerts(
            s, now - timedelta(days=settings.alert_retention_days), RETENTION_BATCH)),
        ("delivery(ies)", lambda s: expiry.old_deliveries(
            s, now - timedelta(days=settings.alert_retention_days), RETENTION_BATCH)),
        ("hour(s) of run counts", lambda s: rollup.prune(
            s, now - timedelta(days=max(settings.task_retention_days, ROLLUP_MIN_DAYS)),
            RETENTION_ROUNDS)),
        ("forgotten sign-in failure count(s)", lambda s: expiry.old_sign_in_failures(
            s, now - accounts.FORGET_AFTER, RETENTION_BATCH)),
        ("audit event(s)", lambda s: expiry.old_audit_events(
            s, now - timedelta(days=settings.audit_retention_days), RETENTION_BATCH)),
        ("old version package(s)", lambda s: expiry.prune_archives(
            s, expiry.prunable_versions(s, settings.keep_versions, VERSION_BATCH))),
    ]  # fmt: skip
    gone = 0
    for what, step in steps:
        count = 0
        for _ in range(RETENTION_ROUNDS):
            with db.session() as session:
                deleted = step(session)
            count += deleted
            if deleted == 0:
                break
        if count:
            logger.info("retention: %d %s", count, what)
        gone += count
    return gone
