"""Projects: what is deployed. Each upload is a new immutable version; a worker then gets
it ready (builds its environment, lists its Scrapy spiders) and its new spiders appear."""

import configparser
import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from crawlhub.context import Context
from crawlhub.errors import Conflict, InvalidArchive, InvalidInput
from crawlhub.messaging import messages
from crawlhub.quality import rules
from crawlhub.registry import archives, requirements
from crawlhub.repo import projects as repo
from crawlhub.repo import spiders as spider_repo
from crawlhub.repo.db import Database, Session
from crawlhub.repo.models import Project, ProjectVersion, Spider
from crawlhub.repo.users import audit, audit_change, shown

logger = logging.getLogger(__name__)

LOG_CHARS = 64 * 1024  # of a build log, the end is kept
NAME_CHARS = re.compile(r"[^a-z0-9_-]+")


@dataclass
class ProjectView:
    """A project with the names of its spiders."""

    project: Project
    spiders: list[str]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.project, name)


def create_project(db: Database, fields: dict[str, Any]) -> ProjectView:
    """Register an empty project (its versions are uploaded next)."""
    with db.session() as session:
        project = repo.create_project(session, fields)
        audit(session, "project.create", f"project:{project.name}", after=shown("", fields))
        return ProjectView(project, [])


def get_project(db: Database, ref: str) -> ProjectView:
    """A project by id or name, with its spiders."""
    with db.read() as session:
        project = repo.get_project(session, ref)
        return ProjectView(project, repo.spider_names(session, [project.id])[project.id])


def list_projects(
    db: Database, *, page: int, page_size: int, kind: str | None = None,
    search: str | None = None,
) -> tuple[list[ProjectView], int]:  # fmt: skip
    """A page of projects, newest first, and the total count."""
    with db.read() as session:
        rows, total = repo.list_projects(session, page=page, page_size=page_size, kind=kind,
                                         name_contains=search)  # fmt: skip
        names = repo.spider_names(session, [p.id for p in rows])
        return [ProjectView(p, names[p.id]) for p in rows], total


def current_versions(db: Database, views: list[ProjectView]) -> dict[uuid.UUID, ProjectVersion]:
    """The current version of each project that has one (for a list of projects)."""
    with db.read() as session:
        return repo.current_versions(session, [v.project.id for v in views])


def update_project(db: Database, ref: str, changes: dict[str, Any]) -> ProjectView:
    """Rename a project (its spiders keep their names) or change its `max_concurrent_runs`."""
    with db.session() as session:
        project = repo.get_project(session, ref, for_update=True)
        audit_change(session, "project.rename" if "name" in changes else "project.update",
                     f"project:{project.name}", project, changes)  # fmt: skip
        if "name" in changes:
            repo.rename_project(session, project, changes["name"])
        if "max_concurrent_runs" in changes:
            project.max_concurrent_runs = changes["max_concurrent_runs"]
        return ProjectView(project, repo.spider_names(session, [project.id])[project.id])


def delete_project(db: Database, ref: str) -> None:
    """Delete a project with its versions and spiders; Conflict while a run is active."""
    with db.session() as session:
        project = repo.get_project(session, ref, for_update=True)
        repo.delete_project(session, project)
        audit(session, "project.delete", f"project:{project.name}")


def upload_version(context: Context, ref: str, filename: str, data: bytes) -> ProjectVersion:
    """Check a package and store it as the project's next, current version; a worker then
    gets it ready (see prepare)."""
    with context.db.session() as session:
        project = repo.get_project(session, ref, for_update=True)
        version = add_version(session, context, project, filename, data)
    after_upload(context, version)
    return version


