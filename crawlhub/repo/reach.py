"""What the caller of the current request may see and change, project by project.

The HTTP layer's access check sets `REACH` for each request of a caller whose roles differ
between projects (None: every project, as for the workers, the ticker, an instance admin or
anyone with a role on every project). The getters of rows that belong to a project
(projects, versions, spiders, runs, schedules, alerts) look only among the projects the
caller may read, so one it may not see is NotFound (and a short id does not tell it exists
by being ambiguous); `check` then refuses, Forbidden, an action the caller's role on the
row's project does not allow. Every list narrows the same way (`narrow`, `visible`).
"""

import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, or_, select, true
from sqlalchemy.orm import Session

from crawlhub.errors import Forbidden, NotFound
from crawlhub.repo.models import Alert, Item, Project, ProjectVersion, Schedule, Spider, Task


@dataclass(frozen=True)
class Reach:
    """The projects a caller may read, and those where it may take this request's action
    (None: every project)."""

    readable: frozenset[uuid.UUID] | None
    acting: frozenset[uuid.UUID] | None
    action: str  # the request's action, for the refusal's message
    who: str


REACH: ContextVar[Reach | None] = ContextVar("crawlhub_reach", default=None)

S = TypeVar("S")  # a select statement, of any row shape


def readable_projects() -> frozenset[uuid.UUID] | None:
    """The projects the caller may read (None: every project)."""
    reach = REACH.get()
    return None if reach is None else reach.readable


def _projects(acting: bool) -> frozenset[uuid.UUID] | None:
    reach = REACH.get()
    if reach is None:
        return None
    return reach.acting if acting else reach.readable


def visible_projects(column: Any, *, acting: bool = False) -> ColumnElement[bool]:
    """A condition on a project id column: a project the caller may read (`acting`: where
    it may take the request's action)."""
    projects = _projects(acting)
    if projects is None:
        return true()
    condition: ColumnElement[bool] = column.in_(projects)
    return condition


def visible_spiders(column: Any, *, acting: bool = False) -> ColumnElement[bool]:
    """A condition on a spider id column: a spider of a project the caller may read
    (`acting`: where it may take the request's action)."""
    projects = _projects(acting)
    if projects is None:
        return true()
    condition: ColumnElement[bool] = column.in_(
        select(Spider.id).where(Spider.project_id.in_(projects))
    )
    return condition


def visible(model: Any, *, acting: bool = False) -> ColumnElement[bool]:
    """The condition a row of `model` must meet to be seen by the caller (`acting`: to be
    changed by the request's action); `true()` for rows of no project (users, channels)."""
    if REACH.get() is None:
        return true()
    if model is Project:
        return visible_projects(Project.id, acting=acting)
    if model in (Spider, ProjectVersion):
        return visible_projects(model.project_id, acting=acting)
    if model in (Task, Schedule, Item):
        return visible_spiders(model.spider_id, acting=acting)
    if model is Alert:  # one about no spider and no run (no worker online) is everyone's
        by_task = select(Task.id).where(visible_spiders(Task.spider_id, acting=acting))
        return or_(
            and_(Alert.spider_id.is_(None), Alert.task_id.is_(None)),
            visible_spiders(Alert.spider_id, acting=acting),
            and_(Alert.spider_id.is_(None), Alert.task_id.in_(by_task)),
        )
    return true()


def narrow(stmt: S, model: Any) -> S:
    """A query of `model`'s rows narrowed to those the caller may see."""
    if REACH.get() is None:
        return stmt
    select_: Any = stmt
    narrowed: S = select_.where(visible(model))
    return narrowed


def limited() -> bool:
    """Whether the caller's reach differs between projects."""
    return REACH.get() is not None


def check(session: Session, row: Any, what: str, ref: object) -> None:
    """NotFound when the caller may not see the project of a row (one found without
    narrowing), Forbidden when it may not take the request's action there."""
    reach = REACH.get()
    if reach is None:
        return
    project_id = project_of(session, row)
    if project_id is None:
        return
    if reach.readable is not None and project_id not in reach.readable:
        raise NotFound(f"{what} '{str(ref)[:80]}' not found")
    if reach.acting is not None and project_id not in reach.acting:
        raise Forbidden(f"{reach.who} may not {reach.action} in this project")


def require_everywhere(what: str) -> None:
    """Forbidden unless the request's action is allowed on every project (making one)."""
    reach = REACH.get()
    if reach is not None and reach.acting is not None:
        raise Forbidden(f"{reach.who} may not {what}: that takes a role on every project")


def project_of(session: Session, row: Any) -> uuid.UUID | None:
    """The project a row belongs to (None: it belongs to none)."""
    if isinstance(row, Project):
        return row.id
    if isinstance(row, Spider | ProjectVersion):
        return row.project_id
    if not isinstance(row, Task | Schedule | Alert):
        return None
    if row.spider_id is not None:
        spider_id: Any = row.spider_id
    elif isinstance(row, Alert) and row.task_id is not None:  # a run's alert
        spider_id = select(Task.spider_id).where(Task.id == row.task_id).scalar_subquery()
    else:
        return None
    found: uuid.UUID | None = session.scalar(
        select(Spider.project_id).where(Spider.id == spider_id)
    )
    return found
