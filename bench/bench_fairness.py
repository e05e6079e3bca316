"""Issue 29: a project's burst does not hold another project's scheduled run back.

A distributed instance (`crawlhub web` and `crawlhub worker` with two slots, in processes of
their own, on PostgreSQL and Redis). Project A queues 500 short runs through the API; then
project B's schedule fires (the ticker's own code, `firing.fire`, from this process). The
figure is B's start delay: from its fire to its spider starting (`started_at - created_at`),
measured with the dispatcher serving
- `CRAWLHUB_DISPATCH_ORDER=fifo`: first come, first served, as every queue before (and as
  CrawlHub was: one FIFO queue in Redis) — the baseline;
- the fair share (the default): the project with the fewest runs under way first.
The target: B waits at most for one slot to free, i.e. about one of A's runs (p50 of their
start-to-end, shown beside it).

    .venv/bin/python bench/bench_fairness.py [--runs 500] [--sleep 0.05]
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

from common import Hub, Row, median, report
from sqlalchemy import text

SPIDER = "import time\n\n\ndef run(params):\n    time.sleep(float(params.get('sleep', 0)))\n"


def seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def measure(order: str, runs: int, sleep: float) -> tuple[float, float, int]:
    """B's start delay (s), the p50 of A's runs' length (s), and how many of A's runs were
    still waiting when B's run ended."""
    from crawlhub.scheduling import firing

    with Hub(processes=True, worker_threads=2, env={"CRAWLHUB_DISPATCH_ORDER": order}) as hub:
        hub.deploy_python("bulk", SPIDER)
        hub.deploy_python("daily", SPIDER)
        burst = [hub.run("bulk", {"sleep": sleep})["id"] for _ in range(runs)]
        made = hub.http.post("/api/spiders/daily/schedules", json={"cron": "0 0 1 1 *"})
        made.raise_for_status()
        with hub.ctx.db.session() as session:  # due now: the ticker's next round fires it
            session.execute(text("UPDATE schedule SET next_fire_at = now() WHERE id = :id"),
                            {"id": made.json()["id"]})  # fmt: skip
        firing.fire(hub.ctx)
        (fired,) = hub.http.get("/api/tasks", params={"spider_id": "daily"}).json()["items"]
        started = hub.wait(fired["id"], timeout=600)
        delay = seconds(started["created_at"], started["started_at"])
        waiting = hub.http.get("/api/tasks", params={"spider_id": "bulk", "status": "pending"})
        still = waiting.json()["total"]
        deadline = time.monotonic() + 600
        while hub.task(burst[-1])["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
        page = hub.http.get("/api/tasks", params={"spider_id": "bulk", "page_size": 100})
        lengths = [seconds(t["started_at"], t["finished_at"]) for t in page.json()["items"]
                   if t["finished_at"]]  # fmt: skip
    return delay, median(lengths), still


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--sleep", type=float, default=0.05, help="each of A's runs (s)")
    args = parser.parse_args()
    fifo, _, fifo_still = measure("fifo", args.runs, args.sleep)
    fair, run_length, fair_still = measure("fair", args.runs, args.sleep)
    bound = run_length + 0.1  # one slot freeing, and the dispatch round after it
    rows = [
        Row("B's start delay, FIFO (before)", f"{fifo * 1000:.0f} ms", "", "", "", None),
        Row("B's start delay, fair share", f"{fair * 1000:.0f} ms", f"{fifo * 1000:.0f} ms",
            f"{fair / fifo:.4f}x", f"<= one run ({bound * 1000:.0f} ms)", fair <= bound),
        Row("A's runs still waiting when B's run ended", f"{fair_still} (fair)",
            f"{fifo_still} (FIFO)", "", "", None),
    ]  # fmt: skip
    report(f"Fair share: project A queues {args.runs} runs, then B's schedule fires", rows,
           [f"A's runs sleep {args.sleep} s (p50 start-to-end {run_length * 1000:.0f} ms); one "
            "worker with two slots; web and worker processes on PostgreSQL and Redis"])  # fmt: skip


if __name__ == "__main__":
    main()
