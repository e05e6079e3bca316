"""Nothing an uploader controls runs with the worker's privileges (issue 23): each attack,
against a real `crawlhub worker` process running as root with secrets in its environment.

Uploaded code reports who ran it over loopback to a recorder (sandbox_kit.REPORT): shadowing
modules at the top of a Scrapy and of a Python project (at upload, in warm and cold runs),
a sitecustomize.py put on the path by `PYTHONPATH`, an `LD_PRELOAD` library shipped in the
project, a build backend of a local package index (and the `.pth` its wheel installs), the
stats file planted as a link and as a FIFO, connections to CrawlHub's PostgreSQL and Redis,
runs signalling each other. Each report: a slot's user, no capabilities, nothing leaked;
afterwards nothing of a slot's users is left running and the worker still runs spiders.
"""

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import textwrap
import threading
import time
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from crawlhub.sandbox import firewall
from crawlhub.worker import sandboxes
from tests.conftest import make_settings
from tests.integration.harness import (
    FINISHED,
    Hub,
    Site,
    protected_ports,
    running_hub,
    serve_to_spiders,
)
from tests.integration.sandbox_kit import (
    Recorder,
    Worker,
    assert_unprivileged,
    require_root,
    slot_processes,
    worker_process,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "spiders"


@pytest.fixture(autouse=True)
def as_root() -> None:
    require_root()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    yield found
    found.close()


@pytest.fixture
def hub(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Hub]:
    """The API, on the database and broker of the worker process under test."""
    with running_hub(pg_url, tmp_path, redis_url=redis_url, threads=0) as running:
        yield running


def shadow(report: str, name: str) -> str:
    """A module that says who imported it, then becomes the standard library's `name`."""
    return report + textwrap.dedent(f"""
        _crawlhub_report({name + ".py"!r})
        import os as _os, sys as _sys
        del _sys.modules[__name__]
        _saved = _sys.path[:]
        _sys.path[:] = [p for p in _sys.path if p not in ("", ".", _os.getcwd())]
        import {name} as _real
        _sys.path[:] = _saved
        _sys.modules[__name__] = _real
        globals().update(vars(_real))
    """)


def python_project(report: str) -> dict[str, str | bytes]:
    """A Python project whose entry, a json.py and a sitecustomize.py at its top say who ran
    them."""
    return {
        "main.py": report + "\ndef run(params):\n    _crawlhub_report('entry')\n"
                            "    return {'ok': 1}\n",
        "json.py": shadow(report, "json"),
        "sitecustomize.py": report + "\n_crawlhub_report('sitecustomize.py')\n",
    }  # fmt: skip


def deploy(hub: Hub, name: str, files: dict[str, str | bytes], kind: str, **spider: Any) -> None:
    body = {"name": name, "kind": kind, **spider}
    assert hub.client.post("/api/spiders", json=body).status_code == 201
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    upload = hub.client.post(f"/api/spiders/{name}/versions",
                             files={"file": (f"{name}.zip", buffer.getvalue())})  # fmt: skip
    assert upload.status_code == 201, upload.text


def ready(hub: Hub, project: str, timeout: float = 300) -> dict[str, Any]:
    """The environment of the project's newest version once a worker has prepared it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = hub.client.get(f"/api/projects/{project}/versions").json()["items"][0]
        if version["environment"]["status"] in ("ready", "failed"):
            return version["environment"]  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"version of {project} not prepared: {version}")


def run(hub: Hub, name: str, timeout: float = 120, **params: Any) -> dict[str, Any]:
    task = hub.wait(hub.run(name, **params)["id"], FINISHED, timeout=timeout)
    task["log"] = [line["text"] for line in hub.logs(task["id"])]
    return task


def how_started(task: dict[str, Any]) -> str:
    return next(line for line in task["log"] if line.startswith("attempt "))


def assert_clean(hub: Hub, worker: Worker) -> None:
    """Nothing of the slots' users left running; the worker runs a spider as before."""
    deadline = time.monotonic() + 10
    while left := [p for p in slot_processes() if "crawlhub.child.launcher" not in p[2]]:
        assert time.monotonic() < deadline, left
        time.sleep(0.1)
    assert worker.proc.poll() is None
    if hub.client.get("/api/spiders/healthy").status_code == 404:
        hub.deploy("healthy", {"main.py": "def run(params):\n    return {'ok': 1}\n"})
    task = run(hub, "healthy")
    assert task["status"] == "completed" and task["items_count"] == 1, task["log"]


PRELOAD_SOURCE = r"""
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void report(void) {
    char path[64], environ[4096], line[512];
    snprintf(path, sizeof path, "/proc/%d/environ", getppid());
    int fd = open(path, O_RDONLY);
    int got = fd < 0 ? -1 : (int) read(fd, environ, sizeof environ);
    if (fd >= 0) close(fd);
    snprintf(line, sizeof line, "{'phase': 'ld_preload', 'uid': %d, 'euid': %d, "
             "'parent_environ_bytes': %d}\n", getuid(), geteuid(), got);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *) &to, sizeof to) == 0) write(s, line, strlen(line));
    close(s);
}
"""


def preload_library(tmp_path: Path, port: int) -> bytes:
    source = tmp_path / "evil.c"
    source.write_text(PRELOAD_SOURCE.replace("PORT", str(port)))
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "evil.so"), str(source)],
                   check=True)  # fmt: skip
    return (tmp_path / "evil.so").read_bytes()


