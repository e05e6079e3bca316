"""The Scrapyd-compatible API: Scrapyd 1.6's JSON endpoints under /scrapyd/ (and at the root,
where python-scrapyd-api looks for them), so scrapyd-deploy, scrapyd-client,
python-scrapyd-api, Gerapy and SpiderKeeper drive CrawlHub unchanged (docs/scrapyd.md).

Every answer carries `status` and `node_name`; an error is `{"status": "error", "message":
…}` with HTTP 200, as Scrapyd's. Parameters come from the query string and the body
(urlencoded or multipart) alike; the egg of addversion.json as a file or as a field.
"""

import asyncio
import json
import re
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from crawlhub.context import Context
from crawlhub.data import items
from crawlhub.errors import CrawlhubError
from crawlhub.registry import projects
from crawlhub.services import scrapyd
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
    try:
        float(one(params, "priority", "0"))
    except ValueError:
        raise ScrapydError(f"priority is invalid: {one(params, 'priority')[:40]!r}") from None
    reserved = {"project", "spider", "_version", "jobid", "priority", "setting"}
    args = {name: values[0] for name, values in params.items() if name not in reserved}
    job = await run_in_threadpool(
        lambda: scrapyd.schedule(
            context, project, spider, label=optional(params, "_version"),
            job_id=optional(params, "jobid"), settings=settings, args=args,
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


async def home(request: Request) -> Response:
    """What Scrapyd serves at its root; clients use it as a health check."""
    links = "".join(f'<li><a href="{PREFIX}/{name}.json">{name}.json</a></li>'
                    for name, (method, _) in ENDPOINTS.items() if method == "GET")  # fmt: skip
    return HTMLResponse(
        "<html><head><title>CrawlHub: Scrapyd API</title></head><body>"
        "<h1>CrawlHub: Scrapyd-compatible API</h1>"
        f"<p>Point <code>scrapy.cfg</code> at <code>{PREFIX}/</code>.</p>"
        f"<ul>{links}</ul></body></html>"
    )


RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def job_log(request: Request) -> Response:
    """A job's log as text (stdout, stderr and CrawlHub's lines, in order), streamed from
    the database a page of lines at a time; `Range` honoured, as a static file server does."""
    context, p = ctx(request), request.path_params
    task = await run_in_threadpool(scrapyd.job_task, context, p["project"], p["spider"], p["job"])
    size = await run_in_threadpool(scrapyd.log_size, context, task.id)
    headers = {"Accept-Ranges": "bytes"}
    media_type = "text/plain; charset=utf-8"
    wanted = request.headers.get("range")
    match = RANGE.match(wanted.strip()) if wanted else None
    start, end, status = 0, size - 1, 200
    if wanted is not None and match is not None and match.groups() != ("", ""):
        first, last = match.groups()
        if first == "":  # the last N bytes
            start = max(size - int(last), 0)
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        if start >= size or start > end or (first == "" and int(last) == 0):
            return Response(b"", status_code=416,
                            headers={**headers, "Content-Range": f"bytes */{size}"})  # fmt: skip
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        status = 206
    headers["Content-Length"] = str(max(end - start + 1, 0))
    body = iterate_in_threadpool(scrapyd.log_bytes(context, task.id, start, end))
    return StreamingResponse(body, status_code=status, media_type=media_type, headers=headers)


async def job_items(request: Request) -> Response:
    """A job's items as JSON lines (the feed file Scrapyd keeps)."""
    context, p = ctx(request), request.path_params
    task = await run_in_threadpool(scrapyd.job_task, context, p["project"], p["spider"], p["job"])
    selection = await run_in_threadpool(items.select, context.db, task=task.id)
    body = items.export_stream(context.db, selection, "jsonl", fields=None, excel=False)
    return StreamingResponse(body, media_type="text/plain; charset=utf-8")


class EndpointConvertor(Convertor[str]):
    """Matches the name of a Scrapyd endpoint only (the root keeps its other paths)."""

    regex = "|".join(ENDPOINTS)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("scrapyd_endpoint", EndpointConvertor())

ROUTES = [
    Route(f"{PREFIX}", home, methods=["GET"]),
    Route(f"{PREFIX}/", home, methods=["GET"]),
    Route(
        f"{PREFIX}/{{name:scrapyd_endpoint}}.json",
        endpoint,
        methods=["GET", "HEAD", "POST", "OPTIONS"],
    ),
    Route("/{name:scrapyd_endpoint}.json", endpoint, methods=["GET", "HEAD", "POST", "OPTIONS"]),
    Route(f"{PREFIX}/logs/{{project}}/{{spider}}/{{job}}.log", job_log, methods=["GET"]),
    Route(f"{PREFIX}/items/{{project}}/{{spider}}/{{job}}.jl", job_items, methods=["GET"]),
]


def is_scrapyd_path(path: str) -> bool:
    """Whether a request path belongs to the Scrapyd API (and so needs a token)."""
    if path == PREFIX or path.startswith(PREFIX + "/"):
        return True
    name = path[1:].removesuffix(".json")
    return path.endswith(".json") and name in ENDPOINTS
