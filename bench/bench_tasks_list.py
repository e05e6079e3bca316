"""SPEC §11: `GET /api/tasks` with 1 000 000 tasks and 50 clients, p99 ≤ 50 ms.

Set-up: a fresh database `crawlhub_bench_tasks` (dropped and recreated), the migrations,
100 spiders, then N tasks (default 1 000 000) inserted by one `INSERT … SELECT
generate_series` (spiders round-robin; created_at spread over 30 days; statuses as a
busy instance has them: 90 % completed, 6 % failed, 2 % skipped, 1 % cancelled, the
rest pending, running and retrying), then VACUUM ANALYZE. No Redis, no worker.

The web process is `crawlhub web` itself, a child process (uvicorn, one process,
Starlette's thread pool; Redis db 14 for its readiness check, otherwise unused). 50 client
threads, each with its own keep-alive httpx connection, request in a loop from a fixed mix
of list queries an operator's UI and scripts send: the newest page, a spider's runs, the
failed, running and pending runs, one spider's failed runs, and pages 2 to 10 of the newest.

Two load shapes, each for `--seconds`:
- paced: every client sends one request every `--interval` seconds (default 0.5 s: 100
  requests/s in all, a crowd of dashboards polling), latency measured per request. This is
  the figure the target is held against.
- saturated: every client sends its next request as soon as the previous one answered
  (closed loop), which measures the throughput ceiling; its latency is queueing for that
  throughput, printed for information.

Baseline: none in SPEC §11. For reference, the same queries' SQL alone (EXPLAIN ANALYZE
execution times, in the database) are printed.

    .venv/bin/python bench/bench_tasks_list.py [--tasks 1000000] [--seconds 20] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from common import (
    PG_HOST_URL,
    PYTHON,
    REDIS_URL,
    ROOT,
    TOKEN,
    Row,
    free_port,
    median,
    percentile,
    recreate_database,
    report,
)

DB_NAME = "crawlhub_bench_tasks"
BENCH_URL = f"{PG_HOST_URL}/{DB_NAME}"
SA_URL = BENCH_URL.replace("postgresql", "postgresql+psycopg", 1)
SPIDERS = 100
CLIENTS = 50
TARGET_P99_MS = 50.0


FILL = """
INSERT INTO task (id, spider_id, trigger, params, status, reason, retry_count, max_retries,
                  items_count, items_duplicate, items_invalid, log_lines,
                  started_at, finished_at, created_at)
SELECT gen_random_uuid(), s.ids[1 + g %% %(spiders)s], 'manual', '{}'::jsonb,
       CASE WHEN g %% 100 < 90 THEN 'completed' WHEN g %% 100 < 96 THEN 'failed'
            WHEN g %% 100 < 98 THEN 'skipped' WHEN g %% 100 < 99 THEN 'cancelled'
            ELSE (ARRAY['pending', 'running', 'retrying'])[1 + g %% 3] END,
       CASE WHEN g %% 100 BETWEEN 90 AND 95 THEN 'exit_code' END, 0, 3,
       g %% 500, 0, 0, g %% 2000,
       t.at, t.at + interval '42 seconds', t.at
FROM generate_series(1, %(count)s) AS g,
     (SELECT array_agg(id ORDER BY name) AS ids FROM spider) AS s,
     LATERAL (SELECT now() - interval '30 days' * (1 - g::float8 / %(count)s) AS at) AS t