PROJECT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def deploy(
    context: Context, name: str, kind: str, filename: str, data: bytes, *,
    label: str | None = None,
) -> ProjectVersion:  # fmt: skip
    """Upload a package as the next version of the project `name` (called `label` by the
    client), creating the project when it does not exist: all or nothing (a refused
    package creates nothing)."""
    with context.db.session() as session:
        project = repo.find_project(session, name)
        if project is None:
            if not re.fullmatch(PROJECT_NAME, name):
                raise InvalidInput(f"project name '{name[:80]}' must be 1-64 letters, digits, "
                                   "'_', '.' or '-', starting with a letter or digit",
                                   details={"field": "name"})  # fmt: skip
            project = repo.create_project(session, {"name": name, "kind": kind})
            audit(session, "project.create", f"project:{name}", after={"kind": kind})
        else:
            project = repo.get_project(session, str(project.id), for_update=True)
            if project.kind != kind:
                raise InvalidInput(f"project '{name}' is a {project.kind} project",
                                   details={"field": "kind"})  # fmt: skip
        version = add_version(session, context, project, filename, data, label)
    after_upload(context, version)
    return version


def add_version(
    session: Session, context: Context, project: Project, filename: str, data: bytes,
    label: str | None = None,
) -> ProjectVersion:  # fmt: skip
    """Check a package against the project and its spiders and store it as the next version,
    named `label` by the client when it names it (in the caller's transaction; call
    after_upload once it is committed)."""
    spiders = repo.spiders_of(session, project.id)
    entries = [s.entry for s in spiders if s.kind == "python"]
    info, needs = check_package(context, data, filename, project.kind, entries)
    shipped = archives.read_member(data, info, rules.CONFIG_FILE, requirements.MAX_FILE_BYTES)
    fields = {
        "archive": data,
        "format": info.format.value,
        "filename": filename[-255:],
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "files": len(info.files),
        "requirements": needs,
        "quality": rules.from_project_file(shipped) if shipped is not None else None,
        "label": label,
        # Nothing to build or list: the platform's environment runs it as it is.
        "env_status": "building" if needs or project.kind == "scrapy" else "ready",
    }
    version = repo.add_version(session, project, fields)
    audit(session, "version.upload", f"project:{project.name}",
          after={"version": version.number, "label": label, "filename": fields["filename"],
                 "sha256": fields["sha256"]})  # fmt: skip
    return version


def after_upload(context: Context, version: ProjectVersion) -> None:
    """Ask a worker to get a committed version ready. When the broker is down, the first
    run builds the environment instead, and its spiders are not listed until re-uploaded."""
    if version.env_status != "building":
        return
    try:
        messages.send_prepare(context.broker, version.id)
    except Exception as exc:
        logger.error("version %s: could not ask a worker to prepare it (%s)", version.id, exc)


def check_package(
    context: Context, data: bytes, filename: str, kind: str, entries: list[str]
) -> tuple[archives.ArchiveInfo, str | None]:
    """Validate an upload for a `kind` project whose python spiders run `entries`: what it
    holds and what it needs installed."""
    settings = context.settings
    fmt = archives.detect_format(filename, data)
    if fmt is archives.ArchiveFormat.PY and kind != "python":
        raise InvalidArchive("a single .py file can only be a python project; upload a zip")
    module = archives.module_path(entries[0]) if entries else "main.py"
    info = archives.inspect_archive(
        data, filename, archives.Limits.of(settings), py_module_path=module
    )
    for entry in entries or ([] if kind == "python" else [""]):
        archives.check_runnable(info, kind, entry)
    if kind == "scrapy" and "scrapy.cfg" not in info.files:
        _check_egg(data, info)
    return info, requirements.of_package(data, info)


def _check_egg(data: bytes, info: archives.ArchiveInfo) -> None:
    """An egg runs with the settings module its entry points name (as Scrapyd's runner)."""
    text = archives.read_member(data, info, archives.EGG_ENTRY_POINTS, 64 * 1024) or b""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text.decode("utf-8", "replace"))
    except configparser.Error as exc:
        raise InvalidArchive(f"{archives.EGG_ENTRY_POINTS} is not readable: {exc}") from None
    if not parser.get("scrapy", "settings", fallback="").strip():
        raise InvalidArchive(f"the egg's {archives.EGG_ENTRY_POINTS} names no [scrapy] "
                             "settings module (as in `settings = <project>.settings`)")  # fmt: skip


