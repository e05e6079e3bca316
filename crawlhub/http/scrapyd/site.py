"""Scrapyd's web pages that tools read, built from the database: the jobs page (with its
Cancel forms), the logs/ and items/ folder listings down to a job's file, and the files
(a job's log as text, its items as JSON lines). ScrapydWeb's Jobs, Log, Stats, Logs and
Items pages read these. Markup is Scrapyd 1.6's (and Twisted's folder listing), since tools
parse it; every name and line of text in it is escaped: they are the spider's.
"""

import re
from datetime import UTC, datetime, timedelta
from html import escape
from urllib.parse import quote

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from crawlhub.data import items
from crawlhub.errors import NotFound
from crawlhub.http.scrapyd.endpoints import ENDPOINTS, PREFIX
from crawlhub.services import scrapyd
from crawlhub.services.scrapyd import Entry, Job
from crawlhub.web.responses import ClosingStream
from crawlhub.web.validation import ctx

FOLDERS = {"logs": "log", "items": "jl"}  # a folder of Scrapyd's and its files' extension
PREFIX_HEADER = "x-forwarded-prefix"  # Scrapyd's prefix_header: where a proxy mounted it
SAFE_PREFIX = re.compile(r"^(/[A-Za-z0-9._~%+-]+)*$")
PAGE_STYLE = "body { font-family: system-ui, sans-serif; }"


def base_path(request: Request) -> str:
    """Where Scrapyd's root is, as links on its pages start: the proxy's prefix (a plain
    path only: it is written into links), then /scrapyd when the page was asked there."""
    prefix = request.headers.get(PREFIX_HEADER, "").rstrip("/")
    if not SAFE_PREFIX.match(prefix):
        prefix = ""
    mounted = PREFIX if request.url.path.startswith(PREFIX + "/") else ""
    return prefix + mounted


