"""Spider registry: create, change and delete spiders, the runnable entries of projects."""

import re
from typing import Any

from crawlhub.context import Context
from crawlhub.errors import Conflict, InvalidInput
from crawlhub.registry import archives, projects
from crawlhub.repo import projects as project_repo
from crawlhub.repo import spiders as repo
from crawlhub.repo.db import Database
from crawlhub.repo.models import ProjectVersion, Spider
from crawlhub.repo.users import audit, audit_change, shown

PYTHON_ENTRY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$", re.ASCII)
SCRAPY_ENTRY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SCRAPY_SETTING = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
MAX_SCRAPY_SETTINGS = 64


def check_entry(kind: str, entry: str) -> None:
    """A python entry is `module:function`; a scrapy entry is a spider name (ValueError)."""
    if kind == "python" and not PYTHON_ENTRY.match(entry):
        raise ValueError(f"entry '{entry}' must be 'module:function' for a python spider")
    if kind == "scrapy" and not SCRAPY_ENTRY.match(entry):
        raise ValueError(f"entry '{entry}' is not a valid Scrapy spider name")


def check_env(env: dict[str, str]) -> dict[str, str]:
    """Environment names must be shell-safe and not shadow CrawlHub's own variables."""
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise ValueError(f"env name '{name}' is not a valid variable name")
        if name.upper().startswith("CRAWLHUB_"):
            raise ValueError(f"env name '{name}' is reserved (CRAWLHUB_*)")
        if "\x00" in value:
            raise ValueError(f"env value of '{name}' contains a NUL byte")
    return env


def check_scrapy_settings(settings: dict[str, Any], kind: str) -> dict[str, Any]:
    """Per-run Scrapy settings (`-s NAME=VALUE`): upper-case names, for Scrapy spiders."""
    if not settings:
        return {}
    if kind != "scrapy":
        raise InvalidInput("settings apply to Scrapy spiders only; a python spider takes params")
    if len(settings) > MAX_SCRAPY_SETTINGS:
        raise InvalidInput(f"at most {MAX_SCRAPY_SETTINGS} settings per run")
    for name in settings:
        if not SCRAPY_SETTING.match(name):
            raise InvalidInput(f"setting name '{name}' is not a Scrapy setting name (A-Z, 0-9, _)")
    return settings


def check_dedup_keys(keys: list[str] | None) -> list[str] | None:
    """Dedup keys are distinct, non-empty field names."""
    if keys is None:
        return None
    if len(set(keys)) != len(keys):
        raise ValueError("dedup_keys must not repeat a field")
    return keys


def default_entry(kind: str, name: str) -> str:
    """A python spider runs `main:run`; a Scrapy spider is assumed to share the spider's name."""
    return "main:run" if kind == "python" else name


def create_spider(
    context: Context, fields: dict[str, Any], package: tuple[str, bytes] | None = None
) -> Spider:
    """Register a spider from its checked fields: in the project `fields["project"]` names,
    else in a new project of its own name, with its first version when a package (file
    name, bytes) is given: all or nothing (a refused package creates nothing)."""
    fields = {"timeout_s": context.settings.default_timeout_s, **fields}
    fields["limits"] = fields.get("limits") or {}
    fields["env"] = kept_env(fields.get("env"), {})
    project_ref = fields.pop("project", None)
    version: ProjectVersion | None = None
    with context.db.session() as session:
        if project_ref is None:
            fields.setdefault("kind", "python")
            if project_repo.find_project(session, fields["name"]) is not None:
                name = fields["name"]
                raise Conflict(f"a project named '{name}' already exists: add the spider to "
                               f"it with \"project\": \"{name}\"")  # fmt: skip
            project = project_repo.create_project(
                session, {"name": fields["name"], "kind": fields["kind"]}
            )
        else:
            project = project_repo.get_project(session, project_ref, for_update=True)
            if fields.setdefault("kind", project.kind) != project.kind:
                raise InvalidInput(f"project '{project.name}' is a {project.kind} project; "
                                   f"its spiders are {project.kind} spiders")  # fmt: skip
        fields.setdefault("entry", default_entry(fields["kind"], fields["name"]))
        _check_backoff(fields)
        if package is None:
            projects.check_entry_in(session, project, fields["kind"], fields["entry"],
                                    archives.Limits.of(context.settings))  # fmt: skip
        spider = repo.create_spider(session, {**fields, "project": project})
        audit(session, "spider.create", f"spider:{spider.name}",
              after={name: shown(name, value) for name, value in fields.items()})  # fmt: skip
        if package is not None:
            version = projects.add_version(session, context, project, *package)
    if version is not None:
        projects.after_upload(context, version)
    return spider


