"""Handlers of spiders and their uploaded versions."""

import unicodedata

from spectree import Response as Resp
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crawlhub.errors import BadRequest, TooLarge
from crawlhub.registry import spiders
from crawlhub.services import dispatch
from crawlhub.web.responses import ModelResponse
from crawlhub.web.schemas.common import PageQuery
from crawlhub.web.schemas.projects import VersionOut, VersionPage, VersionUpload
from crawlhub.web.schemas.spiders import (
    SpiderCreate,
    SpiderListQuery,
    SpiderOut,
    SpiderPage,
    SpiderPatch,
)
from crawlhub.web.validation import body_of, ctx, errors, query_of, spec


@spec.validate(query=SpiderListQuery, resp=Resp(HTTP_200=SpiderPage), tags=["spiders"])
def list_spiders(request: Request) -> Response:
    """List spiders, newest first."""
    query = query_of(request, SpiderListQuery)
    rows, total = spiders.list_spiders(
        ctx(request).db,
        page=query.page,
        page_size=query.page_size,
        kind=query.kind,
        enabled=query.enabled,
        project=query.project,
    )
    return ModelResponse(SpiderPage.of([SpiderOut.model_validate(r) for r in rows], total, query))


@spec.validate(
    json=SpiderCreate, resp=Resp(HTTP_201=SpiderOut, **errors(400, 409)), tags=["spiders"]
)
def create_spider(request: Request) -> Response:
    """Register a spider; upload its code with POST /api/spiders/{id}/versions."""
    context = ctx(request)
    fields = body_of(request, SpiderCreate).model_dump(exclude_unset=True)
    spider = spiders.create_spider(context, fields)
    return ModelResponse(SpiderOut.model_validate(spider), 201)


@spec.validate(resp=Resp(HTTP_200=SpiderOut, **errors(404)), tags=["spiders"])
def get_spider(request: Request) -> Response:
    """One spider, by id or name."""
    spider = spiders.get_spider(ctx(request).db, request.path_params["ref"])
    return ModelResponse(SpiderOut.model_validate(spider))


@spec.validate(
    json=SpiderPatch, resp=Resp(HTTP_200=SpiderOut, **errors(400, 404, 409)), tags=["spiders"]
)
def patch_spider(request: Request) -> Response:
    """Change a spider's settings; absent fields stay as they are."""
    context = ctx(request)
    changes = body_of(request, SpiderPatch).model_dump(exclude_unset=True)
    spider = spiders.update_spider(context, request.path_params["ref"], changes)
    if "max_concurrent_runs" in changes:
        dispatch.quietly(context)  # a limit raised lets held runs start
    return ModelResponse(SpiderOut.model_validate(spider))


@spec.validate(resp=Resp("HTTP_204", **errors(404, 409)), tags=["spiders"])
def delete_spider(request: Request) -> Response:
    """Delete a spider with its schedules, tasks, logs and items (and its project, when it is
    the one of its name and holds nothing else)."""
    spiders.delete_spider(ctx(request).db, request.path_params["ref"])
    return Response(status_code=204)


@spec.validate(query=PageQuery, resp=Resp(HTTP_200=VersionPage, **errors(404)), tags=["spiders"])
def list_versions(request: Request) -> Response:
    """The versions of a spider's project, newest first."""
    query = query_of(request, PageQuery)
    rows, total = spiders.list_versions(
        ctx(request).db, request.path_params["ref"], page=query.page, page_size=query.page_size
    )
    return ModelResponse(VersionPage.of([VersionOut.of(r) for r in rows], total, query))


@spec.validate(
    form=VersionUpload,
    skip_validation=True,
    resp=Resp(HTTP_201=VersionOut, **errors(400, 404, 413, 422)),
    tags=["spiders"],
)
async def upload_version(request: Request) -> Response:
    """Upload a .zip, .tar.gz or .py (multipart field `file`) as the next version of the
    spider's project; it becomes the current version."""
    context = ctx(request)
    filename, data = await read_upload(request)
    version = await run_in_threadpool(
        spiders.upload_version, context, request.path_params["ref"], filename, data
    )
    return ModelResponse(VersionOut.of(version), 201)


async def read_upload(request: Request) -> tuple[str, bytes]:
    """The package of a multipart upload (field `file`): its safe name and its bytes."""
    limit = ctx(request).settings.max_upload_bytes
    async with request.form(max_files=1, max_fields=4) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest(
                "expected multipart/form-data with the package in a field named 'file'"
            )
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(
                f"the upload is over the limit of {limit} bytes", code="archive_too_large"
            )
        return safe_filename(upload.filename), data


def safe_filename(name: str | None) -> str:
    """The last path component of a client-supplied file name, printable and bounded."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return cleaned[-255:] or "upload"


ROUTES = [
    Route("/api/spiders", list_spiders, methods=["GET"]),
    Route("/api/spiders", create_spider, methods=["POST"]),
    Route("/api/spiders/{ref}", get_spider, methods=["GET"]),
    Route("/api/spiders/{ref}", patch_spider, methods=["PATCH"]),
    Route("/api/spiders/{ref}", delete_spider, methods=["DELETE"]),
    Route("/api/spiders/{ref}/versions", list_versions, methods=["GET"]),
    Route("/api/spiders/{ref}/versions", upload_version, methods=["POST"]),
]
