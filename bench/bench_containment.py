"""What the sandbox costs a cold start: the bootstrap of a trivial python entry started as
the worker starts it, in each sandbox mode this machine gives, against the same bootstrap
started bare (no sandbox: what a cold start was before issue 23, less its in-interpreter
jail). Each start is timed from `spawn.start` (or `Popen`) to exit, `--runs` times per mode,
modes interleaved so the machine's drift falls on all alike; `python -c pass` for scale.

    .venv/bin/python bench/bench_containment.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import Row, median, ms, percentile, report

from crawlhub.config import load_settings
from crawlhub.sandbox import spawn
from crawlhub.sandbox.isolation import isolation
from crawlhub.worker import environments, sandboxes

TARGET = 1.30  # the sandbox within 30 % of a bare start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crawlhub-bench-sandbox-") as tmp:
        settings = load_settings(data_dir=Path(tmp) / "data")
        sandboxes.prepare_worker(settings)
        runtime = environments.platform_runtime(settings)
        uids = settings.spider_uid_range
        modes = {"bwrap": isolation("bwrap", uids), "off": isolation("off", uids)}
        times: dict[str, list[float]] = {"bare": [], **{mode: [] for mode in modes}}
        scale: list[float] = []
        with sandboxes.slot(settings) as taken:
            work = taken.root / "bench"
            work.mkdir()
            (work / "triv.py").write_text("def run(params):\n    return {'ok': 1}\n")
            taken.hand_over(work)
            env = {**sandboxes.base_env(settings, runtime, taken, work), "CRAWLHUB_ITEMS_FD": "1"}
            limits = sandboxes.default_limits(settings)
            command = [runtime.python, "-m", "crawlhub.child.bootstrap", "python", "triv:run"]
            view = sandboxes.view(settings, runtime, taken, work, limits)
            for n in range(args.runs):
                scale.append(bare([runtime.python, "-c", "pass"], work, env))
                times["bare"].append(bare(command, work, env))
                for mode, found in modes.items():
                    spec = spawn.Spec(command, env, view, limits, f"bench-{mode}-{n}")
                    began = time.perf_counter()
                    proc = spawn.start(found, taken, spec, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)  # fmt: skip
                    assert proc.wait() == 0, mode
                    times[mode].append(time.perf_counter() - began)
                    proc.close()
    base = median(times["bare"])
    rows = [Row("python -c pass", ms(median(scale)), "", "", "", None)]
    for mode, values in times.items():
        ratio = median(values) / base
        rows.append(Row(
            f"bootstrap, {mode} (median; p90 {ms(percentile(values, 90))})", ms(median(values)),
            f"bare: {ms(base)}", f"{ratio:.2f}x", f"<= {TARGET:.2f}x" if mode == "bwrap" else "",
            ratio <= TARGET if mode == "bwrap" else None,
        ))  # fmt: skip
    report(f"the sandbox's cost at a cold start ({args.runs} starts per mode)", rows,
           [f"interpreter {runtime.python}; bwrap: {modes['bwrap'].describe()}",
            "off: sh, setpriv (no_new_privs) and env only; timed to exit, output to "
            "/dev/null"])  # fmt: skip


def bare(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)  # fmt: skip
    return time.perf_counter() - began


if __name__ == "__main__":
    os.umask(0o077)  # as a worker runs
    main()
