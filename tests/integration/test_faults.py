"""Faults around runs: database outages cost no retry, a stalled worker is fenced out, an
API without its database answers 503 (real PostgreSQL and Redis; real worker processes)."""

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.errors import ServiceUnavailable
from crawlhub.housekeeping import steps as housekeeping
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.models import Item, Spider, Task
from crawlhub.ticker import Ticker
from crawlhub.worker.capture import dedup_hash
from tests.conftest import TOKEN, make_settings
from tests.integration.harness import Hub, Outage, mode_settings, processes_of, running_hub
from tests.integration.test_processes import Process, base_env, crawlhub, free_port, shared

# How a database step fails, as SQLAlchemy raises it: the connection dropped, PostgreSQL
# chose this transaction as a deadlock's victim, the process's pool had no connection free.
FAILURES = {
    "connection": lambda name: OperationalError(name, {}, Exception("server closed the connection")),
    "deadlock": lambda name: OperationalError(
        name, {}, psycopg.errors.DeadlockDetected("deadlock detected")),
    "pool timeout": lambda name: PoolTimeout("QueuePool limit of size 10 overflow 10 reached"),
}  # fmt: skip


def fail_once(
    monkeypatch: pytest.MonkeyPatch, name: str, how: str = "connection"
) -> "itertools.count[int]":
    """The next call of a repo function fails as a dropped database connection (or another
    of FAILURES) does; the calls are counted."""
    real = getattr(task_repo, name)
    calls = itertools.count()

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        if next(calls) == 0:
            raise FAILURES[how](name)
        return real(*args, **kwargs)

    monkeypatch.setattr(task_repo, name, failing_once)
    return calls


QUICK = {"main.py": "def run(params):\n    print('ran', flush=True)\n    return [{'n': 1}]\n"}


