"""Retention: items and log lines past their spider's (or the default) age are deleted."""

import logging
import uuid
from datetime import datetime, timedelta

from crawlhub.repo import items as repo
from crawlhub.repo.db import Database

logger = logging.getLogger(__name__)

RETENTION_BATCH = 5000  # rows per delete transaction
RETENTION_ROUNDS = 20  # batches per retention step, so one step stays short


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
