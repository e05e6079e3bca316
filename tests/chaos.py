"""`make chaos`: CrawlHub under faults, on a private PostgreSQL cluster and a private Redis.

It starts a PostgreSQL cluster of its own (`initdb` on a free port, in a temporary
directory), a `redis-server` of its own (AOF on), then `crawlhub migrate`, the web, two
workers and two tickers as real processes (lease 10 s, heartbeat 1 s), and runs each
scenario against them. Every scenario checks what an operator would: tasks stuck, items
lost, items doubled, duplicate fires, alerts lost or doubled, and the time to recover. The
table it prints goes into docs/reliability.md.

    .venv/bin/python -m tests.chaos [--only NAME ...] [--ticker-minutes 3]

Not part of `make test` (it takes about a quarter of an hour); the fast scenarios (kill -9,
SIGSTOP, Redis FLUSHALL, a bad channel) have tests of their own in the suite.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from tests.integration.test_faults import CHATTY, FLAKY, LIBFAKETIME, STEADY
from tests.integration.test_processes import Process, base_env, free_port
from tests.integration.test_retries_alerts import Receiver

TOKEN = "chaos-token-0123456789"
FINISHED = {"completed", "failed", "cancelled", "skipped"}
LEASE_S = 10
RECORD_PATIENCE_S = 5  # a finished run waits this long for the database, then is recorded later
QUICK = "def run(params):\n    return [{'n': 0}]\n"
FAILING = "import sys\ndef run(params):\n    sys.exit(3)\n"


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Postgres:
    """A private PostgreSQL cluster in a directory of its own, on a free port."""

    def __init__(self, root: Path) -> None:
        self.bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
        self.dir = root / "pg"
        self.dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        subprocess.run(as_postgres([str(self.bin / "initdb"), "-D", str(self.dir), "-A", "trust",
                                    "-U", "postgres", "--no-sync"]),
                       check=True, capture_output=True)  # fmt: skip
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir), "-l",
                                    str(self.dir / "log"), "-w", "-o", options, *args]),
                       check=True, capture_output=True)  # fmt: skip

    def start(self) -> None:
        self.ctl("start")

    def stop(self) -> None:
        self.ctl("stop", "-m", "fast")


class Redis:
    """A private redis-server with AOF on (what production runs), on a free port."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.dir), "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        assert self.proc is not None
        redis.Redis.from_url(self.url).shutdown()  # writes the AOF out, as a restart does
        self.proc.wait(10)


@dataclass
class Outcome:
    """What one scenario found."""

    scenario: str
    stuck: int = 0
    items_lost: int = 0
    items_doubled: int = 0
    duplicate_fires: int = 0
    alerts_lost: int = 0
    alerts_doubled: int = 0
    recovery_s: float | None = None
    note: str = ""


