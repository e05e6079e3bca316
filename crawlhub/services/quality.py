"""A spider's data quality rules (its own, or its version's), rules learnt from a good run,
and its runs' verdicts and statistics over time (docs/guide/quality.md)."""

import itertools
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crawlhub.context import Context
from crawlhub.errors import Conflict, InvalidInput
from crawlhub.quality import rules as quality_rules
from crawlhub.quality.verdict import learn
from crawlhub.repo import projects as project_repo
from crawlhub.repo import spiders as spider_repo
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.users import audit

HISTORY = 30  # runs the Quality page charts


@dataclass(frozen=True)
class Rules:
    """A spider's rules in force and where they come from."""

    spider: str
    project_id: uuid.UUID
    rules: dict[str, Any] | None  # in force: its own, else its current version's
    source: str | None  # "spider", "version N", None: none
    own: dict[str, Any] | None
    shipped: dict[str, Any] | None  # what its current version's crawlhub.toml gives it


def rules_of(context: Context, ref: str) -> Rules:
    with context.db.read() as session:
        spider = spider_repo.get_spider(session, ref)
        version = None
        if spider.current_version is not None:
            project = project_repo.get_project(session, str(spider.project_id))
            version = project_repo.get_version(session, project, spider.current_version)
        given = version.quality if version is not None else None
        shipped = quality_rules.in_force(None, given, spider.name, spider.entry)[0]
        rules, source = quality_rules.in_force(spider.quality, given, spider.name, spider.entry)
        if source == "version" and version is not None:
            source = f"version {version.number}"
        return Rules(spider.name, spider.project_id, rules, source, spider.quality, shipped)


def set_rules(context: Context, ref: str, rules: Any) -> Rules:
    """Set a spider's own rules (they win over its version's), or clear them (None)."""
    dumped = quality_rules.parse(rules).dump() if rules is not None else None
    with context.db.session() as session:
        spider = spider_repo.get_spider(session, ref, for_update=True)
        before = spider.quality
        spider.quality = dumped
        session.flush()
        audit(session, "spider.quality", f"spider:{spider.name}",
              before={"quality": before}, after={"quality": dumped})  # fmt: skip
    return rules_of(context, ref)


def learn_from(context: Context, ref: str, run: str) -> dict[str, Any]:
    """Rules a good run of the spider suggests (not saved: edit them, then set them)."""
    with context.db.read() as session:
        spider = spider_repo.get_spider(session, ref)
        task = task_repo.get_task(session, run)
        if task.spider_id != spider.id:
            raise InvalidInput(f"run {task.id} is not a run of {spider.name}")
        if task.status != "completed" or not (task.quality or {}).get("fields"):
            raise Conflict(f"run {task.id} has no item statistics to learn from: pick a "
                           "completed run with items")  # fmt: skip
        return learn(task.quality or {}, spider.kind == "scrapy")


@dataclass(frozen=True)
class RunQuality:
    """One run on the Quality page."""

    id: uuid.UUID
    created_at: datetime
    status: str
    verdict: str | None
    items: int
    quality: dict[str, Any]


def history(context: Context, ref: str, limit: int = HISTORY) -> list[RunQuality]:
    """The spider's newest finished runs with statistics, oldest first."""
    with context.db.read() as session:
        spider = spider_repo.get_spider(session, ref)
        rows = task_repo.with_quality(session, spider.id, limit)
    return [RunQuality(t.id, t.created_at, t.status, t.verdict, t.items_count, t.quality or {})
            for t in reversed(rows)]  # fmt: skip


def drift(runs: list[RunQuality]) -> list[tuple[RunQuality, list[str], list[str]]]:
    """Schema drift: for each run after the first, the fields that appeared and those that
    disappeared since the run before."""
    found = []
    for before, run in itertools.pairwise(runs):
        old = {k for k in before.quality.get("fields", {}) if "." not in k}
        new = {k for k in run.quality.get("fields", {}) if "." not in k}
        if old != new and before.items and run.items:
            found.append((run, sorted(new - old), sorted(old - new)))
    return found
