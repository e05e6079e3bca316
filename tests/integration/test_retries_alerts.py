"""Retries with backoff, dead letters, alerts and their delivery (SPEC §5, §7), on Redis + PG."""

import hashlib
import hmac
import itertools
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select, update

from crawlhub import outages
from crawlhub.housekeeping import steps as housekeeping
from crawlhub.messaging import messages, queues
from crawlhub.messaging.keys import QUEUED_RUNS
from crawlhub.repo.models import Channel, Item, Task
from tests.integration.harness import Hub, pid_alive, processes_of, running_hub
from tests.integration.test_processes import Process, base_env, free_port, shared

SECRET = "channel-secret-42"


class Receiver:
    """A local webhook receiver that records requests and fails the first `fail_first`."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if failing else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.requests) >= count, f"{len(self.requests)} of {count} requests arrived"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Hub]:
    # The webhook receivers listen on 127.0.0.1, which the SSRF rules refuse unless allowed.
    with running_hub(pg_url, tmp_path, redis_url, channel_allow_hosts="127.0.0.1") as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    yield served
    served.close()


FLAKY = """
    import os, sys
    from pathlib import Path

    def run(params):
        # One new file per attempt: a retry may run in another slot, as another user, who
        # could not rewrite the file of the first.
        n = len(list(Path(params["dir"]).glob("attempt-*"))) + 1
        (Path(params["dir"]) / f"attempt-{n}").write_text("")
        print(f"attempt number {n}")
        yield {"attempt": n}
        if n <= params["fail_times"] and not (Path(params["dir"]) / "fixed").exists():
            print("the site returned 500", file=sys.stderr)
            sys.exit(1)