def list_versions(
    db: Database, ref: str, *, page: int, page_size: int
) -> tuple[list[ProjectVersion], int]:
    """A page of a project's versions and the total count."""
    with db.read() as session:
        project = repo.get_project(session, ref)
        rows, total = repo.list_versions(session, project, page=page, page_size=page_size)
        return list(rows), total


def get_version(db: Database, ref: str, number: int) -> ProjectVersion:
    """One version of a project, with its environment's build log."""
    with db.read() as session:
        return repo.get_version(session, repo.get_project(session, ref), number)


def refusal(session: Session, spider: Spider, number: int | None = None) -> str | None:
    """Why the spider cannot run version `number` of its project (default: the current one)
    now; None when it can."""
    project = spider.project
    if number is None and project.current_version is None:
        return f"spider '{spider.name}' has no version yet: upload one first"
    version = repo.version_state(session, project, number or project.current_version or 0)
    where = f"version {version.number} of project '{project.name}'"
    if version.env_status == "failed":
        log = f"/api/projects/{project.name}/versions/{version.number}/environment"
        return f"{where} cannot run: {version.env_error or 'its build failed'} (build log: {log})"
    listed = version.spiders
    if spider.kind == "scrapy" and listed is not None and spider.entry not in listed:
        return (f"spider '{spider.name}' runs the Scrapy spider '{spider.entry}', which "
                f"{where} does not have (it has: {', '.join(listed) or 'none'})")  # fmt: skip
    return None


def record_prepared(
    db: Database, version_id: uuid.UUID, *, status: str, log: str, error: str | None = None,
    env_key: str | None = None, spiders: list[str] | None = None,
) -> list[str]:  # fmt: skip
    """Store how getting a version ready went; Scrapy spiders new to the project (when it is
    the current version) become spiders of their own. Returns the names of those created."""
    with db.session() as session:
        version = repo.version_by_id(session, version_id, archive=False)
        if version is None:
            return []  # deleted meanwhile
        version.env_status, version.env_error = status, error
        version.env_log = log[-LOG_CHARS:]
        if env_key is not None:
            version.env_key = env_key
        if spiders is None:
            return []
        version.spiders = spiders
        project = repo.get_project(session, str(version.project_id), for_update=True)
        if version.number != project.current_version:
            return []
        known = {s.entry for s in repo.spiders_of(session, project.id)}
        created = []
        for entry in spiders:
            if entry not in known:
                name = _free_name(session, project.name, entry)
                fields = {"name": name, "kind": "scrapy", "entry": entry, "project": project}
                spider_repo.create_spider(session, fields)
                created.append(name)
        return created


def _free_name(session: Session, project: str, entry: str) -> str:
    """A spider name for a Scrapy spider: its own when free, else prefixed by its project."""
    base = NAME_CHARS.sub("-", entry.lower()).strip("-_")[:64] or "spider"
    project = NAME_CHARS.sub("-", project.lower()).strip("-_") or "project"
    for candidate in (base, f"{project}-{base}"[:64]):
        if spider_repo.find_spider(session, candidate) is None:
            return candidate
    for n in range(2, 10_000):
        candidate = f"{project}-{base}"[: 64 - len(str(n)) - 1] + f"-{n}"
        if spider_repo.find_spider(session, candidate) is None:
            return candidate
    raise Conflict(f"no free spider name for Scrapy spider '{entry}'")


def check_entry_in(session: Session, project: Project, kind: str, entry: str,
                   settings_limits: archives.Limits) -> None:  # fmt: skip
    """A spider's new entry must exist in its project's current version (InvalidInput)."""
    if project.current_version is None:
        return
    version = repo.get_version(session, project, project.current_version, archive=True)
    if kind == "scrapy":
        if version.spiders is not None and entry not in version.spiders:
            raise InvalidInput(
                f"version {version.number} of project '{project.name}' has no Scrapy spider "
                f"'{entry}' (it has: {', '.join(version.spiders) or 'none'})"
            )
        return
    info = archives.inspect_archive(version.archive, version.filename, settings_limits,
                                    py_module_path=archives.module_path(entry))  # fmt: skip
    archives.check_runnable(info, kind, entry)
