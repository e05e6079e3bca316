"""Issue 30 (SPEC §11 asked ≤ 300 ms at 1 M runs and 1 M items): every dashboard page p95
≤ 100 ms of server time with 5 M runs and 20 M items.

Set-up: a fresh database `crawlhub_bench_dashboard`, the migrations, 100 spiders, N runs
(default 5 000 000, the statuses and 30-day spread of bench_tasks_list.py), M items (default
20 000 000: 100 per run of the newest runs), 100 schedules, 1 000 alerts, and one run with a
100 000-line log; then VACUUM ANALYZE. The runs are inserted with the database's triggers
off (session_replication_role = replica), then `run_hour` is filled from them by the same
statement migration 0020 fills it with on an existing install (the overview's rollup).
Redis db 14 carries the broker (for the Queues page).

Each page is requested in-process through the real app (Starlette's TestClient: routing,
session check, domain calls, SQL, Jinja2 rendering; no network), signed in with a session
cookie: 3 warm-up requests, then `--samples` timed ones. The figure is p95 server time per
page. Baseline: none in SPEC §11.

    .venv/bin/python bench/bench_dashboard.py [--runs 5000000] [--items 20000000] [--samples 20]
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import psycopg
from bench_tasks_list import FILL
from common import PG_HOST_URL, REDIS_URL, TOKEN, Row, percentile, recreate_database, report
from starlette.testclient import TestClient

DB_NAME = "crawlhub_bench_dashboard"
BENCH_URL = f"{PG_HOST_URL}/{DB_NAME}"
SA_URL = BENCH_URL.replace("postgresql", "postgresql+psycopg", 1)
SPIDERS = 100
TARGET_MS = 100.0
LOG_LINES = 100_000

ITEMS = """
INSERT INTO item (spider_id, task_id, attempt, data, created_at)
SELECT t.spider_id, t.id, 1,
       jsonb_build_object('i', g, 'title', 'item ' || g, 'price', g %% 997, 'tags',
                          jsonb_build_array('a', 'b')),
       t.created_at
FROM (SELECT id, spider_id, created_at FROM task ORDER BY created_at DESC LIMIT %(runs)s) AS t,
     generate_series(1, 100) AS g
"""
# Migration 0020's fill of the rollup from the runs already finished.
ROLLUP = """
INSERT INTO run_hour (hour, spider_id, status, runs, items)
SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', spider_id, status,
       count(*), coalesce(sum(items_count), 0)
FROM task WHERE status IN ('completed', 'failed', 'cancelled', 'skipped') GROUP BY 1, 2, 3
"""
SCHEDULES = """
INSERT INTO schedule (id, spider_id, cron, timezone, params, enabled, overlap, catchup, jitter_s,
                      next_fire_at, created_at, updated_at)
SELECT gen_random_uuid(), id, '*/5 * * * *', 'Europe/Berlin', '{}'::jsonb, true, 'forbid',
       'latest', 0, now() + interval '1 minute' * (row_number() OVER ()), now(), now()
FROM spider
"""
ALERTS = """
INSERT INTO alert (id, type, level, message, spider_id, is_read, count, created_at, last_seen_at)
SELECT gen_random_uuid(), 'task_failed', 'error', 'run failed: exit code 1', s.ids[1 + g %% 100],
       g %% 3 = 0, 1, now() - interval '1 minute' * g, now() - interval '1 minute' * g
FROM generate_series(1, 1000) AS g, (SELECT array_agg(id) AS ids FROM spider) AS s
"""
LOG = """
INSERT INTO log_line (task_id, seq, attempt, stream, ts, text)
SELECT %(task)s, g, 1, CASE WHEN g %% 10 = 0 THEN 'stderr' ELSE 'stdout' END,
       now() - interval '1 second' * (%(lines)s - g), 'log line ' || g || ' of a long crawl'
