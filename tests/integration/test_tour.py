"""The README's five-minute tour, run as written: its commands are read from the README.

`make up` is the one line not run verbatim: the test starts `.venv/bin/crawlhub up` (what
`make up` runs once installed) in a fresh directory holding the repository's `.venv` and
`examples/`, on the tour's port 8000; every other line runs as one bash script with
`set -e`, so each must succeed.
"""

import csv
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

from tests.integration.test_processes import Process, base_env

REPO = Path(__file__).resolve().parent.parent.parent
PORT = 8000  # the tour's


def tour_commands() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Five-minute tour", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_readmes_tour_runs_as_written(tmp_path: Path) -> None:
    commands = tour_commands()
    assert commands[0] == "make up" and len(commands) >= 10, commands
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", PORT)) != 0, (
            f"port {PORT} is taken: the tour needs it"
        )
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = base_env(tmp_path)
    del env["CRAWLHUB_DATA_DIR"]  # the tour's defaults: ./crawlhub-data, ./crawlhub.db
    env.pop("PORT", None)
    export = Path("/tmp/books.csv")
    export.unlink(missing_ok=True)
    up = Process(["up"], env, tmp_path)
    try:
        up.wait_for(f"http://127.0.0.1:{PORT}/readyz")
        script = "set -euo pipefail\n" + "\n".join(commands[1:])
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600, check=False)  # fmt: skip
        assert done.returncode == 0, (done.stdout, done.stderr, up.output())

        # What the tour promised, checked through the same commands' --json.
        def cli(*args: str) -> dict:  # type: ignore[type-arg]
            out = subprocess.run([str(tmp_path / ".venv/bin/crawlhub"), *args, "--json"],
                                 cwd=tmp_path, env=env, capture_output=True, text=True,
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
        assert not list(tmp_path.glob("*.csv")) and not list(tmp_path.glob("*.jsonl"))
    finally:
        assert up.stop() == 0, up.output()
        export.unlink(missing_ok=True)
