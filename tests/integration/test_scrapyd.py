"""The Scrapyd-compatible API driven by the real clients from the registry (scrapyd-deploy and
scrapyd-client of scrapyd-client 2.x, python-scrapyd-api 2.x), and its answers checked
against Scrapyd 1.6's shapes (SPEC §16)."""

import base64
import html
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from scrapyd_api import ScrapydAPI
from scrapyd_api.exceptions import ScrapydResponseError

from crawlhub.context import Context
from crawlhub.repo.models import LogLine, Spider, Task
from crawlhub.services import scrapyd
from tests.conftest import TOKEN
from tests.integration.harness import Hub, Site, served

FIXTURES = Path(__file__).parent.parent / "fixtures" / "spiders"
BIN = Path(sys.executable).parent
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")


@pytest.fixture
def url(pg_hub: Hub) -> Iterator[str]:
    with served(pg_hub) as base:
        yield base


@pytest.fixture
def site() -> Iterator[Site]:
    served_site = Site(pages=4)
    yield served_site
    served_site.close()


def project_dir(tmp_path: Path, fixture: str, project: str, url: str) -> Path:
    """A copy of a Scrapy project whose scrapy.cfg deploys to this CrawlHub: `default` at
    /scrapyd/ with basic auth (the token as password), `root` at the server's root."""
    target = tmp_path / project
    shutil.copytree(FIXTURES / fixture, target)
    settings = (target / "scrapy.cfg").read_text()
    (target / "scrapy.cfg").write_text(
        f"{settings}\n[deploy]\nurl = {url}/scrapyd/\nproject = {project}\n"
        f"username = ops\npassword = {TOKEN}\n\n"
        f"[deploy:root]\nurl = {url}/\nproject = {project}\nusername = any\npassword = {TOKEN}\n"
    )
    return target


def tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip


def finished(pg_hub: Hub, job: str, timeout: float = 120) -> dict[str, Any]:
    """A job's task once it ended (its job id is usable as the task's id)."""
    return pg_hub.wait(job, timeout=timeout)


def test_scrapyd_deploy_and_scrapyd_client_deploy_list_and_schedule(
    pg_hub: Hub, url: str, site: Site, tmp_path: Path
) -> None:
    project = project_dir(tmp_path, "news_scrapy", "news", url)
    deployed = tool("scrapyd-deploy", "-v", "1.0", cwd=project)
    assert deployed.returncode == 0, deployed.stderr
    answer = httpx.Response(200, content=deployed.stdout.strip()).json()
    assert answer["status"] == "ok" and answer["spiders"] == 3, deployed.stdout
    assert (answer["project"], answer["version"]) == ("news", "1.0")
    # -a: every target of scrapy.cfg (one at /scrapyd/, one at the root), one version.
    everywhere = tool("scrapyd-deploy", "-a", "-v", "1.1", cwd=project)
    assert everywhere.returncode == 0, everywhere.stderr
    assert everywhere.stdout.count('"status": "ok"') == 2, everywhere.stdout
    versions = pg_hub.client.get("/api/projects/news/versions").json()["items"]
    assert [v["number"] for v in versions] == [3, 2, 1] and versions[0]["format"] == "zip"
    assert pg_hub.client.get("/api/projects/news").json()["spiders"] == ["alpha", "beta", "gamma"]

    listed = tool("scrapyd-client", "projects", cwd=project)
    assert listed.returncode == 0 and listed.stdout.split() == ["news"], listed
    spiders = tool("scrapyd-client", "spiders", "-p", "news", cwd=project)
    assert spiders.returncode == 0, spiders.stderr
    assert spiders.stdout.split() == ["news:", "alpha", "beta", "gamma"], spiders.stdout
    scheduled = tool("scrapyd-client", "schedule", "-p", "news", "gamma",
                     "--arg", f"start_url={site.url}", cwd=project)  # fmt: skip
    assert scheduled.returncode == 0, scheduled.stderr
    job = scheduled.stdout.split("=>")[-1].strip()
    task = finished(pg_hub, job)
    assert (task["status"], task["trigger"], task["job_id"]) == ("completed", "scrapyd", job)
    assert task["items_count"] == site.pages and task["version"] == 3
    items = pg_hub.client.get("/api/data", params={"task_id": task["id"]}).json()["items"]
    assert {i["data"]["site"] for i in items} == {"gamma"}


