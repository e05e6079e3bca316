"""What others wrote for Scrapyd, run against CrawlHub unchanged: Scrapyd 1.6's own
integration tests (from its source distribution on the registry) and ScrapydWeb 1.6
(installed from the registry in an environment of its own) reading a finished job."""

import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TOKEN
from tests.integration.harness import Hub, Site, running_hub, served
from tests.integration.test_scrapyd import BIN, project_dir, tool

SCRAPYD = "scrapyd==1.6.0"
# Scrapyd's tests ask 127.0.0.1:6800 with these credentials; CrawlHub takes any user name
# and an API token as the password, so the token is the tests' password.
SCRAPYD_PORT, SCRAPYD_PASSWORD = 6800, "67890world"
# Those about `/` being Scrapyd's home page: CrawlHub's `/` is its dashboard (Scrapyd's
# home page is at /scrapyd/), as docs/scrapyd.md says.
ABOUT_THE_ROOT = {"test_website.py::test_root", "test_website.py::test_base_path"}
SCRAPYDWEB = ["scrapydweb==1.6.0", "setuptools<81"]  # its APScheduler 3.6 imports pkg_resources


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="module")
def scrapyd_tests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """integration_tests/ of Scrapyd 1.6's source distribution, from the registry."""
    where = tmp_path_factory.mktemp("scrapyd-sdist")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "--dest", str(where), SCRAPYD],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (sdist,) = where.glob("scrapyd-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(where, filter="data")
    (root,) = where.glob("scrapyd-*/")
    assert (root / "integration_tests" / "test_webservice.py").is_file()
    return root


def test_scrapyds_own_integration_tests_pass_but_those_about_the_root(
    pg_url: str, redis_url: str, tmp_path: Path, scrapyd_tests: Path
) -> None:
    """Scrapyd's tests as they are: only the server is ours, on their address and with their
    password; a fresh instance, as they expect (no project, no job)."""
    with (
        running_hub(pg_url, tmp_path, redis_url, threads=1,
                    api_tokens=f"{TOKEN},{SCRAPYD_PASSWORD}") as hub,
        served(hub, port=SCRAPYD_PORT),
    ):  # fmt: skip
        report = tmp_path / "report.xml"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "integration_tests", "-p", "no:cacheprovider",
             "-p", "no:randomly", "-o", "addopts=", f"--junitxml={report}", "-q"],
            cwd=scrapyd_tests, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).iter("testcase"):  # noqa: S314 (pytest's own report)
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.py::{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[name] = "skipped" if case.find("skipped") is not None else (
            "failed" if failed else "passed")  # fmt: skip
    failed = {name.split("[")[0] for name, outcome in outcomes.items() if outcome != "passed"}
    assert failed == ABOUT_THE_ROOT, done.stdout[-6000:]
    assert sum(outcome == "passed" for outcome in outcomes.values()) == 29, outcomes


@pytest.fixture(scope="module")
def scrapydweb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ScrapydWeb 1.6 in an environment of its own (its pins are Flask 2.0 and SQLAlchemy
    1.3, which CrawlHub's cannot share)."""
    env = tmp_path_factory.mktemp("scrapydweb") / "env"
    uv = shutil.which("uv", path=str(BIN)) or "uv"
    made = subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(env)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    installed = subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(env / "bin" / "python"), *SCRAPYDWEB],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    return env / "bin" / "scrapydweb"


@pytest.fixture
def web_ui(scrapydweb: Path, pg_hub: Hub, tmp_path: Path) -> Iterator[str]:
    """ScrapydWeb with this CrawlHub as its one Scrapyd server (the settings of
    docs/scrapyd.md); its base URL."""
    with served(pg_hub) as url:
        port, home = free_port(), tmp_path / "scrapydweb"
        home.mkdir()
        address = url.removeprefix("http://")
        (home / "scrapydweb_settings_v11.py").write_text(
            f"SCRAPYDWEB_BIND = '127.0.0.1'\nSCRAPYDWEB_PORT = {port}\n"
            f"SCRAPYD_SERVERS = ['ops:{TOKEN}@{address}#crawlhub']\n"
            f"LOCAL_SCRAPYD_SERVER = ''\nENABLE_LOGPARSER = False\nDATA_PATH = '{home / 'data'}'\n"
        )
        log = (home / "scrapydweb.log").open("w")
        proc = subprocess.Popen([str(scrapydweb)], cwd=home, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(f"http://127.0.0.1:{port}/")
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()


def text_of(page: str) -> str:
    """A page's text as a reader sees it (no scripts, styles or tags)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_scrapydweb_shows_a_finished_jobs_jobs_log_stats_logs_and_items(
    pg_hub: Hub, web_ui: str, tmp_path: Path
) -> None:
    site = Site(pages=4)
    try:
        with served(pg_hub) as url:
            project = project_dir(tmp_path, "news_scrapy", "news", url)
            assert tool("scrapyd-deploy", "-v", "1.0", cwd=project).returncode == 0
            scheduled = httpx.post(f"{url}/schedule.json", auth=("ops", TOKEN), data={
                "project": "news", "spider": "alpha", "jobid": "nightly-1",
                "start_url": site.url})  # fmt: skip
            assert scheduled.json()["status"] == "ok", scheduled.text
        task = pg_hub.wait("nightly-1", timeout=120)
        assert task["status"] == "completed" and task["items_count"] == 4, task
    finally:
        site.close()

    def page(path: str, *, shown: bool = True) -> str:
        """A page's text, or its HTML with its scripts (`shown` False: what it draws)."""
        answer = httpx.get(f"{web_ui}{path}", timeout=60)
        assert answer.status_code == 200, (path, answer.status_code)
        assert "Oops" not in answer.text and "fail to" not in answer.text.lower(), path
        return text_of(answer.text) if shown else answer.text

    assert re.search(r"news alpha nightly-1 .* 0:00:\d\d ", page("/1/jobs/?style=classic"))
    # The database view keeps what it read of /jobs and draws it from a script's data.
    assert re.search(r"nightly-1.{0,400}finished", page("/1/jobs/?style=database", shown=False),
                     re.S)  # fmt: skip
    reports = page("/1/nodereports/", shown=False)
    assert "nightly-1" in reports
    log = page("/1/log/utf8/news/alpha/nightly-1/")
    assert "Spider closed (finished)" in log
    stats = page("/1/log/stats/news/alpha/nightly-1/")
    assert re.search(r"crawled_pages 4 scraped_items 4 ", stats), stats[-3000:]
    assert "finish_reason finished" in stats
    # The folder pages draw the rows they parsed out of CrawlHub's listings from their data.
    for folder in ("logs", "items"):
        assert "news/" in page(f"/1/{folder}/", shown=False)
        assert "alpha/" in page(f"/1/{folder}/news/", shown=False)
    logs = page("/1/logs/news/alpha/", shown=False)
    assert "nightly-1.log" in logs and re.search(r"size: '\d+[KM]'", logs)
    listed = page("/1/items/news/alpha/", shown=False)
    assert "nightly-1.jl" in listed and "size: '4 items'" in listed
