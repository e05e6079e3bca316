"""Runs forked from a warm launcher are the runs a cold start makes (issue 17).

Every other test runs spiders warm (the default); these compare a warm run with a cold one
(`CRAWLHUB_WARM_START=false`) field by field, and break the launcher on purpose: killed
between runs, killed during one, its environment changed under it, a run that sets a
variable Python reads at start.
"""

import json
import os
import resource
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawlhub.cli.client import zip_directory
from crawlhub.worker import launchers
from tests.integration.harness import FINISHED, Hub, Site, pid_alive, processes_of, running_hub
from tests.integration.test_processes import shared
from tests.integration.test_runs import FIXTURES, SLEEPER, pids_of

PROBE = r"""
import json, os, resource, signal, stat, sys

def fd_kind(fd):
    mode = os.fstat(fd).st_mode
    return "pipe" if stat.S_ISFIFO(mode) else "char" if stat.S_ISCHR(mode) else "other"

def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return type(exc).__name__

def run(params):
    print("probe on stdout")
    print("probe on stderr", file=sys.stderr)
    me = os.getpid()
    proc = lambda name: open(f"/proc/self/{name}", "rb").read().split(b"\0")
    report = {
        "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],
        "pid": me, "session_leader": os.getsid(0) == os.getpgid(0),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "limits": {name: resource.getrlimit(getattr(resource, name))
                   for name in ("RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_NOFILE")},
        "caps": [line for line in open("/proc/self/status").read().splitlines()
                 if line.startswith(("Cap", "NoNewPrivs", "Seccomp"))],
        "umask": os.umask(0o022),
        "cwd": os.getcwd(), "home": os.environ["HOME"], "path0": sys.path[0],
        "argv": sys.argv[1:], "cmdline": [a.decode() for a in proc("cmdline") if a],
        "env": dict(os.environ),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "std": [fd_kind(0), fd_kind(1), fd_kind(2)],
        "stdout": [sys.stdout.encoding, sys.stdout.line_buffering, sys.stdout.errors],
        "stderr": [sys.stderr.encoding, sys.stderr.line_buffering, sys.stderr.errors],
        "signals": {name: repr(signal.getsignal(getattr(signal, name)))
                    for name in ("SIGINT", "SIGPIPE", "SIGHUP", "SIGCHLD")},
        "data_dir": listing(params["data_dir"]),
        "flags": repr(sys.flags),
    }
    yield {"report": report}
    yield {"n": 2, "text": "第二"}
    if params.get("fail"):
        raise ValueError("bad page")
"""


@pytest.fixture(autouse=True)
def fresh_launchers() -> Iterator[None]:
    """Each test starts with no launcher, and leaves none behind."""
    launchers.POOL.stop()
    yield
    launchers.POOL.stop()


@pytest.fixture
def warm_hub(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Hub]:
    with running_hub(pg_url, tmp_path, redis_url, threads=2) as hub:
        yield hub


def attempt_line(hub: Hub, task_id: str) -> str:
    return next(line["text"] for line in hub.logs(task_id) if line["text"].startswith("attempt"))


