"""Scrapyd's view of CrawlHub: a Scrapyd project is a project, an egg one of its versions
(named by the client's version string), a job a run with trigger `scrapyd` and the client's
job id. What the Scrapyd-compatible API (crawlhub/http/scrapyd.py) answers with.
"""

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from packaging.version import InvalidVersion, Version

from crawlhub.context import Context
from crawlhub.errors import Conflict, CrawlhubError, NotFound
from crawlhub.registry import projects
from crawlhub.repo import logs as log_repo
from crawlhub.repo import projects as project_repo
from crawlhub.repo import spiders as spider_repo
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.db import MAX_NAME, Session
from crawlhub.repo.models import Project, ProjectVersion, Spider, Task
from crawlhub.repo.statuses import ACTIVE, CLAIMABLE, FINISHED
from crawlhub.repo.tasks import JOB_ID_CHARS
from crawlhub.services import runs

FINISHED_SHOWN = 100  # Scrapyd keeps the last 100 finished jobs (finished_to_keep)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # Scrapyd's, here always with microseconds (UTC)
TRIGGER = "scrapyd"


class ScrapydError(Exception):
    """An answer of `{"status": "error", "message": …}` (HTTP 200, as Scrapyd's)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def sorted_versions(names: Iterable[str]) -> list[str]:
    """Scrapyd's order: by PEP 440 version when every name is one, else as text."""
    names = list(names)
    try:
        return sorted(names, key=Version)
    except InvalidVersion:
        return sorted(names)


def label_of(version: ProjectVersion) -> str:
    """What Scrapyd clients call a version: the name they gave it, else its number."""
    return version.label if version.label is not None else str(version.number)


def when(moment: datetime | None) -> str | None:
    return moment.strftime(TIME_FORMAT) if moment is not None else None


def daemon_status(context: Context) -> dict[str, int]:
    with context.db.read() as session:
        return {
            "pending": task_repo.count_in(session, CLAIMABLE),
            "running": task_repo.count_in(session, ("running",)),
            "finished": task_repo.count_in(session, FINISHED, cap=FINISHED_SHOWN),
        }


def list_projects(context: Context) -> list[str]:
    with context.db.read() as session:
        return project_repo.project_names(session)


def list_versions(context: Context, project: str) -> list[str]:
    """The versions of a project as Scrapyd sorts them; none for an unknown project."""
    _no_traversal(project)
    with context.db.read() as session:
        found = project_repo.find_project(session, project)
        if found is None:
            return []
        return sorted_versions({label_of(v) for v in project_repo.versions_of(session, found.id)})


def list_spiders(context: Context, project: str, label: str | None) -> list[str]:
    with context.db.read() as session:
        found = _project(session, project)
        version = _version(session, found, label)
        if version is None:
            return []
        if version.spiders is not None:
            return list(version.spiders)
        return [s.entry if s.kind == "scrapy" else s.name
                for s in project_repo.spiders_of(session, found.id)]  # fmt: skip


def add_version(context: Context, project: str, label: str, egg: bytes) -> ProjectVersion:
    """Store an egg as the next version of the project (created when new), named `label`."""
    _no_traversal(project)
    if not label or len(label) > 128:
        raise ScrapydError("version must be 1 to 128 characters")
    try:
        return projects.deploy(context, project, "scrapy", f"{project}-{label}.egg", egg,
                               label=label)  # fmt: skip
    except CrawlhubError as exc:
        raise ScrapydError(exc.message) from None


def schedule(
    context: Context, project: str, spider: str, *, label: str | None, job_id: str | None,
    settings: dict[str, str], args: dict[str, str], priority: int = 0,
) -> str:  # fmt: skip
    """Start a run of a project's spider as Scrapyd's schedule.json does (its priority
    among waiting runs as given, 0 by default as Scrapyd's); its job id."""
    job_id = job_id or uuid.uuid1().hex
    if len(job_id) > JOB_ID_CHARS:
        raise ScrapydError(f"jobid must be at most {JOB_ID_CHARS} characters")
    _no_traversal(job_id)  # it names the job's log and items files
    with context.db.read() as session:
        found = _project(session, project)
        number = None
        if label is not None:
            version = _version(session, found, label)
            if version is None:
                raise ScrapydError(f"version '{label}' not found")
            number = version.number
        target = spider_repo.spider_in_project(session, found.id, spider)
        if target is None:
            raise ScrapydError(f"spider '{spider}' not found")
        if task_repo.job_id_taken(session, job_id):
            raise ScrapydError(f"a job with id '{job_id}' exists already")
    try:
        runs.create_run(context, str(target.id), dict(args), TRIGGER, dict(settings),
                        version=number, job_id=job_id, priority=priority)  # fmt: skip
    except CrawlhubError as exc:
        raise ScrapydError(exc.message) from None
    return job_id


