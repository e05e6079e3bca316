"""Spider registry: create, change and delete spiders; validate and store their versions."""

import hashlib
import re
from typing import Any

from crawlhub.config import Settings
from crawlhub.errors import InvalidArchive, InvalidInput
from crawlhub.packages import archives
from crawlhub.repo import spiders as repo
from crawlhub.repo.db import Database, Session
from crawlhub.repo.models import Spider, SpiderVersion

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
    db: Database, settings: Settings, fields: dict[str, Any],
    package: tuple[str, bytes] | None = None,
) -> Spider:  # fmt: skip
    """Register a new spider from its checked fields, with its first version when a package
    (file name, bytes) is given: both or neither (a refused package creates nothing)."""
    fields = {"kind": "python", "timeout_s": settings.default_timeout_s, **fields}
    fields.setdefault("entry", default_entry(fields["kind"], fields["name"]))
    _check_backoff(fields)
    with db.session() as session:
        spider = repo.create_spider(session, fields)
        if package is not None:
            _add_version(session, settings, spider, *package)
        return spider


def update_spider(db: Database, settings: Settings, ref: str, changes: dict[str, Any]) -> Spider:
    """Change a spider; a new kind or entry is checked against its current version."""
    with db.session() as session:
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
            if spider.current_version is not None:
                current = repo.get_version(session, spider, spider.current_version)
                _check_package(settings, current.archive, current.filename, kind, entry)
        return repo.update_spider(session, spider, changes)


def delete_spider(db: Database, ref: str) -> None:
    """Delete a spider and everything it owns; Conflict while it has active tasks."""
    with db.session() as session:
        repo.delete_spider(session, repo.get_spider(session, ref, for_update=True))


def upload_version(
    db: Database, settings: Settings, ref: str, filename: str, data: bytes
) -> SpiderVersion:
    """Validate an uploaded package and store it as the spider's next, current version."""
    with db.session() as session:
        spider = repo.get_spider(session, ref, for_update=True)
        return _add_version(session, settings, spider, filename, data)


def _add_version(
    session: Session, settings: Settings, spider: Spider, filename: str, data: bytes
) -> SpiderVersion:
    info = _check_package(settings, data, filename, spider.kind, spider.entry)
    fields = {
        "archive": data,
        "format": info.format.value,
        "filename": filename[-255:],
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "files": len(info.files),
    }
    return repo.add_version(session, spider, fields)


def _check_package(
    settings: Settings, data: bytes, filename: str, kind: str, entry: str
) -> archives.ArchiveInfo:
    limits = archives.Limits.of(settings)
    fmt = archives.detect_format(filename, data)
    if fmt is archives.ArchiveFormat.PY and kind != "python":
        raise InvalidArchive("a single .py file can only be a python spider; upload a zip")
    module_path = archives.module_path(entry) if kind == "python" else "main.py"
    info = archives.inspect_archive(data, filename, limits, py_module_path=module_path)
    archives.check_runnable(info, kind, entry)
    return info


def _check_backoff(fields: dict[str, Any]) -> None:
    low, high = fields.get("retry_backoff_min_s"), fields.get("retry_backoff_max_s")
    if low is not None and high is not None and low > high:
        raise InvalidInput("retry_backoff_min_s must not exceed retry_backoff_max_s")


def get_spider(db: Database, ref: str) -> Spider:
    """The spider with this id or name."""
    with db.read() as session:
        return repo.get_spider(session, ref)


def list_spiders(
    db: Database, *, page: int, page_size: int, kind: str | None = None,
    enabled: bool | None = None, search: str | None = None,
) -> tuple[list[Spider], int]:  # fmt: skip
    """A page of spiders and the total count; `search` keeps names containing it."""
    with db.read() as session:
        rows, total = repo.list_spiders(session, page=page, page_size=page_size, kind=kind,
                                        enabled=enabled, name_contains=search)  # fmt: skip
        return list(rows), total


def list_versions(
    db: Database, ref: str, *, page: int, page_size: int
) -> tuple[list[SpiderVersion], int]:
    """A page of a spider's versions and the total count."""
    with db.read() as session:
        spider = repo.get_spider(session, ref)
        rows, total = repo.list_versions(session, spider, page=page, page_size=page_size)
        return list(rows), total