def _page(title: str, body: str, style: str = PAGE_STYLE) -> HTMLResponse:
    return HTMLResponse(
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n    <meta charset="utf-8">\n'
        '    <meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"    <title>{title}</title>\n    <style>\n{style}\n    </style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


async def home(request: Request) -> Response:
    """Scrapyd's home page, at /scrapyd/ (the root stays CrawlHub's dashboard)."""
    base = base_path(request)
    names = await run_in_threadpool(scrapyd.list_projects, ctx(request))
    if names:
        lis = "\n".join(f"    <li>{escape(name)}</li>" for name in sorted(names))
        listed = f"<p>Scrapy projects:</p>\n<ul>\n{lis}\n</ul>"
    else:
        listed = "<p>No Scrapy projects yet.</p>"
    endpoints = "".join(f'<li><a href="{base}/{name}.json">{name}.json</a></li>'
                        for name, (method, _) in ENDPOINTS.items() if method == "GET")  # fmt: skip
    return _page("Scrapyd", (
        "<h1>Scrapyd</h1>\n<ul>\n"
        f'    <li><a href="{base}/jobs">Jobs</a></li>\n'
        f'    <li><a href="{base}/items/">Items</a></li>\n'
        f'    <li><a href="{base}/logs/">Logs</a></li>\n</ul>\n'
        f"{listed}\n"
        "<p>This is CrawlHub's Scrapyd-compatible API: point <code>scrapy.cfg</code> here; "
        "CrawlHub's dashboard is at <code>/</code>.</p>\n"
        f"<ul>{endpoints}</ul>"
    ))  # fmt: skip


JOB_COLUMNS = ["Project", "Spider", "Job", "PID", "Start", "Runtime", "Finish", "Log", "Items",
               "Cancel"]  # fmt: skip
JOBS_STYLE = """body { font-family: system-ui, sans-serif; }
table { border-collapse: collapse; }
th, td { border-style: solid; border-width: 1px; }
tbody > tr:first-child { background-color: #eee; }
th, td { padding: .5rem; }
td:nth-child(2), td:nth-child(3) { word-break: break-all; }"""


def _seconds(moment: timedelta | datetime) -> str:
    """As Scrapyd shows times and durations: to the second (times in UTC)."""
    if isinstance(moment, timedelta):
        return str(timedelta(seconds=int(moment.total_seconds())))
    return str(moment.replace(microsecond=0, tzinfo=None))


class JobsPage:
    """Scrapyd's jobs page: pending, running and the last 100 finished jobs."""

    def __init__(self, base: str) -> None:
        self.base = base

    def cancel_button(self, job: Job) -> str:
        return (
            f'\n<form method="post" onsubmit="return confirm(\'Are you sure?\');" '
            f'action="{self.base}/cancel.json">\n'
            f'<input type="hidden" name="project" value="{escape(job.project)}">\n'
            f'<input type="hidden" name="job" value="{escape(job.id)}">\n'
            '<input type="submit" style="float: left;" value="Cancel">\n</form>\n'
        )

    def link(self, job: Job, folder: str, text: str) -> str:
        return f'<a href="{self.base}{_file_path(folder, job)}">{text}</a>'

    def row(self, cells: dict[str, str | None]) -> str:
        tds = "\n".join(f"    <td>{cells.get(column) or ''}</td>" for column in JOB_COLUMNS)
        return f"<tr>\n{tds}\n</tr>"

    def names(self, job: Job) -> dict[str, str | None]:
        return {"Project": escape(job.project), "Spider": escape(job.spider),
                "Job": escape(job.id)}  # fmt: skip

    def render(self, jobs: scrapyd.Jobs, now: datetime) -> HTMLResponse:
        rows = {
            "Pending": [self.row({**self.names(j), "Cancel": self.cancel_button(j)})
                        for j in jobs.pending],
            "Running": [self.row({
                **self.names(j), "PID": str(j.task.pid or ""),
                **self._times(j, now), "Log": self.link(j, "logs", "Log"),
                "Items": self.link(j, "items", "Items"), "Cancel": self.cancel_button(j),
            }) for j in jobs.running],
            "Finished": [self.row({
                **self.names(j), **self._times(j, now), "Log": self.link(j, "logs", "Log"),
                "Items": self.link(j, "items", "Items"),
            }) for j in jobs.finished],
        }  # fmt: skip
        head = "\n".join(f"    <th>{column}</th>" for column in JOB_COLUMNS)
        groups = "\n".join(
            f'<tbody>\n<tr>\n    <th colspan="{len(JOB_COLUMNS)}">{state}</th>\n</tr>\n'
            + "".join(f"{row}\n" for row in shown)
            + "</tbody>"
            for state, shown in rows.items()
        )
        return _page("Scrapyd", (
            '<h1>Jobs</h1>\n<p><a href="./">Go up</a></p>\n<table id="jobs">\n'
            f"<thead>\n<tr>\n{head}\n</tr>\n</thead>\n{groups}\n</table>"
        ), JOBS_STYLE)  # fmt: skip

    @staticmethod
    def _times(job: Job, now: datetime) -> dict[str, str | None]:
        task = job.task
        start, end = task.started_at or task.created_at, task.finished_at
        return {"Start": _seconds(start), "Runtime": _seconds((end or now) - start),
                "Finish": _seconds(end) if end is not None else None}  # fmt: skip


def _file_path(folder: str, job: Job) -> str:
    return (f"/{folder}/{quote(job.project, safe='')}/{quote(job.spider, safe='')}/"
            f"{quote(job.id, safe='')}.{FOLDERS[folder]}")  # fmt: skip


async def jobs_page(request: Request) -> Response:
    jobs = await run_in_threadpool(scrapyd.all_jobs, ctx(request))
    return JobsPage(base_path(request)).render(jobs, datetime.now(UTC))


LISTING_STYLE = """.even-dir { background-color: #efe0ef }
.even { background-color: #eee }
.odd-dir {background-color: #f0d0ef }
.odd { background-color: #dedede }
.icon { text-align: center }
.listing {
    margin-left: auto;
    margin-right: auto;
    width: 50%;
    padding: 0.1em;
    }

body { border: 0; padding: 0; margin: 0; background-color: #efefef; }
h1 {padding: 0.1em; background-color: #777; color: white; border-bottom: thin white dashed;}
"""


def file_size(size: int) -> str:
    """Twisted's file size, as its folder listing shows it."""
    for unit, scale in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size >= scale:
            return f"{size // scale}{unit}"
    return f"{size}B"


def listing(path: str, entries: list[Entry]) -> HTMLResponse:
    """Twisted's folder listing with Scrapyd's Last modified column: folders first (a
    project's spiders, a spider's folder), then a spider's jobs' files, newest first."""
    header = f"Directory listing for {escape(path)}"
    lines = []
    for entry, parity in zip(entries, ("odd", "even") * len(entries), strict=False):
        name = entry.name + ("/" if entry.size is None else "")
        if entry.size is None:
            size, kind = "", "[Directory]"
        elif entry.name.endswith(".jl"):  # made on request: its count, not its size
            size, kind = f"{entry.items} items", "[text/plain]"
        else:
            size, kind = file_size(entry.size), "[text/plain]"
        lines.append(
            f'<tr class="{parity}">\n'
            f'    <td><a href="{quote(name)}">{escape(name)}</a></td>\n'
            f"    <td>{size}</td>\n"
            f"    <td>{entry.modified.strftime('%Y-%m-%d %H:%M')}</td>\n"
            f"    <td>{kind}</td>\n"
            "    <td></td>\n"
            "</tr>\n"
        )
    return HTMLResponse(
        f"<html>\n<head>\n<title>{header}</title>\n<style>\n{LISTING_STYLE}\n</style>\n"
        f"</head>\n\n<body>\n<h1>{header}</h1>\n\n<table>\n    <thead>\n        <tr>\n"
        "            <th>Filename</th>\n            <th>Size</th>\n"
        "            <th>Last modified</th>\n            <th>Content type</th>\n"
        "            <th>Content encoding</th>\n        </tr>\n    </thead>\n    <tbody>\n"
        f"{''.join(lines)}    </tbody>\n</table>\n\n</body>\n</html>\n"
    )


async def folder_page(request: Request) -> Response:
    folder = request.url.path.removeprefix(PREFIX).split("/")[1]
    p = request.path_params
    try:
        entries = await run_in_threadpool(scrapyd.folder, ctx(request), FOLDERS[folder],
                                          p.get("project"), p.get("spider"))  # fmt: skip
    except NotFound:
        return Response("No Such Resource", status_code=404, media_type="text/plain")
    return listing(request.url.path, entries)


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
    return ClosingStream(body, media_type="text/plain; charset=utf-8")


def _routes(base: str) -> list[Route]:
    found = [Route(f"{base}/jobs", jobs_page, methods=["GET"])]
    for folder, extension in FOLDERS.items():
        file = job_log if folder == "logs" else job_items
        found += [
            Route(f"{base}/{folder}/", folder_page, methods=["GET"]),
            Route(f"{base}/{folder}/{{project}}/", folder_page, methods=["GET"]),
            Route(f"{base}/{folder}/{{project}}/{{spider}}/", folder_page, methods=["GET"]),
            Route(f"{base}/{folder}/{{project}}/{{spider}}/{{job}}.{extension}", file,
                  methods=["GET"]),
        ]  # fmt: skip
    return found


ROUTES = [
    Route(PREFIX, home, methods=["GET"]),
    Route(f"{PREFIX}/", home, methods=["GET"]),
    *_routes(PREFIX),
    *_routes(""),
]


def is_site_path(path: str) -> bool:
    """Whether a path at the root is one of Scrapyd's pages (the rest is the dashboard's)."""
    first = path.split("/")[1] if path.startswith("/") else ""
    return path == "/jobs" or (first in FOLDERS and (path == f"/{first}"
                                                     or path.startswith(f"/{first}/")))  # fmt: skip
