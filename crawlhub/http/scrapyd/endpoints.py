"""Scrapyd 1.6's JSON endpoints, so scrapyd-deploy, scrapyd-client, python-scrapyd-api,
Gerapy, SpiderKeeper and ScrapydWeb drive CrawlHub unchanged (docs/scrapyd.md).

Every answer carries `status` and `node_name`; an error is `{"status": "error", "message":
…}` with HTTP 200, as Scrapyd's. Parameters come from the query string and the body
(urlencoded or multipart) alike; the egg of addversion.json as a file or as a field.
"""

import asyncio
import json
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from crawlhub.context import Context
from crawlhub.errors import CrawlhubError
from crawlhub.registry import projects
from crawlhub.services import scrapyd
from crawlhub.services.dispatch import PRIORITY_BOUND
from crawlhub.services.scrapyd import ScrapydError
from crawlhub.web.validation import ctx

PREFIX = "/scrapyd"
NODE_NAME = socket.gethostname()
PREPARE_WAIT_S = 300.0  # addversion.json answers once the egg's spiders are listed
MAX_FIELDS = 200

Params = dict[str, list[str]]
Handler = Callable[[Context, Params, bytes | None], Awaitable[dict[str, Any]]]


class Missing(ScrapydError):
    def __init__(self, name: str) -> None:
        super().__init__(f"'{name}' parameter is required")


def one(params: Params, name: str, default: str | None = None) -> str:
    values = params.get(name)
    if values:
        return values[0]
    if default is None:
        raise Missing(name)
    return default


