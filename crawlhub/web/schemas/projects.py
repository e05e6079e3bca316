"""Models of projects, their versions and their environments."""

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from crawlhub.registry.projects import PROJECT_NAME
from crawlhub.web.schemas.common import Out, Page, PageQuery, Strict

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# Projects may be named as Scrapy projects are (a module name), or as Scrapyd clients do.
SUMMARY_LOG_LINES = 20

SpiderKind = Literal["scrapy", "python"]
EnvStatus = Literal["building", "ready", "failed"]


def not_an_id(name: str | None) -> str | None:
    """A name that reads as an id could never be looked up by name: refused."""
    try:
        uuid.UUID(name or "")
    except ValueError:
        return name
    raise ValueError("a name must not have the form of an id (a UUID)")


class ProjectCreate(Strict):
    """Body of POST /api/projects."""

    name: str = Field(pattern=PROJECT_NAME)
    kind: SpiderKind = "scrapy"

    name_not_an_id = field_validator("name")(not_an_id)


class ProjectPatch(Strict):
    """Body of PATCH /api/projects/{id}."""

    name: str | None = Field(None, pattern=PROJECT_NAME)
    max_concurrent_runs: int | None = Field(
        None, ge=1, le=10_000, description="how many of its runs may run at once, its spiders' "
        "together; null: no limit",
    )  # fmt: skip

    @model_validator(mode="after")
    def _name_not_null(self) -> Self:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null")
        return self

    name_not_an_id = field_validator("name")(not_an_id)


class ProjectOut(Out):
    id: uuid.UUID
    name: str
    kind: SpiderKind
    current_version: int | None
    max_concurrent_runs: int | None = Field(
        description="how many of its runs may run at once; null: no limit"
    )
    spiders: list[str] = Field(description="the names of its spiders")
    created_at: datetime
    updated_at: datetime


class ProjectListQuery(PageQuery):
    kind: SpiderKind | None = None
    search: str | None = Field(None, max_length=64, description="names containing this")


class ProjectPage(Page[ProjectOut]):
    pass


class VersionUpload(BaseModel):
    """Multipart body of POST /api/projects/{id}/versions."""

    file: bytes = Field(
        description="a .zip or .tar.gz of the project, or a single .py file",
        json_schema_extra={"format": "binary"},
    )


class EnvironmentOut(BaseModel):
    """A version's environment: `building` until a worker built it (and listed its Scrapy
    spiders), then `ready`, or `failed` with the reason in `error`."""

    status: EnvStatus
    key: str | None = Field(description="null: the platform's environment")
    requirements: list[str]
    error: str | None
    log: str | None = Field(description="the build log (its last lines in a version summary)")

    @classmethod
    def of(cls, version: Any, *, full: bool) -> Self:  # a project version row
        log = version.env_log
        if log is not None and not full:
            log = "\n".join(log.splitlines()[-SUMMARY_LOG_LINES:])
        return cls(
            status=version.env_status,
            key=version.env_key,
            requirements=(version.requirements or "").splitlines(),
            error=version.env_error,
            log=log,
        )


class VersionOut(BaseModel):
    number: int
    label: str | None = Field(
        description="the name a Scrapyd client gave it (`scrapyd-deploy "
        "-v 1.0`); null for a version uploaded through this API"
    )
    project_id: uuid.UUID
    format: str
    filename: str
    sha256: str
    size: int
    files: int
    spiders: list[str] | None = Field(description="the Scrapy spiders it has (null: not listed)")
    environment: EnvironmentOut
    created_at: datetime

    @classmethod
    def of(cls, version: Any) -> Self:
        return cls(
            number=version.number, label=version.label, project_id=version.project_id,
            format=version.format,
            filename=version.filename, sha256=version.sha256, size=version.size,
            files=version.files, spiders=version.spiders,
            environment=EnvironmentOut.of(version, full=False), created_at=version.created_at,
        )  # fmt: skip


class VersionPage(Page[VersionOut]):
    pass
