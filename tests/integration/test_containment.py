"""A hostile spider against a real worker process: it reaches none of CrawlHub's secrets,
processes or data, and leaves no process behind.

The worker runs as root here, so spiders run as `nobody` (the identity switch for real),
and once as `nobody` itself, where the spider keeps the worker's user and only the PID
namespace and the worker's non-dumpable state protect it (the README's Security model).
"""

import json
import os
import pwd
import secrets
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Hub, processes_holding, running_hub
from tests.spider_env import AS_ROOT, spider_python

pytestmark = pytest.mark.skipif(not AS_ROOT, reason="starts workers as root and as nobody")

MAX_PROCESSES = 48
MAX_OPEN_FILES = 200

ATTACK = r"""
import json, os, signal, subprocess, sys, time

def attempt(action):
    try:
        return {"ok": True, "result": action()}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}

def read(path, limit=65536):
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", "replace")

def readable_files(roots, skip):
    found, total = {}, 0
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    if os.path.getsize(path) <= 65536 and total < 4_000_000:
                        found[path] = read(path)
                        total += len(found[path])
                except OSError:
                    pass
    return found

def fork_bomb():
    children = []
    try:
        while len(children) < 1000:
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    except OSError:
        pass
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return len(children)

def open_files():
    fds = []
    try:
        while len(fds) < 100_000:
            fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    return len(fds)

def run(params):
    data, worker, victim = params["data_dir"], params["worker_pid"], params["victim_pid"]
    version = os.path.join(data, "versions", params["sha256"])
    escapee = subprocess.Popen([sys.executable, "-c",
        "import os, time; os.setsid(); os.fork() and os._exit(0); time.sleep(300)",
        params["marker"]], start_new_session=True)
    escapee.wait()
    environs = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            got = attempt(lambda: read(f"/proc/{pid}/environ"))
            if got["ok"]:
                environs[pid] = got["result"]
    return {
        "uid": os.getuid(),
        "home": os.environ.get("HOME"),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "environs": environs,
        "worker_environ": attempt(lambda: read(f"/proc/{worker}/environ")),
        "worker_mem": attempt(lambda: read(f"/proc/{worker}/mem", 16)),
        "list_data": attempt(lambda: os.listdir(data)),
        "list_work": attempt(lambda: os.listdir(os.path.join(data, "work"))),
        "list_versions": attempt(lambda: os.listdir(os.path.join(data, "versions"))),
        "plant": attempt(lambda: open(os.path.join(version, "main.py"), "a").write("#")),
        "plant_new": attempt(lambda: open(os.path.join(version, "evil.py"), "w").write("#")),
        "kill_victim": attempt(lambda: os.kill(victim, signal.SIGKILL)),
        "kill_worker": attempt(lambda: os.kill(worker, signal.SIGKILL)),
        "processes": fork_bomb(),
        "open_files": open_files(),
        "files": readable_files([data, "/tmp", os.path.expanduser("~")],
                                {"/tmp/crawlhub-test-env"}),
    }
"""

VICTIM = """
import time

def run(params):
    time.sleep(params["seconds"])
    return {"survived": True}
"""


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    output: Path
    data_dir: Path
    secrets: dict[str, str]