def test_an_egg_that_requires_a_package_gets_an_environment(
    pg_hub: Hub, url: str, site: Site, tmp_path: Path
) -> None:
    project = project_dir(tmp_path, "needs_scrapy", "needs", url)
    deployed = tool("scrapyd-deploy", cwd=project)  # the default version: a timestamp
    assert deployed.returncode == 0 and '"spiders": 1' in deployed.stdout, deployed
    version = pg_hub.client.get("/api/projects/needs/versions/1").json()
    assert version["environment"]["requirements"] == ["text-unidecode==1.3"]
    assert version["environment"]["status"] == "ready" and version["environment"]["key"]
    api = ScrapydAPI(url, auth=("ops", TOKEN))
    job = api.schedule("needs", "words", start_url=site.url)
    task = finished(pg_hub, job)
    assert task["status"] == "completed", task
    items = pg_hub.client.get("/api/data", params={"task_id": task["id"]}).json()["items"]
    assert [i["data"] for i in items] == [{"title": "page 0 AEro"}]


def test_python_scrapyd_api_schedules_lists_cancels_and_deletes(
    pg_hub: Hub, url: str, site: Site, tmp_path: Path
) -> None:
    project = project_dir(tmp_path, "news_scrapy", "news", url)
    assert tool("scrapyd-deploy", "-v", "1.0", cwd=project).returncode == 0
    api = ScrapydAPI(url, auth=("whoever", TOKEN))  # the root endpoints: no prefix needed
    assert api.list_projects() == ["news"]
    assert api.list_versions("news") == ["1.0"]
    assert api.list_spiders("news") == ["alpha", "beta", "gamma"]
    job = api.schedule("news", "beta", settings={"CLOSESPIDER_ITEMCOUNT": "2"},
                       start_url=site.url)  # fmt: skip
    assert api.job_status("news", job) in ("pending", "running", "finished")
    task = finished(pg_hub, job)
    assert task["settings"] == {"CLOSESPIDER_ITEMCOUNT": "2"}
    assert task["params"] == {"start_url": site.url}
    assert task["stats"]["finish_reason"] == "closespider_itemcount", task["stats"]
    assert api.job_status("news", job) == "finished"
    jobs = api.list_jobs("news")
    assert [j["id"] for j in jobs["finished"]] == [job]

    # A job that would crawl for a minute: cancelled while it runs, within 3 s.
    slow = api.schedule("news", "alpha", settings={"DOWNLOAD_DELAY": "30"},
                        jobid="slow-one", start_url=site.url)  # fmt: skip
    assert slow == "slow-one"
    pg_hub.wait(slow, {"running"})
    time.sleep(1)
    assert api.cancel("news", slow) == "running"
    assert pg_hub.wait(slow, timeout=10)["status"] == "cancelled"
    assert api.cancel("news", slow) is None  # over: nothing to cancel
    with pytest.raises(ScrapydResponseError, match="spider 'nope' not found"):
        api.schedule("news", "nope")

    assert tool("scrapyd-deploy", "-v", "2.0", cwd=project).returncode == 0
    assert api.list_versions("news") == ["1.0", "2.0"]
    assert api.delete_version("news", "1.0") is True
    assert api.list_versions("news") == ["2.0"]
    with pytest.raises(ScrapydResponseError, match=r"version '1\.0' not found"):
        api.delete_version("news", "1.0")
    assert api.delete_project("news") is True
    assert api.list_projects() == []
    assert pg_hub.client.get("/api/spiders/alpha").status_code == 404


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=30) as client:  # fmt: skip
        yield client


