"""Spiders: the runnable entries of projects."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crawlhub.errors import Conflict
from crawlhub.repo import items, reach
from crawlhub.repo.db import find_by_name, get_by_ref
from crawlhub.repo.models import Spider, Task
from crawlhub.repo.pages import paginate
from crawlhub.repo.statuses import ACTIVE


def names_by_id(session: Session, spider_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The names of these spiders (those that exist)."""
    if not spider_ids:
        return {}
    rows = session.execute(select(Spider.id, Spider.name).where(Spider.id.in_(spider_ids)))
    return {spider_id: name for spider_id, name in rows}


def projects_by_id(session: Session, spider_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """The project of each of these spiders (those that exist)."""
    if not spider_ids:
        return {}
    rows = session.execute(select(Spider.id, Spider.project_id).where(Spider.id.in_(spider_ids)))
    return {spider_id: project_id for spider_id, project_id in rows}


def all_names(session: Session) -> list[str]:
    """Every spider's name, in order."""
    return list(session.scalars(reach.narrow(select(Spider.name), Spider).order_by(Spider.name)))


def get_spider(session: Session, ref: str, *, for_update: bool = False) -> Spider:
    """The spider with this id or name; NotFound otherwise."""
    return get_by_ref(session, Spider, ref, "spider", for_update=for_update)


def find_spider(session: Session, name: str) -> Spider | None:
    """The spider of this name, if any."""
    return find_by_name(session, Spider, name)


def spider_in_project(session: Session, project_id: uuid.UUID, name: str) -> Spider | None:
    """A project's spider as Scrapy knows it: a scrapy spider by its entry, a python spider
    by its name (the oldest, should two share one)."""
    return session.scalar(
        select(Spider).where(
            Spider.project_id == project_id,
            ((Spider.kind == "scrapy") & (Spider.entry == name))
            | ((Spider.kind == "python") & (Spider.name == name)),
        ).order_by(Spider.created_at).limit(1)
    )  # fmt: skip


def find_by_id(session: Session, spider_id: uuid.UUID) -> Spider | None:
    """A spider by id, None when it is gone."""
    return session.get(Spider, spider_id)


def name_of(session: Session, spider_id: uuid.UUID) -> str | None:
    """A spider's name, None when it is gone."""
    name: str | None = session.scalar(select(Spider.name).where(Spider.id == spider_id))
    return name


def list_spiders(
    session: Session,
    *,
    page: int,
    page_size: int,
    kind: str | None = None,
    enabled: bool | None = None,
    name_contains: str | None = None,
    project_id: uuid.UUID | None = None,
) -> tuple[Sequence[Spider], int]:
    """A page of spiders, newest first."""
    stmt = reach.narrow(select(Spider), Spider).order_by(Spider.created_at.desc(), Spider.id)
    if project_id is not None:
        stmt = stmt.where(Spider.project_id == project_id)
    if name_contains:
        stmt = stmt.where(Spider.name.icontains(name_contains, autoescape=True))
    if kind is not None:
        stmt = stmt.where(Spider.kind == kind)
    if enabled is not None:
        stmt = stmt.where(Spider.enabled == enabled)
    return paginate(session, stmt, page, page_size)


def create_spider(session: Session, fields: dict[str, Any]) -> Spider:
    """Insert a spider; Conflict when the name is taken."""
    spider = Spider(**fields)
    session.add(spider)
    _flush_unique_name(session, fields["name"])
    return spider


def update_spider(session: Session, spider: Spider, changes: dict[str, Any]) -> Spider:
    """Apply changes to a spider; Conflict when a rename collides."""
    for key, value in changes.items():
        setattr(spider, key, value)
    _flush_unique_name(session, spider.name)
    return spider


def _flush_unique_name(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a spider named '{name}' already exists") from exc


def delete_spider(session: Session, spider: Spider) -> None:
    """Delete a spider with its schedules, tasks, logs and items (its project stays)."""
    active = session.scalar(
        select(func.count())
        .select_from(Task)
        .where(Task.spider_id == spider.id, Task.status.in_(ACTIVE))
    )
    if active:
        raise Conflict(
            f"spider '{spider.name}' has {active} active task(s); cancel them first",
            details={"active_tasks": active},
        )
    session.delete(spider)
    session.flush()  # its runs first (cascade), then their items: see items.delete_for_tasks
    items.delete_items(session, items.ItemFilter(spider_id=spider.id))
