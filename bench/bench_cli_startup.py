"""How fast client commands start: `crawlhub --help` and `crawlhub runs` (a table of the 20
newest runs, fetched from a running CrawlHub), against `python -c pass` on the same
interpreter, each timed from exec to exit, interleaved. Goal (issue 16): under 300 ms.

    .venv/bin/python bench/bench_cli_startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from common import TOKEN, Hub, Row, median, ms, percentile, report

GOAL_S = 0.300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with Hub() as hub:
        hub.deploy_python("hello", "def run(params):\n    return [{'n': 1}]\n")
        for _ in range(20):
            hub.wait(hub.run("hello")["id"])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
               "CRAWLHUB_URL": hub.base_url, "CRAWLHUB_TOKEN": TOKEN}  # fmt: skip
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "crawlhub --help": [sys.executable, "-m", "crawlhub", "--help"],
            "crawlhub runs": [sys.executable, "-m", "crawlhub", "runs"],
            "crawlhub runs --json": [sys.executable, "-m", "crawlhub", "runs", "--json"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, command in commands.items():
                began = time.perf_counter()
                subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
                times[name].append(time.perf_counter() - began)
    base = median(times["python -c pass"])
    rows = [Row("python -c pass", ms(base), "", "", "", None)]
    for name, values in list(times.items())[1:]:
        value = median(values)
        rows.append(Row(f"{name} (median; p90 {ms(percentile(values, 90))})", ms(value),
                        f"python -c pass: {ms(base)}", f"{value / base:.1f}x",
                        f"< {ms(GOAL_S)}", value < GOAL_S))  # fmt: skip
    report(f"client command start-up ({args.runs} runs each, interleaved)", rows,
           ["from exec to exit, output to /dev/null; `runs` asks a local CrawlHub (PostgreSQL) "
            "for its 20 newest runs and draws a table"])  # fmt: skip


if __name__ == "__main__":
    main()