@contextmanager
def worker_process(tmp_path: Path, pg_url: str, redis_url: str, *, as_nobody: bool,
                   **extra: str) -> Iterator[Worker]:  # fmt: skip
    """`crawlhub worker` in a process of its own, its environment full of secrets."""
    nobody = pwd.getpwnam("nobody")
    data_dir = tmp_path / f"data-{time.monotonic_ns()}"
    data_dir.mkdir()
    found = {k: f"{k}-{secrets.token_hex(8)}" for k in ("db", "redis", "token", "smtp")}
    python = spider_python()
    assert python is not None
    env = {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        # Trust authentication ignores the password; it is there to be looked for.
        "DATABASE_URL": pg_url.replace("postgres@", f"postgres:{found['db']}@", 1),
        "REDIS_URL": f"{redis_url}?client_name={found['redis']}",
        "CRAWLHUB_API_TOKENS": found["token"],
        "CRAWLHUB_SMTP_PASSWORD": found["smtp"],
        "CRAWLHUB_DATA_DIR": str(data_dir),
        "CRAWLHUB_SPIDER_PYTHON": str(python),
        "CRAWLHUB_WORKER_CONCURRENCY": "2",
        "CRAWLHUB_MAX_PROCESSES": str(MAX_PROCESSES),
        "CRAWLHUB_MAX_OPEN_FILES": str(MAX_OPEN_FILES),
        **extra,
    }
    if as_nobody:
        os.chown(data_dir, nobody.pw_uid, nobody.pw_gid)
    output = tmp_path / f"worker-{time.monotonic_ns()}.log"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [str(python), "-m", "crawlhub", "worker"], env=env, cwd=data_dir,
            stdout=out, stderr=subprocess.STDOUT,
            **({"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
               if as_nobody else {}),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while b"worker ready" not in output.read_bytes():
            assert proc.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.1)
        yield Worker(proc, output, data_dir, found)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def attack(hub: Hub, worker: Worker) -> dict[str, Any]:
    """Run the victim, then the attacker beside it; return what the attacker got."""
    hub.deploy("victim", {"victim.py": VICTIM}, entry="victim:run")
    hub.deploy("attack", {"attack.py": ATTACK}, entry="attack:run")
    sha256 = hub.client.get("/api/spiders/attack/versions").json()["items"][0]["sha256"]
    victim = hub.run("victim", seconds=20)
    hub.wait(victim["id"], {"running"})
    deadline = time.monotonic() + 10
    while not (victims := processes_holding("cmdline", "victim:run")):
        assert time.monotonic() < deadline, "the victim's process never showed up"
        time.sleep(0.05)
    marker = f"crawlhub-escapee-{secrets.token_hex(6)}"
    task = hub.run("attack", data_dir=str(worker.data_dir), worker_pid=worker.proc.pid,
                   victim_pid=max(victims), sha256=sha256, marker=marker)  # fmt: skip
    done = hub.wait(task["id"], timeout=90)
    assert done["status"] == "completed", hub.logs(task["id"])
    items = hub.client.get("/api/data", params={"task_id": task["id"]}).json()["items"]
    got: dict[str, Any] = items[0]["data"]
    time.sleep(0.5)
    got["escaped"] = processes_holding("cmdline", marker)
    got["worker_alive"] = worker.proc.poll() is None
    survived = hub.wait(victim["id"], timeout=60)
    got["victim"] = survived["status"]
    source = worker.data_dir / "versions" / sha256 / "attack.py"
    got["version_intact"] = source.read_text() == textwrap.dedent(ATTACK) and sorted(
        path.name for path in source.parent.iterdir()) == ["attack.py"]  # fmt: skip
    return got


@pytest.fixture
def hub(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Hub]:
    with running_hub(pg_url, tmp_path, redis_url=redis_url, threads=0) as hub:
        yield hub


def assert_contained(got: dict[str, Any], worker: Worker) -> None:
    """What holds whichever user the worker runs as."""
    text = json.dumps(got)
    leaked = [name for name, secret in worker.secrets.items() if secret in text]
    assert leaked == [], f"the spider found {leaked}"
    assert not any(k.startswith(("DATABASE", "REDIS", "CRAWLHUB_API", "CRAWLHUB_SMTP"))
                   for k in got["env"]), got["env"]  # fmt: skip
    assert "CRAWLHUB_PARENT_PID" not in got["env"]
    assert got["home"] == got["cwd"] and got["cwd"].startswith(str(worker.data_dir / "work"))
    assert not got["worker_environ"]["ok"] and not got["worker_mem"]["ok"]
    assert not got["kill_worker"]["ok"] and got["worker_alive"]
    assert not got["kill_victim"]["ok"] and got["victim"] == "completed"
    assert str(worker.proc.pid) not in got["environs"], "it saw the worker"
    assert got["escaped"] == [], "a process of the run outlived it"
    assert 1 < got["processes"] < MAX_PROCESSES
    assert 3 < got["open_files"] <= MAX_OPEN_FILES