class Fleet:
    """Web, two workers and two tickers on the private services, and an API client."""

    def __init__(self, root: Path, pg: Postgres, rds: Redis) -> None:
        self.root = root
        self.port = free_port()
        self.env = base_env(root, PORT=str(self.port), CRAWLHUB_API_TOKENS=TOKEN,
                            DATABASE_URL=pg.url, REDIS_URL=rds.url,
                            CRAWLHUB_LEASE_S=str(LEASE_S), CRAWLHUB_HEARTBEAT_S="1",
                            CRAWLHUB_WORKER_CONCURRENCY="4",
                            CRAWLHUB_SHUTDOWN_GRACE_S="2",
                            CRAWLHUB_RECORD_PATIENCE_S=str(RECORD_PATIENCE_S),
                            CRAWLHUB_CHANNEL_ALLOW_HOSTS="127.0.0.1")  # fmt: skip
        subprocess.run([sys.executable, "-m", "crawlhub", "migrate"], env=self.env, cwd=root,
                       check=True, capture_output=True)  # fmt: skip
        self.procs: dict[str, Process] = {}
        for name in ("web", "worker-a", "worker-b", "ticker-a", "ticker-b"):
            self.start(name)
        self.procs["web"].wait_for(f"http://127.0.0.1:{self.port}/readyz")
        for name in ("worker-a", "worker-b"):
            self.procs[name].wait_output("worker ready")
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30,
                                headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        self.deployed: set[str] = set()

    def start(self, name: str, **env: str) -> Process:
        process = Process([name.split("-")[0]], {**self.env, **env}, self.root)
        self.procs[name] = process
        return process

    def stop_all(self) -> None:
        for process in self.procs.values():
            if process.proc.poll() is None:
                os.kill(process.proc.pid, signal.SIGCONT)
                process.stop()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """An API call, tried again while the API answers 503 (an outage in progress)."""
        for _ in range(120):
            try:
                response = self.api.request(method, path, **kwargs)
            except httpx.TransportError:
                time.sleep(0.5)
                continue
            if response.status_code == 503:
                time.sleep(0.5)
                continue
            assert response.status_code < 400, (path, response.text)
            return response.json() if response.content else None
        raise RuntimeError(f"{path}: no answer")

    def deploy(self, name: str, source: str, **spider: Any) -> None:
        if name in self.deployed:
            return
        self.call("POST", "/api/spiders", json={"name": name, "kind": "python", **spider})
        self.call("POST", f"/api/spiders/{name}/versions",
                  files={"file": ("main.py", source.encode())})  # fmt: skip
        self.deployed.add(name)

    def run(self, name: str, **params: Any) -> str:
        return str(self.call("POST", f"/api/spiders/{name}/run", json={"params": params})["id"])

    def task(self, task_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/api/tasks/{task_id}"))

    def wait(self, ids: list[str], timeout: float) -> tuple[dict[str, dict[str, Any]], float]:
        """The tasks once all finished (or at the timeout), and how long that took."""
        started = time.monotonic()
        tasks: dict[str, dict[str, Any]] = {}
        while time.monotonic() - started < timeout:
            tasks = {i: self.task(i) for i in ids}
            if all(t["status"] in FINISHED for t in tasks.values()):
                break
            time.sleep(0.5)
        return tasks, time.monotonic() - started

    def worker_of(self, task_id: str) -> str:
        """The process name of the worker running a task."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            task = self.task(task_id)
            if task["status"] == "running" and task["worker"]:
                pid = int(task["worker"].split(":")[1])
                for name, process in self.procs.items():
                    if process.proc.pid == pid:
                        return name
            time.sleep(0.2)
        raise RuntimeError(f"task {task_id} did not start")

    def items_of(self, task_id: str) -> list[int]:
        rows: list[int] = []
        after = 0
        while True:
            page = self.call("GET", "/api/data", params={"task_id": task_id, "after_id": after,
                                                         "page_size": 1000})  # fmt: skip
            rows += [item["data"]["n"] for item in page["items"]]
            if not page["items"]:
                return rows
            after = page["next_after_id"]


def steady_check(fleet: Fleet, name: str, ids: list[str], count: int, started: float,
                 timeout: float = 180, note: str = "") -> Outcome:  # fmt: skip
    """Wait for steady runs and count what each completed one kept."""
    tasks, _ = fleet.wait(ids, timeout)
    outcome = Outcome(name, note=note)
    outcome.stuck = sum(t["status"] not in FINISHED for t in tasks.values())
    for task_id, task in tasks.items():
        if task["status"] != "completed":
            outcome.note += f" {task_id[:8]} {task['status']}/{task['reason']}"
            continue
        items = fleet.items_of(task_id)
        outcome.items_lost += count - len(set(items))
        outcome.items_doubled += len(items) - len(set(items))
    outcome.recovery_s = time.monotonic() - started
    return outcome


def steady_runs(fleet: Fleet, n: int, count: int = 60, pause: float = 0.1) -> list[str]:
    fleet.deploy("steady", STEADY, max_retries=3, retry_backoff_min_s=1, retry_backoff_max_s=2)
    return [fleet.run("steady", count=count, pause=pause) for _ in range(n)]


def kill_worker(fleet: Fleet) -> Outcome:
    ids = steady_runs(fleet, 4)
    victim = fleet.worker_of(ids[0])
    time.sleep(1.5)
    fleet.procs[victim].proc.kill()
    started = time.monotonic()
    fleet.start(victim).wait_output("worker ready")
    return steady_check(fleet, "kill -9 a worker mid-run", ids, 60, started)


def stall_worker(fleet: Fleet) -> Outcome:
    ids = steady_runs(fleet, 2, count=80, pause=0.15)
    victim = fleet.worker_of(ids[0])
    time.sleep(1.5)
    os.kill(fleet.procs[victim].proc.pid, signal.SIGSTOP)
    time.sleep(LEASE_S + 8)
    os.kill(fleet.procs[victim].proc.pid, signal.SIGCONT)
    started = time.monotonic()
    return steady_check(fleet, "SIGSTOP a worker past its lease, then SIGCONT", ids, 80, started)


def terminate_worker(fleet: Fleet) -> Outcome:
    ids = steady_runs(fleet, 2, count=100, pause=0.1)
    victim = fleet.worker_of(ids[0])
    time.sleep(1.0)
    started = time.monotonic()
    assert fleet.procs[victim].stop() == 0
    fleet.start(victim).wait_output("worker ready")
    return steady_check(fleet, "SIGTERM a worker mid-run", ids, 100, started)


def restart_redis(fleet: Fleet, rds: Redis) -> Outcome:
    ids = steady_runs(fleet, 4)
    fleet.worker_of(ids[0])
    started = time.monotonic()
    rds.stop()
    time.sleep(2)
    rds.start()
    return steady_check(fleet, "Redis restart mid-run (AOF)", ids, 60, started)


def flush_redis(fleet: Fleet, rds: Redis) -> Outcome:
    fleet.deploy("flaky", FLAKY, max_retries=1, retry_backoff_min_s=3600,
                 retry_backoff_max_s=3600)  # fmt: skip
    retrying = fleet.run("flaky")
    deadline = time.monotonic() + 60
    while fleet.task(retrying)["status"] != "retrying" and time.monotonic() < deadline:
        time.sleep(0.2)
    for name in ("worker-a", "worker-b"):  # no consumer: new runs stay pending in Redis
        fleet.procs[name].stop()
    fleet.deploy("quick", QUICK)
    pending = [fleet.run("quick") for _ in range(5)]
    redis.Redis.from_url(rds.url).flushall()
    started = time.monotonic()
    for name in ("worker-a", "worker-b"):
        fleet.start(name).wait_output("worker ready")
    outcome = steady_check(fleet, "Redis FLUSHALL with pending and retrying runs",
                           [retrying, *pending], 1, started, timeout=300)  # fmt: skip
    return outcome


def restart_postgres(fleet: Fleet, pg: Postgres) -> Outcome:
    ids = steady_runs(fleet, 4)
    fleet.worker_of(ids[0])
    started = time.monotonic()
    pg.stop()
    pg.start()
    return steady_check(fleet, "PostgreSQL fast restart mid-run", ids, 60, started)


def postgres_outage(fleet: Fleet, pg: Postgres) -> Outcome:
    ids = steady_runs(fleet, 8, count=300, pause=0.2)
    for task_id in ids:
        fleet.worker_of(task_id)
    pg.stop()
    time.sleep(30)
    pg.start()
    started = time.monotonic()
    outcome = steady_check(fleet, "PostgreSQL down 30 s mid-run", ids, 300, started, timeout=300)
    reaped = sum(fleet.task(i)["retry_count"] > 0 for i in ids)
    outcome.note += f" {reaped} of {len(ids)} runs reaped"
    return outcome


def long_postgres_outage(fleet: Fleet, pg: Postgres) -> Outcome:
    """PostgreSQL down for 40 s, across the end of 8 runs: longer than a run's patience
    (RECORD_PATIENCE_S here) and than the lease, so the outcomes wait in the workers'
    ledgers and are recorded when it is back, none reaped, none retried."""
    ids = steady_runs(fleet, 8, count=30, pause=0.1)
    for task_id in ids:
        fleet.worker_of(task_id)
    pg.stop()
    time.sleep(40)  # the runs end about 3 s in
    pg.start()
    started = time.monotonic()
    outcome = steady_check(fleet, f"PostgreSQL down 40 s across the runs' ends (patience "
                           f"{RECORD_PATIENCE_S} s, lease {LEASE_S} s)", ids, 30, started)  # fmt: skip
    retried = sum(fleet.task(i)["retry_count"] > 0 for i in ids)
    outcome.note += f" {retried} of {len(ids)} runs retried"
    return outcome


def clock_behind(fleet: Fleet) -> Outcome:
    """One worker's wall clock 90 s behind the database (libfaketime): heartbeats and leases
    are on the database's clock, so none of its runs is reaped."""
    fleet.procs["worker-b"].stop()
    behind = fleet.start("worker-b", LD_PRELOAD=LIBFAKETIME, FAKETIME="-90s")
    behind.wait_output("worker ready")
    fleet.procs["worker-a"].proc.send_signal(signal.SIGSTOP)  # every run goes to worker-b
    try:
        ids = steady_runs(fleet, 4, count=100, pause=0.1)
        started = time.monotonic()
        outcome = steady_check(fleet, "a worker 90 s behind the database's clock", ids, 100,
                               started)  # fmt: skip
    finally:
        fleet.procs["worker-a"].proc.send_signal(signal.SIGCONT)
    retried = sum(fleet.task(i)["retry_count"] > 0 for i in ids)
    outcome.note += f" {retried} of {len(ids)} runs reaped"
    behind.stop(signal.SIGKILL)  # libfaketime stretches the timed waits of its shutdown
    fleet.start("worker-b").wait_output("worker ready")
    return outcome


def chatty_runs(fleet: Fleet, rds: Redis) -> Outcome:
    """Redis capped at 16 MB (noeviction, as the queues need), 4 runs printing 60 MB each,
    and 40 steady runs sent amid them: live streams are capped by bytes and live lines pause
    near maxmemory, so every enqueue is taken and every line is in the database."""
    client = redis.Redis.from_url(rds.url)
    client.config_set("maxmemory", 16 * 1024 * 1024)
    client.config_set("maxmemory-policy", "noeviction")
    fleet.deploy("chatty", CHATTY, max_retries=0)
    try:
        chatty = [fleet.run("chatty", lines=7500) for _ in range(4)]
        time.sleep(3)  # the streams are filling
        started = time.monotonic()
        ids = steady_runs(fleet, 40, count=20, pause=0.01)
        peak = 0
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            peak = max(peak, int(client.info("memory")["used_memory"]))
            if all(fleet.task(i)["status"] in FINISHED for i in ids + chatty):
                break
            time.sleep(0.5)
        outcome = steady_check(fleet, "4 runs printing 60 MB each into a Redis of 16 MB, 40 runs "
                               "sent amid them", ids, 20, started)  # fmt: skip
        tasks = [fleet.task(i) for i in chatty]
        short = sum(t["status"] != "completed" or t["log_lines"] != 7500 for t in tasks)
        outcome.stuck += sum(t["status"] not in FINISHED for t in tasks)
        outcome.note += (f" Redis peak {peak / 2**20:.0f} MB of 16; {short} of 4 chatty runs "
                         f"short of their 7500 lines in the database")  # fmt: skip
        return outcome
    finally:
        client.config_set("maxmemory", 0)
        client.close()


def two_tickers(fleet: Fleet, minutes: float) -> Outcome:
    fleet.deploy("tick", QUICK, max_retries=0)
    with psycopg.connect(fleet.env["DATABASE_URL"]) as conn:
        conn.execute(
            "INSERT INTO schedule (id, spider_id, cron, timezone, params, enabled, overlap, "
            "catchup, jitter_s, next_fire_at, created_at, updated_at) "
            "SELECT gen_random_uuid(), id, '* * * * *', 'UTC', '{}'::jsonb, true, 'allow', "
            "'latest', 0, date_trunc('minute', now()) + interval '1 minute', now(), now() "
            "FROM spider, generate_series(1, 200) WHERE name = 'tick'"
        )
    started = time.monotonic()
    time.sleep(minutes * 60 + 5)
    with psycopg.connect(fleet.env["DATABASE_URL"]) as conn:
        conn.execute("UPDATE schedule SET enabled = false")
        fires, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (schedule_id, scheduled_for)) FROM task "
            "WHERE schedule_id IS NOT NULL"
        ).fetchone() or (0, 0)
        late = conn.execute(
            "SELECT count(*) FROM task WHERE schedule_id IS NOT NULL AND status <> 'completed'"
        ).fetchone()
    outcome = Outcome(f"two tickers x 200 minutely schedules x {minutes:g} min")
    outcome.duplicate_fires = fires - distinct
    outcome.stuck = int(late[0]) if late else 0
    outcome.recovery_s = time.monotonic() - started
    outcome.note = f"{fires} fires for {distinct} due times"
    return outcome