FROM generate_series(1, %(lines)s) AS g
"""


def fill(data_dir: Path, runs: int, items: int) -> tuple[uuid.UUID, float]:
    """Everything the pages read; returns the run with the long log and the fill time."""
    from crawlhub.config import load_settings
    from crawlhub.context import Context
    from crawlhub.repo import migrate
    from crawlhub.repo.models import Spider

    settings = load_settings(database_url=SA_URL, api_tokens=TOKEN, data_dir=data_dir)
    context = Context.build(settings)
    try:
        migrate.upgrade(context.db.engine)
        with context.db.session() as session:
            session.add_all([Spider.standalone(name=f"spider-{n:03d}", kind="python",
                                               entry="main:run", current_version=1)
                             for n in range(SPIDERS)])  # fmt: skip
    finally:
        context.close()
    start = time.perf_counter()
    with psycopg.connect(BENCH_URL) as conn:
        conn.execute("SET session_replication_role = replica")  # no trigger per row: see below
        conn.execute(FILL, {"spiders": SPIDERS, "count": runs})  # type: ignore[arg-type]
        conn.execute("SET session_replication_role = DEFAULT")
        conn.execute(ROLLUP)
        conn.execute(ITEMS, {"runs": max(items // 100, 1)})  # type: ignore[arg-type]
        conn.execute(SCHEDULES)
        conn.execute(ALERTS, {})
        row = conn.execute("SELECT id FROM task WHERE status = 'completed' "
                           "ORDER BY created_at DESC LIMIT 1").fetchone()  # fmt: skip
        assert row is not None
        conn.execute(LOG, {"task": row[0], "lines": LOG_LINES})  # type: ignore[arg-type]
        conn.commit()
    elapsed = time.perf_counter() - start
    with psycopg.connect(BENCH_URL, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
    return row[0], elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5_000_000)
    parser.add_argument("--items", type=int, default=20_000_000)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()

    from crawlhub.api import create_app
    from crawlhub.cli.processes import tune_collector
    from crawlhub.config import load_settings
    from crawlhub.context import Context
    from crawlhub.web.schemas.tasks import format_cursor
    from crawlhub.web.sessions import COOKIE, issue

    recreate_database(DB_NAME)
    with TemporaryDirectory() as tmp:
        long_run, fill_s = fill(Path(tmp), args.runs, args.items)
        settings = load_settings(database_url=SA_URL, redis_url=REDIS_URL, api_tokens=TOKEN,
                                 data_dir=Path(tmp))  # fmt: skip
        context = Context.build(settings)
        with psycopg.connect(BENCH_URL) as conn:
            oldest = conn.execute("SELECT created_at, id FROM task ORDER BY created_at, id "
                                  "OFFSET 100 LIMIT 1").fetchone()  # fmt: skip
        assert oldest is not None
        pages = {
            "overview": "/",
            "spiders": "/spiders",
            "spiders, search": "/spiders?q=spider-04",
            "spider": "/spiders/spider-007",
            "runs": "/runs",
            "runs, failed": "/runs?status=failed",
            "runs, one spider": "/runs?spider=spider-042",
            "runs, last page (keyset)": f"/runs?before={format_cursor((oldest[0], oldest[1]))}",
            "run, 100 000-line log": f"/runs/{long_run}",
            "run, log search": f"/runs/{long_run}?q=line+99999",
            "schedules": "/schedules",
            "data": "/data",
            "data, one spider": "/data?spider=spider-003",
            "alerts": "/alerts",
            "queues": "/queues",
        }
        rows: list[Row] = []
        try:
            app = create_app(context)
            tune_collector()  # as `crawlhub web` does before it serves
            with TestClient(app) as client:
                client.cookies.set(COOKIE, issue(context.tokens, 1, token=TOKEN))
                for label, path in pages.items():
                    times = []
                    for n in range(3 + args.samples):
                        start = time.perf_counter()
                        response = client.get(path, follow_redirects=False)
                        elapsed = time.perf_counter() - start
                        assert response.status_code == 200, (path, response.status_code)
                        if n >= 3:
                            times.append(elapsed * 1000)
                    p95 = percentile(times, 95)
                    rows.append(Row(f"{label}: p50 / p95", f"{percentile(times, 50):.1f} / "
                                    f"{p95:.1f} ms", "—", "—", f"≤ {TARGET_MS:.0f} ms",
                                    p95 <= TARGET_MS))  # fmt: skip
        finally:
            context.close()
    report(
        f"dashboard pages, {args.runs:,} runs and {args.items:,} items (server time, in-process)",
        rows,
        [f"fill: {fill_s:.1f} s", f"{args.samples} samples per page after 3 warm-up requests",
         "no baseline in SPEC §11"],
    )  # fmt: skip


if __name__ == "__main__":
    main()
