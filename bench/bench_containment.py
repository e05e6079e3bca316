"""What containment costs a run's start: the bootstrap of a trivial python entry, started as
the worker starts it, in each containment mode, against the same bootstrap with none.

Modes: none (`CRAWLHUB_SPIDER_NAMESPACES=0`: a child subreaper only), PID + mount namespace
with its own /proc, the same covering a data dir, and (as root) the same as `nobody`. Each
start is timed from `Popen` to exit, `--runs` times per mode, modes interleaved so the
machine's drift falls on all alike. Baseline: the bootstrap with no containment; bare
`python -c pass` on the same interpreter is shown for scale. As root the interpreter is the
tests' shared one on the system Python (tests/spider_env.py), which `nobody` can run.

    .venv/bin/python bench/bench_containment.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, median, ms, percentile, report, spider_python

TARGET = 1.10  # containment within 10 % of a start without it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    python = str(spider_python() or sys.executable)
    with tempfile.TemporaryDirectory(prefix="crawlhub-bench-jail-") as tmp:
        root = Path(tmp)
        root.chmod(0o711)
        work = root / "work"
        work.mkdir(mode=0o777)
        work.chmod(0o777)
        (work / "triv.py").write_text("def run(params):\n    return {'ok': 1}\n")
        (work / "triv.py").chmod(0o644)
        modes: dict[str, dict[str, str]] = {
            "no containment": {"CRAWLHUB_SPIDER_NAMESPACES": "0"},
            "PID + mount namespace": {},
            "namespace, data dir hidden": {"CRAWLHUB_HIDE": str(root)},
        }
        if os.geteuid() == 0:
            modes["namespace, hidden, as nobody"] = {
                "CRAWLHUB_HIDE": str(root), "CRAWLHUB_SPIDER_UID": "65534",
                "CRAWLHUB_SPIDER_GID": "65534",
            }  # fmt: skip
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        bare: list[float] = []
        for _ in range(args.runs):
            bare.append(start([python, "-c", "pass"], work, {}))
            for mode, extra in modes.items():
                command = [python, "-m", "crawlhub.child.bootstrap", "python", "triv:run"]
                times[mode].append(start(command, work, extra))
    base = median(times["no containment"])
    rows = [Row("bare python -c pass", ms(median(bare)), "", "", "", None)]
    for mode, values in times.items():
        ratio = median(values) / base
        rows.append(Row(
            f"bootstrap, {mode} (median; p90 {ms(percentile(values, 90))})", ms(median(values)),
            f"no containment: {ms(base)}", f"{ratio:.2f}x",
            f"<= {TARGET:.2f}x" if mode != "no containment" else "",
            ratio <= TARGET if mode != "no containment" else None,
        ))  # fmt: skip
    report(f"containment cost at a run's start ({args.runs} starts per mode)", rows,
           [f"interpreter {python}", "timed from Popen to exit, output to /dev/null"])  # fmt: skip


def start(command: list[str], cwd: Path, extra: dict[str, str]) -> float:
    env = {"PATH": os.defpath, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           "CRAWLHUB_ITEMS_FD": "1", **extra}  # fmt: skip
    began = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)  # fmt: skip
    return time.perf_counter() - began


if __name__ == "__main__":
    main()