def burst(fleet: Fleet) -> Outcome:
    fleet.deploy("quick", QUICK)
    started = time.monotonic()
    ids = [fleet.run("quick") for _ in range(500)]
    outcome = steady_check(fleet, "500 runs at once", ids, 1, started, timeout=600)
    outcome.note += f" all done in {time.monotonic() - started:.0f} s"
    return outcome


def bad_channel(fleet: Fleet) -> Outcome:
    good = Receiver()
    try:
        with psycopg.connect(fleet.env["DATABASE_URL"]) as conn:
            conn.execute("INSERT INTO channel (id, kind, target, min_level, enabled, created_at) "
                         "VALUES (gen_random_uuid(), 'webhook', 'http://[::1', 'info', true, "
                         "now())")  # fmt: skip
        fleet.call("POST", "/api/channels", json={"kind": "webhook", "target": good.url,
                                                  "min_level": "info"})  # fmt: skip
        fleet.deploy("doomed", FAILING, max_retries=0)
        started = time.monotonic()
        fleet.wait([fleet.run("doomed")], 60)
        time.sleep(10)
        outcome = Outcome("a channel with an unusable URL beside a good one")
        outcome.alerts_lost = 1 - min(len(good.requests), 1)
        outcome.alerts_doubled = max(len(good.requests) - 1, 0)
        outcome.recovery_s = time.monotonic() - started
        return outcome
    finally:
        good.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="scenario function names")
    parser.add_argument("--ticker-minutes", type=float, default=3.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="crawlhub-chaos-"))
    root.chmod(0o711)  # as root, spiders run as another user and must reach their work dirs
    root.chmod(0o755)
    pg, rds = Postgres(root), Redis(root)
    pg.start()
    rds.start()
    fleet = Fleet(root, pg, rds)
    scenarios: dict[str, Callable[[], Outcome]] = {
        "kill_worker": lambda: kill_worker(fleet),
        "stall_worker": lambda: stall_worker(fleet),
        "terminate_worker": lambda: terminate_worker(fleet),
        "restart_redis": lambda: restart_redis(fleet, rds),
        "flush_redis": lambda: flush_redis(fleet, rds),
        "restart_postgres": lambda: restart_postgres(fleet, pg),
        "postgres_outage": lambda: postgres_outage(fleet, pg),
        "long_postgres_outage": lambda: long_postgres_outage(fleet, pg),
        "clock_behind": lambda: clock_behind(fleet),
        "chatty_runs": lambda: chatty_runs(fleet, rds),
        "two_tickers": lambda: two_tickers(fleet, args.ticker_minutes),
        "burst": lambda: burst(fleet),
        "bad_channel": lambda: bad_channel(fleet),
    }
    results: list[Outcome] = []
    try:
        for name, scenario in scenarios.items():
            if args.only and name not in args.only:
                continue
            print(f"-- {name}", flush=True)
            try:
                results.append(scenario())
            except Exception as exc:  # one broken scenario must not hide the others' figures
                results.append(Outcome(name, note=f"scenario error: {type(exc).__name__}: {exc}"))
            print(f"   {results[-1]}", flush=True)
    finally:
        fleet.stop_all()
        rds.stop()
        pg.stop()
    print("\n| Scenario | stuck | items lost | items doubled | duplicate fires | alerts lost "
          "| alerts doubled | recovery | notes |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        recovery = f"{r.recovery_s:.1f} s" if r.recovery_s is not None else "—"
        print(f"| {r.scenario} | {r.stuck} | {r.items_lost} | {r.items_doubled} | "
              f"{r.duplicate_fires} | {r.alerts_lost} | {r.alerts_doubled} | {recovery} | "
              f"{r.note.strip()} |")  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
