"""Issue 28: with data quality rules and per-field statistics on, item ingest stays at
≥ 0.8x of the same run without them.

The spider of bench_ingest.py (N small items: {"i", "square", "label", "nested": {"even"}})
runs on a distributed instance (`crawlhub web` and `crawlhub worker` processes, PostgreSQL,
Redis) twice over, alternating:
- without: `CRAWLHUB_ITEM_STATISTICS=false`, the spider has no rules (the baseline);
- with: statistics on, and rules on every kind of item check — a JSON Schema of every
  field, coverage of three fields (one of them nested), item counts against the median,
  duplicates — that the run passes.

The figure is N / (finished_at - started_at) of each run; the best of `--rounds` runs of each
is compared (the machine's noise only ever slows a run down).

    .venv/bin/python bench/bench_quality.py [--items 200000] [--rounds 2]
"""

from __future__ import annotations

import argparse

from bench_ingest import SPIDER
from common import Hub, Row, parse_ts, report

TARGET = 0.8
RULES = {
    "schema": {
        "type": "object",
        "required": ["i", "square", "label", "nested"],
        "properties": {
            "i": {"type": "integer", "minimum": 0},
            "square": {"type": "integer"},
            "label": {"type": "string", "minLength": 1},
            "nested": {"type": "object", "properties": {"even": {"type": "boolean"}}},
        },
    },
    "coverage": {"i": 0.99, "label": {"warn": 0.99, "fail": 0.9}, "nested.even": 0.99},
    "items": {"warn_below": 0.7, "fail_below": 0.4, "runs": 5},
    "max_duplicate_share": 0.01,
}


def ingest(count: int, statistics: bool) -> tuple[float, dict[str, object]]:
    """Items per second of one run on a fresh instance, and the run."""
    env = {"CRAWLHUB_ITEM_STATISTICS": "true" if statistics else "false"}
    with Hub(processes=True, env=env) as hub:
        hub.deploy_python("ingest", SPIDER)
        if statistics:
            saved = hub.http.put("/api/spiders/ingest/quality", json={"rules": RULES})
            saved.raise_for_status()
        hub.expect_completed(hub.wait(hub.run("ingest", {"count": 0})["id"]))  # warm-up
        task = hub.wait(hub.run("ingest", {"count": count})["id"], timeout=300, poll=0.05)
        hub.expect_completed(task)
    if task["items_count"] != count:
        raise RuntimeError(f"{task['items_count']} items stored, {count} expected")
    if statistics and task["verdict"] != "pass":
        raise RuntimeError(f"the run did not pass its rules: {task['quality']}")
    seconds = parse_ts(task["finished_at"]) - parse_ts(task["started_at"])
    return count / seconds, task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    without: list[float] = []
    with_rules: list[float] = []
    checked = None
    for _ in range(args.rounds):
        without.append(ingest(args.items, statistics=False)[0])
        rate, checked = ingest(args.items, statistics=True)
        with_rules.append(rate)
    best_without, best_with = max(without), max(with_rules)
    ratio = best_with / best_without
    fields = len((checked or {}).get("quality", {}).get("fields", {}))  # type: ignore[union-attr]
    report(
        f"item ingest with data quality rules and statistics: {args.items:,} items",
        [
            Row(
                "items/s, rules and statistics on (best run)",
                f"{best_with:,.0f}/s",
                f"off: {best_without:,.0f}/s",
                f"{ratio:.2f}x",
                f"≥ {TARGET}x",
                ratio >= TARGET,
            ),
            Row("every run, on", ", ".join(f"{r:,.0f}" for r in with_rules), "", "", "", None),
            Row("every run, off", ", ".join(f"{r:,.0f}" for r in without), "", "", "", None),
        ],
        [
            f"{fields} fields followed (4 top-level, 1 nested path); the on runs passed "
            "their rules; each run on a fresh instance, off and on alternating"
        ],
    )


if __name__ == "__main__":
    main()
