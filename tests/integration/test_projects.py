"""Projects with many spiders and environments of their own, built for real with uv from the
package registry (SPEC §14)."""

import base64
import functools
import hashlib
import io
import shutil
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from crawlhub.cli.client import zip_directory
from tests.integration.harness import Hub, Site, running_hub, serve_to_spiders

FIXTURES = Path(__file__).parent.parent / "fixtures" / "spiders"
BUILD_TIMEOUT_S = 600
# A small pure-Python package CrawlHub's own environment does not have.
EXTRA = "text-unidecode==1.3"
USES_EXTRA = """
from text_unidecode import unidecode

def run(params):
    yield {"word": unidecode(params.get("word", "Ærøskøbing"))}
"""
# Scrapy 2.11 beside the Twisted and w3lib of its time: today's releases break its imports.
OLD_SCRAPY = "scrapy==2.11.2\ntwisted==24.3.0\nw3lib==2.1.2\n"


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site(pages=4)
    yield served
    served.close()


def package(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


def upload(hub: Hub, project: str, data: bytes, *, kind: str = "python") -> dict[str, Any]:
    """Create the project if need be and upload a version of it."""
    if hub.client.get(f"/api/projects/{project}").status_code == 404:
        created = hub.client.post("/api/projects", json={"name": project, "kind": kind})
        assert created.status_code == 201, created.text
    sent = hub.client.post(f"/api/projects/{project}/versions",
                           files={"file": (f"{project}.zip", data)})  # fmt: skip
    assert sent.status_code == 201, sent.text
    return sent.json()  # type: ignore[no-any-return]


def settled(
    hub: Hub, project: str, number: int, timeout: float = BUILD_TIMEOUT_S
) -> dict[str, Any]:
    """The version once a worker got it ready (or failed to)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = hub.client.get(f"/api/projects/{project}/versions/{number}").json()
        if version["environment"]["status"] != "building":
            return version  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"{project} version {number} still building after {timeout} s")


def test_a_scrapy_project_deployed_once_gives_each_of_its_spiders_runs_and_schedules(
    pg_hub: Hub, site: Site
) -> None:
    version = upload(pg_hub, "news", zip_directory(FIXTURES / "news_scrapy"), kind="scrapy")
    assert version["environment"]["status"] == "building" and version["spiders"] is None
    ready = settled(pg_hub, "news", 1, timeout=60)
    assert ready["spiders"] == ["alpha", "beta", "gamma"], ready
    assert ready["environment"] == {"status": "ready", "key": None, "requirements": [],
                                    "error": None, "log": "scrapy list: alpha, beta, gamma"}  # fmt: skip
    project = pg_hub.client.get("/api/projects/news").json()
    assert (project["kind"], project["current_version"]) == ("scrapy", 1)
    assert project["spiders"] == ["alpha", "beta", "gamma"]
    listed = pg_hub.client.get("/api/spiders", params={"project": "news"}).json()["items"]
    assert sorted((s["name"], s["entry"], s["project"]) for s in listed) == [
        ("alpha", "alpha", "news"),
        ("beta", "beta", "news"),
        ("gamma", "gamma", "news"),
    ]
    for name in ("alpha", "beta", "gamma"):
        task = pg_hub.wait(pg_hub.run(name, start_url=site.url)["id"])
        assert (task["status"], task["items_count"]) == ("completed", site.pages), task
        schedule = pg_hub.client.post(f"/api/spiders/{name}/schedules",
                                      json={"cron": "0 6 * * *", "timezone": "Asia/Tokyo"})  # fmt: skip
        assert schedule.status_code == 201, schedule.text
    items = pg_hub.client.get("/api/data", params={"spider_id": "beta", "page_size": 100}).json()
    assert {i["data"]["site"] for i in items["items"]} == {"beta"}

    # Version 2 drops gamma: the others run on, gamma refuses and says why.
    without = package({"scrapy.cfg": "[settings]\ndefault = news.settings\n",
                       "news/__init__.py": "", "news/spiders/__init__.py": "",
                       "news/settings.py": (FIXTURES / "news_scrapy/news/settings.py").read_text(),
                       "news/spiders/sites.py": (FIXTURES / "news_scrapy/news/spiders/sites.py")
                       .read_text().replace("class GammaSpider", "class _Gone")
                       .replace('name = "gamma"', "name = None")})  # fmt: skip
    upload(pg_hub, "news", without)
    assert settled(pg_hub, "news", 2, timeout=60)["spiders"] == ["alpha", "beta"]
    refused = pg_hub.client.post("/api/spiders/gamma/run", json={})
    assert refused.status_code == 409
    message = refused.json()["error"]["message"]
    assert "'gamma'" in message and "version 2 of project 'news'" in message, message
    assert "alpha, beta" in message
    task = pg_hub.wait(pg_hub.run("alpha", start_url=site.url)["id"])
    assert (task["status"], task["version"]) == ("completed", 2)
    # Deleting the project takes its spiders with it.
    assert pg_hub.client.delete("/api/projects/news").status_code == 204
    assert pg_hub.client.get("/api/spiders/alpha").status_code == 404


def test_a_wrong_scrapy_entry_refuses_to_run_and_the_real_spider_appears(pg_hub: Hub) -> None:
    """The trap of one spider per upload: a guessed entry no longer fails three times over
    two minutes; the run is refused at once, naming the spiders the project has."""
    created = pg_hub.client.post("/api/spiders", json={"name": "bookshop", "kind": "scrapy"})
    assert created.status_code == 201 and created.json()["project"] == "bookshop"
    sent = pg_hub.client.post("/api/spiders/bookshop/versions",
                              files={"file": ("b.zip", zip_directory(FIXTURES / "pages_scrapy"))})  # fmt: skip
    assert sent.status_code == 201
    assert settled(pg_hub, "bookshop", 1, timeout=60)["spiders"] == ["pages"]
    refused = pg_hub.client.post("/api/spiders/bookshop/run", json={})
    assert refused.status_code == 409 and "(it has: pages)" in refused.json()["error"]["message"]
    assert pg_hub.client.get("/api/spiders/pages").json()["project"] == "bookshop"
    fixed = pg_hub.client.patch("/api/spiders/bookshop", json={"entry": "nope"})
    assert fixed.status_code == 422 and "no Scrapy spider 'nope'" in fixed.text


def test_a_project_with_its_own_requirement_builds_runs_and_stores_items(pg_hub: Hub) -> None:
    version = upload(pg_hub, "translit", package({"main.py": USES_EXTRA,
                                                  "requirements.txt": f"# ours\n{EXTRA}\n"}))  # fmt: skip
    assert version["environment"]["requirements"] == [EXTRA]
    ready = settled(pg_hub, "translit", 1)
    env = ready["environment"]
    assert env["status"] == "ready" and env["key"], ready
    log = pg_hub.client.get("/api/projects/translit/versions/1/environment").json()["log"]
    assert f"building environment {env['key']}" in log and "text-unidecode" in log
    spider = pg_hub.client.post("/api/spiders", json={"name": "translit-run",
                                                      "project": "translit"})  # fmt: skip
    assert spider.status_code == 201, spider.text
    task = pg_hub.wait(pg_hub.run("translit-run", word="Ærøskøbing")["id"], timeout=120)
    assert (task["status"], task["items_count"]) == ("completed", 1), task
    items = pg_hub.client.get("/api/data", params={"task_id": task["id"]}).json()["items"]
    assert [i["data"] for i in items] == [{"word": "AEroskobing"}]
    # A worker that has not got the environment (another machine) builds it before the run,
    # into the run's log.
    shutil.rmtree(pg_hub.context.settings.data_dir / "envs" / env["key"])
    again = pg_hub.wait(pg_hub.run("translit-run", word="Øl")["id"], timeout=120)
    assert again["status"] == "completed", again
    system = [x["text"] for x in pg_hub.logs(again["id"], stream="system")]
    assert any(x.startswith(f"building environment {env['key']}") for x in system), system
    assert any("text-unidecode==1.3" in x for x in system)
    # The package is not CrawlHub's: a spider of the platform's environment lacks it.
    pg_hub.deploy("plain", {"main.py": USES_EXTRA}, max_retries=0)
    plain = pg_hub.wait(pg_hub.run("plain")["id"])
    assert plain["status"] == "failed" and "text_unidecode" in (plain["error_message"] or "")


def test_projects_with_the_same_requirements_share_one_environment(pg_hub: Hub) -> None:
    first = upload(pg_hub, "one", package({"main.py": USES_EXTRA, "requirements.txt": EXTRA}))
    # The same needs, written differently (case, spacing, a comment, from pyproject.toml).
    pyproject = '[project]\nname = "two"\nversion = "1"\ndependencies = ["Text_Unidecode == 1.3"]\n'
    second = upload(pg_hub, "two", package({"main.py": USES_EXTRA, "pyproject.toml": pyproject}))
    assert first["environment"]["requirements"] == second["environment"]["requirements"]
    one, two = settled(pg_hub, "one", 1), settled(pg_hub, "two", 1)
    assert one["environment"]["status"] == two["environment"]["status"] == "ready"
    assert one["environment"]["key"] == two["environment"]["key"]
    logs = [pg_hub.client.get(f"/api/projects/{p}/versions/1/environment").json()["log"]
            for p in ("one", "two")]  # fmt: skip
    assert sum(log.count("building environment") for log in logs) == 1, logs
    envs = [p for p in (pg_hub.context.settings.data_dir / "envs").iterdir()
            if not p.name.startswith(".")]  # fmt: skip
    assert [p.name for p in envs] == [one["environment"]["key"]]


def test_a_requirement_that_does_not_exist_fails_the_build_and_refuses_runs(pg_hub: Hub) -> None:
    missing = "crawlhub-no-such-package-9f3c"
    upload(pg_hub, "broken", package({"main.py": "def run(params):\n    return []\n",
                                      "requirements.txt": f"{missing}==1.0\n"}))  # fmt: skip
    failed = settled(pg_hub, "broken", 1)
    env = failed["environment"]
    assert env["status"] == "failed" and missing in env["error"], env
    log = pg_hub.client.get("/api/projects/broken/versions/1/environment").json()["log"]
    assert missing in log
    assert pg_hub.client.post("/api/spiders", json={"name": "b", "project": "broken"}).is_success
    refused = pg_hub.client.post("/api/spiders/b/run", json={})
    assert refused.status_code == 409
    message = refused.json()["error"]["message"]
    assert "cannot run" in message and missing in message
    assert "/api/projects/broken/versions/1/environment" in message


@pytest.mark.parametrize("requirements", ["bad requirement !!", "-e .", "--index-url http://x/"])
def test_unreadable_requirements_are_refused_at_upload(pg_hub: Hub, requirements: str) -> None:
    assert pg_hub.client.post("/api/projects", json={"name": "p", "kind": "python"}).is_success
    sent = pg_hub.client.post("/api/projects/p/versions", files={"file": ("p.zip", package(
        {"main.py": "def run(params):\n    return []\n", "requirements.txt": requirements}))})  # fmt: skip
    assert sent.status_code == 422 and "requirements.txt line 1" in sent.text, sent.text
    assert pg_hub.client.get("/api/projects/p").json()["current_version"] is None


def test_scrapy_2_11_in_its_own_environment_runs_a_start_requests_spider(
    pg_hub: Hub, site: Site
) -> None:
    """An old project pinning Scrapy 2.11 (which calls start_requests() itself) crawls in its
    environment; the same spider on the platform's Scrapy crawls too (bridged)."""
    legacy = FIXTURES / "legacy_scrapy"
    files = {str(p.relative_to(legacy)): p.read_text() for p in legacy.rglob("*.py")}
    files |= {"scrapy.cfg": (legacy / "scrapy.cfg").read_text(), "requirements.txt": OLD_SCRAPY}
    upload(pg_hub, "old", package(files), kind="scrapy")
    ready = settled(pg_hub, "old", 1)
    assert ready["environment"]["status"] == "ready", ready
    assert ready["spiders"] == ["legacy"]
    task = pg_hub.wait(pg_hub.run("legacy", start_url=site.url)["id"], timeout=120)
    assert (task["status"], task["items_count"]) == ("completed", site.pages), task
    assert task["stats"]["response_received_count"] == site.pages
    versions = [x["text"] for x in pg_hub.logs(task["id"]) if "Scrapy 2.11.2 started" in x["text"]]
    assert versions, "the run did not use the project's Scrapy"

    current = pg_hub.client.post("/api/projects", json={"name": "now", "kind": "scrapy"})
    assert current.status_code == 201
    files.pop("requirements.txt")
    files["legacy/spiders/pages.py"] = files["legacy/spiders/pages.py"].replace(
        'name = "legacy"', 'name = "legacy_now"'
    )
    upload(pg_hub, "now", package(files))
    assert settled(pg_hub, "now", 1, timeout=60)["spiders"] == ["legacy_now"]
    task = pg_hub.wait(pg_hub.run("legacy_now", start_url=site.url)["id"])
    assert (task["status"], task["items_count"]) == ("completed", site.pages), task


def test_two_workers_starting_the_first_runs_of_a_new_environment_build_it_once(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Two worker pools on one machine (one data dir) start runs that need an environment
    nobody has built yet, at once, with the version's own preparation racing them: one
    build, every run completes on a whole environment."""
    with running_hub(pg_url, tmp_path, redis_url, threads=2) as first, \
            running_hub(pg_url, tmp_path, redis_url, threads=2) as second:  # fmt: skip
        upload(first, "shared", package({"main.py": USES_EXTRA, "requirements.txt": EXTRA}))
        assert first.client.post("/api/spiders", json={"name": "s", "project": "shared"}).is_success
        tasks: list[str] = []
        starters = [threading.Thread(target=lambda h=h: tasks.append(h.run("s")["id"]))
                    for h in (first, second, first, second)]  # fmt: skip
        for starter in starters:
            starter.start()
        for starter in starters:
            starter.join()
        done = [first.wait(t, timeout=BUILD_TIMEOUT_S) for t in tasks]
        assert [(t["status"], t["items_count"]) for t in done] == [("completed", 1)] * 4, done
        logs = [line["text"] for t in tasks for line in first.logs(t, stream="system")]
        version_log = first.client.get("/api/projects/shared/versions/1/environment").json()
        builds = sum(x.startswith("building environment") for x in logs)
        builds += (version_log["log"] or "").count("building environment")
        assert builds == 1, (logs, version_log)
        envs = [p for p in (first.context.settings.data_dir / "envs").iterdir()
                if not p.name.startswith(".")]  # fmt: skip
        assert len(envs) == 1


PROBE = "crawlhub-local-probe"
USES_PROBE = """
import os
from crawlhub_local_probe import VALUE

def run(params):
    seen = sorted(k for k in os.environ if "INDEX" in k or k.startswith(("UV_", "PIP_")))
    yield {"value": VALUE, "index_variables": seen}
"""


def wheel(directory: Path) -> str:
    """A one-module wheel of PROBE, made by hand, in `directory`; its file name."""
    name, dist = "crawlhub_local_probe", "crawlhub_local_probe-1.0.dist-info"
    files = {
        f"{name}/__init__.py": 'VALUE = "from the operator\'s index"\n',
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {PROBE}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = hashlib.sha256(text.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={encoded},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    filename = f"{name}-1.0-py3-none-any.whl"
    (directory / filename).write_bytes(package(files))
    return filename


def test_builds_use_the_operators_package_index_and_spiders_never_see_it(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """CRAWLHUB_PACKAGE_INDEX_URL replaces PyPI for builds (here a local index holding a
    package PyPI does not have); the spider's environment has none of the index settings."""
    index = tmp_path / "index"
    (index / "simple" / PROBE).mkdir(parents=True)
    filename = wheel(index)
    (index / "simple" / PROBE / "index.html").write_text(
        f'<html><body><a href="/{filename}">{filename}</a></body></html>'
    )
    handler = functools.partial(QuietFiles, directory=str(index))
    server = serve_to_spiders(handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
        with running_hub(pg_url, tmp_path, redis_url, package_index_url=url,
                         trusted_hosts="127.0.0.1") as hub:  # fmt: skip
            upload(hub, "probe", package({"main.py": USES_PROBE,
                                          "requirements.txt": f"{PROBE}==1.0"}))  # fmt: skip
            ready = settled(hub, "probe", 1)
            assert ready["environment"]["status"] == "ready", ready
            assert hub.client.post(
                "/api/spiders", json={"name": "p", "project": "probe"}
            ).is_success
            task = hub.wait(hub.run("p")["id"], timeout=120)
            assert task["status"] == "completed", task
            items = hub.client.get("/api/data", params={"task_id": task["id"]}).json()["items"]
            assert [i["data"] for i in items] == [
                {"value": "from the operator's index", "index_variables": []}
            ]
    finally:
        server.shutdown()
        server.server_close()


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_project_api_refuses_ambiguous_names_and_mismatched_spiders(client: TestClient) -> None:
    for name in ("0" * 32, "12345678-1234-1234-1234-123456789abc", "Has Space", ""):
        refused = client.post("/api/projects", json={"name": name, "kind": "scrapy"})
        assert refused.status_code == 422, (name, refused.text)
        refused = client.post("/api/spiders", json={"name": name})
        assert refused.status_code == 422, (name, refused.text)
    assert client.post("/api/projects", json={"name": "news", "kind": "scrapy"}).status_code == 201
    assert client.post("/api/projects", json={"name": "news"}).status_code == 409
    taken = client.post("/api/spiders", json={"name": "news"})
    assert taken.status_code == 409 and '"project": "news"' in taken.json()["error"]["message"]
    mismatched = client.post(
        "/api/spiders", json={"name": "n", "project": "news", "kind": "python"}
    )
    assert mismatched.status_code == 422 and "scrapy project" in mismatched.text
    spider = client.post("/api/spiders", json={"name": "n", "project": "news"})
    assert spider.status_code == 201 and spider.json()["kind"] == "scrapy"
    assert client.get("/api/projects/news").json()["spiders"] == ["n"]
    renamed = client.patch("/api/projects/news", json={"name": "daily"})
    assert renamed.status_code == 200 and client.get("/api/spiders/n").json()["project"] == "daily"
    assert client.get("/api/projects/news/versions/1").status_code == 404
    assert client.get("/api/projects/daily/versions/x1").status_code == 400
    assert client.get("/api/projects/nope/versions").status_code == 404


def test_a_listing_that_prints_without_end_keeps_a_bounded_part_of_it(pg_hub: Hub) -> None:
    """`scrapy list` of a project whose settings print 8 MB and then fail: the version says
    the listing failed, with the start and the end of what it printed (the traceback), and
    how much was left out between."""
    noisy = package({
        "scrapy.cfg": "[settings]\ndefault = noisy.settings\n",
        "noisy/__init__.py": "",
        "noisy/settings.py": "import sys\nsys.stdout.write('spam ' * 1_600_000)\n"
                             "raise RuntimeError('settings broken')\n",
    })  # fmt: skip
    upload(pg_hub, "noisy", noisy, kind="scrapy")
    version = settled(pg_hub, "noisy", 1, timeout=120)
    environment = version["environment"]
    assert environment["status"] == "failed", environment
    error = environment["error"]
    assert error.startswith("scrapy list failed: RuntimeError: settings broken"), error[:300]
    assert " bytes not kept]" in error
    assert len(error) < 1024 * 1024