@pytest.mark.parametrize("how", list(FAILURES))
@pytest.mark.parametrize("step", ["claim_run", "end_attempt"])
def test_a_database_blip_at_claim_or_record_costs_no_retry(
    step: str, how: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dropped connection, a deadlock or an exhausted pool is an outage wherever the run
    meets it: tried again, never a retry of the spider, never a dead letter."""
    with running_hub(database_url, tmp_path) as hub:
        hub.deploy("once", QUICK, max_retries=0)
        calls = fail_once(monkeypatch, step, how)
        task = hub.wait(hub.run("once")["id"])
        assert (task["status"], task["retry_count"], task["items_count"]) == ("completed", 0, 1)
        ran = [line for line in hub.logs(task["id"]) if line["text"] == "ran"]
        assert len(ran) == 1  # the spider ran once: the blip was retried, not the run
        assert next(calls) >= 2  # it failed once, then went through
        dead = hub.client.get("/api/queues/crawlhub.runs/dead-letters").json()
        assert dead["total"] == 0


LOCKED = """
import time

def run(params):
    yield {"n": 2}
    yield {"n": 1}  # written with the first: one batch, stored in this order
    time.sleep(params["sleep"])
"""


def deadlocks(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
                       ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def waiting_on_a_lock(conn: psycopg.Connection[Any], timeout: float = 30) -> None:
    """Until another backend of this database waits on a lock."""
    deadline = time.monotonic() + timeout
    while not conn.execute(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    ).fetchone():
        assert time.monotonic() < deadline, "no backend waits on a lock"
        time.sleep(0.05)


def test_a_real_deadlock_during_a_run_is_an_outage_not_a_retry(pg_url: str, tmp_path: Path) -> None:
    """PostgreSQL picks the run's write of its items as a deadlock's victim (a transaction of
    ours holds the dedup key of the run's second item, then asks for its first's): the write
    is tried again, the run completes on its first attempt with its items, nothing is dead."""
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    watch = psycopg.connect(plain, autocommit=True)
    with running_hub(pg_url, tmp_path) as hub:
        hub.deploy("locked", {"main.py": LOCKED}, max_retries=0, dedup_keys=["n"])
        spider_id = hub.client.get("/api/spiders/locked").json()["id"]
        with hub.context.db.session() as session:
            other = Task(spider_id=spider_id, trigger="manual", status="skipped",
                         created_at=datetime.now(UTC))  # fmt: skip
            session.add(other)
            session.flush()
            other_id = other.id
        before = deadlocks(watch)
        ours = psycopg.connect(plain)
        try:
            ours.execute("SET deadlock_timeout = '60s'")  # the run's side finds the deadlock
            insert = ("INSERT INTO item (spider_id, task_id, attempt, data, dedup_hash, "
                      "created_at) VALUES (%s, %s, 1, %s, %s, now())")  # fmt: skip
            # Uncommitted: the run's insert of the same key waits for us, holding its first.
            ours.execute(insert, (spider_id, other_id, '{"n": 1}', dedup_hash({"n": 1}, ["n"])))
            task_id = hub.run("locked", sleep=4)["id"]
            waiting_on_a_lock(watch)
            # Asking for the run's first key closes the cycle; PostgreSQL aborts the run's side
            # within its 1 s deadlock_timeout.
            ours.execute(insert, (spider_id, other_id, '{"n": 2}', dedup_hash({"n": 2}, ["n"])))
        finally:
            ours.rollback()
            ours.close()
        task = hub.wait(task_id, timeout=60)
        assert (task["status"], task["retry_count"], task["items_count"]) == ("completed", 0, 2)
        assert deadlocks(watch) > before  # a real one, detected by PostgreSQL
        dead = hub.client.get("/api/queues/crawlhub.runs/dead-letters").json()
        assert dead["total"] == 0
    watch.close()


def test_a_real_pool_timeout_during_a_run_is_an_outage_not_a_retry(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every connection of the worker's pool is taken while its run writes: the write waits
    the pool timeout, gives way as an outage and is tried again; once connections are free
    the run completes on its first attempt with its item."""
    with running_hub(pg_url, tmp_path, threads=1, db_pool_timeout_s=1) as hub:
        hub.deploy("starved", {"main.py": STEADY}, max_retries=0)
        task_id = hub.run("starved", count=16, pause=0.5)["id"]
        hub.wait(task_id, {"running"})
        time.sleep(0.5)
        engine = hub.context.db.engine
        held = []
        try:
            while True:  # take every connection the pool has and may add
                try:
                    held.append(engine.connect())
                except PoolTimeout:
                    break
            time.sleep(4)  # the run's writes meet an empty pool meanwhile
        finally:
            for connection in held:
                connection.close()
        task = hub.wait(task_id, timeout=60)
        assert (task["status"], task["retry_count"], task["items_count"]) == ("completed", 0, 16)
        assert "no free database connection" in caplog.text  # the pool did run dry
        assert [line["text"] for line in hub.logs(task_id, stream="stdout")] == [
            f"item {n}" for n in range(16)]  # fmt: skip
        dead = hub.client.get("/api/queues/crawlhub.runs/dead-letters").json()
        assert dead["total"] == 0


def test_the_api_answers_503_with_retry_after_when_the_database_is_down(tmp_path: Path) -> None:
    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    context = Context.build(make_settings(tmp_path, database_url=down))
    try:
        with TestClient(create_app(context), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            for path in ("/api/tasks", "/api/spiders", "/api/alerts/unread-count"):
                response = c.get(path)
                assert response.status_code == 503, (path, response.text)
                assert response.json()["error"]["code"] == "unavailable"
                assert response.headers["retry-after"] == "5"
    finally:
        context.close()


STEADY = """
import time

def run(params):
    for n in range(params["count"]):
        print(f"item {n}", flush=True)
        yield {"n": n}
        time.sleep(params["pause"])
"""


def test_a_stalled_worker_resumed_after_its_lease_is_fenced_out(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """SIGSTOP a worker mid-run past its lease; the reaper hands the run to another worker;
    SIGCONT: the old attempt stops at once and the run keeps only its new attempt's items."""
    env = base_env(tmp_path, CRAWLHUB_API_TOKENS=TOKEN, REDIS_URL=redis_url,
                   DATABASE_URL=pg_url.replace("postgresql+psycopg://", "postgres://"),
                   CRAWLHUB_LEASE_S="5", CRAWLHUB_HEARTBEAT_S="1",
                   CRAWLHUB_WORKER_CONCURRENCY="1")  # fmt: skip
    assert crawlhub("migrate", env=env, cwd=tmp_path).returncode == 0
    first = Process(["worker"], env, tmp_path)
    context = Context.build(make_settings(tmp_path, database_url=pg_url, redis_url=redis_url,
                                          lease_s=5, heartbeat_s=1))  # fmt: skip
    second: Process | None = None
    try:
        first.wait_output("worker ready")
        with TestClient(create_app(context), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            hub = Hub(context, c, tmp_path)
            hub.deploy("steady", {"main.py": STEADY}, max_retries=2, retry_backoff_min_s=1,
                       retry_backoff_max_s=1)  # fmt: skip
            task_id = hub.run("steady", count=40, pause=0.2)["id"]
            hub.wait(task_id, {"running"})
            time.sleep(1.5)  # some items of the first attempt are stored
            os.kill(first.proc.pid, signal.SIGSTOP)
            time.sleep(6.5)  # past the 5 s lease
            assert housekeeping.reap(context) is False
            assert hub.task(task_id)["status"] == "retrying"
            second = Process(["worker"], env, tmp_path)
            second.wait_output("worker ready")
            hub.wait(task_id, {"running"}, timeout=30)
            os.kill(first.proc.pid, signal.SIGCONT)  # the stalled attempt wakes up
            first.wait_output("lost its task to another attempt")
            task = hub.wait(task_id, timeout=60)
            assert task["status"] == "completed", task
            assert task["retry_count"] == 1 and task["items_count"] == 40
            with context.db.session() as session:
                rows = session.execute(
                    select(
                        func.count(), func.count(func.distinct(Item.data["n"].as_integer()))
                    ).where(Item.task_id == task_id)
                ).one()
            assert tuple(rows) == (40, 40)  # nothing doubled, nothing of the old attempt
            summaries = [line["text"] for line in hub.logs(task_id) if line["stream"] == "system"
                         and line["text"].startswith(("completed after", "fenced"))]  # fmt: skip
            assert summaries == [summaries[-1]] and summaries[0].startswith("completed after")
    finally:
        for process in (first, second):
            if process is not None:
                if process.proc.poll() is None:
                    os.kill(process.proc.pid, signal.SIGCONT)
                process.stop()
        context.close()


GATED = """
import os, time

def run(params):
    print("ran", flush=True)
    yield {"n": 1}
    yield {"n": 2}
    while not os.path.exists(params["gate"]):
        time.sleep(0.05)
    yield {"n": 3}
    yield {"n": 4}
"""


def test_an_outcome_outlasting_its_patience_in_an_outage_is_recorded_once_when_it_is_back(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The database goes away (a proxy drops every connection and refuses new ones) for the
    worker and the ticker just before a spider ends, and stays away past the run's patience
    (2 s here, 600 s by default) and past the lease (5 s): the worker keeps the outcome and
    the last items, nothing is reaped, and when the database is back the run is recorded
    once, completed, with every item and no retry counted."""
    outage = Outage("127.0.0.1", 5432)
    through = pg_url.replace("postgresql+psycopg://", "postgres://").replace(
        "127.0.0.1:5432", f"127.0.0.1:{outage.port}")  # fmt: skip
    assert through != pg_url
    env = base_env(tmp_path, CRAWLHUB_API_TOKENS=TOKEN, REDIS_URL=redis_url,
                   DATABASE_URL=through, CRAWLHUB_LEASE_S="5", CRAWLHUB_HEARTBEAT_S="1",
                   CRAWLHUB_RECORD_PATIENCE_S="2")  # fmt: skip
    assert crawlhub("migrate", env=env, cwd=tmp_path).returncode == 0
    worker, ticker = Process(["worker"], env, tmp_path), Process(["ticker"], env, tmp_path)
    context = Context.build(make_settings(tmp_path, database_url=pg_url, redis_url=redis_url))
    gate = shared(tmp_path) / "gate"
    try:
        worker.wait_output("worker ready")
        ticker.wait_output("ticker started")
        with TestClient(create_app(context), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            hub = Hub(context, c, tmp_path)
            hub.deploy("steady", {"main.py": GATED}, max_retries=2)
            task_id = hub.run("steady", gate=str(gate))["id"]
            deadline = time.monotonic() + 30
            while "ran" not in [line["text"] for line in hub.logs(task_id)]:
                assert time.monotonic() < deadline, hub.task(task_id)
                time.sleep(0.1)
            outage.cut()
            gate.touch()  # the spider ends during the outage
            worker.wait_output("its outcome (completed) is kept")
            time.sleep(12)  # past the patience, and more than twice the lease
            during = hub.task(task_id)
            assert (during["status"], during["retry_count"]) == ("running", 0), during
            assert [p.name for p in (tmp_path / "data" / "outcomes").glob("*/*.json")] == [
                f"{task_id}-1.json"]  # fmt: skip
            outage.restore()
            task = hub.wait(task_id, timeout=60)
            assert (task["status"], task["retry_count"], task["items_count"]) == (
                "completed", 0, 4), task  # fmt: skip
            texts = [line["text"] for line in hub.logs(task_id)]
            assert texts.count("ran") == 1  # the spider ran once
            assert len([t for t in texts if t.startswith("completed after")]) == 1, texts
            assert not [t for t in texts if "lost" in t], texts
            assert list((tmp_path / "data" / "outcomes").glob("*/*.json")) == []
            assert "lost (worker" not in ticker.output()  # the reaper charged nothing
    finally:
        for process in (worker, ticker):
            process.stop()
        outage.close()
        context.close()


LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"  # Debian's faketime


def test_a_worker_whose_clock_runs_90_s_behind_the_database_keeps_its_runs(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Heartbeats are stamped by the database's clock, not the worker's: a worker under
    `faketime -f -90s` (Debian's libfaketime) keeps its runs through a reaper that looks
    every half second, with a lease of 5 s."""
    env = base_env(tmp_path, CRAWLHUB_API_TOKENS=TOKEN, REDIS_URL=redis_url,
                   DATABASE_URL=pg_url.replace("postgresql+psycopg://", "postgres://"),
                   CRAWLHUB_LEASE_S="5", CRAWLHUB_HEARTBEAT_S="1",
                   CRAWLHUB_WORKER_CONCURRENCY="2")  # fmt: skip
    assert crawlhub("migrate", env=env, cwd=tmp_path).returncode == 0
    clock = subprocess.run([sys.executable, "-c", "import time; print(time.time())"],
                           env={"LD_PRELOAD": LIBFAKETIME, "FAKETIME": "-90s"},
                           capture_output=True, text=True)  # fmt: skip
    assert 85 < time.time() - float(clock.stdout) < 95  # libfaketime works here
    # libfaketime preloaded into the worker itself (the `faketime` command would stand between
    # the test and the worker, and not pass on its signals).
    behind = Process(["worker"], {**env, "LD_PRELOAD": LIBFAKETIME, "FAKETIME": "-90s"},
                     tmp_path)  # fmt: skip
    context = Context.build(make_settings(tmp_path, database_url=pg_url, redis_url=redis_url,
                                          lease_s=5, heartbeat_s=1))  # fmt: skip
    try:
        behind.wait_output("worker ready")
        with TestClient(create_app(context), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            hub = Hub(context, c, tmp_path)
            hub.deploy("slow", {"main.py": STEADY}, max_retries=2, retry_backoff_min_s=1,
                       retry_backoff_max_s=1)  # fmt: skip
            ids = [hub.run("slow", count=40, pause=0.2)["id"] for _ in range(2)]
            for task_id in ids:
                hub.wait(task_id, {"running"})
            deadline = time.monotonic() + 60
            while any(hub.task(t)["status"] == "running" for t in ids):
                assert time.monotonic() < deadline
                housekeeping.reap(context)
                time.sleep(0.5)
            for task_id in ids:
                task = hub.task(task_id)
                assert (task["status"], task["retry_count"], task["items_count"]) == (
                    "completed", 0, 40), task  # fmt: skip
                assert not [line for line in hub.logs(task_id) if "lost" in line["text"]]
            assert "lost its task" not in behind.output()
    finally:
        # Killed: libfaketime shifts the monotonic clock too, which stretches the timed waits
        # of Dramatiq's worker threads (their shutdown) by the offset.
        behind.stop(signal.SIGKILL)
        context.close()


FLAKY = """
import os

def run(params):
    if os.environ["CRAWLHUB_ATTEMPT"] == "1":
        raise SystemExit(3)
    return [{"n": 0}]
"""


def test_a_retry_whose_message_redis_lost_is_sent_again_within_minutes(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with running_hub(pg_url, tmp_path, redis_url=redis_url) as hub:
        hub.deploy("flaky", {"main.py": FLAKY}, max_retries=1, retry_backoff_min_s=3600,
                   retry_backoff_max_s=3600)  # fmt: skip
        task_id = hub.run("flaky")["id"]
        hub.wait(task_id, {"retrying"})
        time.sleep(1.0)  # Dramatiq's Retries files the delayed message after the commit

        def age_last_attempt() -> None:  # as if the attempt ended longer ago than the grace
            with hub.context.db.session() as session:
                session.execute(update(Task).where(Task.id == task_id).values(
                    heartbeat_at=func.now() - text("interval '3 minutes'")))  # fmt: skip

        age_last_attempt()
        housekeeping.sweep(hub.context)  # its retry waits an hour in the delay queue: kept
        time.sleep(1.0)
        assert hub.task(task_id)["status"] == "retrying"
        hub.context.broker.client.flushdb()  # type: ignore[attr-defined]
        housekeeping.sweep(hub.context)
        task = hub.wait(task_id, timeout=30)
        assert (task["status"], task["retry_count"], task["items_count"]) == ("completed", 1, 1)


def test_no_run_is_reaped_within_a_lease_of_the_database_coming_back(
    pg_url: str, tmp_path: Path
) -> None:
    """Workers could not heartbeat while the database was down: when it is back, their runs
    look stale, but each gets a full lease to heartbeat again before it is reaped."""
    context = Context.build(make_settings(tmp_path, database_url=pg_url, lease_s=60))
    try:
        with context.db.session() as session:
            spider = Spider.standalone(
                name="outage", kind="python", entry="main:run", current_version=1
            )
            session.add(spider)
            session.flush()
            task = Task(spider_id=spider.id, trigger="manual", status="running",
                        worker="w:1:t", heartbeat_at=datetime.now(UTC) - timedelta(minutes=5),
                        started_at=datetime.now(UTC) - timedelta(minutes=6))  # fmt: skip
            session.add(task)
        ticker = Ticker(context)
        ticker.stopping.set()  # no back-off pauses in this test

        def outage(_context: Context) -> bool:
            raise ServiceUnavailable("the database is unavailable (OperationalError)")

        ticker._step(outage)  # a step fails: the database is gone
        ticker.tick()  # it is back: the stale-looking run is left alone for a lease
        assert status_of(context, task.id) == "running"
        assert ticker.database_regained is not None
        ticker.database_regained -= 61  # a lease later, it would have heartbeat if alive
        ticker._next_housekeeping = 0.0
        ticker.tick()
        assert status_of(context, task.id) == "failed"
    finally:
        context.close()


def status_of(context: Context, task_id: Any) -> str | None:
    with context.db.session() as session:
        return task_repo.task_status(session, task_id)


def test_pooled_connections_the_server_ended_are_replaced_as_they_are_taken(pg_url: str) -> None:
    """No ping per transaction: a pooled connection whose backend PostgreSQL ended (a restart,
    pg_terminate_backend) is noticed as it is taken, without a round trip, and replaced; the
    transaction that takes it does not fail."""
    from crawlhub.repo.db import Database

    db = Database(pg_url, pool_size=2)
    try:
        backends = []
        with db.session() as first, db.session() as second:  # two connections in the pool
            for session in (first, second):
                backends.append(session.execute(text("SELECT pg_backend_pid()")).scalar())
        with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
            for pid in backends:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.2)  # the backends' ends reach the pooled sockets
        for _ in range(3):
            with db.session() as session:
                pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
            assert pid not in backends
    finally:
        db.dispose()


def test_sqlite_reads_do_not_wait_for_the_write_lock(migrated_sqlite: str) -> None:
    """Embedded mode: a page view or a log poll reads beside a writer instead of queueing on
    SQLite's write lock; writers still take turns."""
    from crawlhub.repo.db import Database

    db = Database(migrated_sqlite)
    holding = threading.Event()

    def long_write() -> None:
        with db.session() as session:
            session.execute(text("UPDATE spider SET enabled = enabled"))
            holding.set()
            time.sleep(1.5)

    writer = threading.Thread(target=long_write)
    writer.start()
    try:
        assert holding.wait(5)
        started = time.monotonic()
        with db.read() as session:
            session.execute(text("SELECT count(*) FROM task")).scalar()
        assert time.monotonic() - started < 0.5
        started = time.monotonic()
        with db.session() as session:
            session.execute(text("SELECT count(*) FROM task")).scalar()
        assert time.monotonic() - started > 0.5  # a writing transaction waits its turn
    finally:
        writer.join()
        db.dispose()


def test_stalled_export_downloads_leave_the_api_answering(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Six clients start a 30 MB export each and stop reading; with a pool of 2 + 2
    connections the API still answers at once (exports hold no connection while waiting)."""
    port = free_port()
    env = base_env(tmp_path, PORT=str(port), CRAWLHUB_API_TOKENS=TOKEN, REDIS_URL=redis_url,
                   DATABASE_URL=pg_url.replace("postgresql+psycopg://", "postgres://"),
                   CRAWLHUB_DB_POOL_SIZE="2")  # fmt: skip
    context = Context.build(make_settings(tmp_path, database_url=pg_url))
    with context.db.session() as session:
        spider = Spider.standalone(name="big", kind="python", entry="main:run", current_version=1)
        session.add(spider)
        session.flush()
        task = Task(spider_id=spider.id, trigger="manual", status="completed")
        session.add(task)
        session.flush()
        session.execute(
            text("INSERT INTO item (spider_id, task_id, attempt, data, created_at) "
                 "SELECT :spider, :task, 1, jsonb_build_object('n', g, 'text', repeat('x', 500)), "
                 "now() FROM generate_series(1, 60000) AS g"),
            {"spider": spider.id, "task": task.id},
        )  # fmt: skip
    context.close()
    web = Process(["web"], env, tmp_path)
    stalled: list[socket.socket] = []
    try:
        web.wait_for(f"http://127.0.0.1:{port}/healthz")
        request = (f"GET /api/data/export/jsonl?task_id={task.id} HTTP/1.1\r\n"
                   f"Host: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").encode()  # fmt: skip
        for _ in range(6):
            client = socket.create_connection(("127.0.0.1", port))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.sendall(request)
            stalled.append(client)  # and never read
        time.sleep(3)
        started = time.monotonic()
        response = httpx.get(f"http://127.0.0.1:{port}/api/tasks",
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)  # fmt: skip
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 2.0
    finally:
        for client in stalled:
            client.close()
        web.stop()


FIVE = "def run(params):\n    return [{'n': n} for n in range(5)]\n"


def test_redis_down_when_a_run_ends_still_cleans_up_and_the_summary_counts_every_item(
    pg_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_hub(pg_url, tmp_path, redis_url=redis_url) as hub:

        def redis_down(_key: str) -> None:
            raise redis.ConnectionError("Error 111 connecting to Redis. Connection refused.")

        monkeypatch.setattr(hub.context.live, "finish", redis_down)
        hub.deploy("five", {"main.py": FIVE})
        task = hub.wait(hub.run("five")["id"])
        assert (task["status"], task["items_count"]) == ("completed", 5)
        work = hub.context.settings.data_dir / "work"

        def left() -> list[Path]:  # in the slots: their (empty) tmp only, once a run ends
            return [p for slot in work.iterdir() for p in slot.rglob("*") if p.name != "tmp"]

        deadline = time.monotonic() + 5
        while left() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left() == []  # the work dir went, Redis or not
        summary = [line["text"] for line in hub.logs(task["id"])
                   if line["text"].startswith("completed after")]  # fmt: skip
        assert len(summary) == 1 and ": 5 items," in summary[0], summary


ESCAPE = """
import os, time

def run(params):
    if os.fork() == 0:
        os.setsid()  # out of the run's process group, then orphaned: the group kill misses it
        if os.fork() == 0:
            print("escaped", flush=True)
            time.sleep(300)  # holding the run's stdout, stderr and item pipes
        os._exit(0)
    time.sleep(0.5)
    return [{"n": 1}]
"""


@pytest.mark.parametrize("mode", ["bwrap", "users"])
def test_a_process_that_escaped_the_run_and_holds_its_pipes_does_not_hold_the_worker(
    database_url: str, tmp_path: Path, mode: str
) -> None:
    with running_hub(database_url, tmp_path, **mode_settings(mode)) as hub:
        hub.deploy("escape", {"main.py": ESCAPE})
        started = time.monotonic()
        task = hub.wait(hub.run("escape")["id"], timeout=60)
        took = time.monotonic() - started
        assert (task["status"], task["items_count"]) == ("completed", 1)
        assert took < 8, f"the worker waited {took:.1f} s on the escaped process's pipes"
        assert "escaped" in [line["text"] for line in hub.logs(task["id"], stream="stdout")]
        assert processes_of(task["id"]) == []


STUBBORN_ESCAPE = """
import os, signal, time

def run(params):
    if os.fork() == 0:
        os.setsid()  # out of the run's group; SIGTERM ignored, so only SIGKILL ends it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.fork() == 0:
            os.closerange(0, 1024)  # holds no pipe of the run: the worker cannot find it so
            time.sleep(300)
        os._exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("started", flush=True)
    time.sleep(300)
"""


@pytest.mark.parametrize("mode", ["bwrap", "users"])
def test_cancel_and_timeout_end_every_process_of_the_run_escaped_ones_included(
    database_url: str, tmp_path: Path, mode: str
) -> None:
    with running_hub(database_url, tmp_path, kill_grace_s=0.5, **mode_settings(mode)) as hub:
        hub.deploy("stubborn", {"main.py": STUBBORN_ESCAPE}, max_retries=0)
        hub.deploy("late", {"main.py": STUBBORN_ESCAPE}, max_retries=0, timeout_s=6)
        cancelled, timed_out = hub.run("stubborn")["id"], hub.run("late")["id"]
        for task_id in (cancelled, timed_out):
            deadline = time.monotonic() + 5
            while len(processes_of(task_id)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(processes_of(task_id)) == 2  # the spider, the escaped one
        assert hub.client.post(f"/api/tasks/{cancelled}/cancel").status_code == 200
        for task_id, status in ((cancelled, "cancelled"), (timed_out, "failed")):
            assert hub.wait(task_id, timeout=30)["status"] == status
            deadline = time.monotonic() + 5
            while processes_of(task_id) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert processes_of(task_id) == [], f"{status}: a process outlived its run"


CHATTY = """
def run(params):
    line = "x" * 8000
    for n in range(params["lines"]):
        print(n, line, flush=n % 100 == 0)
    return [{"done": True}]
"""


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis of its own with 24 MB of memory and no eviction, as the queues need it."""
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--maxmemory", "24mb",
                               "--maxmemory-policy", "noeviction", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL)  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    client.close()
    yield url
    server.terminate()
    server.wait()


def test_chatty_runs_cannot_fill_redis_so_that_enqueueing_fails(
    pg_url: str, small_redis: str, tmp_path: Path
) -> None:
    """Three runs print 60 MB each into a Redis of 24 MB: their live streams are capped by
    bytes and live lines pause near maxmemory, so other runs are still enqueued and run, and
    every line is in the database."""
    with running_hub(pg_url, tmp_path, small_redis, threads=4) as hub:
        hub.deploy("chatty", {"main.py": CHATTY}, max_retries=0)
        hub.deploy("quiet", {"main.py": "def run(p):\n    return [{'ok': 1}]\n"})
        chatty = [hub.run("chatty", lines=7500)["id"] for _ in range(3)]
        deadline = time.monotonic() + 60
        while sum(hub.task(t)["log_lines"] for t in chatty) < 6000:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        client = redis.Redis.from_url(small_redis)
        used = int(client.info("memory")["used_memory"])
        assert used < 24 * 1024 * 1024
        quiet = hub.wait(hub.run("quiet")["id"], timeout=60)  # enqueued amid the noise
        assert quiet["status"] == "completed", quiet
        for task_id in chatty:
            task = hub.wait(task_id, timeout=120)
            assert (task["status"], task["log_lines"]) == ("completed", 7500), task
        streams = [k for k in client.scan_iter("crawlhub:task:*:log")]
        assert all(client.xlen(k) <= 250 for k in streams)  # trimmed when their runs ended
        client.close()


def test_an_ack_redis_did_not_take_is_sent_again_and_nothing_stays_in_flight(
    pg_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis times out (paused, overloaded) just as a finished run's message is acknowledged
    (Dramatiq itself retries only a dropped connection): the worker keeps the ack and sends
    it with its next look at the queue, so the run does not stay "in flight" (held by the
    worker) until the worker restarts."""
    client = redis.Redis.from_url(redis_url)

    def held() -> int:
        return sum(client.scard(key) for key in client.scan_iter("dramatiq:__acks__.*runs"))

    gate = shared(tmp_path) / "gate"
    with running_hub(pg_url, tmp_path, redis_url, threads=2) as hub:
        broker: Any = hub.context.broker
        real, calls = broker.do_ack, itertools.count()

        def dropped_once(*args: Any) -> Any:
            if next(calls) == 0:
                raise redis.TimeoutError("Timeout reading from socket")
            return real(*args)

        monkeypatch.setattr(broker, "do_ack", dropped_once)
        hub.deploy("gated", {"main.py": GATED})
        task_id = hub.run("gated", gate=str(gate))["id"]
        hub.wait(task_id, {"running"})
        assert held() == 1  # its message, being worked on
        gate.touch()
        assert hub.wait(task_id, timeout=60)["status"] == "completed"
        deadline = time.monotonic() + 15
        while held():
            assert time.monotonic() < deadline, "the ack was never sent"
            time.sleep(0.1)
        assert next(calls) >= 2  # the first ack failed, a later one went through
    client.close()