def test_answers_have_scrapyds_shapes_errors_are_http_200_and_logs_take_ranges(
    pg_hub: Hub, url: str, http: httpx.Client, site: Site, tmp_path: Path
) -> None:
    project = project_dir(tmp_path, "news_scrapy", "news", url)
    assert tool("scrapyd-deploy", "-v", "1.0", cwd=project).returncode == 0
    node = http.get("/scrapyd/daemonstatus.json").json()["node_name"]

    def ok(answer: httpx.Response) -> dict[str, Any]:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "ok" and body["node_name"] == node, body
        return {k: v for k, v in body.items() if k not in ("status", "node_name")}  # type: ignore[no-any-return]

    assert ok(http.get("/scrapyd/daemonstatus.json")) == {"pending": 0, "running": 0,
                                                          "finished": 0}  # fmt: skip
    assert ok(http.get("/scrapyd/listprojects.json")) == {"projects": ["news"]}
    assert ok(http.get("/scrapyd/listversions.json?project=news")) == {"versions": ["1.0"]}
    assert ok(http.get("/scrapyd/listversions.json?project=other")) == {"versions": []}
    assert ok(http.get("/scrapyd/listspiders.json", params={"project": "news", "_version": "1.0"})
              ) == {"spiders": ["alpha", "beta", "gamma"]}  # fmt: skip
    body = {"project": "news", "spider": "alpha", "jobid": "golden", "start_url": site.url,
            "setting": ["CONCURRENT_REQUESTS=1", "USER_AGENT=a=b"]}  # fmt: skip
    assert ok(http.post("/scrapyd/schedule.json", data=body)) == {"jobid": "golden"}
    assert ok(http.get("/scrapyd/status.json?job=golden"))["currstate"] in ("pending", "running",
                                                                            "finished")  # fmt: skip
    task = finished(pg_hub, "golden")
    assert task["settings"] == {"CONCURRENT_REQUESTS": "1", "USER_AGENT": "a=b"}
    assert ok(http.get("/scrapyd/status.json?job=golden&project=news")) == {"currstate": "finished"}
    assert ok(http.get("/scrapyd/status.json?job=unknown")) == {"currstate": None}
    jobs = ok(http.get("/scrapyd/listjobs.json?project=news"))
    assert (jobs["pending"], jobs["running"]) == ([], [])
    [done] = jobs["finished"]
    assert sorted(done) == ["end_time", "id", "items_url", "log_url", "project", "spider",
                            "start_time"]  # fmt: skip
    assert (done["id"], done["project"], done["spider"]) == ("golden", "news", "alpha")
    assert TIME.match(done["start_time"]) and TIME.match(done["end_time"]), done
    assert done["log_url"] == "/logs/news/alpha/golden.log"  # as Scrapyd's: at the root
    assert done["items_url"] == "/items/news/alpha/golden.jl"
    assert ok(http.get("/scrapyd/daemonstatus.json"))["finished"] == 1

    log = http.get(done["log_url"])
    assert log.status_code == 200 and "Spider closed (finished)" in log.text
    assert log.headers["content-type"].startswith("text/plain")
    tail = http.get(done["log_url"], headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == log.content[-100:]
    size = len(log.content)
    assert tail.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"
    head = http.get(done["log_url"], headers={"Range": "bytes=0-49"})
    assert head.status_code == 206 and head.content == log.content[:50]
    beyond = http.get(done["log_url"], headers={"Range": f"bytes={size + 10}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    lines = http.get(done["items_url"]).text.splitlines()
    assert len(lines) == site.pages and all(httpx.Response(200, content=x).json()["site"]
                                            == "alpha" for x in lines)  # fmt: skip
    assert http.get("/scrapyd/logs/news/beta/golden.log").status_code == 404

    # Errors: Scrapyd's envelope with HTTP 200.
    for answer, message in [
        (http.post("/scrapyd/schedule.json", data={"project": "news"}),
         "'spider' parameter is required"),
        (http.post("/scrapyd/schedule.json", data={"project": "gone", "spider": "x"}),
         "project 'gone' not found"),
        (http.post("/scrapyd/schedule.json", data={"project": "news", "spider": "alpha",
                                                   "_version": "9"}), "version '9' not found"),
        (http.post("/scrapyd/schedule.json", data={"project": "news", "spider": "alpha",
                                                   "jobid": "golden"}), "exists already"),
        (http.post("/scrapyd/addversion.json", data={"project": "news", "version": "2",
                                                     "egg": "not a zip"}), "not a ZIP file"),
        (http.get("/scrapyd/schedule.json"), "UnsupportedMethod"),
        (http.post("/scrapyd/delversion.json", data={"project": "news", "version": "7"}),
         "version '7' not found"),
        (http.post("/scrapyd/delproject.json", data={"project": "gone"}),
         "project 'gone' not found"),
        (http.get("/scrapyd/listspiders.json?project=gone"), "project 'gone' not found"),
        # Scrapyd's own answers: its egg storage reports a missing version first, and a
        # name that would leave its eggs directory is refused as such (and never stored).
        (http.post("/scrapyd/delversion.json", data={"project": "gone", "version": "v"}),
         "version 'v' not found"),
        (http.post("/scrapyd/addversion.json", data={"project": "../p", "version": "v",
                                                     "egg": "PK"}), "DirectoryTraversalError: ../p"),
        (http.get("/scrapyd/listversions.json?project=../p"), "DirectoryTraversalError: ../p"),
        (http.post("/scrapyd/delproject.json", data={"project": "a/b"}),
         "DirectoryTraversalError: a/b"),
        (http.post("/scrapyd/addversion.json", files={"egg": ("x.egg", b"PK")},
                   data={"project": "-odd name", "version": "v"}), "must be 1-64 letters"),
        # A job id names the job's files; no name, argument or setting holds a NUL.
        (http.post("/schedule.json", data={"project": "news", "spider": "alpha",
                                           "jobid": "../x"}), "DirectoryTraversalError: ../x"),
        (http.post("/schedule.json", data={"project": "news", "spider": "al\x00pha"}),
         "spider is invalid: it contains a NUL character"),
        (http.post("/schedule.json", data={"project": "news", "spider": "alpha",
                                           "arg": "a\x00b"}), "arg is invalid"),
        (http.get("/listspiders.json", params={"project": "news", "_version": "\x00"}),
         "_version is invalid"),
    ]:  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "error" and message in answer.json()["message"]
        assert answer.json()["node_name"] == node
    assert ok(http.post("/cancel.json", data={"project": "news", "job": "x" * 5000})) == {
        "prevstate": None}  # fmt: skip

    # Auth: basic (any user, the token as password) or bearer; nothing else.
    bare = httpx.get(f"{url}/scrapyd/listprojects.json")
    assert bare.status_code == 401 and "Basic" in bare.headers["www-authenticate"]
    assert bare.text == "Unauthorized"  # Scrapyd's body, which its clients read
    options = http.options("/scrapyd/schedule.json")
    assert (options.status_code, options.content) == (204, b"")
    assert options.headers["allow"] == "OPTIONS, HEAD, POST"
    assert http.options("/listjobs.json").headers["allow"] == "OPTIONS, HEAD, GET"
    wrong = base64.b64encode(b"ops:wrong").decode()
    assert httpx.get(f"{url}/listprojects.json",
                     headers={"Authorization": f"Basic {wrong}"}).status_code == 401  # fmt: skip
    assert httpx.post(f"{url}/scrapyd/addversion.json", data={"project": "x"}).status_code == 401
    good = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    assert httpx.get(f"{url}/scrapyd//listprojects.json",
                     headers={"Authorization": f"Basic {good}"}).json()["projects"] == ["news"]  # fmt: skip
    assert http.get("/scrapyd/").status_code == 200
    assert http.get("/api/tasks/golden").json()["job_id"] == "golden"


def test_an_egg_sent_as_a_urlencoded_field_is_taken(pg_hub: Hub, url: str, tmp_path: Path) -> None:
    """SpiderKeeper posts the egg's bytes as an urlencoded field, not as a file."""
    project = project_dir(tmp_path, "news_scrapy", "news", url)
    built = tool("scrapyd-deploy", "--build-egg", str(tmp_path / "news.egg"), cwd=project)
    assert built.returncode == 0, built.stderr
    egg = (tmp_path / "news.egg").read_bytes()
    body = urllib.parse.urlencode({"project": "news", "version": "r1", "egg": egg}).encode()
    answer = httpx.post(f"{url}/addversion.json", content=body, timeout=300, headers={
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert answer.status_code == 200 and answer.json()["status"] == "ok", answer.text
    assert answer.json()["spiders"] == 3


def test_every_scrapyd_endpoint_asks_for_a_token_and_the_rest_of_the_root_is_untouched(
    url: str, http: httpx.Client
) -> None:
    for name in ("daemonstatus", "addversion", "schedule", "cancel", "status", "listprojects",
                 "listversions", "listspiders", "listjobs", "delversion", "delproject"):  # fmt: skip
        for path in (f"/scrapyd/{name}.json", f"/{name}.json", f"/scrapyd//{name}.json"):
            for method in ("GET", "POST"):
                answer = httpx.request(method, f"{url}{path}")
                assert answer.status_code == 401, (method, path, answer.status_code)
        assert http.get(f"/scrapyd/{name}.json").json()["node_name"]  # with a token: answered
    for path in ("/scrapyd/", "/scrapyd/logs/p/s/j.log", "/scrapyd/items/p/s/j.jl"):
        assert httpx.get(f"{url}{path}").status_code == 401
    assert httpx.get(f"{url}/other.json").status_code == 404  # not Scrapyd's: no token asked
    assert http.get("/scrapyd/logs/p/s/j.log").status_code == 404


def test_a_jobs_log_is_streamed_page_by_page_with_any_byte_range(context: Context) -> None:
    """The log is never built whole: it is read LOG_PAGE lines at a time, and any byte range
    (across pages, inside a multi-byte character's line) is the same slice of the text."""
    with context.db.session() as session:
        spider = Spider.standalone(name="chatty", kind="python", entry="main:run")
        session.add(spider)
        session.flush()
        task = Task(spider_id=spider.id, trigger="manual", status="completed")
        session.add(task)
        session.flush()
        lines = [f"line {n} é€ {'x' * (n % 50)}" for n in range(1, 5001)]
        session.add_all(LogLine(task_id=task.id, seq=n, attempt=1, stream="stdout",
                                ts=datetime.now(UTC), text=text)
                        for n, text in enumerate(lines, 1))  # fmt: skip
        task_id = task.id
    whole = "".join(f"{line}\n" for line in lines).encode()
    assert scrapyd.log_size(context, task_id) == len(whole)
    page = len("".join(f"{line}\n" for line in lines[: scrapyd.LOG_PAGE]).encode())
    for start, end in [(0, len(whole) - 1), (page - 3, page + 3), (7, 7), (len(whole) - 1,) * 2,
                       (page * 2 + 1, len(whole) + 50)]:  # fmt: skip
        got = b"".join(scrapyd.log_bytes(context, task_id, start, end))
        assert got == whole[start : end + 1], (start, end)


def sign_in(browser: httpx.Client) -> None:
    """Sign a client in to the dashboard with the token."""
    assert browser.post("/login", data={"token": TOKEN}).status_code == 303


def test_scrapyds_pages_list_jobs_logs_and_items_escaped_and_cancel_with_their_forms(
    pg_hub: Hub, url: str, http: httpx.Client, tmp_path: Path
) -> None:
    """/jobs, logs/ and items/ as Scrapyd serves them (ScrapydWeb parses them), at the root
    and under /scrapyd/, built from the database: names are the client's, so escaped."""
    project = project_dir(tmp_path, "news_scrapy", "news", url)
    assert tool("scrapyd-deploy", "-v", "1.0", cwd=project).returncode == 0
    job = "<i>&\"q'" + "j" * 100  # longer than a run id, with what HTML and URLs escape
    shown, path = html.escape(job), urllib.parse.quote(job, safe="")
    slow = Site(pages=4)
    try:
        scheduled = http.post("/schedule.json", data={
            "project": "news", "spider": "alpha", "jobid": job, "start_url": slow.url,
            "setting": "DOWNLOAD_DELAY=4"})  # fmt: skip
        assert scheduled.json()["jobid"] == job
        pg_hub.wait(job, {"running"})
        deadline = time.monotonic() + 30
        while (pid := pg_hub.task(job)["pid"]) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pid is not None and Path(f"/proc/{pid}").exists()  # the spider, as seen here
        [running] = http.get("/listjobs.json").json()["running"]
        assert (running["id"], running["pid"]) == (job, pid)

        page = http.get("/jobs").text
        assert "<h1>Jobs</h1>" in page and job not in page and "<i>" not in page
        row = re.search(rf"<tr>\s*<td>news</td>\s*<td>alpha</td>\s*<td>{re.escape(shown)}"
                        rf"</td>\s*<td>{pid}</td>.*?</tr>", page, re.S)  # fmt: skip
        assert row is not None, page
        assert f'<a href="/logs/news/alpha/{path}.log">Log</a>' in row.group(0)
        assert f'<a href="/items/news/alpha/{path}.jl">Items</a>' in row.group(0)
        under = http.get("/scrapyd/jobs").text
        assert f'href="/scrapyd/logs/news/alpha/{path}.log"' in under
        proxied = http.get("/jobs", headers={"X-Forwarded-Prefix": "/path/to"}).text
        assert f'href="/path/to/logs/news/alpha/{path}.log"' in proxied
        assert 'action="/path/to/cancel.json"' in proxied
        hostile = http.get("/jobs", headers={"X-Forwarded-Prefix": "javascript:alert(1)"}).text
        assert "javascript" not in hostile  # only a plain path is written into links

        # The Cancel form, posted as a browser would (fields of the form, credentials).
        form = re.search(r'<form method="post"[^>]*action="([^"]+)">(.*?)</form>',
                         row.group(0), re.S)  # fmt: skip
        assert form is not None
        fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form.group(2)))
        fields = {name: html.unescape(value) for name, value in fields.items()}
        assert fields == {"project": "news", "job": job}
        cross = httpx.post(f"{url}{form.group(1)}", data=fields, auth=("ops", TOKEN),
                           headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
        refused = cross.json()
        assert (refused["status"], refused["message"]) == ("error",
                                                           "cross-site requests are refused")  # fmt: skip
        cancelled = httpx.post(f"{url}{form.group(1)}", data=fields, auth=("ops", TOKEN),
                               headers={"Sec-Fetch-Site": "same-origin"})  # fmt: skip
        assert cancelled.json()["prevstate"] == "running", cancelled.text
        assert pg_hub.wait(job)["status"] == "cancelled"
        deadline = time.monotonic() + 15  # its worker writes it once it noticed
        while not any(line["text"] == "task is cancelled: stopping the spider"
                      for line in pg_hub.logs(job, stream="system")):  # fmt: skip
            assert time.monotonic() < deadline, pg_hub.logs(job, stream="system")
            time.sleep(0.2)
    finally:
        slow.close()

    finished = http.get("/jobs").text.split(">Finished</th>")[1]
    assert re.search(rf"<td>{re.escape(shown)}</td>\s*<td></td>\s*<td>\d{{4}}-\d\d-\d\d "
                     r"\d\d:\d\d:\d\d</td>\s*<td>\d+:\d\d:\d\d</td>", finished)  # fmt: skip

    # The folders, down to the job's files, as Twisted lists a folder (Scrapyd's logs_dir).
    for base in ("", "/scrapyd"):
        for folder, kind in (("logs", "log"), ("items", "jl")):
            top = http.get(f"{base}/{folder}/").text
            assert f"Directory listing for {base}/{folder}/" in top and "Last modified" in top
            assert '<td><a href="news/">news/</a></td>' in top
            assert '<a href="alpha/">alpha/</a>' in http.get(f"{base}/{folder}/news/").text
            listing = http.get(f"{base}/{folder}/news/alpha/").text
            entry = re.search(rf'<tr class="odd">\n    <td><a href="([^"]+)">{re.escape(shown)}'
                              rf'\.{kind}</a></td>\n    <td>([^<]*)</td>\n    <td>'
                              r'\d{4}-\d\d-\d\d \d\d:\d\d</td>\n    <td>\[text/plain\]</td>',
                              listing)  # fmt: skip
            assert entry is not None, listing
            assert entry.group(1) == f"{path}.{kind}"
            file = http.get(f"{base}/{folder}/news/alpha/{entry.group(1)}")
            assert file.status_code == 200
            if kind == "log":
                assert file.text.startswith("attempt 1: scrapy spider alpha version 1")
                assert "task is cancelled: stopping the spider" in file.text
                assert re.fullmatch(r"\d+[BK]", entry.group(2))
            else:
                count = pg_hub.task(job)["items_count"]
                assert entry.group(2) == f"{count} items" and len(file.text.splitlines()) == count
    folder = http.get("/logs", follow_redirects=True)  # to the folder, as Twisted does
    assert folder.status_code == 200 and folder.url.path == "/logs/"
    assert http.get("/logs/gone/").status_code == 404
    assert http.get("/logs/news/beta/").status_code == 404  # a spider with no run

    # Scrapyd's home page is at /scrapyd/ (the root is the dashboard), prefix and all.
    home = http.get("/scrapyd/").text
    assert '"/scrapyd/jobs"' in home and '"/scrapyd/logs/"' in home and "<li>news</li>" in home
    moved = http.get("/scrapyd/", headers={"X-Forwarded-Prefix": "/path/to"}).text
    assert '"/path/to/scrapyd/jobs"' in moved and '"/path/to/scrapyd/logs/"' in moved

    # The version's label and the job id wherever a version or a run id is shown or taken.
    [version] = http.get("/api/projects/news/versions").json()["items"]
    assert version["label"] == "1.0"
    data = http.get("/api/data", params={"task_id": job})
    assert data.status_code == 200 and data.json()["total"] == pg_hub.task(job)["items_count"]
    with httpx.Client(base_url=url, timeout=30) as browser:
        sign_in(browser)
        assert "1 “1.0” (current)" in browser.get("/projects/news").text
        run = browser.get(f"/runs/{path}")
        assert run.status_code == 200 and "version 1 “1.0”" in html.unescape(run.text)

    # Every page asks for the token, as Scrapyd's do.
    for page_path in ("/jobs", "/logs", "/logs/", "/logs/news/alpha/", f"/items/news/alpha/"
                      f"{path}.jl", "/scrapyd/jobs", "/scrapyd/items/"):  # fmt: skip
        bare = httpx.get(f"{url}{page_path}")
        assert (bare.status_code, bare.text) == (401, "Unauthorized"), page_path


HOSTILE = ["", "\x00", "a\x00b", "x" * 10_000, "../p", "a/b", "..", "<script>x</script>",
           "é€😀", "' OR 1=1 --", "%00", "\\\\server\\share", " ", "\u202e", "-1", "1e999"]  # fmt: skip


def test_every_scrapyd_parameter_and_page_path_takes_hostile_values_without_a_crash(
    pg_hub: Hub,
) -> None:
    """Every endpoint, every parameter, hostile values: Scrapyd's envelope with HTTP 200 (an
    answer, never a server error); every page path: a page or a 404."""
    client = pg_hub.client
    params = {"daemonstatus": [], "addversion": ["project", "version", "egg"],
              "schedule": ["project", "spider", "_version", "jobid", "priority", "setting",
                           "start_url"],
              "cancel": ["project", "job", "signal"], "status": ["job", "project"],
              "listprojects": [], "listversions": ["project"], "listspiders": ["project",
                                                                             "_version"],
              "listjobs": ["project"], "delversion": ["project", "version"],
              "delproject": ["project"]}  # fmt: skip
    base = {"project": "p", "spider": "s", "version": "v", "job": "j", "egg": "PK"}
    for name, names in params.items():
        for field in names or [""]:
            for value in HOSTILE:
                data = {k: v for k, v in base.items() if k in names}
                if field:
                    data[field] = value
                answer = (client.post(f"/scrapyd/{name}.json", data=data)
                          if name in ("addversion", "schedule", "cancel", "delversion",
                                      "delproject")
                          else client.get(f"/{name}.json", params=data))  # fmt: skip
                assert answer.status_code == 200, (name, field, value[:20], answer.text)
                assert answer.json()["status"] in ("ok", "error"), (name, field, value[:20])
    assert client.get("/listprojects.json").json()["projects"] == []  # nothing was stored
    for value in HOSTILE:
        part = urllib.parse.quote(value, safe="") or "x"
        for path in (f"/logs/{part}/", f"/logs/p/{part}/", f"/items/{part}/s/j.jl",
                     f"/scrapyd/logs/p/s/{part}.log", f"/jobs?{part}"):  # fmt: skip
            answer = client.get(path)
            assert answer.status_code in (200, 404), (path, answer.status_code)


def test_scrapyd_deploy_with_a_personal_token_and_its_owners_name_as_its_scopes_allow(
    pg_hub: Hub, url: str, tmp_path: Path
) -> None:
    """A developer's token with `deploy` deploys with scrapyd-deploy and schedules; one with
    `read` only is refused the upload (Scrapyd's envelope, 403); another name is a 401."""
    from crawlhub.services import accounts

    dev = accounts.create_user(pg_hub.context, "dev", "a long password", "developer")
    _, deploy_token = accounts.create_token(pg_hub.context, dev.id, "deploy", ["deploy"], None)
    _, read_token = accounts.create_token(pg_hub.context, dev.id, "read", ["read"], None)
    project = project_dir(tmp_path, "news_scrapy", "news", url)
    config = (project / "scrapy.cfg").read_text().replace(f"password = {TOKEN}", "password = X")
    for name, token, user in (("deploy", deploy_token, "dev"), ("read", read_token, "dev"),
                              ("other", deploy_token, "mallory")):  # fmt: skip
        config += (f"\n[deploy:{name}]\nurl = {url}/scrapyd/\nproject = news\n"
                   f"username = {user}\npassword = {token}\n")  # fmt: skip
    (project / "scrapy.cfg").write_text(config)
    refused = tool("scrapyd-deploy", "read", "-v", "0.9", cwd=project)
    assert refused.returncode != 0 and "Forbidden: read (dev) may not deploy" in (
        refused.stdout + refused.stderr), (refused.stdout, refused.stderr)  # fmt: skip
    stranger = tool("scrapyd-deploy", "other", "-v", "0.9", cwd=project)
    assert stranger.returncode != 0 and "401" in stranger.stdout + stranger.stderr
    deployed = tool("scrapyd-deploy", "deploy", "-v", "1.0", cwd=project)
    assert deployed.returncode == 0, (deployed.stdout, deployed.stderr)
    scheduled = httpx.post(f"{url}/schedule.json", auth=("dev", deploy_token),
                           data={"project": "news", "spider": "alpha", "start_url": url})  # fmt: skip
    job = scheduled.json()["jobid"]
    assert pg_hub.task(job)["actor"] == "deploy (dev)"
    assert pg_hub.client.get("/api/audit", params={"action": "version.upload"}).json()[
        "items"][0]["actor"] == "deploy (dev)"  # fmt: skip