def test_uploaded_modules_libraries_and_startup_variables_run_as_a_slot_user_never_root(
    hub: Hub, pg_url: str, redis_url: str, tmp_path: Path, recorder: Recorder
) -> None:
    with worker_process(tmp_path, pg_url, redis_url) as worker:
        report = worker.report_code(recorder)
        # A Python project with a json.py and a sitecustomize.py at its top.
        files = {**python_project(report), "evil.so": preload_library(tmp_path, recorder.port)}
        deploy(hub, "plain", files, "python")
        warm = run(hub, "plain")
        assert warm["status"] == "completed", warm["log"]
        assert how_started(warm).endswith("warm start"), how_started(warm)
        hub.client.patch("/api/spiders/plain", json={"env": {"PYTHONHASHSEED": "1"}})
        cold = run(hub, "plain")
        assert "cold start (no warm start: the run sets PYTHONHASHSEED" in how_started(cold)
        recorder.wait_for("json.py")  # a cold start imports the bootstrap's json from ./
        hub.client.patch("/api/spiders/plain", json={"env": {"PYTHONPATH": "."}})
        run(hub, "plain")
        recorder.wait_for("sitecustomize.py")
        hub.client.patch("/api/spiders/plain", json={"env": {"LD_PRELOAD": "./evil.so"}})
        preloaded = run(hub, "plain")
        assert "cold start (no warm start: the run sets LD_PRELOAD" in how_started(preloaded)
        [library] = recorder.wait_for("ld_preload")
        assert library["uid"] in range(1_000, 2**31) and library["euid"] == library["uid"]
        assert library["parent_environ_bytes"] == -1  # its parent is the sandbox's, root's

        # A Scrapy project with the same at its top: listed at upload, then run.
        files: dict[str, str | bytes] = {
            str(path.relative_to(FIXTURES / "pages_scrapy")): path.read_text()
            for path in (FIXTURES / "pages_scrapy").rglob("*.py")
        }  # fmt: skip
        files["scrapy.cfg"] = (FIXTURES / "pages_scrapy" / "scrapy.cfg").read_text()
        files["json.py"] = shadow(report, "json")
        files["sitecustomize.py"] = report + "\n_crawlhub_report('scrapy sitecustomize.py')\n"
        files["pages/spiders/pages.py"] = (report + "\n_crawlhub_report('spider')\n"
                                           + files["pages/spiders/pages.py"])  # fmt: skip
        deploy(hub, "pages", files, "scrapy")
        assert ready(hub, "pages")["status"] == "ready"
        listed = [r for r in recorder.wait_for("json.py", 2) if "list" in r["argv"]]
        assert listed, "scrapy list imported the project's json.py"
        site = Site(pages=2)
        try:
            assert run(hub, "pages", start_url=site.url)["items_count"] == 2
            hub.client.patch("/api/spiders/pages", json={"env": {"PYTHONHASHSEED": "1"}})
            assert run(hub, "pages", start_url=site.url)["items_count"] == 2
            hub.client.patch("/api/spiders/pages", json={"env": {"PYTHONPATH": "."}})
            assert run(hub, "pages", start_url=site.url)["items_count"] == 2
        finally:
            site.close()
        phases = recorder.phases()
        assert {"entry", "json.py", "sitecustomize.py", "ld_preload", "spider",
                "scrapy sitecustomize.py"} <= set(phases)  # fmt: skip
        assert phases.count("json.py") >= 3  # python cold, scrapy list, scrapy cold
        for found in recorder.reports:
            if found["phase"] != "ld_preload":
                assert_unprivileged(found, worker)
        assert_clean(hub, worker)