def cancel(context: Context, project: str, job: str) -> str | None:
    """Cancel a job; the state it was in (`pending`, `running`) or None when it had ended."""
    with context.db.read() as session:
        task = _job(session, _project(session, project), job)
        if task is None or task.status not in ACTIVE:
            return None
        before = "running" if task.status == "running" else "pending"
    try:
        runs.cancel(context, str(task.id))
    except Conflict:  # it ended meanwhile
        return None
    return before


def status(context: Context, job: str, project: str | None) -> str | None:
    with context.db.read() as session:
        found = _project(session, project) if project is not None else None
        task = _job(session, found, job)
    if task is None:
        return None
    if task.status in FINISHED:
        return "finished"
    return "running" if task.status == "running" else "pending"


@dataclass(frozen=True)
class Job:
    """A task as Scrapyd lists it."""

    task: Task
    project: str
    spider: str
    version: str | None

    @property
    def id(self) -> str:
        return self.task.job_id or str(self.task.id)

    def url(self, kind: str, suffix: str) -> str:
        return f"/{kind}/{self.project}/{self.spider}/{self.id}.{suffix}"


def list_jobs(context: Context, project: str | None) -> dict[str, list[dict[str, Any]]]:
    """Pending, running and finished jobs (the last 100), with Scrapyd's fields."""
    with context.db.read() as session:
        found = _project(session, project) if project is not None else None
        pending = _jobs(session, found, CLAIMABLE, "created")
        running = _jobs(session, found, ("running",), "started")
        finished = _jobs(session, found, FINISHED, "finished", FINISHED_SHOWN)
    return {
        "pending": [
            {"id": j.id, "project": j.project, "spider": j.spider, "version": j.version,
             "settings": j.task.settings or {}, "args": j.task.params or {}}
            for j in pending
        ],
        "running": [
            {"id": j.id, "project": j.project, "spider": j.spider, "pid": j.task.pid,
             "start_time": when(j.task.started_at or j.task.created_at),
             "log_url": j.url("logs", "log"), "items_url": j.url("items", "jl")}
            for j in running
        ],
        "finished": [
            {"id": j.id, "project": j.project, "spider": j.spider,
             "start_time": when(j.task.started_at or j.task.created_at),
             "end_time": when(j.task.finished_at), "log_url": j.url("logs", "log"),
             "items_url": j.url("items", "jl")}
            for j in finished
        ],
    }  # fmt: skip


@dataclass(frozen=True)
class Jobs:
    """Every project's jobs, as Scrapyd's jobs page shows them."""

    pending: list[Job]
    running: list[Job]
    finished: list[Job]


def all_jobs(context: Context) -> Jobs:
    with context.db.read() as session:
        return Jobs(_jobs(session, None, CLAIMABLE, "created"),
                    _jobs(session, None, ("running",), "started"),
                    _jobs(session, None, FINISHED, "finished", FINISHED_SHOWN))  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """A line of a logs/ or items/ folder: a folder (`size` None) or a job's file."""

    name: str
    modified: datetime
    size: int | None = None  # a log's bytes (0 for items: their file is made on request)
    items: int = 0


FILES_SHOWN = 100  # a spider's folder lists its newest 100 jobs


def folder(context: Context, kind: str, project: str | None = None,
           spider: str | None = None) -> list[Entry]:  # fmt: skip
    """What Scrapyd's logs/ (kind `log`) or items/ (`jl`) folder holds: its projects, a
    project's spiders, or a spider's jobs' files, from the runs that started; NotFound for
    a folder that is not there (no such project or spider, or none of its runs started)."""
    _path_names(project, spider)
    with context.db.read() as session:
        if project is None:
            return [Entry(name, moment) for name, moment in task_repo.projects_with_runs(session)]
        found = project_repo.find_project(session, project)
        if found is None:
            raise NotFound(f"no folder '{project[:80]}'")
        if spider is None:
            spiders = task_repo.spiders_with_runs(session, found.id)
            if not spiders:
                raise NotFound(f"no folder '{project[:80]}'")
            return sorted((Entry(_scrapy_name(target), moment) for target, moment in spiders),
                          key=lambda entry: entry.name)  # fmt: skip
        target = spider_repo.spider_in_project(session, found.id, spider)
        if target is None:
            raise NotFound(f"no folder '{project[:80]}/{spider[:80]}'")
        tasks = task_repo.newest_started(session, target.id, FILES_SHOWN)
        if not tasks:
            raise NotFound(f"no folder '{project[:80]}/{spider[:80]}'")
        sizes = log_repo.text_bytes_of(session, [t.id for t in tasks]) if kind == "log" else {}
    return [
        Entry(f"{t.job_id or t.id}.{kind}", t.finished_at or t.started_at or t.created_at,
              size=sizes.get(t.id, 0), items=t.items_count)
        for t in tasks
    ]  # fmt: skip


