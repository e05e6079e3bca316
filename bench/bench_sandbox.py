"""Issue 23's cost: run start (API call → spider code running, warm and cold) and a project
environment's build, with the sandbox (this tree) and without it (the code before it, git
`--before`, default the last commit before issue 23), side by side in one run.

The code before is checked out into a temporary git worktree and measured by its own
scripts (`bench/bench_trigger_latency.py`, `bench/bench_environments.py`) on this tree's
virtualenv, the same scripts of this tree measure it now; before and after alternate, so
the machine's drift falls on both. Spiders run on the same interpreter on both sides: as
root, the code before ran them on the tests' shared environment on the system's Python
(its `tests/spider_env.py`), so this tree is given that one too (`CRAWLHUB_SPIDER_PYTHON`):
on this machine the system's Python starts in 14 ms, pyenv's in root's home in 34 ms.
Target: the warm start within 1.2 times before's.

    .venv/bin/python bench/bench_sandbox.py [--runs 30] [--before 5607116] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, Row, median, report

BEFORE = "5607116"  # "Review: a launcher that died …", the last commit before issue 23
TARGET = 1.20  # warm start, after / before
FIGURES = {
    "warm": ("trigger", r"API call → spider code running, p50\s+([\d.]+) ms"),
    "cold": ("trigger", r"the same, cold start \(an interpreter per run\), p50\s+([\d.]+) ms"),
    "build": ("environments", r"cold build \(empty uv cache\)\s+([\d.]+) s"),
    "start in an environment": (
        "environments", r"run start, project environment [^\n]*?\)\s+([\d.]+) ms"),
}  # fmt: skip
SCRIPTS = {"trigger": "bench_trigger_latency.py", "environments": "bench_environments.py"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per start measurement")
    parser.add_argument("--before", default=BEFORE, help="git ref of the code before")
    parser.add_argument("--rounds", type=int, default=1, help="before/after pairs per script")
    args = parser.parse_args()
    found: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory(prefix="crawlhub-bench-before-") as tmp:
        before = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before],
                       cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        try:
            python = before_python(before)
            extra = {"before": {}, "after": {"CRAWLHUB_SPIDER_PYTHON": python} if python else {}}
            for kind, script in SCRIPTS.items():
                for _ in range(args.rounds):
                    for side, tree in (("before", before), ("after", ROOT)):
                        output = measure(tree, script, args.runs, extra[side])
                        for figure, (source, pattern) in FIGURES.items():
                            if source == kind:
                                found[side].setdefault(figure, []).append(parse(pattern, output))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT,
                           check=False, capture_output=True)  # fmt: skip
    rows = []
    for figure, (source, _) in FIGURES.items():
        old, new = median(found["before"][figure]), median(found["after"][figure])
        unit = "s" if figure == "build" else "ms"
        ratio = new / old
        target = f"≤ {TARGET:.1f}x" if figure == "warm" else ""
        rows.append(Row(f"{figure} ({SCRIPTS[source]}, median)", f"{new:.1f} {unit}",
                        f"before: {old:.1f} {unit}", f"{ratio:.2f}x", target,
                        ratio <= TARGET if figure == "warm" else None))  # fmt: skip
    report(f"the sandbox's cost: this tree against {args.before} ({args.rounds} round(s))", rows,
           ["warm and cold: API call → spider code running, p50 of --runs runs; build: a "
            "project environment from an empty uv cache; start in an environment: a cold "
            "start of the bootstrap in it, median",
            "before: spiders ran as `nobody` under the in-interpreter jail; after: bubblewrap "
            "and a slot user; both on the same interpreter (as root: the system's Python)",
            ])  # fmt: skip


def before_python(tree: Path) -> str:
    """The interpreter the code before runs spiders on ("" for the worker's own)."""
    probe = ("import sys; sys.path.insert(0, '.'); from tests.spider_env import spider_python; "
             "print(spider_python() or '')")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tree, capture_output=True,
                          text=True, check=True, env=env)  # fmt: skip
    return done.stdout.strip()


def measure(tree: Path, script: str, runs: int, extra: dict[str, str]) -> str:
    """The printed report of one benchmark script of `tree`, on this virtualenv."""
    env = {**os.environ, "PYTHONPATH": str(tree), **extra}
    done = subprocess.run([sys.executable, str(tree / "bench" / script), "--runs", str(runs)],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=3600,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{tree / 'bench' / script} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def parse(pattern: str, output: str) -> float:
    found = re.search(pattern, output)
    if found is None:
        raise RuntimeError(f"no match for {pattern!r} in:\n{output}")
    return float(found.group(1))


if __name__ == "__main__":
    main()
