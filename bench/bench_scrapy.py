"""SPEC §11: trivial `scrapy` spiders: ≤ 1.2 x the time of a bare `scrapy crawl`; issue 17:
API call → first request sent ≤ 0.3 s.

A small Scrapy project (scrapy.cfg, settings, one spider with `async def start()`)
crawls 5 pages of a local http.server started here. N runs through CrawlHub (time from
just before the POST to the task's finished_at) alternate with N bare
`python -m scrapy crawl pages -a start_url=…` in a copy of the project dir (wall time
of subprocess.run); the medians are compared. One warm-up of each is not counted.
"First request" is when the local server receives the start URL (its clock is this
process's), from just before the POST (CrawlHub) or before subprocess.run (bare). The
CrawlHub runs are made warm (the default) and then cold (`CRAWLHUB_WARM_START=false`).

    .venv/bin/python bench/bench_scrapy.py [--runs 5]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from common import PYTHON, Hub, Row, median, ms, parse_ts, report

TARGET_RATIO = 1.2
TARGET_FIRST_REQUEST_S = 0.3
PAGES = 5
WARMUP_RUNS = 1

PROJECT = {
    "scrapy.cfg": """\
        [settings]
        default = benchpages.settings
        """,
    "benchpages/__init__.py": "",
    "benchpages/settings.py": """\
        BOT_NAME = "benchpages"
        SPIDER_MODULES = ["benchpages.spiders"]
        NEWSPIDER_MODULE = "benchpages.spiders"
        ROBOTSTXT_OBEY = False
        LOG_LEVEL = "INFO"
        """,
    "benchpages/spiders/__init__.py": "",
    "benchpages/spiders/pages.py": """\
        import scrapy


        class PagesSpider(scrapy.Spider):
            name = "pages"

            def __init__(self, start_url="http://127.0.0.1:8000/", **kwargs):
                super().__init__(**kwargs)
                self.start_url = start_url

            async def start(self):  # Scrapy >= 2.13 does not call start_requests()
                yield scrapy.Request(self.start_url)

            def parse(self, response):
                yield {"url": response.url, "title": response.css("title::text").get()}
                yield from response.follow_all(css="a", callback=self.parse)
        """,
}


def site() -> dict[str, bytes]:
    """Path → HTML of a 5-page site: an index linking to 4 pages."""
    paths = [f"/page/{n}" for n in range(1, PAGES)]
    links = "".join(f'<a href="{p}">{p}</a> ' for p in paths)
    pages = {"/": f"<html><title>index</title><body>{links}</body></html>".encode()}
    for p in paths:
        pages[p] = f"<html><title>{p}</title><body><a href='/'>home</a></body></html>".encode()
    return pages


class SiteHandler(BaseHTTPRequestHandler):
    pages: dict[str, bytes] = site()
    starts: ClassVar[list[float]] = []  # when the start URL was requested, each crawl once

    def do_GET(self) -> None:
        if self.path == "/":
            self.starts.append(time.time())
        body = self.pages.get(self.path)
        self.send_response(200 if body is not None else 404)
        body = body or b"not found"
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def write_project(target: Path) -> None:
    for path, source in PROJECT.items():
        file = target / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(textwrap.dedent(source))


def first_request(after: float) -> float:
    """Seconds from `after` to the first request of the start URL since."""
    return min(t for t in SiteHandler.starts if t >= after) - after


def bare_crawl(project: Path, url: str) -> tuple[float, float]:
    """Wall seconds of one bare `scrapy crawl`, and to its first request; checks that it
    fetched every page."""
    t0 = time.time()
    start = time.perf_counter()
    done = subprocess.run(
        [PYTHON, "-m", "scrapy", "crawl", "pages", "-a", f"start_url={url}"],
        cwd=project, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    fetched = re.search(r"'response_received_count': (\d+)", done.stderr)
    if done.returncode != 0 or fetched is None or int(fetched.group(1)) != PAGES:
        raise RuntimeError(f"bare scrapy crawl failed:\n{done.stderr[-3000:]}")
    return elapsed, first_request(t0)


def hub_crawl(hub: Hub, url: str) -> tuple[float, float, float]:
    """(POST → finished_at, started_at → finished_at, POST → first request) seconds of one
    CrawlHub run."""
    t0 = time.time()
    task = hub.run("pages", {"start_url": url})
    done = hub.wait(task["id"], poll=0.02)
    hub.expect_completed(done)
    fetched = (done.get("stats") or {}).get("response_received_count")
    if done["items_count"] != PAGES or fetched != PAGES:
        raise RuntimeError(f"run {task['id']}: {done['items_count']} items, {fetched} pages")
    finished = parse_ts(done["finished_at"])
    return finished - t0, finished - parse_ts(done["started_at"]), first_request(t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), SiteHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    bare: list[float] = []
    bare_first: list[float] = []
    hub_total: list[float] = []
    hub_running: list[float] = []
    hub_first: list[float] = []
    cold_total: list[float] = []
    cold_first: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp) / "project"
            write_project(project)
            with Hub(processes=True) as hub:
                hub.deploy_zip("pages", "scrapy", PROJECT, entry="pages")
                for n in range(WARMUP_RUNS + args.runs):
                    bare_s, bare_first_s = bare_crawl(project, url)
                    total_s, running_s, first_s = hub_crawl(hub, url)
                    if n >= WARMUP_RUNS:
                        bare.append(bare_s)
                        bare_first.append(bare_first_s)
                        hub_total.append(total_s)
                        hub_running.append(running_s)
                        hub_first.append(first_s)
            with Hub(warm_start=False, processes=True) as hub:
                hub.deploy_zip("pages", "scrapy", PROJECT, entry="pages")
                for n in range(WARMUP_RUNS + args.runs):
                    total_s, _, first_s = hub_crawl(hub, url)
                    if n >= WARMUP_RUNS:
                        cold_total.append(total_s)
                        cold_first.append(first_s)
    finally:
        server.shutdown()
        server.server_close()

    ratio = median(hub_total) / median(bare)
    rows = [
        Row(
            "CrawlHub POST → finished_at",
            ms(median(hub_total)),
            f"bare scrapy crawl {ms(median(bare))}",
            f"{ratio:.2f}x bare",
            f"≤ {TARGET_RATIO}x bare",
            ratio <= TARGET_RATIO,
        ),
        Row(
            "CrawlHub POST → first request sent",
            ms(median(hub_first)),
            f"bare scrapy crawl start → first request {ms(median(bare_first))}",
            f"{median(hub_first) / median(bare_first):.2f}x bare",
            f"≤ {ms(TARGET_FIRST_REQUEST_S)}",
            median(hub_first) <= TARGET_FIRST_REQUEST_S,
        ),
        Row(
            "the same, cold start (an interpreter per run)",
            ms(median(cold_first)),
            f"bare {ms(median(bare_first))}",
            f"{median(cold_first) / median(bare_first):.2f}x bare",
            "—",
            None,
        ),
        Row(
            "cold start: POST → finished_at",
            ms(median(cold_total)),
            f"bare scrapy crawl {ms(median(bare))}",
            f"{median(cold_total) / median(bare):.2f}x bare",
            "—",
            None,
        ),
        Row(
            "CrawlHub started_at → finished_at",
            ms(median(hub_running)),
            "—",
            f"{median(hub_running) / median(bare):.2f}x bare",
            "—",
            None,
        ),
    ]
    report(
        f"scrapy: {args.runs} runs of a {PAGES}-page crawl of a local site, medians",
        rows,
        [
            "runs alternate bare / CrawlHub; all runs (s): bare "
            + ", ".join(f"{x:.2f}" for x in bare)
            + "; CrawlHub "
            + ", ".join(f"{x:.2f}" for x in hub_total),
        ],
    )


if __name__ == "__main__":
    main()