"""


def fill(data_dir: Path, count: int) -> tuple[list[uuid.UUID], float]:
    """Migrate, create the spiders and the tasks; returns the spider ids and the fill time."""
    from crawlhub.config import load_settings
    from crawlhub.context import Context
    from crawlhub.repo import migrate
    from crawlhub.repo.models import Spider

    settings = load_settings(database_url=SA_URL, api_tokens=TOKEN, data_dir=data_dir)
    context = Context.build(settings)
    try:
        migrate.upgrade(context.db.engine)
        with context.db.session() as session:
            spiders = [Spider.standalone(name=f"spider-{n:03d}", kind="python", entry="main:run")
                       for n in range(SPIDERS)]  # fmt: skip
            session.add_all(spiders)
            session.flush()
            ids = [s.id for s in spiders]
    finally:
        context.close()
    start = time.perf_counter()
    with psycopg.connect(BENCH_URL) as conn:
        conn.execute(FILL, {"spiders": SPIDERS, "count": count})  # type: ignore[arg-type]
        conn.commit()
    elapsed = time.perf_counter() - start
    with psycopg.connect(BENCH_URL, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) task")
        conn.execute("CHECKPOINT")
    return ids, elapsed


def queries(spiders: list[uuid.UUID]) -> list[tuple[str, dict[str, Any]]]:
    """The request mix: (label, query parameters)."""
    mix: list[tuple[str, dict[str, Any]]] = [
        ("newest", {}),
        ("newest", {}),
        ("newest, 100 per page", {"page_size": 100}),
        ("failed", {"status": "failed"}),
        ("running", {"status": "running"}),
        ("pending", {"status": "pending"}),
    ]
    for spider in spiders[:6]:
        mix.append(("one spider", {"spider_id": str(spider)}))
    mix.append(("one spider's failed", {"spider_id": str(spiders[7]), "status": "failed"}))
    mix.append(("one spider by name", {"spider_id": "spider-042"}))
    for page in range(2, 11):
        mix.append(("newest, pages 2-10", {"page": page}))
    return mix


class Web:
    """The app in a child process on a free loopback port."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PORT": str(self.port),
            "DATABASE_URL": SA_URL,
            "REDIS_URL": REDIS_URL,
            "CRAWLHUB_API_TOKENS": TOKEN,
            "CRAWLHUB_DATA_DIR": str(data_dir),
            "CRAWLHUB_LOG_LEVEL": "WARNING",
        }
        self.proc = subprocess.Popen([PYTHON, "-m", "crawlhub", "web"], cwd=ROOT, env=env)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"web child exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("web child did not answer /healthz")
            time.sleep(0.1)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def load(
    web: Web, mix: list[tuple[str, dict[str, Any]]], seconds: float, interval: float | None
) -> tuple[list[tuple[str, float, float]], int]:
    """CLIENTS threads requesting for `seconds`; (label, latency s, sent at s) per request, and
    the error count."""
    results: list[tuple[str, float, float]] = []
    errors = [0]
    lock = threading.Lock()
    clock: dict[str, float] = {}

    def start_clock() -> None:  # once every client is connected
        clock["start"] = time.perf_counter() + 0.2
        clock["stop"] = clock["start"] + seconds

    connected = threading.Barrier(CLIENTS, action=start_clock)

    def client(number: int) -> None:
        rng = random.Random(number)
        mine: list[tuple[str, float, float]] = []
        failed = 0
        with web.client() as http:
            http.get("/api/tasks", params={"page_size": 1})  # connect before the clock
            connected.wait()
            start_at, stop_at = clock["start"], clock["stop"]
            # Paced clients start spread over one interval, so they do not fire in step.
            next_at = start_at + (rng.random() * interval if interval else 0)
            while True:
                now = time.perf_counter()
                if next_at > now:
                    time.sleep(next_at - now)
                if time.perf_counter() >= stop_at:
                    break
                label, params = rng.choice(mix)
                sent = time.perf_counter()
                response = http.get("/api/tasks", params=params)
                elapsed = time.perf_counter() - sent
                if response.status_code != 200 or "items" not in response.json():
                    failed += 1
                mine.append((label, elapsed, sent - start_at))
                next_at = next_at + interval if interval else time.perf_counter()
        with lock:
            results.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    # This process's own collector would pause all 50 clients mid-request and count the
    # pause as server latency; a run allocates little, so it can stay off meanwhile.
    gc.collect()
    gc.disable()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.enable()
    return results, errors[0]