"""


def attempt_starts(hub: Hub, task_id: str) -> list[datetime]:
    return [
        datetime.fromisoformat(line["ts"])
        for line in hub.logs(task_id, stream="system")
        if line["text"].startswith("attempt ") and ": python spider" in line["text"]
    ]


def test_spider_failing_twice_then_succeeding_completes_on_its_third_attempt(
    hub: Hub, tmp_path: Path
) -> None:
    hub.deploy(
        "flaky", {"main.py": FLAKY}, max_retries=3, retry_backoff_min_s=1, retry_backoff_max_s=2
    )
    task = hub.wait(hub.run("flaky", dir=str(tmp_path), fail_times=2)["id"], timeout=60)
    assert task["status"] == "completed", task
    assert task["retry_count"] == 2
    lines = hub.logs(task["id"])
    assert {line["attempt"] for line in lines} == {1, 2, 3}
    assert [line["text"] for line in lines if line["text"].startswith("attempt number")] == [
        "attempt number 1", "attempt number 2", "attempt number 3"]  # fmt: skip
    with hub.context.db.session() as session:
        items = session.scalars(select(Item).where(Item.task_id == uuid.UUID(task["id"]))).all()
    assert [(i.attempt, i.data) for i in items] == [(3, {"attempt": 3})]
    assert task["items_count"] == 1


def test_always_failing_spider_is_dead_lettered_alerted_and_signed_webhook_sent(
    hub: Hub, receiver: Receiver, tmp_path: Path
) -> None:
    channel = hub.client.post(
        "/api/channels", json={"kind": "webhook", "target": receiver.url, "secret": SECRET}
    )
    assert channel.status_code == 201, channel.text
    assert "secret" not in channel.json() and channel.json()["has_secret"] is True
    # Backoff with jitter: 1-2 s, then 2-4 s; apart enough that a loaded machine keeps the order.
    hub.deploy(
        "doomed", {"main.py": FLAKY}, max_retries=2, retry_backoff_min_s=2, retry_backoff_max_s=8
    )
    task = hub.wait(hub.run("doomed", dir=str(tmp_path), fail_times=99)["id"], timeout=60)
    assert task["status"] == "failed" and task["reason"] == "exit_code" and task["retry_count"] == 2
    starts = attempt_starts(hub, task["id"])
    assert len(starts) == 3
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 1.0 and gaps[1] > gaps[0], gaps  # exponential backoff

    alerts_page = hub.client.get("/api/alerts", params={"spider_id": "doomed"}).json()
    assert alerts_page["total"] == 1
    alert = alerts_page["items"][0]
    assert (alert["type"], alert["level"], alert["count"]) == ("task_failed", "error", 1)
    assert alert["task_id"] == task["id"]
    assert hub.client.get("/api/alerts/unread-count").json()["count"] >= 1

    deadline = time.monotonic() + 10
    dead: dict[str, Any] = {"items": []}
    while not dead["items"] and time.monotonic() < deadline:
        dead = hub.client.get("/api/queues/crawlhub.runs/dead-letters").json()
        time.sleep(0.1)
    assert [d["task_id"] for d in dead["items"]] == [task["id"]]
    letter = dead["items"][0]
    assert (letter["actor"], letter["spider"], letter["attempts"]) == ("run", "doomed", 3)
    assert letter["error"] == task["error_message"].splitlines()[-1]
    assert "RunFailed" not in letter["error"]
    queues = hub.client.get("/api/queues").json()
    runs = next(q for q in queues["queues"] if q["name"] == "crawlhub.runs")
    assert runs["dead_lettered"] == 1 and queues["workers"]

    receiver.wait_for(1)
    headers, body = receiver.requests[0]
    expected = (
        "sha256="
        + hmac.new(
            SECRET.encode(), headers["X-CrawlHub-Timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
    )
    assert hmac.compare_digest(headers["X-CrawlHub-Signature"], expected)
    payload = json.loads(body)
    assert payload["type"] == "task_failed" and payload["spider"] == "doomed"
    assert abs(int(headers["X-CrawlHub-Timestamp"]) - time.time()) < 60

    # The same failure again within the fold window: one alert, counted twice, no new webhook.
    for marker in tmp_path.glob("attempt-*"):
        marker.unlink()
    hub.client.patch("/api/spiders/doomed", json={"max_retries": 0})
    again = hub.wait(hub.run("doomed", dir=str(tmp_path), fail_times=99)["id"], timeout=30)
    assert again["status"] == "failed"
    folded = hub.client.get("/api/alerts", params={"spider_id": "doomed"}).json()
    assert folded["total"] == 1 and folded["items"][0]["count"] == 2
    assert folded["items"][0]["task_id"] == again["id"]
    time.sleep(1.0)
    assert len(receiver.requests) == 1
    deliveries = hub.client.get(f"/api/alerts/{alert['id']}/deliveries").json()["items"]
    assert [(d["status"], d["attempts"]) for d in deliveries] == [("delivered", 1)]

    # A requeue that conflicts (the run was requeued by other means and is pending) keeps the
    # dead letter: the task moves first, the letter goes after.
    requeue_url = f"/api/queues/crawlhub.runs/dead-letters/{dead['items'][0]['message_id']}/requeue"
    with hub.context.db.session() as session:
        session.execute(
            update(Task).where(Task.id == uuid.UUID(task["id"])).values(status="pending")
        )
    conflict = hub.client.post(requeue_url)
    assert conflict.status_code == 409, conflict.text
    kept = hub.client.get("/api/queues/crawlhub.runs/dead-letters").json()
    assert task["id"] in [d["task_id"] for d in kept["items"]]
    with hub.context.db.session() as session:
        session.execute(
            update(Task).where(Task.id == uuid.UUID(task["id"])).values(status="failed")
        )

    # Requeue from the dead-letter set reruns the task (now fixed); purge empties the set.
    (tmp_path / "fixed").write_text("yes")
    requeued = hub.client.post(requeue_url)
    assert requeued.status_code == 200, requeued.text
    rerun = hub.wait(task["id"], timeout=30)
    # A new series of attempts (max_retries is 0 now: one), numbered on from the last one.
    assert (rerun["status"], rerun["retry_count"], rerun["max_retries"]) == ("completed", 3, 3)
    assert {line["attempt"] for line in hub.logs(task["id"])} == {1, 2, 3, 4}
    assert {line["attempt"] for line in hub.logs(task["id"], attempt=1)} == {1}
    remaining = hub.client.get("/api/queues/crawlhub.runs/dead-letters").json()
    assert task["id"] not in [d["task_id"] for d in remaining["items"]]
    purged = hub.client.delete("/api/queues/crawlhub.runs/dead-letters")
    assert purged.status_code == 200
    assert hub.client.get("/api/queues/crawlhub.runs/dead-letters").json()["total"] == 0
    assert hub.client.post("/api/queues/crawlhub.runs/dead-letters/nope/requeue").status_code == 404
    assert hub.client.get("/api/queues/elsewhere/dead-letters").status_code == 404

    assert hub.client.post("/api/alerts/read-all").json()["count"] >= 1
    assert hub.client.get("/api/alerts/unread-count").json()["count"] == 0


def test_webhook_down_for_two_deliveries_succeeds_on_a_later_attempt(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outages, "DELIVERY_WAITS_S", (0.2, 0.2, 0.2, 0.2))
    flaky = Receiver(fail_first=2)
    healthy = Receiver()
    try:
        for url in (flaky.url, healthy.url):
            assert (
                hub.client.post(
                    "/api/channels", json={"kind": "webhook", "target": url}
                ).status_code
                == 201
            )
        hub.deploy("bad", {"main.py": "import sys\ndef run(p):\n    sys.exit(3)\n"}, max_retries=0)
        hub.wait(hub.run("bad")["id"])
        flaky.wait_for(3)
        healthy.wait_for(1)
        alert_id = hub.client.get("/api/alerts").json()["items"][0]["id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = hub.client.get(f"/api/alerts/{alert_id}/deliveries").json()["items"]
            if all(r["status"] == "delivered" for r in rows) and len(rows) == 2:
                break
            time.sleep(0.1)
        by_attempts = sorted((r["attempts"], r["status"], r["last_error"]) for r in rows)
        assert by_attempts == [(1, "delivered", None), (3, "delivered", None)]
        assert len(healthy.requests) == 1  # the failing channel never held the other one up
    finally:
        flaky.close()
        healthy.close()


@pytest.mark.parametrize("enabled", [True, False])
def test_zero_items_alert_only_when_enabled(hub: Hub, enabled: bool) -> None:
    hub.deploy("quiet", {"main.py": "def run(p):\n    return []\n"}, alert_on_zero_items=enabled)
    assert hub.wait(hub.run("quiet")["id"])["status"] == "completed"
    found = hub.client.get("/api/alerts", params={"spider_id": "quiet"}).json()["items"]
    assert [(a["type"], a["level"]) for a in found] == (
        [("zero_items", "warning")] if enabled else []
    )


def test_channel_api_validates_and_tests_channels(hub: Hub, receiver: Receiver) -> None:
    bad = [
        {"kind": "pager", "target": "https://x"},
        {"kind": "webhook", "target": "ftp://x"},
        {"kind": "email", "target": "not-an-address"},
        {"kind": "slack"},
        {"kind": "webhook", "target": "https://x", "min_level": "critical"},
    ]
    for body in bad:
        assert hub.client.post("/api/channels", json=body).status_code == 422, body
    created = hub.client.post(
        "/api/channels", json={"kind": "slack", "target": receiver.url}
    ).json()
    tested = hub.client.post(f"/api/channels/{created['id']}/test").json()
    assert tested == {"delivered": True, "status_code": 200, "error": None}
    assert json.loads(receiver.requests[0][1])["text"].startswith("CrawlHub info")
    patched = hub.client.patch(
        f"/api/channels/{created['id']}", json={"target": "http://127.0.0.1:1/x"}
    )
    assert patched.status_code == 200
    down = hub.client.post(f"/api/channels/{created['id']}/test").json()
    assert down["delivered"] is False and down["status_code"] is None
    assert down["error"].startswith("ConnectError")
    assert (
        hub.client.patch(f"/api/channels/{created['id']}", json={"kind": "email"}).status_code
        == 422
    )
    assert hub.client.delete(f"/api/channels/{created['id']}").status_code == 204
    assert hub.client.post(f"/api/channels/{created['id']}/test").status_code == 404


def test_sigkilled_worker_run_is_reaped_and_retried_by_another_worker(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """kill -9 of a worker mid-run: its spider dies with it, the task is retried, never stuck."""
    env = base_env(
        tmp_path, DATABASE_URL=pg_url, REDIS_URL=redis_url, CRAWLHUB_API_TOKENS="t",
        CRAWLHUB_HEARTBEAT_S="1", CRAWLHUB_LEASE_S="5", PORT=str(free_port()),
    )  # fmt: skip
    with running_hub(pg_url, tmp_path, redis_url, threads=0) as hub:  # API only, no worker threads
        hub.deploy("victim", {"main.py": """
            import os, time

            def run(params):
                print("pid", os.getpid(), flush=True)
                if os.environ["CRAWLHUB_ATTEMPT"] == "1":
                    time.sleep(600)
                return [{"survived": True}]
        """}, max_retries=1, retry_backoff_min_s=1, retry_backoff_max_s=2)  # fmt: skip
        first = Process(["worker"], env, tmp_path)
        ticker = Process(["ticker"], env, tmp_path)
        second = None
        try:
            task_id = hub.run("victim")["id"]
            hub.wait(task_id, {"running"}, timeout=30)
            deadline = time.monotonic() + 20
            pids: list[int] = []
            while not pids and time.monotonic() < deadline:
                if any(x["text"].startswith("pid ") for x in hub.logs(task_id)):
                    pids = processes_of(task_id)
                time.sleep(0.05)
            assert pids, "the spider never started"
            os.kill(first.proc.pid, signal.SIGKILL)
            first.proc.wait()
            deadline = time.monotonic() + 5
            while processes_of(task_id) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not any(map(pid_alive, pids)), "the spider outlived its worker"
            second = Process(["worker"], env, tmp_path)
            task = hub.wait(task_id, {"completed", "failed"}, timeout=60)
            attempts = {line["attempt"] for line in hub.logs(task_id)}
        finally:
            for proc in (ticker, second):
                if proc is not None:
                    proc.stop()
            first.out.close()
    assert task["status"] == "completed", task
    assert task["retry_count"] == 1 and task["items_count"] == 1
    assert attempts == {1, 2}  # the lost attempt's log stays under its number


def test_sigterm_to_a_worker_hands_its_long_run_to_another_worker(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """A deploy stops a worker mid-run: the spider is stopped, the run resumes elsewhere."""
    env = base_env(
        tmp_path, DATABASE_URL=pg_url, REDIS_URL=redis_url, CRAWLHUB_API_TOKENS="t",
        CRAWLHUB_SHUTDOWN_GRACE_S="1", PORT=str(free_port()),
    )  # fmt: skip
    marker = shared(tmp_path) / "started-once"  # where the workers' spiders may write
    with running_hub(pg_url, tmp_path, redis_url, threads=0) as hub:
        hub.deploy("long", {"main.py": f"""
            import os, time
            from pathlib import Path

            def run(params):
                marker = Path({str(marker)!r})
                print("pid", os.getpid(), flush=True)
                if not marker.exists():
                    marker.write_text("x")
                    yield {{"partial": True}}
                    time.sleep(600)
                yield {{"done": True}}
        """}, max_retries=0)  # fmt: skip
        first = Process(["worker"], env, tmp_path)
        second = None
        try:
            task_id = hub.run("long")["id"]
            hub.wait(task_id, {"running"}, timeout=30)
            deadline = time.monotonic() + 20
            pids: list[int] = []
            while not (pids and marker.exists()) and time.monotonic() < deadline:
                if any(x["text"].startswith("pid ") for x in hub.logs(task_id)):
                    pids = processes_of(task_id)
                time.sleep(0.05)
            assert pids, "the spider never started"
            second = Process(["worker"], env, tmp_path)
            assert first.stop(signal.SIGTERM, timeout=30) == 0, first.output()
            assert not any(map(pid_alive, pids))
            task = hub.wait(task_id, {"completed", "failed"}, timeout=60)
            texts = [x["text"] for x in hub.logs(task_id)]
        finally:
            for proc in (first, second):
                if proc is not None and proc.proc.poll() is None:
                    proc.stop()
    assert task["status"] == "completed", task
    assert task["retry_count"] == 0 and task["items_count"] == 1  # the partial item is gone
    assert any("the run starts again on another worker" in t for t in texts)
    assert "worker stopped" in first.output()


def test_an_unusable_channel_fails_alone_and_the_others_are_delivered(
    hub: Hub, receiver: Receiver
) -> None:
    with hub.context.db.session() as session:  # as stored before targets were checked strictly
        session.add(Channel(kind="webhook", target="http://[::1", min_level="info"))
    assert hub.client.post("/api/channels", json={"kind": "webhook",
                                                  "target": receiver.url}).status_code == 201  # fmt: skip
    hub.deploy("bad", {"main.py": "import sys\ndef run(p):\n    sys.exit(3)\n"}, max_retries=0)
    hub.wait(hub.run("bad")["id"])
    receiver.wait_for(1)
    alert_id = hub.client.get("/api/alerts").json()["items"][0]["id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = hub.client.get(f"/api/alerts/{alert_id}/deliveries").json()["items"]
        if len(rows) == 2 and all(r["attempts"] >= 1 for r in rows):
            break
        time.sleep(0.1)
    by_status = sorted((r["status"], r["attempts"], r["last_error"] or "") for r in rows)
    assert by_status[0] == ("delivered", 1, "")
    # Refused for good: no later attempt could make that URL valid.
    assert by_status[1] == ("failed", 1, "refused: target is not a valid URL: Invalid IPv6 URL")


def test_an_alert_whose_message_was_lost_is_delivered_by_the_ticker(
    hub: Hub, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert hub.client.post("/api/channels", json={"kind": "webhook",
                                                  "target": receiver.url}).status_code == 201  # fmt: skip

    def redis_down(*args: Any, **kwargs: Any) -> str:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(messages, "send_alert", redis_down)
    hub.deploy("bad", {"main.py": "import sys\ndef run(p):\n    sys.exit(3)\n"}, max_retries=0)
    hub.wait(hub.run("bad")["id"])
    time.sleep(0.5)
    assert receiver.requests == []  # the alert is committed with its pending delivery
    monkeypatch.undo()
    assert housekeeping.deliver(hub.context) is False  # the ticker's outbox step
    receiver.wait_for(1)
    headers, _ = receiver.requests[0]
    alert_id = hub.client.get("/api/alerts").json()["items"][0]["id"]
    [delivery] = hub.client.get(f"/api/alerts/{alert_id}/deliveries").json()["items"]
    assert delivery["status"] == "delivered"
    assert uuid.UUID(headers["X-CrawlHub-Delivery"])  # a stable id receivers can dedupe on
    housekeeping.deliver(hub.context)
    assert len(receiver.requests) == 1  # delivered once, not again


def test_every_attempt_of_a_delivery_carries_the_same_delivery_id(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outages, "DELIVERY_WAITS_S", (0.2, 0.2, 0.2, 0.2))
    flaky = Receiver(fail_first=2)
    try:
        assert hub.client.post("/api/channels", json={"kind": "webhook",
                                                      "target": flaky.url}).status_code == 201  # fmt: skip
        hub.deploy("bad", {"main.py": "import sys\ndef run(p):\n    sys.exit(3)\n"}, max_retries=0)
        hub.wait(hub.run("bad")["id"])
        flaky.wait_for(3)
        ids = {headers["X-CrawlHub-Delivery"] for headers, _ in flaky.requests}
        assert len(ids) == 1
    finally:
        flaky.close()


def test_the_count_of_queued_run_messages_follows_retries_and_dead_letters_and_ends_empty(
    hub: Hub, tmp_path: Path
) -> None:
    """The sweep looks tasks up in the broker's count of run messages per task (no read of
    whole queues): a waiting retry is counted, and once runs end, retried or dead-lettered,
    nothing is left in it."""
    client = redis.Redis.from_url(hub.context.settings.redis_url.get_secret_value())  # type: ignore[union-attr]
    hub.deploy("flaky", {"main.py": FLAKY}, max_retries=3, retry_backoff_min_s=2,
               retry_backoff_max_s=2)  # fmt: skip
    hub.deploy("never", {"main.py": "def run(p):\n    raise SystemExit(1)\n"}, max_retries=1,
               retry_backoff_min_s=1, retry_backoff_max_s=1)  # fmt: skip
    flaky = hub.run("flaky", dir=str(tmp_path), fail_times=1)["id"]
    never = hub.run("never")["id"]
    deadline = time.monotonic() + 30
    while hub.task(flaky)["status"] != "retrying":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert queues.queued_tasks(hub.context.broker, [flaky]) == {flaky}  # its delayed retry
    assert hub.wait(flaky, timeout=60)["status"] == "completed"
    assert hub.wait(never, timeout=60)["status"] == "failed"
    deadline = time.monotonic() + 10
    while client.hlen(QUEUED_RUNS):
        assert time.monotonic() < deadline, client.hgetall(QUEUED_RUNS)
        time.sleep(0.05)
    assert queues.queued_tasks(hub.context.broker, [flaky, never]) == set()
    client.close()


@pytest.mark.parametrize("broker", ["in-process", "redis"])
def test_a_run_waiting_its_backoff_counts_as_delayed_and_nothing_stays_in_flight(
    broker: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The queues' counts as an operator reads them: a run between two attempts is delayed
    (the in-process worker holds it until due), and after a requeue ran nothing is left in
    flight."""
    database = request.getfixturevalue("pg_url")
    redis_url = request.getfixturevalue("redis_url") if broker == "redis" else None
    flaky = ("import os, sys\ndef run(p):\n    if not os.path.exists(p['ok']):\n"
             "        sys.exit(3)\n    return [{'n': 1}]\n")  # fmt: skip
    with running_hub(database, tmp_path, redis_url) as hub:
        hub.deploy("wobbly", {"main.py": flaky}, max_retries=1, retry_backoff_min_s=4,
                   retry_backoff_max_s=4)  # fmt: skip
        ok = shared(tmp_path) / "ok"
        task_id = hub.run("wobbly", ok=str(ok))["id"]
        hub.wait(task_id, {"retrying"})
        time.sleep(0.5)  # the retry's message is sent as the attempt's ends
        runs = queues.overview(hub.context.broker)[0]
        assert (runs.name, runs.delayed, runs.in_flight) == ("crawlhub.runs", 1, 0), runs
        assert hub.wait(task_id, timeout=30)["status"] == "failed"
        deadline = time.monotonic() + 10  # dead-lettered just after the task failed
        while not (
            dead := hub.client.get("/api/queues/crawlhub.runs/dead-letters").json()["items"]
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ok.write_text("fixed")
        requeue = f"/api/queues/crawlhub.runs/dead-letters/{dead[0]['message_id']}/requeue"
        assert hub.client.post(requeue).status_code == 200
        hub.wait(task_id, {"running", "completed"})
        assert hub.wait(task_id)["status"] == "completed"
        time.sleep(0.5)
        runs = queues.overview(hub.context.broker)[0]
        assert (runs.ready, runs.delayed, runs.in_flight, runs.dead_lettered) == (0, 0, 0, 0)