HIDDEN = "********"  # what a spider's env values read as: they are often credentials


def hidden_env(env: dict[str, str] | None) -> dict[str, str]:
    """A spider's env as the API and dashboard show it: its names, never its values."""
    return dict.fromkeys(env or {}, HIDDEN)


def kept_env(env: dict[str, str] | None, stored: dict[str, str]) -> dict[str, str]:
    """An env as given, each value left as shown (HIDDEN) keeping the stored one; HIDDEN for
    a name with no stored value is refused (it would become the value)."""
    kept = {}
    for name, value in (env or {}).items():
        if value == HIDDEN:
            if name not in stored:
                raise InvalidInput(f"env {name}: '{HIDDEN}' keeps a stored value, and {name} "
                                   "has none: give its value")  # fmt: skip
            value = stored[name]
        kept[name] = value
    return kept


def update_spider(context: Context, ref: str, changes: dict[str, Any]) -> Spider:
    """Change a spider; a new entry is checked against its project's current version. A new
    kind changes its project's, when the spider is the project's only one."""
    if "limits" in changes:
        changes = {**changes, "limits": changes["limits"] or {}}
    with context.db.session() as session:
        spider = repo.get_spider(session, ref, for_update=True)
        merged = {
            "retry_backoff_min_s": spider.retry_backoff_min_s,
            "retry_backoff_max_s": spider.retry_backoff_max_s,
            **changes,
        }
        _check_backoff(merged)
        if "kind" in changes or "entry" in changes:
            kind = changes.get("kind", spider.kind)
            entry = changes.get("entry", spider.entry)
            try:
                check_entry(kind, entry)
            except ValueError as exc:
                raise InvalidInput(str(exc)) from exc
            project = spider.project
            if kind != project.kind:
                if len(project_repo.spiders_of(session, project.id)) > 1:
                    raise InvalidInput(f"project '{project.name}' is a {project.kind} project with "
                                       "other spiders, which share its kind")  # fmt: skip
                project.kind = kind
            projects.check_entry_in(session, project, kind, entry,
                                    archives.Limits.of(context.settings))  # fmt: skip
        if changes.get("env") is not None:
            changes = {**changes, "env": kept_env(changes["env"], spider.env or {})}
        audit_change(session, "spider.update", f"spider:{spider.name}", spider, changes)
        return repo.update_spider(session, spider, changes)


def delete_spider(db: Database, ref: str) -> None:
    """Delete a spider and everything it owns; Conflict while it has active tasks. The
    project of its name goes with it when it was that project's only spider."""
    with db.session() as session:
        spider = repo.get_spider(session, ref, for_update=True)
        project = spider.project
        repo.delete_spider(session, spider)
        audit(session, "spider.delete", f"spider:{spider.name}")
        if project.name == spider.name and not project_repo.spiders_of(session, project.id):
            project_repo.delete_project(session, project)


def upload_version(context: Context, ref: str, filename: str, data: bytes) -> ProjectVersion:
    """Upload a new version of the spider's project."""
    with context.db.read() as session:
        project_id = repo.get_spider(session, ref).project_id
    return projects.upload_version(context, str(project_id), filename, data)


def _check_backoff(fields: dict[str, Any]) -> None:
    low, high = fields.get("retry_backoff_min_s"), fields.get("retry_backoff_max_s")
    if low is not None and high is not None and low > high:
        raise InvalidInput("retry_backoff_min_s must not exceed retry_backoff_max_s")


def get_spider(db: Database, ref: str) -> Spider:
    """The spider with this id or name."""
    with db.read() as session:
        return repo.get_spider(session, ref)


def spider_names(db: Database) -> list[str]:
    """Every spider's name, in order (a form's choice of spider)."""
    with db.read() as session:
        return repo.all_names(session)


def list_spiders(
    db: Database, *, page: int, page_size: int, kind: str | None = None,
    enabled: bool | None = None, search: str | None = None, project: str | None = None,
) -> tuple[list[Spider], int]:  # fmt: skip
    """A page of spiders and the total count; `search` keeps names containing it."""
    with db.read() as session:
        project_id = project_repo.get_project(session, project).id if project else None
        rows, total = repo.list_spiders(session, page=page, page_size=page_size, kind=kind,
                                        enabled=enabled, name_contains=search,
                                        project_id=project_id)  # fmt: skip
        return list(rows), total


def list_versions(
    db: Database, ref: str, *, page: int, page_size: int
) -> tuple[list[ProjectVersion], int]:
    """A page of the versions of the spider's project and the total count."""
    with db.read() as session:
        project_id = repo.get_spider(session, ref).project_id
    return projects.list_versions(db, str(project_id), page=page, page_size=page_size)
