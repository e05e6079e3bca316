"""The README's five-minute tour, run as written, from a copy of the repository in a fresh
`mktemp -d` directory (mode 0700, as a clone there is): `make up` for real (it makes the
virtualenv, installs CrawlHub from the package registry and starts it), then every other
line of the tour as one bash script with `set -e`, so each must succeed. As root on this
machine that is the case the README's first command must survive: Python in root's home,
a clone in a 0700 directory, spiders in their sandbox as slot users.
"""

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent.parent
PORT = 8000  # the tour's
INSTALL_TIMEOUT_S = 600  # `make up` creates .venv and installs CrawlHub with Scrapy


def tour_commands() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Five-minute tour", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def copy_of_repository() -> Path:
    """The repository's files as a clone would have them (tracked, and new ones not ignored,
    as they are in the working tree), in a fresh `mktemp -d` directory."""
    target = Path(tempfile.mkdtemp())
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout  # fmt: skip
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 300)
def test_the_readmes_tour_runs_as_written_from_a_fresh_clone() -> None:
    commands = tour_commands()
    assert commands[0] == "make up" and len(commands) >= 10, commands
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", PORT)) != 0, (
            f"port {PORT} is taken: the tour needs it"
        )
    clone = copy_of_repository()
    assert clone.stat().st_mode & 0o777 == 0o700
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CRAWLHUB_", "DATABASE_", "REDIS_", "PORT", "VIRTUAL_ENV"))}  # fmt: skip
    export = Path("/tmp/books.csv")
    export.unlink(missing_ok=True)
    log = clone.parent / f"{clone.name}-make-up.log"
    with log.open("w") as out:
        up = subprocess.Popen(["make", "up"], cwd=clone, env=env, stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + INSTALL_TIMEOUT_S
        while True:
            assert up.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{PORT}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        script = "set -euo pipefail\n" + "\n".join(commands[1:])
        done = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=600, check=False)  # fmt: skip
        assert done.returncode == 0, (done.stdout, done.stderr, log.read_text())

        # What the tour promised, checked through the same commands' --json.
        def cli(*args: str) -> dict:  # type: ignore[type-arg]
            out = subprocess.run([str(clone / ".venv/bin/crawlhub"), *args, "--json"],
                                 cwd=clone, env=env, capture_output=True, text=True,
                                 timeout=60, check=True).stdout  # fmt: skip
            return json.loads(out)  # type: ignore[no-any-return]

        assert "spiders: books" in done.stdout
        runs = cli("runs")["items"]
        assert [r["status"] for r in reversed(runs)] == ["completed", "cancelled", "completed"]
        first, _, last = reversed(runs)
        assert (first["items_count"], last["items_count"]) == (8, 0)
        with export.open(encoding="utf-8-sig") as rows:
            books = list(csv.DictReader(rows))
        assert len(books) == 8 and books[0]["title"] and books[0]["price"].startswith("£")
        [schedule] = cli("schedules", "list")["items"]
        assert (schedule["cron"], schedule["timezone"]) == ("30 6 * * 1-5", "Europe/Paris")
        [alert] = cli("alerts", "list")["items"]
        assert alert["type"] == "zero_items" and "books" in alert["message"]
        assert not list(clone.glob("*.csv")) and not list(clone.glob("*.jsonl"))
        # Every change the tour made is in the audit log, with who made it (the commands
        # used the token `crawlhub up` made); `up` made the first user and said so.
        token = (clone / "crawlhub-data" / "api-token").read_text().strip()
        audit = httpx.get(f"http://127.0.0.1:{PORT}/api/audit", params={"limit": 500},
                          headers={"Authorization": f"Bearer {token}"}).json()["items"]  # fmt: skip
        changes = [(e["action"], e["resource"]) for e in reversed(audit)
                   if e["actor"] == "config token"]  # fmt: skip
        assert changes == [
            ("project.create", "project:books"),
            ("version.upload", "project:books"),
            ("run.start", "spider:books"),
            ("schedule.create", f"schedule:{schedule['id']}"),
            ("run.start", "spider:books"),
            ("run.cancel", f"run:{runs[1]['id']}"),
            ("spider.update", "spider:books"),
            ("run.start", "spider:books"),
        ], changes
        assert "User 'admin' created, password" in log.read_text()
        if os.geteuid() == 0:  # the spiders ran sandboxed, as slot users, not as root
            output = log.read_text()
            assert "sandbox: bubblewrap namespaces, as slot users" in output, output
            lines = subprocess.run([str(clone / ".venv/bin/crawlhub"), "logs", first["id"]],
                                   cwd=clone, env=env, capture_output=True, text=True,
                                   timeout=60, check=True).stdout  # fmt: skip
            assert re.search(r"attempt 1: scrapy spider books .* as uid 19\d{8}", lines), lines
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        export.unlink(missing_ok=True)
        shutil.rmtree(clone, ignore_errors=True)
