"""SPEC §11: log line printed → SSE client: p50 ≤ 100 ms.

A python spider prints `time.time()` every 20 ms for 5 s (flush=True). A client in a
separate process (this script with --client, started and ready before the POST)
connects to GET /api/tasks/{id}/logs/stream over real HTTP with httpx right after the
POST, and records receive time - printed time for every stdout line; p50 / p99 / max
are reported. SPEC §11 names no baseline; for reference the same spider is run as a
bare subprocess and the same latency is measured on its stdout pipe.

    .venv/bin/python bench/bench_sse_latency.py [--seconds 5] [--interval 0.02]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import PYTHON, TOKEN, Hub, Row, ms, percentile, report

TARGET_P50_S = 0.100

SPIDER = """\
import sys
import time


def run(params):
    seconds = float(params.get("seconds", 5))
    interval = float(params.get("interval", 0.02))
    end = time.time() + seconds
    while True:
        now = time.time()
        if now >= end:
            break
        print(f"{now:.6f}", flush=True)
        time.sleep(interval)
    return []


if __name__ == "__main__":
    run({"seconds": sys.argv[1], "interval": sys.argv[2]})
"""


def client() -> None:
    """Say "ready", read a stream URL from stdin, read that SSE stream, print latencies as JSON.

    Started before the run is triggered, so interpreter start-up and imports are not
    counted in the first lines' latency.
    """
    print("ready", flush=True)
    url = sys.stdin.readline().strip()
    latencies: list[float] = []
    events: dict[str, int] = {}
    kind = "message"
    with (
        httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http,
        http.stream("GET", url) as response,
    ):
        response.raise_for_status()
        for line in response.iter_lines():
            received = time.time()
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
                events[kind] = events.get(kind, 0) + 1
            elif line.startswith("data:") and kind == "log":
                data = json.loads(line[5:])
                if data["stream"] == "stdout":
                    latencies.append(received - float(data["line"]))
            elif line == "":
                kind = "message"
            if kind == "status":
                break
    print(json.dumps({"latencies": latencies, "events": events}))


def measure_crawlhub(seconds: float, interval: float) -> tuple[list[float], dict[str, int]]:
    with Hub() as hub:
        hub.deploy_python("sse", SPIDER)
        warm = hub.wait(hub.run("sse", {"seconds": 0.1, "interval": interval})["id"])
        hub.expect_completed(warm)
        with subprocess.Popen(
            [PYTHON, __file__, "--client"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ) as reader:  # fmt: skip
            assert reader.stdin is not None and reader.stdout is not None
            if reader.stdout.readline().strip() != "ready":
                raise RuntimeError("SSE client did not start")
            task = hub.run("sse", {"seconds": seconds, "interval": interval})
            reader.stdin.write(f"{hub.base_url}/api/tasks/{task['id']}/logs/stream\n")
            reader.stdin.flush()
            output, errors = reader.communicate(timeout=seconds + 60)
        hub.expect_completed(hub.wait(task["id"]))
        if reader.returncode != 0:
            raise RuntimeError(f"SSE client failed:\n{errors[-3000:]}")
        result = json.loads(output)
        return list(result["latencies"]), dict(result["events"])


def measure_pipe(seconds: float, interval: float, script: Path) -> list[float]:
    """The same spider as a bare subprocess: receive time - printed time on its stdout pipe."""
    latencies: list[float] = []
    with subprocess.Popen(
        [PYTHON, str(script), str(seconds), str(interval)], stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            latencies.append(time.time() - float(raw))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client()
        return

    latencies, events = measure_crawlhub(args.seconds, args.interval)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "main.py"
        script.write_text(SPIDER)
        pipe = measure_pipe(args.seconds, args.interval, script)
    if not latencies:
        sys.exit(f"no log lines received over SSE (events: {events})")

    p50 = percentile(latencies, 50)
    rows = [
        Row(
            "printed → SSE client, p50", ms(p50), f"bare pipe {ms(percentile(pipe, 50))}",
            f"{p50 / TARGET_P50_S:.2f}x target", "≤ 100 ms", p50 <= TARGET_P50_S,
        ),
        Row(
            "printed → SSE client, p99", ms(percentile(latencies, 99)),
            f"bare pipe {ms(percentile(pipe, 99))}", "—", "—", None,
        ),
        Row("printed → SSE client, max", ms(max(latencies)), f"bare pipe {ms(max(pipe))}",
            "—", "—", None),
    ]  # fmt: skip
    expected = len(pipe)
    report(
        f"SSE log latency: a line every {args.interval * 1000:.0f} ms for {args.seconds:g} s",
        rows,
        [
            f"{len(latencies)} stdout lines received over SSE (bare run printed {expected}); "
            f"events {events}",
            "client: a separate process using httpx streaming over loopback HTTP",
        ],
    )


if __name__ == "__main__":
    main()