def test_a_spider_of_a_root_worker_runs_as_nobody_and_reaches_nothing_of_crawlhub(
    hub: Hub, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with worker_process(tmp_path, pg_url, redis_url, as_nobody=False) as worker:
        got = attack(hub, worker)
    assert got["uid"] == pwd.getpwnam("nobody").pw_uid
    assert_contained(got, worker)
    # Out of its reach twice over: another owner, and covered in its mount namespace.
    assert got["list_data"] == {"ok": False, "error": "PermissionError"}
    assert got["list_work"] == {"ok": False, "error": "PermissionError"}
    for what in ("list_versions", "plant", "plant_new"):
        assert got[what] == {"ok": False, "error": "FileNotFoundError"}, what
    assert got["version_intact"]
    assert not any(path.startswith(str(worker.data_dir)) and "/work/" not in path
                   for path in got["files"]), sorted(got["files"])  # fmt: skip


def test_a_spider_of_a_worker_that_cannot_switch_user_still_cannot_reach_its_secrets(
    hub: Hub, pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with worker_process(tmp_path, pg_url, redis_url, as_nobody=True) as worker:
        got = attack(hub, worker)
    assert got["uid"] == pwd.getpwnam("nobody").pw_uid  # the worker's own user
    assert_contained(got, worker)
    # Its mount namespace covers the data dir with an empty, read-only directory.
    assert got["list_data"] == {"ok": True, "result": ["work"]}
    assert got["list_work"] == {"ok": True, "result": [Path(got["cwd"]).name]}
    for what in ("list_versions", "plant", "plant_new"):
        assert got[what] == {"ok": False, "error": "FileNotFoundError"}, what
    assert got["version_intact"]
    assert b"spiders run as this worker's user" in worker.output.read_bytes()


FAILING = """
def run(params):
    raise RuntimeError("the site changed")
"""


def test_no_secret_of_settings_or_channels_reaches_any_output_of_a_worker_and_its_runs(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Channels of every kind with their credentials, failing deliveries, a failing run:
    the worker's output, the run's log and the delivery records hold none of the secrets."""
    token = f"chan-{secrets.token_hex(8)}"
    closed = 9  # discard: nothing listens, every delivery fails
    targets = {
        "webhook": f"http://127.0.0.1:{closed}/hook?token={token}",
        "dingtalk": f"http://127.0.0.1:{closed}/robot/send?access_token={token}",
        "slack": f"http://127.0.0.1:{closed}/services/T0/B0/{token}",
        "wecom": f"http://127.0.0.1:{closed}/cgi-bin/webhook/send?key={token}",
        "feishu": f"http://127.0.0.1:{closed}/open-apis/bot/v2/hook/{token}",
        "email": "ops@example.com",
    }
    extra = {"CRAWLHUB_CHANNEL_ALLOW_HOSTS": "127.0.0.1", "CRAWLHUB_SMTP_HOST": "127.0.0.1",
             "CRAWLHUB_SMTP_PORT": str(closed), "CRAWLHUB_SMTP_USER": "crawlhub",
             "CRAWLHUB_LOG_LEVEL": "DEBUG"}  # fmt: skip
    with (
        running_hub(pg_url, tmp_path, redis_url=redis_url, threads=0,
                    channel_allow_hosts="127.0.0.1") as hub,
        worker_process(tmp_path, pg_url, redis_url, as_nobody=False, **extra) as worker,
    ):  # fmt: skip
        for kind, target in targets.items():
            body = {"kind": kind, "target": target, "secret": f"{token}-signing"}
            assert hub.client.post("/api/channels", json=body).status_code == 201
        hub.deploy("failing", {"failing.py": FAILING}, entry="failing:run", max_retries=0)
        task = hub.wait(hub.run("failing")["id"], timeout=60)
        assert task["status"] == "failed"
        alert = hub.client.get("/api/alerts").json()["items"][0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            records = hub.client.get(f"/api/alerts/{alert['id']}/deliveries").json()["items"]
            if len(records) == len(targets) and all(r["last_error"] for r in records):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not every delivery was tried: {records}")
        everything = {
            "run log": json.dumps(hub.logs(task["id"])),
            "task": json.dumps(hub.task(task["id"])),
            "deliveries": json.dumps(records),
            "alert": json.dumps(alert),
        }
    everything["worker output"] = worker.output.read_text()
    assert "the site changed" in everything["run log"]  # the searched outputs are real
    assert "the site changed" in everything["worker output"] or task["error_message"]
    for where, text in everything.items():
        for name, secret in [*worker.secrets.items(), ("channel token", token)]:
            assert secret not in text, f"{name} in the {where}"
