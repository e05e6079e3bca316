"""Running real spiders as child processes: outcomes, limits, cancel, hostile output (SPEC §4-5)."""

import csv
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from crawlhub.cli.client import zip_directory
from crawlhub.messaging.messages import send_run
from crawlhub.repo.models import Item, LogLine, Task
from tests.integration.harness import Hub, Site, pid_alive, processes_of, running_hub

FIXTURES = Path(__file__).parent.parent / "fixtures" / "spiders"


@pytest.fixture(params=["distributed", "embedded"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    """PostgreSQL + Redis broker + Redis streams, or SQLite + in-process broker and streams."""
    if request.param == "distributed":
        url, redis_url = request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url")
    else:
        url, redis_url = request.getfixturevalue("migrated_sqlite"), None
        request.addfinalizer(lambda: __import__("tests.conftest").conftest.empty_tables(url))
    with running_hub(url, tmp_path, redis_url) as running:
        yield running


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site(pages=5)
    yield served
    served.close()


def test_scrapy_project_crawls_the_local_site_and_stores_one_item_per_page(
    hub: Hub, site: Site
) -> None:
    created = hub.client.post("/api/spiders", json={"name": "pages", "kind": "scrapy"})
    assert created.status_code == 201
    upload = hub.client.post(
        "/api/spiders/pages/versions",
        files={"file": ("pages.zip", zip_directory(FIXTURES / "pages_scrapy"))},
    )
    assert upload.status_code == 201
    task = hub.wait(hub.run("pages", start_url=site.url)["id"])
    assert task["status"] == "completed", hub.logs(task["id"])
    assert task["exit_code"] == 0
    assert task["items_count"] == site.pages
    with hub.context.db.session() as session:
        urls = session.scalars(select(Item.data).where(Item.task_id == uuid.UUID(task["id"]))).all()
    assert sorted(d["url"] for d in urls) == sorted(
        [site.url] + [f"{site.url}page/{n}" for n in range(1, site.pages)]
    )
    assert task["stats"]["response_received_count"] == site.pages
    assert task["stats"]["item_scraped_count"] == site.pages
    assert task["stats"]["finish_reason"] == "finished"


def test_a_spider_with_only_start_requests_crawls_and_a_refused_site_is_named_as_the_cause(
    pg_hub: Hub, site: Site
) -> None:
    """Most projects define start_requests() and no start(), which Scrapy >= 2.16 no longer
    calls: CrawlHub bridges it. When a crawl does get no page, the log says why."""
    assert pg_hub.client.post("/api/spiders", json={"name": "legacy", "kind": "scrapy"}).is_success
    upload = pg_hub.client.post(
        "/api/spiders/legacy/versions",
        files={"file": ("legacy.zip", zip_directory(FIXTURES / "legacy_scrapy"))},
    )
    assert upload.status_code == 201, upload.text
    task = pg_hub.wait(pg_hub.run("legacy", start_url=site.url)["id"])
    assert (task["status"], task["items_count"]) == ("completed", site.pages)
    assert task["stats"]["response_received_count"] == site.pages
    assert not [x for x in pg_hub.logs(task["id"], stream="system") if "0 pages" in x["text"]]

    refused = pg_hub.wait(pg_hub.run("legacy", start_url="http://127.0.0.1:9/")["id"])
    assert (refused["status"], refused["items_count"]) == ("completed", 0)
    hints = [
        x["text"] for x in pg_hub.logs(refused["id"], stream="system") if "0 pages" in x["text"]
    ]
    assert len(hints) == 1 and "failed to download" in hints[0], hints
    assert "ConnectionRefusedError" in hints[0] and "start()" not in hints[0]


def test_scrapy_settings_of_one_run_apply_to_it_alone_and_are_checked(
    pg_hub: Hub, site: Site
) -> None:
    """Like Scrapyd's `setting=NAME=VALUE`: `settings` in the run body, applied with `-s`."""
    assert pg_hub.client.post("/api/spiders", json={"name": "pages", "kind": "scrapy"}).is_success
    upload = pg_hub.client.post(
        "/api/spiders/pages/versions",
        files={"file": ("pages.zip", zip_directory(FIXTURES / "pages_scrapy"))},
    )
    assert upload.status_code == 201
    body = {
        "params": {"start_url": site.url},
        "settings": {"CLOSESPIDER_ITEMCOUNT": 2, "CONCURRENT_REQUESTS": 1},
    }
    started = pg_hub.client.post("/api/spiders/pages/run", json=body)
    assert started.status_code == 202 and started.json()["settings"] == body["settings"]
    task = pg_hub.wait(started.json()["id"])
    assert task["stats"]["finish_reason"] == "closespider_itemcount"
    assert 2 <= task["items_count"] < site.pages
    again = pg_hub.wait(pg_hub.run("pages", start_url=site.url)["id"])  # without: all pages
    assert (again["items_count"], again["settings"]) == (site.pages, {})

    pg_hub.deploy("plain", {"main.py": "def run(params):\n    return []\n"})
    for ref, settings, message in [
        ("pages", {"download_delay": 1}, "not a Scrapy setting name"),
        ("pages", {f"S{n}": n for n in range(65)}, "at most 64 settings"),
        ("plain", {"DOWNLOAD_DELAY": 1}, "Scrapy spiders only"),
    ]:
        refused = pg_hub.client.post(f"/api/spiders/{ref}/run", json={"settings": settings})
        assert refused.status_code == 422 and message in refused.json()["error"]["message"]
        schedule = {"cron": "0 * * * *", "settings": settings}
        refused = pg_hub.client.post(f"/api/spiders/{ref}/schedules", json=schedule)
        assert refused.status_code == 422 and message in refused.json()["error"]["message"]
    schedule = {"cron": "0 * * * *", "settings": {"DOWNLOAD_DELAY": 0.5}}
    created = pg_hub.client.post("/api/spiders/pages/schedules", json=schedule)
    assert created.status_code == 201 and created.json()["settings"] == {"DOWNLOAD_DELAY": 0.5}


def test_python_spider_that_yields_items_completes_with_them(hub: Hub) -> None:
    hub.deploy("gen", {"main.py": """
        def run(params):
            for n in range(params["count"]):
                yield {"n": n, "text": "ünïcødé 🕷"}
    """})  # fmt: skip
    task = hub.wait(hub.run("gen", count=250)["id"])
    assert task["status"] == "completed"
    assert task["items_count"] == 250
    with hub.context.db.session() as session:
        data = session.scalars(
            select(Item.data).where(Item.task_id == uuid.UUID(task["id"])).order_by(Item.id)
        ).all()
    assert [d["n"] for d in data] == list(range(250))
    assert data[0]["text"] == "ünïcødé 🕷"


def test_python_spider_that_returns_a_list_and_uses_the_sdk(hub: Hub) -> None:
    hub.deploy("listy", {"main.py": """
        from crawlhub.sdk import save_item, save_items

        def run(params):
            save_item({"from": "sdk"})
            save_items({"from": "sdk-many", "i": i} for i in range(3))
            return [{"from": "return", "i": i} for i in range(4)]
    """})  # fmt: skip
    task = hub.wait(hub.run("listy")["id"])
    assert task["status"] == "completed", hub.logs(task["id"])
    assert task["items_count"] == 8


def test_non_zero_exit_fails_with_the_code_and_stderr_tail(hub: Hub) -> None:
    hub.deploy("broken", {"main.py": """
        import sys

        def run(params):
            print("about to fail")
            print("the database said no", file=sys.stderr)
            sys.exit(3)
    """}, max_retries=0)  # fmt: skip
    task = hub.wait(hub.run("broken")["id"])
    assert task["status"] == "failed"
    assert task["reason"] == "exit_code"
    assert task["exit_code"] == 3
    assert "the database said no" in task["error_message"]
    texts = [line["text"] for line in hub.logs(task["id"])]
    assert "about to fail" in texts


def test_exception_in_the_spider_fails_with_its_traceback(hub: Hub) -> None:
    hub.deploy("raises", {"main.py": """
        def run(params):
            yield {"ok": 1}
            raise ValueError("page layout changed")
    """}, max_retries=0)  # fmt: skip
    task = hub.wait(hub.run("raises")["id"])
    assert task["status"] == "failed" and task["exit_code"] == 1
    assert "ValueError: page layout changed" in task["error_message"]
    assert task["items_count"] == 1


SLEEPER = """
    import os, subprocess, sys, time, signal

    def run(params):
        if params.get("ignore_term"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        print("pids", os.getpid(), child.pid, flush=True)
        time.sleep(600)
"""


def pids_of(hub: Hub, task_id: str, timeout: float = 30) -> list[int]:
    """The host pids of a run's processes once its spider has started its child (the pids
    it prints are those of its own PID namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line["text"].startswith("pids ") for line in hub.logs(task_id)):
            return processes_of(task_id)
        time.sleep(0.05)
    raise AssertionError(f"spider never printed its pids: {hub.logs(task_id)} {hub.task(task_id)}")


def test_timeout_kills_the_process_group_and_fails_with_reason_timeout(hub: Hub) -> None:
    hub.deploy("slow", {"main.py": SLEEPER}, timeout_s=2, max_retries=0)
    task_id = hub.run("slow", ignore_term=True)["id"]
    pids = pids_of(hub, task_id)
    task = hub.wait(task_id, timeout=30)
    assert task["status"] == "failed" and task["reason"] == "timeout"
    assert not any(pid_alive(pid) for pid in pids)


def test_cancel_of_a_running_spider_that_ignores_sigterm_ends_its_group_within_3s(hub: Hub) -> None:
    hub.deploy("stubborn", {"main.py": SLEEPER})
    task_id = hub.run("stubborn", ignore_term=True)["id"]
    pids = pids_of(hub, task_id)
    assert all(pid_alive(pid) for pid in pids)
    cancelled_at = time.monotonic()
    response = hub.client.post(f"/api/tasks/{task_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    while any(pid_alive(pid) for pid in pids) and time.monotonic() - cancelled_at < 10:
        time.sleep(0.05)
    assert time.monotonic() - cancelled_at < 3.0
    assert not any(pid_alive(pid) for pid in pids)
    time.sleep(0.5)
    task = hub.task(task_id)
    assert task["status"] == "cancelled" and task["reason"] == "user"
    again = hub.client.post(f"/api/tasks/{task_id}/cancel")
    assert again.status_code == 409
    # Its duration is until its spider stopped (the log's), not until the cancel was asked.
    [said] = [x["text"] for x in hub.logs(task_id) if x["text"].startswith("cancelled after")]
    logged = float(said.split()[2])
    took = (datetime.fromisoformat(task["finished_at"])
            - datetime.fromisoformat(task["started_at"])).total_seconds()  # fmt: skip
    assert abs(took - logged) < 0.5, (took, said)


def test_cancel_of_a_pending_task_means_it_never_starts(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    with running_hub(pg_url, tmp_path, redis_url, threads=1) as hub:
        hub.deploy(
            "blocker", {"main.py": "import time\ndef run(p):\n    time.sleep(float(p['s']))\n"}
        )
        hub.deploy(
            "marker", {"main.py": f"def run(p):\n    open({str(marker)!r}, 'w').write('x')\n"}
        )
        blocker = hub.run("blocker", s=1.5)["id"]  # keeps the only worker thread busy
        hub.wait(blocker, {"running"})
        pending = hub.run("marker")["id"]
        cancelled = hub.client.post(f"/api/tasks/{pending}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        hub.wait(blocker)
        time.sleep(1.0)
        task = hub.task(pending)
    assert task["status"] == "cancelled" and task["started_at"] is None
    assert not marker.exists()


def test_spider_environment_holds_its_settings_and_the_runs_variables(pg_hub: Hub) -> None:
    """What a spider gets; that it gets nothing of the worker's is shown against a real
    worker process, whose own environment holds the secrets, in test_containment.py."""
    pg_hub.deploy("envy", {"main.py": """
        import json, os

        def run(params):
            print(json.dumps(dict(os.environ)))
    """}, env={"MY_SETTING": "on"})  # fmt: skip
    task = pg_hub.wait(pg_hub.run("envy")["id"])
    assert task["status"] == "completed"
    line = next(x["text"] for x in pg_hub.logs(task["id"]) if x["text"].startswith("{"))
    env = json.loads(line)
    assert env["MY_SETTING"] == "on"
    assert env["CRAWLHUB_TASK_ID"] == task["id"] and env["CRAWLHUB_SPIDER"] == "envy"
    home = Path(env["HOME"])  # its work dir, in the slot it ran in
    assert (
        home.name == f"{task['id']}-1"
        and home.parent.parent == pg_hub.context.settings.data_dir / "work"
    )
    jail_settings = {"CRAWLHUB_SPIDER_UID", "CRAWLHUB_MAX_PROCESSES", "CRAWLHUB_HIDE"}
    assert not jail_settings & set(env), "the jail's settings are its own"
    assert "CRAWLHUB_PARENT_PID" not in env


def test_duplicate_delivery_of_one_message_runs_the_spider_once(
    pg_hub: Hub, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    pg_hub.deploy("once", {"main.py": f"""
        import time
        def run(params):
            with open({str(marks)!r}, "a") as f:
                f.write("ran\\n")
            time.sleep(0.5)
    """})  # fmt: skip
    task_id = pg_hub.run("once")["id"]
    for _ in range(3):
        send_run(pg_hub.context.broker, uuid.UUID(task_id))  # the same task delivered again
    task = pg_hub.wait(task_id)
    time.sleep(1.0)
    assert task["status"] == "completed"
    assert marks.read_text().count("ran") == 1


def test_hostile_output_does_not_break_the_run_and_memory_stays_bounded(pg_hub: Hub) -> None:
    pg_hub.deploy("hostile", {"main.py": """
        import os, sys

        def run(params):
            out = sys.stdout.buffer
            out.write(b"bad utf8 \\xff\\xfe here\\n")
            out.write(b"nul \\x00 byte\\n")
            out.write(b"x" * (50 * 1024 * 1024) + b"\\n")
            out.flush()
            fd = int(os.environ["CRAWLHUB_ITEMS_FD"])
            os.write(fd, b'{"ok": 1}\\nnot json\\n[1, 2]\\n"text"\\n')
            os.write(fd, b'{"nul": "a\\\\u0000b"}\\n{"nan": NaN}\\n')
            os.write(fd, b'{"big": "' + b"y" * (20 * 1024 * 1024) + b'"}\\n')
            for n in range(int(params["lines"])):
                out.write(b"line %d\\n" % n)
            out.flush()
    """})  # fmt: skip
    baseline = _rss_reset()
    task = pg_hub.wait(pg_hub.run("hostile", lines=1_000_000)["id"], timeout=120)
    growth_mb = (_peak_rss() - baseline) / 1024
    assert task["status"] == "completed", task
    assert task["items_count"] == 5  # ok, [1,2] wrapped, "text" wrapped, nul cleaned, nan -> null
    assert task["items_invalid"] == 2  # "not json" and the 20 MB line over the item size limit
    assert task["log_lines"] >= 1_000_003
    lines = pg_hub.logs(task["id"])
    texts = [line["text"] for line in lines]
    assert "bad utf8 \ufffd\ufffd here" in texts
    assert "nul  byte" in texts
    assert any(t.startswith("x" * 100) and "truncated" in t for t in texts)
    assert any("log limit of" in t for t in texts)
    assert any("malformed item line" in t for t in texts)
    assert len(lines) <= pg_hub.context.settings.max_log_lines + 50
    with pg_hub.context.db.session() as session:
        data = session.scalars(select(Item.data).where(Item.task_id == uuid.UUID(task["id"]))).all()
        stored = session.scalar(
            select(func.count())
            .select_from(LogLine)
            .where(LogLine.task_id == uuid.UUID(task["id"]))
        )
    assert {"value": [1, 2]} in data and {"value": "text"} in data
    assert {"nul": "ab"} in data and {"nan": None} in data
    assert stored == len(lines)
    assert growth_mb < 150, f"worker grew by {growth_mb:.0f} MB"


def _rss_reset() -> int:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    return _status_kb("VmRSS")


def _peak_rss() -> int:
    return _status_kb("VmHWM")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_live_log_stream_delivers_lines_while_the_spider_runs(hub: Hub, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    hub.deploy("chatty", {"main.py": f"""
        import os, time

        def run(params):
            print("first line", flush=True)
            while not os.path.exists({str(gate)!r}):
                time.sleep(0.05)
            print("last line", flush=True)
    """})  # fmt: skip
    task_id = hub.run("chatty")["id"]
    seen: list[dict[str, object]] = []
    status = None
    with hub.client.stream("GET", f"/api/tasks/{task_id}/logs/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "log":
                seen.append(json.loads(line[6:]))
                if seen[-1]["line"] == "first line":
                    assert hub.task(task_id)["status"] == "running"  # live, before the exit
                    gate.write_text("go")
            elif line.startswith("data: ") and kind == "status":
                status = json.loads(line[6:])
                break
    texts = [str(e["line"]) for e in seen]
    assert texts.index("first line") < texts.index("last line")
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    assert status is not None and status["status"] == "completed"

    # Resuming with Last-Event-ID replays only what came after it.
    with hub.client.stream(
        "GET", f"/api/tasks/{task_id}/logs/stream", headers={"Last-Event-ID": "2"}
    ) as response:
        frames = [line for line in response.iter_lines() if line.startswith("id: ")]
    assert [int(f[4:]) for f in frames] == list(range(3, len(seen) + 1))


def test_test_run_streams_logs_then_its_final_status(hub: Hub) -> None:
    hub.deploy(
        "probe",
        {"main.py": "def run(p):\n    print('probing', p.get('x'))\n    return [{'a': 1}]\n"},
    )
    with hub.client.stream(
        "POST", "/api/spiders/probe/test-run", json={"params": {"x": 7}}
    ) as response:
        assert response.status_code == 200
        body = "\n".join(response.iter_lines())
    assert "event: log" in body and "probing 7" in body
    status = json.loads(body.split("event: status\ndata: ")[1].split("\n")[0])
    assert (
        status["status"] == "completed"
        and status["trigger"] == "test"
        and status["items_count"] == 1
    )


def test_run_api_rejects_what_cannot_run(hub: Hub) -> None:
    assert hub.client.post("/api/spiders", json={"name": "empty"}).status_code == 201
    no_version = hub.client.post("/api/spiders/empty/run", json={})
    assert no_version.status_code == 409
    assert hub.client.post("/api/spiders/ghost/run", json={}).status_code == 404
    hub.deploy("off", {"main.py": "def run(p):\n    return []\n"}, enabled=False)
    assert hub.client.post("/api/spiders/off/run", json={}).status_code == 409
    assert hub.client.post("/api/spiders/off/run", json={"params": [1]}).status_code == 422
    assert hub.client.post("/api/spiders/off/run", json={"bogus": 1}).status_code == 422
    assert hub.client.get("/api/tasks/not-a-uuid").status_code == 404
    assert hub.client.post(f"/api/tasks/{'0' * 32}/cancel").status_code == 404
    assert hub.client.get("/api/tasks", params={"status": "exploded"}).status_code == 422
    assert hub.client.get(f"/api/tasks/{'0' * 32}/logs").status_code == 404
    assert hub.client.get(f"/api/tasks/{'0' * 32}/logs", params={"limit": 5000}).status_code == 422


def test_tasks_list_filters_and_logs_filter_by_stream(hub: Hub) -> None:
    hub.deploy(
        "a",
        {
            "main.py": (
                "import sys\ndef run(p):\n    print('out')\n    print('err', file=sys.stderr)\n"
            )
        },
    )
    hub.deploy("b", {"main.py": "def run(p):\n    return []\n"})
    first = hub.wait(hub.run("a")["id"])
    hub.wait(hub.run("b")["id"])
    listed = hub.client.get("/api/tasks", params={"spider_id": "a"}).json()
    assert [t["id"] for t in listed["items"]] == [first["id"]]
    assert hub.client.get("/api/tasks", params={"status": "completed"}).json()["total"] == 2
    assert hub.client.get("/api/tasks", params={"trigger": "schedule"}).json()["total"] == 0
    stderr = hub.logs(first["id"], stream="stderr")
    assert [line["text"] for line in stderr] == ["err"]
    assert all(line["attempt"] == 1 for line in hub.logs(first["id"]))


def test_items_arrive_while_the_spider_is_still_running(pg_hub: Hub, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    pg_hub.deploy("stream", {"main.py": f"""
        import os, time
        from crawlhub.sdk import save_item

        def run(params):
            for n in range(10):
                save_item({{"n": n}})
            from crawlhub import sdk
            sdk.flush()
            while not os.path.exists({str(gate)!r}):
                time.sleep(0.05)
    """})  # fmt: skip
    task_id = pg_hub.run("stream")["id"]
    deadline = time.monotonic() + 30
    while pg_hub.task(task_id)["items_count"] < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pg_hub.task(task_id)["status"] == "running"
    assert pg_hub.task(task_id)["items_count"] == 10
    gate.write_text("go")
    assert pg_hub.wait(task_id)["status"] == "completed"


def test_children_die_with_their_worker_process(tmp_path: Path) -> None:
    """The parent-death signal: a spider never outlives the process that started it."""
    import subprocess
    import sys

    task = str(uuid.uuid4())
    script = tmp_path / "spider.py"
    script.write_text("import time\ndef run(p):\n    time.sleep(600)\n")
    parent = subprocess.Popen(
        [sys.executable, "-c", (
            "import os, subprocess, sys, time\n"
            f"env = dict(os.environ, CRAWLHUB_TASK_ID={task!r}, CRAWLHUB_ITEMS_FD='1')\n"
            "argv = [sys.executable, '-m', 'crawlhub.child.bootstrap', 'python', 'spider:run']\n"
            "child = subprocess.Popen(argv,"
            f" cwd={str(tmp_path)!r}, env=env, pass_fds=(1,))\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(600)\n"
        )],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())  # kept open: the pipe is the run's item pipe
    time.sleep(0.5)
    assert pid_alive(child_pid) and processes_of(task) == [child_pid]
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 5
    while processes_of(task) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child_pid)
    assert processes_of(task) == [], "the spider outlived its bootstrap"


def test_metrics_parse_and_their_counters_move_after_a_run(hub: Hub) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = hub.client.get("/metrics", headers={"Authorization": ""})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    before = scrape()
    hub.deploy("measured", {"main.py": "def run(p):\n    return [{'a': 1}, {'a': 2}]\n"})
    assert hub.wait(hub.run("measured")["id"])["status"] == "completed"
    hub.client.app.state.metrics.expire()  # task and queue state is cached for a few seconds
    after = scrape()
    completed = ("crawlhub_runs_total", (("status", "completed"),))
    assert after[completed] == before.get(completed, 0) + 1
    items = ("crawlhub_items_ingested_total", ())
    assert after[items] == before.get(items, 0) + 2
    assert after[("crawlhub_run_duration_seconds_count", ())] >= 1
    assert after[("crawlhub_tasks", (("status", "completed"),))] == 1
    assert ("crawlhub_queue_messages", (("queue", "crawlhub.runs"), ("state", "ready"))) in after
    assert after[("crawlhub_workers", ())] >= 1


def test_a_runs_item_keys_are_recorded_as_stored_and_give_exports_their_columns(
    hub: Hub,
) -> None:
    """The top-level keys of a run's items are recorded with the items, in first-seen order,
    across flushes; a CSV export takes its columns from them (no scan of the items), also
    over several runs of a spider; a run without recorded keys is read as before."""
    hub.deploy("keys", {"main.py": """
        import time
        from crawlhub import sdk

        def run(params):
            sdk.save_item({"a": 1})
            sdk.flush()
            time.sleep(0.3)  # a later flush brings a new key
            sdk.save_item({"b": 2, "a": 3})
            return [{"c": 4}] if params.get("more") else []
    """})  # fmt: skip
    first = hub.wait(hub.run("keys")["id"])
    second = hub.wait(hub.run("keys", more=True)["id"])
    with hub.context.db.session() as session:
        stored = {t.id: t.item_keys for t in session.scalars(select(Task))}
    assert stored[uuid.UUID(first["id"])] == ["a", "b"]
    assert stored[uuid.UUID(second["id"])] == ["a", "b", "c"]

    def csv_of(**query: str) -> list[list[str]]:
        answer = hub.client.get("/api/data/export/csv", params=query)
        assert answer.status_code == 200, answer.text
        return list(csv.reader(answer.text.splitlines()))

    assert csv_of(task_id=first["id"]) == [["a", "b"], ["1", ""], ["3", "2"]]
    assert csv_of(spider_id="keys")[0] == ["a", "b", "c"]
    with hub.context.db.session() as session:  # the columns are the recorded keys
        session.execute(update(Task).where(Task.id == uuid.UUID(first["id"]))
                        .values(item_keys=["b", "a"]))  # fmt: skip
    assert csv_of(task_id=first["id"]) == [["b", "a"], ["", "1"], ["2", "3"]]
    with hub.context.db.session() as session:  # as a run from before keys were recorded
        session.execute(update(Task).where(Task.id == uuid.UUID(second["id"]))
                        .values(item_keys=None))  # fmt: skip
    assert csv_of(task_id=second["id"]) == [["a", "b", "c"], ["1", "", ""], ["3", "2", ""],
                                            ["", "", "4"]]  # fmt: skip
    assert csv_of(spider_id="keys")[0] == ["a", "b", "c"]


def test_a_versions_package_is_read_from_the_database_only_until_it_is_extracted(
    hub: Hub,
) -> None:
    """A claim reads no archive (up to 50 MB each); the first run on a worker reads it once to
    extract it, later runs use the extracted copy."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    hub.deploy("packed", {"main.py": "def run(p):\n    return [{'ok': 1}]\n"})
    event.listen(hub.context.db.engine, "before_cursor_execute", seen)
    try:
        for _ in range(3):
            assert hub.wait(hub.run("packed")["id"])["status"] == "completed"
    finally:
        event.remove(hub.context.db.engine, "before_cursor_execute", seen)
    reads = [s for s in statements if "project_version.archive" in s]
    assert len(reads) <= 1, reads  # none when the upload's preparation extracted it already


def test_a_run_with_more_item_keys_than_kept_records_none_and_exports_read_them(
    hub: Hub,
) -> None:
    """Past MAX_ITEM_KEYS distinct keys a run records none (nothing unbounded is kept); its CSV
    export finds every column by reading the items."""
    hub.deploy("sprawl", {"main.py": """
        def run(params):
            for n in range(1200):
                yield {"id": n, f"field_{n}": n}
    """})  # fmt: skip
    task = hub.wait(hub.run("sprawl")["id"])
    assert (task["status"], task["items_count"]) == ("completed", 1200)
    with hub.context.db.session() as session:
        assert session.get(Task, uuid.UUID(task["id"])).item_keys is None  # type: ignore[union-attr]
    answer = hub.client.get("/api/data/export/csv", params={"task_id": task["id"]})
    assert answer.status_code == 200, answer.text
    rows = list(csv.reader(answer.text.splitlines()))
    assert sorted(rows[0]) == sorted(["id", *(f"field_{n}" for n in range(1200))])
    assert len(rows) == 1201
