"""The Procfile under honcho, as a PaaS runs it: release, then web + worker + ticker."""

import csv
import io
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from tests.integration.harness import Site
from tests.integration.test_processes import FIXTURES, base_env, free_port

ROOT = Path(__file__).resolve().parents[2]
HONCHO = [sys.executable, "-m", "honcho", "-f", str(ROOT / "Procfile")]


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of a session."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def test_procfile_runs_a_scheduled_scrapy_spider_and_shuts_down_cleanly(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = base_env(
        tmp_path,
        DATABASE_URL=pg_url.replace("postgresql+psycopg://", "postgres://"),  # as a PaaS gives it
        REDIS_URL=redis_url,
        CRAWLHUB_API_TOKENS="procfile-token",
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    release = subprocess.run([*HONCHO, "start", "release"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert release.returncode == 0, release.stdout + release.stderr
    log = (tmp_path / "honcho.log").open("w")
    honcho = subprocess.Popen([*HONCHO, "start", "-p", str(port), "web", "worker", "ticker"],
                              env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    site = Site(pages=4)
    api = f"http://127.0.0.1:{port}/api"
    headers = {"Authorization": "Bearer procfile-token"}
    client_env = {
        **env,
        "CRAWLHUB_URL": f"http://127.0.0.1:{port}",
        "CRAWLHUB_TOKEN": "procfile-token",
    }
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert honcho.poll() is None, (tmp_path / "honcho.log").read_text()
            time.sleep(0.2)
        deployed = subprocess.run(
            [sys.executable, "-m", "crawlhub", "deploy", str(FIXTURES / "pages_scrapy"), "--name", "pages"],
            env=client_env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
        assert httpx.patch(f"{api}/spiders/pages", json={"params": {"start_url": site.url}},
                           headers=headers).status_code == 200  # fmt: skip
        schedule = httpx.post(
            f"{api}/spiders/pages/schedules", json={"cron": "0 0 1 1 *"}, headers=headers
        )
        assert schedule.status_code == 201, schedule.text
        engine = create_engine(pg_url)
        with engine.begin() as conn:  # make it due in two seconds
            conn.execute(text("UPDATE schedule SET next_fire_at = :due"),
                         {"due": datetime.now(UTC) + timedelta(seconds=2)})  # fmt: skip
        engine.dispose()
        deadline = time.monotonic() + 90
        task: dict[str, object] = {}
        while time.monotonic() < deadline:
            listed = httpx.get(
                f"{api}/tasks", params={"trigger": "schedule"}, headers=headers
            ).json()
            if listed["items"] and listed["items"][0]["status"] in ("completed", "failed"):
                task = listed["items"][0]
                break
            time.sleep(0.3)
        assert task.get("status") == "completed", (
            task,
            (tmp_path / "honcho.log").read_text()[-4000:],
        )
        assert task["items_count"] == site.pages
        exported = subprocess.run(
            [sys.executable, "-m", "crawlhub", "export", "pages", "--format", "csv", "-o", "pages.csv"],
            env=client_env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        rows = list(csv.DictReader(io.StringIO((tmp_path / "pages.csv").read_text())))
        assert sorted(r["url"] for r in rows) == sorted(
            [site.url] + [f"{site.url}page/{n}" for n in range(1, site.pages)]
        )
    finally:
        honcho.send_signal(signal.SIGTERM)
        try:
            honcho.wait(timeout=60)
        finally:
            if honcho.poll() is None:
                os.killpg(honcho.pid, signal.SIGKILL)
            log.close()
            site.close()
    output = (tmp_path / "honcho.log").read_text()
    # Each process shut down by itself (honcho's own shells report -15 either way).
    for name, farewell in (("web.1", "Finished server process"), ("worker.1", "worker stopped"),
                           ("ticker.1", "ticker stopped")):  # fmt: skip
        assert any(
            line.startswith(name.split(".")[0]) or farewell in line
            for line in output.splitlines()
            if name in line and farewell in line
        ), name
        assert f"{name} stopped" in output
    deadline = time.monotonic() + 10
    while session_members(honcho.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_members(honcho.pid) == [], "processes were left behind"
