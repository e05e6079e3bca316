"""Projects and their immutable, numbered versions."""

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer

from crawlhub.errors import Conflict, NotFound
from crawlhub.repo import items, reach
from crawlhub.repo.db import find_by_name, get_by_ref
from crawlhub.repo.models import Project, ProjectVersion, Spider, Task
from crawlhub.repo.pages import paginate
from crawlhub.repo.statuses import ACTIVE


def get_project(session: Session, ref: str, *, for_update: bool = False) -> Project:
    """The project with this id or name; NotFound otherwise."""
    return get_by_ref(session, Project, ref, "project", for_update=for_update)


def find_project(session: Session, name: str) -> Project | None:
    """The project of this name, if any."""
    return find_by_name(session, Project, name)


def names_by_id(session: Session, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The names of these projects (those that exist)."""
    chosen = list(ids)
    if not chosen:
        return {}
    rows = session.execute(select(Project.id, Project.name).where(Project.id.in_(chosen)))
    return {project_id: name for project_id, name in rows}


def project_names(session: Session) -> list[str]:
    """Every project's name, sorted."""
    return list(session.scalars(reach.narrow(select(Project.name), Project).order_by(Project.name)))


def list_projects(
    session: Session, *, page: int, page_size: int, kind: str | None = None,
    name_contains: str | None = None,
) -> tuple[Sequence[Project], int]:  # fmt: skip
    """A page of projects, newest first."""
    stmt = reach.narrow(select(Project), Project).order_by(Project.created_at.desc(), Project.id)
    if name_contains:
        stmt = stmt.where(Project.name.icontains(name_contains, autoescape=True))
    if kind is not None:
        stmt = stmt.where(Project.kind == kind)
    return paginate(session, stmt, page, page_size)


def create_project(session: Session, fields: dict[str, Any]) -> Project:
    """Insert a project; Conflict when the name is taken, Forbidden for a caller without a
    role on every project (a member of some)."""
    reach.require_everywhere("create a project")
    project = Project(**fields)
    session.add(project)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a project named '{fields['name']}' already exists") from exc
    return project


def rename_project(session: Session, project: Project, name: str) -> Project:
    """Give a project a new name; Conflict when it is taken."""
    project.name = name
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a project named '{name}' already exists") from exc
    return project


def spiders_of(session: Session, project_id: uuid.UUID) -> list[Spider]:
    """A project's spiders, by name."""
    stmt = select(Spider).where(Spider.project_id == project_id).order_by(Spider.name)
    return list(session.scalars(stmt))


def spider_names(session: Session, project_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """The names of each project's spiders, by name."""
    names: dict[uuid.UUID, list[str]] = {pid: [] for pid in project_ids}
    stmt = (
        select(Spider.project_id, Spider.name)
        .where(Spider.project_id.in_(project_ids))
        .order_by(Spider.name)
    )
    for project_id, name in session.execute(stmt):
        names[project_id].append(name)
    return names


def delete_project(session: Session, project: Project) -> None:
    """Delete a project with its versions and spiders (and theirs); Conflict while any of its
    spiders has an active task."""
    active = session.scalar(
        select(func.count())
        .select_from(Task)
        .join(Spider, Spider.id == Task.spider_id)
        .where(Spider.project_id == project.id, Task.status.in_(ACTIVE))
    )
    if active:
        raise Conflict(
            f"project '{project.name}' has {active} active task(s); cancel them first",
            details={"active_tasks": active},
        )
    spiders = spiders_of(session, project.id)
    for spider in spiders:
        session.delete(spider)
    session.delete(project)
    session.flush()  # the runs first (cascade), then their items: see items.delete_for_tasks
    for spider in spiders:
        items.delete_items(session, items.ItemFilter(spider_id=spider.id))


def add_version(session: Session, project: Project, fields: dict[str, Any]) -> ProjectVersion:
    """Store a new version numbered after the last one and make it current."""
    # The caller locked the project row, so concurrent uploads number one after another.
    last = session.scalar(
        select(func.max(ProjectVersion.number)).where(ProjectVersion.project_id == project.id)
    )
    version = ProjectVersion(project_id=project.id, number=(last or 0) + 1, **fields)
    session.add(version)
    project.current_version = version.number
    session.flush()
    return version


def list_versions(
    session: Session, project: Project, *, page: int, page_size: int
) -> tuple[Sequence[ProjectVersion], int]:
    """A page of a project's versions, newest first (archives not loaded)."""
    stmt = (
        select(ProjectVersion)
        .where(ProjectVersion.project_id == project.id)
        .order_by(ProjectVersion.number.desc())
    )
    return paginate(session, stmt, page, page_size)


def versions_of(session: Session, project_id: uuid.UUID) -> Sequence[ProjectVersion]:
    """Every version of a project, oldest first (archives not loaded)."""
    return session.scalars(
        select(ProjectVersion).where(ProjectVersion.project_id == project_id)
        .order_by(ProjectVersion.number)
    ).all()  # fmt: skip


def delete_versions(session: Session, project: Project, numbers: Sequence[int]) -> int:
    """Delete some versions of a project (refused while an active run waits for one: the
    number of such runs is returned and nothing deleted); the newest left becomes current."""
    waiting = session.scalar(
        select(func.count()).select_from(Task).join(Spider, Spider.id == Task.spider_id)
        .where(Spider.project_id == project.id, Task.version.in_(numbers),
               Task.status.in_(ACTIVE))
    )  # fmt: skip
    if waiting:
        return waiting
    session.execute(
        delete(ProjectVersion).where(
            ProjectVersion.project_id == project.id, ProjectVersion.number.in_(numbers)
        )
    )
    project.current_version = session.scalar(
        select(func.max(ProjectVersion.number)).where(ProjectVersion.project_id == project.id)
    )
    return 0


def get_version(
    session: Session, project: Project, number: int, *, archive: bool = False
) -> ProjectVersion:
    """One version of a project (its archive bytes loaded when asked)."""
    stmt = select(ProjectVersion).where(
        ProjectVersion.project_id == project.id, ProjectVersion.number == number
    )
    if archive:
        stmt = stmt.options(undefer(ProjectVersion.archive))
    version = session.scalar(stmt)
    if version is None:
        raise NotFound(f"project '{project.name}' has no version {number}")
    return version


def version_state(
    session: Session, project: Project, number: int
) -> Row[int, str, str | None, list[str] | None]:
    """What a run's start asks of a version: its `number`, `env_status`, `env_error` and
    `spiders`, in one query of those columns (not its build log nor its rules)."""
    row = session.execute(
        select(ProjectVersion.number, ProjectVersion.env_status, ProjectVersion.env_error,
               ProjectVersion.spiders)
        .where(ProjectVersion.project_id == project.id, ProjectVersion.number == number)
    ).first()  # fmt: skip
    if row is None:
        raise NotFound(f"project '{project.name}' has no version {number}")
    return row


def version_label(session: Session, project_id: uuid.UUID, number: int | None) -> str | None:
    """The label a Scrapyd client gave a version (None: none, or no such version)."""
    if number is None:
        return None
    label: str | None = session.scalar(select(ProjectVersion.label).where(
        ProjectVersion.project_id == project_id, ProjectVersion.number == number))  # fmt: skip
    return label


def current_versions(
    session: Session, project_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ProjectVersion]:
    """The current version of each of these projects that has one, in one query."""
    stmt = (
        select(ProjectVersion)
        .join(Project, Project.id == ProjectVersion.project_id)
        .where(Project.id.in_(project_ids), ProjectVersion.number == Project.current_version)
    )
    return {v.project_id: v for v in session.scalars(stmt)}


def version_by_id(
    session: Session, version_id: uuid.UUID, *, archive: bool = True
) -> ProjectVersion | None:
    """A version by its id (its archive loaded unless not asked for); None when it is gone."""
    stmt = select(ProjectVersion).where(ProjectVersion.id == version_id)
    if archive:
        stmt = stmt.options(undefer(ProjectVersion.archive))
    return session.scalar(stmt)


def current_env_keys(session: Session) -> set[str]:
    """The environments of every project's current version (kept by clean-up)."""
    stmt = (
        select(ProjectVersion.env_key)
        .join(Project, Project.id == ProjectVersion.project_id)
        .where(
            ProjectVersion.number == Project.current_version,
            ProjectVersion.env_key.is_not(None),
        )
    )
    return {k for k in session.scalars(stmt) if k is not None}
