"""SPEC §11: trivial `scrapy` spiders: ≤ 1.2 x the time of a bare `scrapy crawl`.

A small Scrapy project (scrapy.cfg, settings, one spider with `async def start()`)
crawls 5 pages of a local http.server started here. N runs through CrawlHub (time from
just before the POST to the task's finished_at) alternate with N bare
`python -m scrapy crawl pages -a start_url=…` in a copy of the project dir (wall time
of subprocess.run); the medians are compared. One warm-up of each is not counted.

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

from common import PYTHON, Hub, Row, median, ms, parse_ts, report

TARGET_RATIO = 1.2
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

    def do_GET(self) -> None:
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


def bare_crawl(project: Path, url: str) -> float:
    """Wall seconds of one bare `scrapy crawl`; checks that it fetched every page."""
    start = time.perf_counter()
    done = subprocess.run(
        [PYTHON, "-m", "scrapy", "crawl", "pages", "-a", f"start_url={url}"],
        cwd=project, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    fetched = re.search(r"'response_received_count': (\d+)", done.stderr)
    if done.returncode != 0 or fetched is None or int(fetched.group(1)) != PAGES:
        raise RuntimeError(f"bare scrapy crawl failed:\n{done.stderr[-3000:]}")
    return elapsed


def hub_crawl(hub: Hub, url: str) -> tuple[float, float]:
    """(POST → finished_at, started_at → finished_at) seconds of one CrawlHub run."""
    t0 = time.time()
    task = hub.run("pages", {"start_url": url})
    done = hub.wait(task["id"], poll=0.02)
    hub.expect_completed(done)
    fetched = (done.get("stats") or {}).get("response_received_count")
    if done["items_count"] != PAGES or fetched != PAGES:
        raise RuntimeError(f"run {task['id']}: {done['items_count']} items, {fetched} pages")
    finished = parse_ts(done["finished_at"])
    return finished - t0, finished - parse_ts(done["started_at"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), SiteHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    bare: list[float] = []
    hub_total: list[float] = []
    hub_running: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp, Hub() as hub:
            project = Path(tmp) / "project"
            write_project(project)
            hub.deploy_zip("pages", "scrapy", PROJECT, entry="pages")
            for n in range(WARMUP_RUNS + args.runs):
                bare_s = bare_crawl(project, url)
                total_s, running_s = hub_crawl(hub, url)
                if n >= WARMUP_RUNS:
                    bare.append(bare_s)
                    hub_total.append(total_s)
                    hub_running.append(running_s)
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