LINKED_STATS = """
import os

def run(params):
    os.symlink(params["target"], ".crawlhub-stats.json")
    return {"planted": params["target"]}
"""

FIFO_STATS = """
import os

def run(params):
    os.mkfifo(".crawlhub-stats.json")
    return {"planted": "fifo"}
"""


def test_the_worker_reads_nothing_back_from_a_work_dir_by_path(
    hub: Hub, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with worker_process(tmp_path, pg_url, redis_url) as worker:
        hub.deploy("linked", {"main.py": LINKED_STATS}, max_retries=0)
        hub.deploy("fifo", {"main.py": FIFO_STATS}, max_retries=0)
        secret = tmp_path.parent / "root-only.json"
        secret.write_text(json.dumps({"secret": worker.secrets["file"]}))
        secret.chmod(0o600)
        for target in (str(secret), str(worker.data_dir / "api-token"), "/etc/shadow"):
            started = time.monotonic()
            task = run(hub, "linked", target=target)
            assert task["status"] == "completed" and task["stats"] is None, task
            assert time.monotonic() - started < 30
        for _ in range(3):  # a FIFO hangs no worker thread: three in a row on two threads
            task = run(hub, "fifo", timeout=30)
            assert task["status"] == "completed" and task["stats"] is None, task["log"]
            assert "the crawl's stats file is not a plain file of the run's: ignored" in task["log"]
        assert worker.secrets["file"] not in json.dumps(hub.client.get("/api/tasks").json())
        assert_clean(hub, worker)


SERVICES = """
import socket

def run(params):
    found = {}
    for name, (host, port) in params["services"].items():
        try:
            socket.create_connection((host, port), timeout=5).close()
            found[name] = "connected"
        except OSError as exc:
            found[name] = type(exc).__name__
    return found
"""


def test_a_spider_cannot_connect_to_crawlhubs_postgresql_and_redis(
    hub: Hub, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    site = Site(pages=1)
    host, port = site.url.split("//")[1].strip("/").split(":")
    try:
        with worker_process(tmp_path, pg_url, redis_url) as worker:
            assert b"refused to the slot users by nftables" in worker.output.read_bytes()
            hub.deploy("knock", {"main.py": SERVICES}, max_retries=0)
            services = {"postgresql": ["127.0.0.1", 5432], "redis": ["127.0.0.1", 6379],
                        "postgresql on localhost": ["localhost", 5432],
                        "a web site on loopback": [host, int(port)]}  # fmt: skip
            task = run(hub, "knock", services=services)
            assert task["status"] == "completed", task["log"]
            [item] = hub.client.get("/api/data", params={"task_id": task["id"]}).json()["items"]
            assert item["data"] == {"postgresql": "ConnectionRefusedError",
                                    "redis": "ConnectionRefusedError",
                                    "postgresql on localhost": "ConnectionRefusedError",
                                    "a web site on loopback": "connected"}  # fmt: skip
            assert_clean(hub, worker)
    finally:
        site.close()


VICTIM = """
import os, time

def run(params):
    time.sleep(params["seconds"])
    return {"survived": True, "pid": os.getpid()}
"""

ATTACKER = """
import os, signal

def run(params):
    killed = []
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    try:
        os.kill(-1, signal.SIGKILL)  # every process it may signal but itself
    except OSError:
        pass
    def listing(path):
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            return type(exc).__name__
    slot = os.path.dirname(os.getcwd())
    return {"killed": killed, "slots": listing(os.path.dirname(slot)), "own_slot": listing(slot)}
"""


def test_runs_cannot_see_or_signal_each_other(
    hub: Hub, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with worker_process(tmp_path, pg_url, redis_url) as worker:
        hub.deploy("victim", {"main.py": VICTIM}, max_retries=0)
        hub.deploy("attacker", {"main.py": ATTACKER}, max_retries=0)
        victim = hub.run("victim", seconds=8)["id"]
        hub.wait(victim, {"running"})
        time.sleep(1)  # the victim's spider is running
        # Warm, it kills its own launcher, and so itself; cold, it outlives what it kills.
        run(hub, "attacker")
        hub.client.patch("/api/spiders/attacker", json={"env": {"PYTHONHASHSEED": "0"}})
        attack = run(hub, "attacker")
        [item] = hub.client.get("/api/data", params={"task_id": attack["id"]}).json()["items"]
        assert len(item["data"]["slots"]) == 1  # only its own slot, which it cannot list
        assert item["data"]["own_slot"] == "PermissionError"
        assert all(pid < 10 for pid in item["data"]["killed"])  # its own namespace's
        survived = hub.wait(victim, timeout=60)
        assert survived["status"] == "completed" and survived["items_count"] == 1
        assert_clean(hub, worker)


LIMITS = """
import os, time

def run(params):
    what = params["what"]
    if what == "memory":
        hog = bytearray(params["mb"] * 1024 * 1024)  # written, so counted
        return {"survived": len(hog)}
    if what == "processes":
        children = []
        try:
            for _ in range(params["n"]):
                pid = os.fork()
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                children.append(pid)
        except OSError as exc:
            refused = type(exc).__name__
        else:
            refused = None
        return {"forked": len(children), "refused": refused}
    if what == "disk":
        for n in range(params["files"]):
            with open(f"blob-{n}", "wb") as out:
                out.write(os.urandom(params["mb"] * 1024 * 1024))
        time.sleep(5)
        return {"wrote": params["files"]}
    if what == "files":
        for n in range(params["n"]):
            open(f"empty-{n}", "w").close()
        time.sleep(5)
        return {"made": params["n"]}
    if what == "open_files":
        handles = []
        try:
            while len(handles) < 10_000:
                handles.append(open(__file__))
        except OSError as exc:
            return {"opened": len(handles), "error": type(exc).__name__}
    return {}
"""


@pytest.mark.parametrize("start", ["warm", "cold"])
def test_a_run_over_a_limit_of_its_spider_fails_with_a_reason_that_names_it(
    hub: Hub, pg_url: str, redis_url: str, tmp_path: Path, start: str
) -> None:
    env = {"PYTHONHASHSEED": "0"} if start == "cold" else {}
    limits = {"memory_mb": 96, "processes": 32, "disk_mb": 4, "files": 300, "open_files": 100}
    with worker_process(tmp_path, pg_url, redis_url) as worker:
        hub.deploy("limited", {"main.py": LIMITS}, max_retries=0, env=env, limits=limits)
        assert hub.client.get("/api/spiders/limited").json()["limits"] == limits
        cases = [
            ({"what": "memory", "mb": 400}, "memory_limit", "memory limit of 96 MB"),
            ({"what": "processes", "n": 200}, "process_limit", "processes limit of 32"),
            ({"what": "disk", "mb": 8, "files": 1}, "disk_limit", "disk limit of 4 MB"),
            ({"what": "disk", "mb": 1, "files": 8}, "disk_limit", "disk limit of 4 MB"),
            ({"what": "files", "n": 1000}, "file_limit", "files limit of 300"),
        ]
        for params, reason, words in cases:
            task = run(hub, "limited", **params)
            assert how_started(task).endswith(f"{start} start") or start == "cold"
            assert (task["status"], task["reason"]) == ("failed", reason), (params, task["log"])
            assert words in task["error_message"], task["error_message"]
        opened = run(hub, "limited", what="open_files")
        assert opened["status"] == "completed", opened["log"]
        [item] = hub.client.get("/api/data", params={"task_id": opened["id"]}).json()["items"]
        assert item["data"]["error"] == "OSError" and item["data"]["opened"] < 100
        assert_clean(hub, worker)


# A package from a local index whose in-tree build backend reports who ran it, leaves a
# daemon behind and tries to poison the shared download cache; the wheel it builds puts a
# .pth into the environment, which reports every interpreter start in it.
BACKEND = """
import base64, hashlib, os, subprocess, zipfile

_crawlhub_report("build", cache=os.environ.get("UV_CACHE_DIR", ""))
subprocess.Popen(["/bin/sh", "-c", "sleep 300; true", "DAEMON_MARKER"], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    with open(os.path.join(os.path.dirname(os.environ["UV_CACHE_DIR"]), "poisoned"), "w") as f:
        f.write("evil")
except OSError:
    pass

FILES = {
    "evil_pkg/__init__.py": "",
    "evil_pkg.pth": "import evil_hook\\n",
    "evil_hook.py": REPORT_SOURCE + "\\n_crawlhub_report('pth')\\n",
    "evil_pkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: evil-pkg\\nVersion: 1.0\\n",
    "evil_pkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: evil\\n"
                                    "Root-Is-Purelib: true\\nTag: py3-none-any\\n",
}


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "evil_pkg-1.0-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, text in FILES.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
            wheel.writestr(path, data)
        record.append("evil_pkg-1.0.dist-info/RECORD,,")
        wheel.writestr("evil_pkg-1.0.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
"""


def package_index(root: Path, report: str, marker: str) -> Path:
    """A PEP 503 index under root/simple holding the evil package's sdist."""
    backend = report + BACKEND.replace("REPORT_SOURCE", repr(report)).replace(
        "DAEMON_MARKER", marker)  # fmt: skip
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                          'backend-path = ["."]\n\n[project]\nname = "evil-pkg"\nversion = "1.0"\n',
        "backend.py": backend,
        "PKG-INFO": "Metadata-Version: 2.1\nName: evil-pkg\nVersion: 1.0\n",
    }  # fmt: skip
    (root / "files").mkdir(parents=True)
    with tarfile.open(root / "files" / "evil_pkg-1.0.tar.gz", "w:gz") as sdist:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"evil_pkg-1.0/{name}")
            info.size = len(data)
            sdist.addfile(info, io.BytesIO(data))
    page = root / "simple" / "evil-pkg"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        '<a href="../../files/evil_pkg-1.0.tar.gz">evil_pkg-1.0.tar.gz</a>'
    )
    return root