def sql_times(spiders: list[uuid.UUID]) -> list[str]:
    """EXPLAIN ANALYZE execution time of the list's two queries for a few filters."""
    notes = []
    cases = {"newest": "", "one spider": f"WHERE spider_id = '{spiders[0]}'",
             "failed": "WHERE status = 'failed'"}  # fmt: skip
    with psycopg.connect(BENCH_URL) as conn:
        for label, where in cases.items():
            timings = []
            for sql in (
                f"SELECT count(*) FROM task {where}",  # noqa: S608 - literals of this script
                f"SELECT * FROM task {where} ORDER BY created_at DESC, id DESC LIMIT 20",  # noqa: S608
            ):
                conn.execute(sql)  # warm
                plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").fetchone()
                assert plan is not None
                timings.append(f"{plan[0][0]['Execution Time']:.2f} ms")
            notes.append(f"SQL alone, {label}: count(*) {timings[0]}, page of 20 {timings[1]}")
    return notes


def summary(
    name: str, results: list[tuple[str, float, float]], errors: int, seconds: float
) -> tuple[float, float, float, list[str]]:
    """(p50 ms, p99 ms, requests/s, per-label and per-5-second notes)."""
    latencies = [lat for _, lat, _ in results]
    p50 = percentile(latencies, 50) * 1000
    p99 = percentile(latencies, 99) * 1000
    rate = len(results) / seconds
    notes = [f"{name}: {len(results)} requests, {errors} errors, {rate:.0f} requests/s"]
    for label in sorted({label for label, _, _ in results}):
        mine = [lat for lab, lat, _ in results if lab == label]
        notes.append(
            f"  {name}, {label}: n {len(mine)}, p50 {median(mine) * 1000:.1f} ms, "
            f"p99 {percentile(mine, 99) * 1000:.1f} ms"
        )
    windows = []
    for first in range(0, int(seconds), 5):
        mine = [lat for _, lat, at in results if first <= at < first + 5]
        if mine:
            windows.append(f"{percentile(mine, 99) * 1000:.0f}")
    notes.append(f"  {name}, p99 ms per 5 s window: {', '.join(windows)}")
    return p50, p99, rate, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--interval", type=float, default=0.5, help="paced: s between requests")
    args = parser.parse_args()

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        recreate_database(DB_NAME)
        spiders, fill_s = fill(data_dir, args.tasks)
        print(f"filled {args.tasks} tasks in {fill_s:.1f} s", flush=True)
        mix = queries(spiders)
        notes = sql_times(spiders)
        web = Web(data_dir)
        try:
            for _ in range(3):  # warm the pool and the caches
                load(web, mix, 2, None)
            paced, paced_errors = load(web, mix, args.seconds, args.interval)
            flat, flat_errors = load(web, mix, args.seconds, None)
        finally:
            web.close()
    p50, p99, rate, paced_notes = summary("paced", paced, paced_errors, args.seconds)
    s50, s99, ceiling, flat_notes = summary("saturated", flat, flat_errors, args.seconds)
    rows = [
        Row(f"GET /api/tasks, {args.tasks:,} tasks, {CLIENTS} clients, 1 request / "
            f"{args.interval:g} s each", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", "—", "—",
            f"p99 ≤ {TARGET_P99_MS:.0f} ms", p99 <= TARGET_P99_MS and paced_errors == 0),
        Row("  throughput paced", f"{rate:.0f} requests/s", "—", "—", "—", None),
        Row(f"saturated ({CLIENTS} clients, no pause)", f"{ceiling:.0f} requests/s",
            "—", "—", "—", None),
        Row("  its latency (queueing)", f"p50 {s50:.1f} ms, p99 {s99:.1f} ms", "—", "—", "—",
            None),
    ]  # fmt: skip
    report(f"GET /api/tasks at {args.tasks:,} tasks", rows, notes + paced_notes + flat_notes)


if __name__ == "__main__":
    main()
