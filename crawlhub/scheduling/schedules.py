"""Schedules of spiders: create, change, pause, delete, preview their fire times."""

import threading
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from crawlhub.registry.spiders import check_scrapy_settings
from crawlhub.repo import reports
from crawlhub.repo import schedules as repo
from crawlhub.repo import spiders as spider_repo
from crawlhub.repo.db import Database, db_now
from crawlhub.repo.models import Schedule, Task
from crawlhub.repo.users import audit, audit_change, shown
from crawlhub.scheduling.cron import Cron

DEFAULTS: dict[str, Any] = {"timezone": "UTC", "params": {}, "settings": {}, "enabled": True,
                            "overlap": "forbid", "catchup": "latest", "jitter_s": 0}  # fmt: skip


def create_schedule(
    db: Database, spider_ref: str, given: dict[str, Any], wake: threading.Event
) -> Schedule:
    """Add a schedule to a spider from its checked fields; its first fire is the next one
    after now."""
    fields = {**DEFAULTS, **given, "id": uuid.uuid4()}
    cron = Cron(fields["cron"], fields["timezone"], hash_id=str(fields["id"]))
    with db.session() as session:
        spider = spider_repo.get_spider(session, spider_ref)
        check_scrapy_settings(fields["settings"], spider.kind)
        fields["next_fire_at"] = cron.next_after(db_now(session))
        schedule = repo.create_schedule(session, {**fields, "spider_id": spider.id})
        audit(session, "schedule.create", f"schedule:{schedule.id}",
              after=shown("", {**given, "spider": spider.name}))  # fmt: skip
    wake.set()
    return schedule


def update_schedule(
    db: Database, ref: str, changes: dict[str, Any], wake: threading.Event
) -> Schedule:
    """Change a schedule; a new cron or zone, or resuming it, recomputes its next fire from now."""
    changes = dict(changes)
    with db.session() as session:
        schedule = repo.get_schedule(session, ref, for_update=True)
        if changes.get("settings"):
            check_scrapy_settings(changes["settings"], repo.spider_of(session, schedule).kind)
        expr = changes.get("cron", schedule.cron)
        zone = changes.get("timezone", schedule.timezone)
        cron = Cron(expr, zone, hash_id=str(schedule.id))
        resumed = changes.get("enabled") is True and not schedule.enabled
        if changes.get("enabled") is False:
            # A paused schedule has no next fire: the ticker's due-time index then skips it.
            changes["next_fire_at"] = None
        elif resumed or "cron" in changes or "timezone" in changes:
            # From now on: resuming does not replay the fires missed while paused.
            changes["next_fire_at"] = cron.next_after(db_now(session))
        audit_change(session, "schedule.update", f"schedule:{schedule.id}", schedule, changes)
        repo.update_schedule(session, schedule, changes)
    wake.set()
    return schedule


def get_schedule(db: Database, ref: str) -> Schedule:
    """One schedule."""
    with db.read() as session:
        return repo.get_schedule(session, ref)


def list_schedules(
    db: Database, spider_ref: str, *, page: int, page_size: int
) -> tuple[list[Schedule], int]:
    """A page of a spider's schedules."""
    with db.read() as session:
        spider = spider_repo.get_spider(session, spider_ref)
        rows, total = repo.list_schedules(session, spider.id, page=page, page_size=page_size)
        return list(rows), total


def list_all(
    db: Database, *, page: int, page_size: int
) -> tuple[list[tuple[Schedule, str, Task | None]], int]:
    """A page of every schedule, soonest next fire first (paused last), with its spider's name
    and its newest run."""
    with db.read() as session:
        rows, total = repo.list_all(session, page=page, page_size=page_size)
        last = reports.schedule_outcomes(session, [schedule.id for schedule, _ in rows])
        return [(s, name, last.get(s.id)) for s, name in rows], total


def read_expression(
    expr: str, timezone: str, n: int = 5
) -> tuple[str, list[tuple[datetime, datetime]]]:
    """A cron expression as a sentence and its next n fires (UTC, local); InvalidInput with
    the reason when it cannot be a schedule."""
    cron = Cron(expr, timezone or "UTC", hash_id="preview")
    zone = ZoneInfo(cron.timezone)
    fires = cron.preview(datetime.now(UTC), n)
    return cron.describe(), [(fire, fire.astimezone(zone)) for fire in fires]


def delete_schedule(db: Database, ref: str) -> None:
    """Delete a schedule (its past runs stay)."""
    with db.session() as session:
        schedule = repo.get_schedule(session, ref, for_update=True)
        repo.delete_schedule(session, schedule)
        audit(session, "schedule.delete", f"schedule:{schedule.id}")


def preview(
    db: Database, ref: str, n: int, after: datetime | None
) -> list[tuple[datetime, datetime]]:
    """The next n fires after `after` (default now), each in UTC and in the schedule's zone."""
    with db.read() as session:
        schedule = repo.get_schedule(session, ref)
        start = after or db_now(session)
    cron = Cron(schedule.cron, schedule.timezone, hash_id=str(schedule.id))
    zone = ZoneInfo(schedule.timezone)
    return [(fire, fire.astimezone(zone)) for fire in cron.preview(start, n)]