@pytest.fixture
def index(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path.parent / "index"
    root.mkdir()
    server = serve_to_spiders(partial(SimpleHTTPRequestHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.timeout(600)
def test_a_build_runs_in_the_sandbox_and_its_pth_never_runs_as_root(
    hub: Hub, pg_url: str, redis_url: str, tmp_path: Path, recorder: Recorder,
    index: tuple[Path, str],
) -> None:  # fmt: skip
    marker = f"crawlhub-build-daemon-{os.getpid()}-{time.monotonic_ns()}"
    root, url = index
    with worker_process(tmp_path, pg_url, redis_url, CRAWLHUB_PACKAGE_INDEX_URL=url) as worker:
        package_index(root, worker.report_code(recorder), marker)
        hub.deploy("built", {"main.py": "def run(params):\n    return {'ok': 1}\n",
                             "requirements.txt": "evil-pkg==1.0\n"})  # fmt: skip
        version = ready(hub, "built")
        assert version["status"] == "ready", (version, worker.output.read_text()[-5000:])
        for build in recorder.wait_for("build"):  # each call of uv's into the backend
            assert_unprivileged(build, worker)
        assert not [p for p in slot_processes() if marker in p[2]], "the daemon outlived the build"
        envs = worker.data_dir / "envs"
        assert not (envs / ".cache" / "poisoned").exists()
        assert sorted(p.name for p in (envs / ".cache").iterdir()) == [version["key"]]
        warm = run(hub, "built")
        assert warm["status"] == "completed" and how_started(warm).endswith("warm start")
        hub.client.patch("/api/spiders/built", json={"env": {"PYTHONHASHSEED": "3"}})
        cold = run(hub, "built")
        assert cold["status"] == "completed" and "cold start" in how_started(cold)
        starts = recorder.wait_for("pth", 2)  # the warm launcher's start, the cold run's
        assert any("crawlhub.child.launcher" in r["cmdline"] for r in starts)
        for found in starts:
            assert_unprivileged(found, worker)
        env_dir = envs / version["key"]
        assert env_dir.stat().st_uid == 0 and not env_dir.stat().st_mode & 0o022
        assert_clean(hub, worker)


BROWSER_SETTINGS = """
BOT_NAME = "browser"
SPIDER_MODULES = ["browser.spiders"]
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
DOWNLOAD_HANDLERS = {
    "http": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
    "https": "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler",
}
PLAYWRIGHT_BROWSER_TYPE = "chromium"
PLAYWRIGHT_LAUNCH_OPTIONS = {
    "executable_path": "/usr/bin/chromium",
    "headless": True,
    "args": ["--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"],
}
LOG_LEVEL = "INFO"
"""

BROWSER_SPIDER = """
import scrapy


class RenderedSpider(scrapy.Spider):
    name = "rendered"

    def __init__(self, url="", **kwargs):
        super().__init__(**kwargs)
        self.url = url

    async def start(self):
        yield scrapy.Request(self.url, meta={"playwright": True})

    def parse(self, response):
        yield {"rendered": response.css("#out::text").get()}
"""

PAGE = b"""<html><body><p id="out">not rendered</p>
<script>document.getElementById("out").textContent = "rendered by " + navigator.userAgent.split(" ")[0];</script>
</body></html>"""


@pytest.mark.timeout(900)
def test_a_scrapy_playwright_spider_with_debian_chromium_completes_under_the_default_limits(
    hub: Hub, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing (.ci/run installs it)")
    page_dir = tmp_path.parent / "page"
    page_dir.mkdir()
    (page_dir / "index.html").write_bytes(PAGE)
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(SimpleHTTPRequestHandler, directory=str(page_dir)))  # fmt: skip
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with worker_process(tmp_path, pg_url, redis_url) as worker:
            files: dict[str, str | bytes] = {
                "scrapy.cfg": "[settings]\ndefault = browser.settings\n",
                "requirements.txt": "scrapy-playwright>=0.0.40\n",
                "browser/__init__.py": "", "browser/settings.py": BROWSER_SETTINGS,
                "browser/spiders/__init__.py": "", "browser/spiders/rendered.py": BROWSER_SPIDER,
            }  # fmt: skip
            deploy(hub, "rendered", files, "scrapy", max_retries=0)
            assert ready(hub, "rendered", timeout=600)["status"] == "ready"
            task = run(
                hub,
                "rendered",
                timeout=180,
                url=f"http://127.0.0.1:{server.server_address[1]}/index.html",
            )
            assert task["status"] == "completed", task["log"]
            assert any(line.startswith("limits: memory 2048 MB, 512 processes")
                       for line in task["log"])  # fmt: skip
            [item] = hub.client.get("/api/data", params={"task_id": task["id"]}).json()["items"]
            assert item["data"]["rendered"].startswith("rendered by Mozilla"), item
            assert_clean(hub, worker)
    finally:
        server.shutdown()
        server.server_close()


def test_a_worker_warns_of_a_database_and_a_redis_that_let_anyone_in(
    hub: Hub, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """This machine's PostgreSQL trusts local connections and its Redis has no password: one
    warning line each. A Redis with a password gets none. (And a setting of the jail the
    sandbox replaced is said to be read no longer.)"""
    with worker_process(tmp_path, pg_url, redis_url, CRAWLHUB_SPIDER_USER="nobody") as worker:
        pass
    output = worker.output.read_text()
    assert "PostgreSQL lets CrawlHub in with a wrong password (trust authentication)" in output
    assert "Redis answers clients without a password" in output
    assert "CRAWLHUB_SPIDER_USER is no longer read" in output
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    password = secrets.token_hex(12)
    guarded = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                "--requirepass", password, "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        with worker_process(tmp_path, pg_url, f"redis://:{password}@127.0.0.1:{port}/0") as other:
            pass
        assert "Redis answers clients without a password" not in other.output.read_text()
        assert password not in other.output.read_text()
    finally:
        guarded.terminate()
        guarded.wait()


def test_without_namespaces_uploaded_code_runs_as_a_slot_user_and_runs_stay_apart(
    hub: Hub, pg_url: str, redis_url: str, tmp_path: Path, recorder: Recorder
) -> None:
    """Mode `users`, what a root worker falls back to where bubblewrap is refused (Docker's
    default profile): each slot a user of its own, no namespaces. Spiders see the machine's
    files, so they run on the system's Python with a data dir every user may traverse."""
    python = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3")
                   if os.access(p, os.X_OK)), None)  # fmt: skip
    assert python is not None, "the users mode needs a Python every user can run"
    root = Path(tempfile.mkdtemp(prefix="crawlhub-users-"))
    root.chmod(0o711)
    try:
        with worker_process(tmp_path, pg_url, redis_url, data_root=root, CRAWLHUB_SANDBOX="users",
                            CRAWLHUB_SPIDER_PYTHON=python) as worker:  # fmt: skip
            assert b"sandbox: a user per slot, no namespaces" in worker.output.read_bytes()
            report = worker.report_code(recorder)
            deploy(hub, "plain", python_project(report), "python", max_retries=0)
            assert how_started(run(hub, "plain")).endswith("warm start")
            hub.client.patch("/api/spiders/plain", json={"env": {"PYTHONPATH": "."}})
            assert run(hub, "plain")["status"] == "completed"
            for phase in ("entry", "json.py", "sitecustomize.py"):
                for found in recorder.wait_for(phase):
                    assert_unprivileged(found, worker, namespaces=False)
            hub.deploy("victim", {"main.py": VICTIM}, max_retries=0)
            # cold: warm, it would kill its own launcher (its slot's user's) and so itself
            hub.deploy("attacker", {"main.py": ATTACKER}, max_retries=0,
                       env={"PYTHONHASHSEED": "0"})  # fmt: skip
            victim = hub.run("victim", seconds=6)["id"]
            hub.wait(victim, {"running"})
            time.sleep(1)
            attack = run(hub, "attacker")
            [item] = hub.client.get("/api/data", params={"task_id": attack["id"]}).json()["items"]
            assert item["data"]["own_slot"] == "PermissionError"
            survived = hub.wait(victim, timeout=60)
            assert survived["status"] == "completed" and survived["items_count"] == 1
            assert_clean(hub, worker)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_services_firewall_entry_expires_unless_a_live_worker_renews_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service's port is refused to spiders while a worker renews its entry, and no
    longer once none does (a service moved, its worker gone): ports of services that came
    and went are not refused for the machine's uptime."""
    monkeypatch.setattr(firewall, "PROTECT_TTL_S", 3)
    monkeypatch.setattr(firewall, "_renewal", [])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    found = sandboxes.isolation_of(make_settings(tmp_path))
    said = firewall.protect(found, [f"redis://127.0.0.1:{port}/0"])
    assert said == f"refused to the slot users by nftables (127.0.0.1:{port})"
    assert port in protected_ports()
    time.sleep(2)
    firewall.refresh()  # renewed: 3 s from now
    time.sleep(2)
    assert port in protected_ports()
    deadline = time.monotonic() + 5
    while port in protected_ports():  # nobody renews it now
        assert time.monotonic() < deadline, "the entry outlived its time to live"
        time.sleep(0.2)
