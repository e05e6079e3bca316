"""Project environments: what a build costs, cold and with its wheels cached; what finding a
built one costs; and a run's start in a project environment against the platform's.

Builds are real (uv, from the package registry, each step in a slot's sandbox as a run is)
of a set an old Scrapy project pins (`scrapy==2.11.2`, its era's Twisted and w3lib): first
into a fresh data dir with an empty uv cache (cold), then again after deleting the
environment but not its cache (cached wheels). A cache hit is `environments.ensure` finding
the environment built. The start is the bootstrap of a trivial python entry, started cold in
the sandbox as the worker starts it, timed from `spawn.start` to exit, in the project
environment and in the platform's, interleaved. Target (SPEC §14): within 10 %.

    .venv/bin/python bench/bench_environments.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import Row, median, ms, percentile, report

from crawlhub.config import Settings, load_settings
from crawlhub.sandbox import spawn
from crawlhub.sandbox.slots import Slot
from crawlhub.worker import environments, sandboxes
from crawlhub.worker.environments import Runtime

REQUIREMENTS = "scrapy==2.11.2\ntwisted==24.3.0\nw3lib==2.1.2"
TARGET = 1.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crawlhub-bench-envs-") as tmp:
        settings = load_settings(data_dir=Path(tmp) / "data")
        found = sandboxes.prepare_worker(settings)
        lines: list[str] = []
        with sandboxes.slot(settings) as taken:
            builder = sandboxes.builder(settings, taken)
            began = time.perf_counter()
            key, runtime = environments.ensure(settings, REQUIREMENTS, "scrapy", lines.append,
                                               builder)  # fmt: skip
            cold = time.perf_counter() - began
            shutil.rmtree(environments.envs_root(settings) / key)
            began = time.perf_counter()
            environments.ensure(settings, REQUIREMENTS, "scrapy", lines.append, builder)
            cached = time.perf_counter() - began
            hits = []
            for _ in range(20):
                began = time.perf_counter()
                environments.ensure(settings, REQUIREMENTS, "scrapy", lines.append, builder)
                hits.append(time.perf_counter() - began)
            work = taken.root / "bench"
            work.mkdir()
            (work / "triv.py").write_text("def run(params):\n    return {'ok': 1}\n")
            taken.hand_over(work)
            platform = environments.platform_runtime(settings)
            starts: dict[str, list[float]] = {"platform": [], "project": []}
            for _ in range(args.runs):
                for name, where in (("platform", platform), ("project", runtime)):
                    starts[name].append(start(settings, taken, where, work))
    base, project = median(starts["platform"]), median(starts["project"])

    def p90(name: str) -> str:
        return ms(percentile(starts[name], 90))

    ratio = project / base
    rows = [
        Row("cold build (empty uv cache)", f"{cold:.1f} s", "", "", "", None),
        Row("build with its wheels cached", f"{cached:.1f} s", f"cold: {cold:.1f} s",
            f"{cached / cold:.2f}x", "", None),
        Row(f"cache hit (median of {len(hits)})", f"{median(hits) * 1e6:.0f} µs", "", "", "", None),
        Row(f"run start, platform environment (median; p90 {p90('platform')})",
            ms(base), "", "", "", None),
        Row(f"run start, project environment (median; p90 {p90('project')})",
            ms(project), f"platform: {ms(base)}", f"{ratio:.2f}x", f"<= {TARGET:.2f}x",
            ratio <= TARGET),
    ]  # fmt: skip
    report(f"project environments ({args.runs} starts each)", rows,
           [f"requirements: {REQUIREMENTS.replace(chr(10), ', ')}",
            f"sandbox: {found.describe()}; builds with uv from the registry",
            "starts timed from spawn.start to exit, cold, in the sandbox as a run"])  # fmt: skip


def start(settings: Settings, taken: Slot, runtime: Runtime, work: Path) -> float:
    limits = sandboxes.default_limits(settings)
    env = {**sandboxes.base_env(settings, runtime, taken, work), "CRAWLHUB_ITEMS_FD": "1"}
    spec = spawn.Spec([runtime.python, "-m", "crawlhub.child.bootstrap", "python", "triv:run"],
                      env, sandboxes.view(settings, runtime, taken, work, limits), limits,
                      f"bench-{time.monotonic_ns()}")  # fmt: skip
    began = time.perf_counter()
    proc = spawn.start(sandboxes.isolation_of(settings), taken, spec, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # fmt: skip
    code = proc.wait()
    took = time.perf_counter() - began
    proc.close()
    assert code == 0, f"the run failed: exit {code}"
    return took


if __name__ == "__main__":
    os.umask(0o077)  # as a worker runs
    main()
