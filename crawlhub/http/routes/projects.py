"""Handlers of projects, their versions and their environments."""

from spectree import Response as Resp
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crawlhub.errors import BadRequest
from crawlhub.http.routes.spiders import read_upload
from crawlhub.registry import projects
from crawlhub.services import dispatch
from crawlhub.web.responses import ModelResponse
from crawlhub.web.schemas.common import PageQuery
from crawlhub.web.schemas.projects import (
    EnvironmentOut,
    ProjectCreate,
    ProjectListQuery,
    ProjectOut,
    ProjectPage,
    ProjectPatch,
    VersionOut,
    VersionPage,
    VersionUpload,
)
from crawlhub.web.validation import body_of, ctx, errors, query_of, spec

TAGS = ["projects"]


@spec.validate(query=ProjectListQuery, resp=Resp(HTTP_200=ProjectPage), tags=TAGS)
def list_projects(request: Request) -> Response:
    """List projects, newest first, with the names of their spiders."""
    query = query_of(request, ProjectListQuery)
    rows, total = projects.list_projects(ctx(request).db, page=query.page,
                                         page_size=query.page_size, kind=query.kind,
                                         search=query.search)  # fmt: skip
    page = ProjectPage.of([ProjectOut.model_validate(r) for r in rows], total, query)
    return ModelResponse(page)


@spec.validate(json=ProjectCreate, resp=Resp(HTTP_201=ProjectOut, **errors(400, 409)), tags=TAGS)
def create_project(request: Request) -> Response:
    """Register a project; upload its code with POST /api/projects/{id}/versions."""
    fields = body_of(request, ProjectCreate).model_dump()
    project = projects.create_project(ctx(request).db, fields)
    return ModelResponse(ProjectOut.model_validate(project), 201)


@spec.validate(resp=Resp(HTTP_200=ProjectOut, **errors(404)), tags=TAGS)
def get_project(request: Request) -> Response:
    """One project, by id or name."""
    project = projects.get_project(ctx(request).db, request.path_params["ref"])
    return ModelResponse(ProjectOut.model_validate(project))


@spec.validate(json=ProjectPatch, resp=Resp(HTTP_200=ProjectOut, **errors(400, 404, 409)),
               tags=TAGS)  # fmt: skip
def patch_project(request: Request) -> Response:
    """Rename a project (its spiders keep their names) or change how many of its runs may run
    at once (`max_concurrent_runs`, null: no limit); absent fields stay as they are."""
    context = ctx(request)
    changes = body_of(request, ProjectPatch).model_dump(exclude_unset=True)
    project = projects.update_project(context.db, request.path_params["ref"], changes)
    if "max_concurrent_runs" in changes:
        dispatch.quietly(context)  # a limit raised lets held runs start
    return ModelResponse(ProjectOut.model_validate(project))


@spec.validate(resp=Resp("HTTP_204", **errors(404, 409)), tags=TAGS)
def delete_project(request: Request) -> Response:
    """Delete a project with its versions and spiders, and their schedules, runs and items."""
    projects.delete_project(ctx(request).db, request.path_params["ref"])
    return Response(status_code=204)


@spec.validate(query=PageQuery, resp=Resp(HTTP_200=VersionPage, **errors(404)), tags=TAGS)
def list_versions(request: Request) -> Response:
    """A project's versions, newest first, each with its environment's status."""
    query = query_of(request, PageQuery)
    rows, total = projects.list_versions(
        ctx(request).db, request.path_params["ref"], page=query.page, page_size=query.page_size
    )
    return ModelResponse(VersionPage.of([VersionOut.of(r) for r in rows], total, query))


@spec.validate(
    form=VersionUpload,
    skip_validation=True,
    resp=Resp(HTTP_201=VersionOut, **errors(400, 404, 413, 422)),
    tags=TAGS,
)
async def upload_version(request: Request) -> Response:
    """Upload a .zip, .tar.gz or .py (multipart field `file`) as the project's next version.
    It is current at once; a worker then builds its environment and lists its spiders
    (`environment.status` goes from `building` to `ready` or `failed`)."""
    context = ctx(request)
    filename, data = await read_upload(request)
    version = await run_in_threadpool(
        projects.upload_version, context, request.path_params["ref"], filename, data
    )
    return ModelResponse(VersionOut.of(version), 201)


@spec.validate(resp=Resp(HTTP_200=VersionOut, **errors(400, 404)), tags=TAGS)
def get_version(request: Request) -> Response:
    """One version of a project."""
    version = projects.get_version(ctx(request).db, request.path_params["ref"], _number(request))
    return ModelResponse(VersionOut.of(version))


@spec.validate(resp=Resp(HTTP_200=EnvironmentOut, **errors(400, 404)), tags=TAGS)
def get_environment(request: Request) -> Response:
    """A version's environment with its whole build log."""
    version = projects.get_version(ctx(request).db, request.path_params["ref"], _number(request))
    return ModelResponse(EnvironmentOut.of(version, full=True))


def _number(request: Request) -> int:
    raw = request.path_params["number"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise BadRequest(f"version number must be a positive whole number, got {raw[:20]!r}")
    return int(raw)


ROUTES = [
    Route("/api/projects", list_projects, methods=["GET"]),
    Route("/api/projects", create_project, methods=["POST"]),
    Route("/api/projects/{ref}", get_project, methods=["GET"]),
    Route("/api/projects/{ref}", patch_project, methods=["PATCH"]),
    Route("/api/projects/{ref}", delete_project, methods=["DELETE"]),
    Route("/api/projects/{ref}/versions", list_versions, methods=["GET"]),
    Route("/api/projects/{ref}/versions", upload_version, methods=["POST"]),
    Route("/api/projects/{ref}/versions/{number}", get_version, methods=["GET"]),
    Route("/api/projects/{ref}/versions/{number}/environment", get_environment, methods=["GET"]),
]