def optional(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


async def daemonstatus(context: Context, params: Params, egg: bytes | None) -> dict[str, Any]:
    return await run_in_threadpool(scrapyd.daemon_status, context)


async def listprojects(context: Context, params: Params, egg: bytes | None) -> dict[str, Any]:
    return {"projects": await run_in_threadpool(scrapyd.list_projects, context)}


async def listversions(context: Context, params: Params, egg: bytes | None) -> dict[str, Any]:
    project = one(params, "project")
    return {"versions": await run_in_threadpool(scrapyd.list_versions, context, project)}


async def listspiders(context: Context, params: Params, egg: bytes | None) -> dict[str, Any]:
    project, label = one(params, "project"), optional(params, "_version")
    return {"spiders": await run_in_threadpool(scrapyd.list_spiders, context, project, label)}


async def listjobs(context: Context, params: Params, egg: bytes | None) -> dict[str, Any]:
    return await run_in_threadpool(scrapyd.list_jobs, context, optional(params, "project"))


async def status(context: Context, params: Params, egg: bytes | None) -> dict[str, Any]:
    job, project = one(params, "job"), optional(params, "project")
    return {"currstate": await run_in_threadpool(scrapyd.status, context, job, project)}


async def addversion(context: Context, params: Params, egg: bytes | None) -> dict[str, Any]:
    project, label = one(params, "project"), one(params, "version")
    if egg is None:
        raise Missing("egg")
    if not egg.startswith(b"PK"):
        raise ScrapydError("egg is not a ZIP file (if using curl, use egg=@path not egg=path)")
    version = await run_in_threadpool(scrapyd.add_version, context, project, label, egg)
    deadline = time.monotonic() + PREPARE_WAIT_S  # Scrapyd lists the spiders before answering
    while version.env_status == "building" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        version = await run_in_threadpool(projects.get_version, context.db, project,
                                          version.number)  # fmt: skip
    if version.env_status == "failed":  # stored all the same, as Scrapyd keeps a bad egg
        raise ScrapydError(f"RunnerError: {version.env_error}")
    if version.env_status == "building":
        raise ScrapydError(
            f"no worker listed the egg's spiders within {PREPARE_WAIT_S:g} s (is a worker "
            f"running?); version {label} is stored and gets ready when one takes it: "
            f"/api/projects/{project}/versions/{version.number}"
        )
    return {"project": project, "version": label, "spiders": len(version.spiders or [])}


async def schedule(context: Context, params: Params, egg: bytes | None) -> dict[str, Any]:
    project, spider = one(params, "project"), one(params, "spider")
    settings: dict[str, str] = {}
    for setting in params.get("setting", []):
        name, sep, value = setting.partition("=")
        if not sep:
            raise ScrapydError(f"setting '{setting[:80]}' is not NAME=VALUE")
        settings[name] = value
    try:  # Scrapyd's: higher first, 0 when not given; CrawlHub's priorities are integers
        priority = round(float(one(params, "priority", "0")))
        if abs(priority) > PRIORITY_BOUND:
            raise ValueError
    except (ValueError, OverflowError):
        raise ScrapydError(f"priority is invalid: {one(params, 'priority')[:40]!r}") from None
    reserved = {"project", "spider", "_version", "jobid", "priority", "setting"}
    args = {name: values[0] for name, values in params.items() if name not in reserved}
    job = await run_in_threadpool(
        lambda: scrapyd.schedule(
            context, project, spider, label=optional(params, "_version"),
            job_id=optional(params, "jobid"), settings=settings, args=args, priority=priority,
        )
    )  # fmt: skip
    return {"jobid": job}


async def cancel(context: Context, params: Params, egg: bytes | None) -> dict[str, Any]:
    project, job = one(params, "project"), one(params, "job")
    return {"prevstate": await run_in_threadpool(scrapyd.cancel, context, project, job)}


async def delversion(context: Context, params: Params, egg: bytes | None) -> dict[str, Any]:
    project, label = one(params, "project"), one(params, "version")
    await run_in_threadpool(scrapyd.delete_version, context, project, label)
    return {}


async def delproject(context: Context, params: Params, egg: bytes | None) -> dict[str, Any]:
    await run_in_threadpool(scrapyd.delete_project, context, one(params, "project"))
    return {}


ENDPOINTS: dict[str, tuple[str, Handler]] = {
    "daemonstatus": ("GET", daemonstatus),
    "addversion": ("POST", addversion),
    "schedule": ("POST", schedule),
    "cancel": ("POST", cancel),
    "status": ("GET", status),
    "listprojects": ("GET", listprojects),
    "listversions": ("GET", listversions),
    "listspiders": ("GET", listspiders),
    "listjobs": ("GET", listjobs),
    "delversion": ("POST", delversion),
    "delproject": ("POST", delproject),
}


def answer(data: dict[str, Any]) -> Response:
    """Scrapyd's envelope as its JSON encoder writes it: the endpoint's keys, then `status`
    and `node_name`, `", "` and `": "` between them, a newline at the end."""
    body = json.dumps({**data, "node_name": NODE_NAME}) + "\n"
    return Response(body, media_type="application/json",
                    headers={"Access-Control-Allow-Origin": "*"})  # fmt: skip


async def endpoint(request: Request) -> Response:
    method, handler = ENDPOINTS[request.path_params["name"]]
    if request.method == "OPTIONS":  # as Scrapyd answers it: the methods, no body
        return Response(status_code=204, headers={
            "Allow": f"OPTIONS, HEAD, {method}", "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": f"OPTIONS, HEAD, {method}",
            "Access-Control-Allow-Headers": "X-Requested-With",
        })  # fmt: skip
    allowed = {method, "HEAD"} if method == "GET" else {method}
    if request.method not in allowed:
        expected = ", ".join(sorted(allowed))
        return answer({"status": "error",
                       "message": f"UnsupportedMethod: expected one of {expected}"})  # fmt: skip
    if request.method == "POST" and request.headers.get("sec-fetch-site") == "cross-site":
        # A page of another site posting with the browser's stored basic credentials (the
        # jobs page's Cancel forms post from this site; tools send no such header).
        return answer({"status": "error", "message": "cross-site requests are refused"})
    context = ctx(request)
    try:
        params, egg = await _params(request)
        data = await handler(context, params, egg)
    except ScrapydError as exc:
        return answer({"status": "error", "message": exc.message})
    except CrawlhubError as exc:
        return answer({"status": "error", "message": exc.message})
    return answer({**data, "status": "ok"})


async def _params(request: Request) -> tuple[Params, bytes | None]:
    """Query and body parameters (repeatable), and the egg when one was sent."""
    params, egg = await _read_params(request)
    for name, values in params.items():  # no name, spider argument or setting holds a NUL
        if any("\x00" in value for value in values):
            raise ScrapydError(f"{name[:80]} is invalid: it contains a NUL character")
    return params, egg


async def _read_params(request: Request) -> tuple[Params, bytes | None]:
    params: Params = {}
    for name, text in request.query_params.multi_items():
        params.setdefault(name, []).append(text)
    egg: bytes | None = None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method != "POST":
        return params, egg
    if kind == "multipart/form-data":
        limit = ctx(request).settings.max_upload_bytes
        async with request.form(max_files=1, max_fields=MAX_FIELDS) as form:
            for name, field in form.multi_items():
                if not isinstance(field, UploadFile):
                    params.setdefault(name, []).append(field)
                elif name == "egg":
                    egg = await field.read(limit + 1)
                    if len(egg) > limit:
                        raise ScrapydError(f"the egg is over the limit of {limit} bytes")
    else:  # urlencoded: SpiderKeeper sends the egg's bytes as a field
        body = await request.body()
        fields = urllib.parse.parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                                        encoding="latin-1", max_num_fields=MAX_FIELDS)  # fmt: skip
        for name, value in fields:
            if name == "egg":
                egg = value.encode("latin-1")
                continue
            params.setdefault(name, []).append(value.encode("latin-1").decode("utf-8", "replace"))
    if egg is None and "egg" in params:  # a multipart text field: its bytes are lost
        raise ScrapydError("send the egg as a file (multipart) or as an urlencoded field")
    return params, egg


class EndpointConvertor(Convertor[str]):
    """Matches the name of a Scrapyd endpoint only (the root keeps its other paths)."""

    regex = "|".join(ENDPOINTS)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("scrapyd_endpoint", EndpointConvertor())