def probe(hub: Hub, name: str, **params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the probe spider; its task and its report, the values that name the run made
    neutral (task id, work dir, item pipe's number)."""
    task = hub.wait(hub.run(name, data_dir=str(hub.context.settings.data_dir), **params)["id"])
    assert task["items_count"] == 2, "\n".join(line["text"] for line in hub.logs(task["id"]))
    items = hub.client.get("/api/data", params={"task_id": task["id"]}).json()["items"]
    report = next(item["data"]["report"] for item in items if "report" in item["data"])
    work, task_id, data = report["cwd"], task["id"], str(hub.context.settings.data_dir)

    def neutral(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(work, "<work>").replace(task_id, "<task>").replace(data, "<data>")
        if isinstance(value, list):
            return [neutral(v) for v in value]
        if isinstance(value, dict):
            return {k: neutral(v) for k, v in value.items()}
        return value

    report = neutral(report)
    items_fd = int(report["env"].pop("CRAWLHUB_ITEMS_FD"))
    report["fds"] = ["items" if fd == items_fd else fd for fd in report["fds"]]
    report["fds"] = [fd for fd in report["fds"] if fd in (0, 1, 2, "items")] + [
        len(report["fds"])
    ]  # the descriptor listdir opened is the lowest free one: its number differs
    task["lines"] = sorted(
        (line["stream"], line["text"]) for line in hub.logs(task_id) if line["stream"] != "system"
    )  # two pipes: no order between them
    task["items"] = sorted(json.dumps(item["data"], sort_keys=True) for item in items
                           if "report" not in item["data"])  # fmt: skip
    return task, report


def test_a_warm_run_is_the_run_a_cold_start_makes(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    failed: dict[str, dict[str, Any]] = {}
    for start in ("warm", "cold"):
        (tmp_path / start).mkdir(mode=0o755)
        (tmp_path / start / "shared").mkdir(mode=0o755)
        with running_hub(pg_url, tmp_path / start / "shared", redis_url, threads=1,
                         warm_start=start == "warm", max_processes=40, max_open_files=300,
                         memory_limit_mb=2048) as hub:  # fmt: skip
            if start == "warm":
                hub.deploy("probe", {"probe.py": PROBE}, entry="probe:run", max_retries=0,
                           env={"MY_SETTING": "on"})  # fmt: skip
            probe(hub, "probe")  # the first run of a worker may start its launcher
            found[start] = probe(hub, "probe")
            assert attempt_line(hub, found[start][0]["id"]).endswith(f", {start} start")
            failed[start] = hub.wait(hub.run("probe", fail=True, data_dir="/")["id"])
    (warm_task, warm), (cold_task, cold) = found["warm"], found["cold"]
    # Each in a PID namespace of its own: under the sandbox's init (1), a cold run is 2; a
    # warm one sees its launcher (2), whose previous run was 3.
    assert (cold.pop("pid"), cold.pop("processes")) == (2, [1, 2])
    assert (warm.pop("pid"), warm.pop("processes")) == (4, [1, 2, 4])
    assert warm == cold
    assert warm["ids"][0] != 0
    assert warm["ids"][0] == warm["ids"][1] >= 1000 and warm["ids"][4] == []  # no groups
    assert warm["limits"]["RLIMIT_NOFILE"] == [300, 300]
    unlimited = [resource.RLIM_INFINITY] * 2  # memory is counted by the run's cgroup
    assert warm["limits"]["RLIMIT_AS"] == unlimited
    # the data dir holds the in-spider runtime and the slots, nothing else
    assert warm["data_dir"] == ["runtime", "work"] and warm["session_leader"]
    assert warm["cwd"] == warm["home"] == warm["path0"] == "<work>"
    assert warm["env"]["MY_SETTING"] == "on" and warm["env"]["CRAWLHUB_TASK_ID"] == "<task>"
    assert warm["cmdline"][-4:] == ["-m", "crawlhub.child.bootstrap", "python", "probe:run"]
    assert warm["std"] == ["char", "pipe", "pipe"]
    for key in ("status", "exit_code", "items_count", "lines", "items"):
        assert warm_task[key] == cold_task[key], key
    assert warm_task["lines"] == [("stderr", "probe on stderr"), ("stdout", "probe on stdout")]
    for start in ("warm", "cold"):
        assert failed[start]["status"] == "failed" and failed[start]["exit_code"] == 1
        assert "ValueError: bad page" in failed[start]["error_message"]


@pytest.mark.parametrize("start", ["warm", "cold"])
def test_cancel_timeout_and_exit_codes_are_the_same_warm_or_cold(
    pg_url: str, redis_url: str, tmp_path: Path, start: str
) -> None:
    with running_hub(pg_url, tmp_path, redis_url, threads=2, warm_start=start == "warm") as hub:
        hub.deploy("stubborn", {"main.py": SLEEPER})
        hub.deploy("slow", {"main.py": SLEEPER}, timeout_s=2, max_retries=0)
        hub.deploy("exits", {"main.py": "import os\ndef run(p):\n    os._exit(7)\n"},
                   max_retries=0)  # fmt: skip
        stubborn = hub.run("stubborn", ignore_term=True)["id"]
        slow = hub.run("slow", ignore_term=True)["id"]
        # found by the run's variables in /proc/<pid>/environ: the spider and the process it
        # started, the spider showing the run's command line
        pids = pids_of(hub, stubborn)
        assert len(pids) == 2 and attempt_line(hub, stubborn).endswith(f"{start} start")
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in pids]
        assert sum(b"crawlhub.child.bootstrap" in command for command in commands) == 1
        cancelled_at = time.monotonic()
        assert hub.client.post(f"/api/tasks/{stubborn}/cancel").status_code == 200
        while any(pid_alive(pid) for pid in pids) and time.monotonic() - cancelled_at < 10:
            time.sleep(0.05)
        assert time.monotonic() - cancelled_at < 3.0
        timed_out = hub.wait(slow, timeout=30)
        assert timed_out["status"] == "failed" and timed_out["reason"] == "timeout"
        assert processes_of(slow) == [] and processes_of(stubborn) == []
        exited = hub.wait(hub.run("exits")["id"])
        assert exited["status"] == "failed" and exited["exit_code"] == 7
        assert hub.wait(stubborn)["status"] == "cancelled"


EXITS = """
import atexit, sys, threading, time

def run(params):
    atexit.register(lambda: print("atexit ran", flush=True))
    def late():
        time.sleep(0.3)
        print("thread finished", flush=True)
    threading.Thread(target=late).start()  # not a daemon: the interpreter waits for it
    if "code" in params:
        sys.exit(params["code"])
    return {"ok": True}
"""


@pytest.mark.parametrize("start", ["warm", "cold"])
def test_a_run_ends_as_python_ends_warm_or_cold(
    pg_url: str, redis_url: str, tmp_path: Path, start: str
) -> None:
    with running_hub(pg_url, tmp_path, redis_url, threads=2, warm_start=start == "warm") as hub:
        hub.deploy("exits", {"main.py": EXITS}, max_retries=0)
        for params, status, code in (({}, "completed", 0), ({"code": 3}, "failed", 3),
                                     ({"code": "bye"}, "failed", 1)):  # fmt: skip
            task = hub.wait(hub.run("exits", **params)["id"])
            assert (task["status"], task["exit_code"]) == (status, code), task
            lines = [(line["stream"], line["text"]) for line in hub.logs(task["id"])
                     if line["stream"] != "system"]  # fmt: skip
            expected = [("stdout", "thread finished"), ("stdout", "atexit ran")]
            assert [line for line in lines if line[0] == "stdout"] == expected
            assert (("stderr", "bye") in lines) == (code == 1)
            assert attempt_line(hub, task["id"]).endswith(f"{start} start")


def launcher_of(kind: str = "python", slot: int | None = None) -> launchers.Launcher:
    """The one launcher of this kind (in this slot)."""
    found = [launcher for launcher in launchers.POOL.current() if launcher.key.kind == kind
             and slot in (None, launcher.key.slot)]  # fmt: skip
    assert len(found) == 1, [launcher.key for launcher in found]
    return found[0]


def wait_for_new_launcher(old: launchers.Launcher, timeout: float = 30) -> launchers.Launcher:
    """The launcher that took the place of `old` (same environment, kind and slot)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = [launcher for launcher in launchers.POOL.current()
                   if launcher.key == old.key and launcher.proc.pid != old.proc.pid]  # fmt: skip
        if current and current[0].alive():
            return current[0]
        time.sleep(0.05)
    raise AssertionError("no new launcher")


def test_a_launcher_killed_between_runs_means_one_cold_run_then_a_new_launcher(
    warm_hub: Hub,
) -> None:
    hub = warm_hub
    hub.deploy("quick", {"main.py": "def run(p):\n    return {'ok': p.get('n')}\n"})
    first = hub.wait(hub.run("quick", n=1)["id"])
    assert first["status"] == "completed" and attempt_line(hub, first["id"]).endswith("warm start")
    old = launcher_of()
    os.kill(old.proc.pid, signal.SIGKILL)
    old.proc.wait()
    second = hub.wait(hub.run("quick", n=2)["id"])
    assert second["status"] == "completed" and second["items_count"] == 1
    line = attempt_line(hub, second["id"])
    assert "cold start (no warm start: the launcher exited (killed by signal 9)" in line, line
    wait_for_new_launcher(old)
    third = hub.wait(hub.run("quick", n=3)["id"])
    assert third["status"] == "completed" and attempt_line(hub, third["id"]).endswith("warm start")


def test_a_launcher_that_does_not_answer_is_killed_and_its_run_starts_cold_once(
    warm_hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's GO goes with the run when its launcher's cgroup holds its limits already:
    a launcher that then says nothing (its run may be going all the same) is killed with all
    it forked, and the run starts cold, once; a new launcher takes its place."""
    monkeypatch.setattr(launchers, "ANSWER_TIMEOUT_S", 1.0)
    hub = warm_hub
    hub.deploy("quick", {"main.py": "def run(p):\n    print('ran', flush=True)\n"
                                    "    return {'ok': p.get('n')}\n"})  # fmt: skip
    first = hub.wait(hub.run("quick", n=1)["id"])
    assert first["status"] == "completed" and attempt_line(hub, first["id"]).endswith("warm start")
    old = launcher_of()
    for pid in old.own:  # bubblewrap, its init and the launcher: none can answer
        os.kill(pid, signal.SIGSTOP)
    second = hub.wait(hub.run("quick", n=2)["id"])
    assert (second["status"], second["items_count"]) == ("completed", 1), second
    line = attempt_line(hub, second["id"])
    assert "cold start (no warm start: the launcher did not answer)" in line, line
    assert [x["text"] for x in hub.logs(second["id"])].count("ran") == 1
    assert not any(pid_alive(pid) for pid in old.own)
    wait_for_new_launcher(old)


def test_a_launcher_that_dies_during_a_run_is_crawlhubs_failure_not_the_spiders(
    warm_hub: Hub, tmp_path: Path
) -> None:
    """The run it took down starts again, cold, without counting a retry (even with
    max_retries 0), and completes; nothing of the first attempt is left running."""
    hub = warm_hub
    gate = shared(tmp_path) / "second-attempt"
    hub.deploy("stubborn", {"main.py": GATED.format(gate=str(gate))}, max_retries=0)
    task_id = hub.run("stubborn")["id"]
    pids = pids_of(hub, task_id)
    gate.touch()
    os.kill(launcher_of().proc.pid, signal.SIGKILL)
    task = hub.wait(task_id, FINISHED, timeout=60)
    assert (task["status"], task["retry_count"]) == ("completed", 0), task
    texts = [line["text"] for line in hub.logs(task_id)]
    assert ("the warm launcher this run was started from died, and the spider with it: the run "
            "starts again (no retry counted)") in texts  # fmt: skip
    attempts = [t for t in texts if t.startswith("attempt ")]
    assert len(attempts) == 2 and attempts[0].endswith("warm start"), attempts
    assert attempts[1].endswith("cold start (no warm start: its launcher died under its last "
                                "attempt)"), attempts  # fmt: skip
    assert not any(pid_alive(pid) for pid in pids) and processes_of(task_id) == []


GATED = """
import os, time

def run(params):
    print("pids", os.getpid(), flush=True)
    if os.path.exists({gate!r}):
        return [{{"second": True}}]
    time.sleep(600)
"""


def test_an_environment_change_retires_the_launcher_after_its_runs(warm_hub: Hub) -> None:
    hub = warm_hub
    hub.deploy("stubborn", {"main.py": SLEEPER})
    hub.deploy("quick", {"main.py": "def run(p):\n    return {'ok': 1}\n"})
    busy = hub.run("stubborn")["id"]
    pids_of(hub, busy)  # in the first slot, through its launcher
    old = launcher_of(slot=0)
    first = hub.wait(hub.run("quick")["id"])  # in the second slot, through its own
    assert attempt_line(hub, first["id"]).endswith("warm start")
    [site] = [Path(p) for p in old.greeting["paths"] if p.endswith("site-packages")]
    marker = site / f"crawlhub-warm-start-test-{os.getpid()}.txt"
    marker.write_text("installed")  # what pip install does to site-packages
    try:
        changed = hub.wait(hub.run("quick")["id"])
        assert changed["status"] == "completed"
        line = attempt_line(hub, changed["id"])
        assert "the environment changed since its launcher started" in line, line
        assert old.alive()  # the run it started goes on
        assert hub.client.post(f"/api/tasks/{busy}/cancel").status_code == 200
        assert hub.wait(busy)["status"] == "cancelled"
        old.proc.wait(timeout=20)  # stopped once its last run ended
        after = hub.wait(hub.run("quick")["id"])
        assert after["status"] == "completed"
        assert attempt_line(hub, after["id"]).endswith("warm start")
        assert launcher_of(slot=0).proc.pid != old.proc.pid
    finally:
        marker.unlink()


def test_a_run_that_sets_a_python_startup_variable_starts_cold(warm_hub: Hub) -> None:
    hub = warm_hub
    hub.deploy("seeded", {"main.py": "import sys\ndef run(p):\n    return {'h': hash('crawl')}\n"},
               env={"PYTHONHASHSEED": "7"})  # fmt: skip
    tasks = [hub.wait(hub.run("seeded")["id"]) for _ in range(2)]
    for task in tasks:
        assert task["status"] == "completed"
        line = attempt_line(hub, task["id"])
        assert "cold start (no warm start: the run sets PYTHONHASHSEED" in line, line
    hashes = {item["data"]["h"] for task in tasks for item in hub.client.get(
        "/api/data", params={"task_id": task["id"]}).json()["items"]}  # fmt: skip
    assert len(hashes) == 1  # the seed took effect: a fixed hash across runs


def test_a_scrapy_run_starts_warm_and_crawls(warm_hub: Hub) -> None:
    hub, site = warm_hub, Site(pages=3)
    try:
        assert hub.client.post("/api/spiders", json={"name": "pages", "kind": "scrapy"}).is_success
        upload = hub.client.post("/api/spiders/pages/versions", files={
            "file": ("pages.zip", zip_directory(FIXTURES / "pages_scrapy"))})  # fmt: skip
        assert upload.status_code == 201
        deadline = time.monotonic() + 60  # listed first, so that the runs take the first slot
        while hub.client.get("/api/projects/pages/versions").json()["items"][0]["spiders"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for _ in range(2):
            task = hub.wait(hub.run("pages", start_url=site.url)["id"], timeout=90)
            assert task["status"] == "completed" and task["items_count"] == 3, (
                site.hits,
                hub.logs(task["id"]),
            )
        assert attempt_line(hub, task["id"]).endswith("warm start")
        assert launcher_of("scrapy", slot=0).greeting["preloaded"] > 50
        assert not [line for line in hub.logs(task["id"]) if "Telnet" in line["text"]]
    finally:
        site.close()


def test_an_idle_launcher_stops_and_the_next_run_starts_a_new_one(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with running_hub(pg_url, tmp_path, redis_url, threads=1, launcher_idle_s=1) as hub:
        hub.deploy("quick", {"main.py": "def run(p):\n    return {'ok': 1}\n"})
        assert hub.wait(hub.run("quick")["id"])["status"] == "completed"
        old = launcher_of()
        deadline = time.monotonic() + 20  # idle 1 s, checked every few seconds
        while launchers.POOL.current() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert launchers.POOL.current() == []
        assert old.proc.wait(timeout=10) == 0  # it ended when its socket pair closed
        task = hub.wait(hub.run("quick")["id"])
        assert task["status"] == "completed"
        assert attempt_line(hub, task["id"]).endswith("warm start")
        assert launcher_of().proc.pid != old.proc.pid


def test_a_run_whose_params_overflow_the_launchers_room_still_gets_them_whole(
    warm_hub: Hub,
) -> None:
    hub = warm_hub
    hub.deploy("sizes", {"main.py": "import os\ndef run(p):\n    return {'n': len(p['blob']), "
                         "'env': len(os.environ['CRAWLHUB_PARAMS'])}\n"})  # fmt: skip
    blob = "第" * 300_000  # 900 KB of UTF-8: more than the 64 KiB /proc/<pid>/environ shows
    task = hub.wait(hub.run("sizes", blob=blob)["id"])
    assert task["status"] == "completed", hub.logs(task["id"])
    assert attempt_line(hub, task["id"]).endswith("warm start")
    item = hub.client.get("/api/data", params={"task_id": task["id"]}).json()["items"][0]
    assert item["data"]["n"] == 300_000 and item["data"]["env"] > 300_000