def delete_version(context: Context, project: str, label: str) -> None:
    """Delete the versions a client named `label` (Scrapyd's egg storage says the version
    is not found, whether or not the project is); refused while a job waits for one."""
    _no_traversal(project)
    with context.db.session() as session:
        known = project_repo.find_project(session, _name(project))
        if known is None:
            raise ScrapydError(f"version '{label}' not found")
        found = project_repo.get_project(session, str(known.id), for_update=True)
        numbers = [v.number for v in project_repo.versions_of(session, found.id)
                   if label_of(v) == label]  # fmt: skip
        if not numbers:
            raise ScrapydError(f"version '{label}' not found")
        waiting = project_repo.delete_versions(session, found, numbers)
        if waiting:
            raise ScrapydError(f"version '{label}' has {waiting} pending or running job(s)")


def delete_project(context: Context, project: str) -> None:
    _no_traversal(project)
    try:
        projects.delete_project(context.db, _name(project))
    except CrawlhubError as exc:
        raise ScrapydError(
            f"project '{project}' not found" if isinstance(exc, NotFound) else exc.message
        ) from None


def job_task(context: Context, project: str, spider: str, job: str) -> Task:
    """The task of a job's log or items URL; NotFound otherwise."""
    _path_names(project, spider)
    with context.db.read() as session:
        found = project_repo.find_project(session, project)
        task = _job(session, found, job) if found is not None else None
        if task is None:
            raise NotFound(f"no job '{job[:80]}' in project '{project[:80]}'")
        target = spider_repo.find_by_id(session, task.spider_id)
        if target is None or spider not in (target.entry, target.name):
            raise NotFound(f"job '{job[:80]}' is not a run of spider '{spider[:80]}'")
        return task


def _path_names(*names: str | None) -> None:
    """Names from a page's path that no project or spider can have: NotFound."""
    for name in names:
        if name is not None and (len(name) > MAX_NAME * 4 or "\x00" in name):
            raise NotFound(f"no such folder or file: {name[:80]!r}")


def _no_traversal(name: str) -> None:
    """Scrapyd's answer to a project name that would leave its eggs directory (and to a job
    id that would leave its spider's logs/ folder)."""
    if "/" in name or "\\" in name or ".." in name:
        raise ScrapydError(f"DirectoryTraversalError: {name[:80]}")


def _name(project: str) -> str:
    if not project or len(project) > MAX_NAME or "\x00" in project:
        raise ScrapydError(f"project '{project[:80]}' not found")
    return project


def _project(session: Session, project: str) -> Project:
    found = project_repo.find_project(session, _name(project))
    if found is None:
        raise ScrapydError(f"project '{project}' not found")
    return found


def _version(session: Session, project: Project, label: str | None) -> ProjectVersion | None:
    """The newest version named `label`, or the current one; None when there is none."""
    if label is None:
        if project.current_version is None:
            return None
        return project_repo.get_version(session, project, project.current_version)
    named = [v for v in project_repo.versions_of(session, project.id) if label_of(v) == label]
    return named[-1] if named else None


def _job(session: Session, project: Project | None, job: str) -> Task | None:
    """A task by the client's job id (or its own id), within a project when given."""
    try:
        task = task_repo.get_task(session, job)
    except NotFound:
        return None
    if project is not None:
        owner = spider_repo.find_by_id(session, task.spider_id)
        if owner is None or owner.project_id != project.id:
            return None
    return task


def _jobs(session: Session, project: Project | None, statuses: Sequence[str], order: str,
          limit: int | None = None) -> list[Job]:  # fmt: skip
    jobs = []
    rows = task_repo.runs_with_names(session, statuses, order, limit=limit,
                                     project_id=project.id if project else None)  # fmt: skip
    for task, name, spider, label in rows:
        version = label if label is not None else (str(task.version) if task.version else None)
        jobs.append(Job(task, name, _scrapy_name(spider), version))
    return jobs


def _scrapy_name(spider: Spider) -> str:
    """A spider's name as Scrapy and Scrapyd's clients know it."""
    return spider.entry if spider.kind == "scrapy" else spider.name


LOG_PAGE = 2000  # log lines read per query while a job's log is sent


def log_size(context: Context, task_id: uuid.UUID) -> int:
    """The size in bytes of a job's log as text."""
    with context.db.read() as session:
        return log_repo.text_bytes(session, task_id)


def log_bytes(context: Context, task_id: uuid.UUID, start: int, end: int) -> Iterator[bytes]:
    """Bytes `start` to `end` (inclusive) of a job's log as text, read a page of lines at a
    time (lines a running job adds meanwhile past `end` are left for the next request)."""
    offset, after = 0, 0
    while offset <= end:
        with context.db.read() as session:
            page = log_repo.list_lines(session, task_id, after_seq=after, limit=LOG_PAGE)
        if not page:
            return
        chunk = "".join(f"{line.text}\n" for line in page).encode()
        if offset + len(chunk) > start:
            yield chunk[max(start - offset, 0) : end - offset + 1]
        offset += len(chunk)
        after = page[-1].seq
