"""The real processes: `crawlhub up` end to end, and web/worker/ticker/migrate on PG + Redis."""

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import TOKEN
from tests.integration.harness import Site

FIXTURES = Path(__file__).parent.parent / "fixtures" / "spiders"
START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CRAWLHUB_", "DATABASE_", "REDIS_"))
    }
    env.update({"CRAWLHUB_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1",
                "CRAWLHUB_SANDBOX_WRITABLE": str(shared(tmp_path))})  # fmt: skip
    env.update(extra)
    return env


def shared(tmp_path: Path) -> Path:
    """A directory below tmp_path the spiders of base_env's CrawlHub may write to (gate and
    marker files): bound into their sandbox, beside the data dir, out of their sight."""
    path = tmp_path / "shared"
    path.mkdir(exist_ok=True)
    path.chmod(0o1777)  # spiders run as slot users
    return path


def crawlhub(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crawlhub", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Process:
    """A crawlhub process started in the background, its output kept in a file."""

    started: list["Process"] = []  # noqa: RUF012 - every one, so none outlives the session

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.log = cwd / f"{args[0]}-{time.monotonic_ns()}.log"
        self.out = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "crawlhub", *args],
            env=env,
            cwd=cwd,
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )
        Process.started.append(self)

    def output(self) -> str:
        return self.log.read_text()

    def wait_output(self, text: str) -> None:
        """Wait until the process has printed `text`; processes start at their own pace."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while text not in self.output():
            assert self.proc.poll() is None, f"process exited early:\n{self.output()}"
            assert time.monotonic() < deadline, (
                f"no {text!r} in {START_TIMEOUT_S}s:\n{self.output()}"
            )
            time.sleep(0.1)

    def wait_for(self, url: str) -> httpx.Response:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"process exited early:\n{self.output()}"
            try:
                return httpx.get(url, timeout=2)
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"{url} did not answer in {START_TIMEOUT_S}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.out.close()
        return code


@contextmanager
def embedded_hub(workdir: Path, token: str, **env: str) -> Iterator[str]:
    """`crawlhub up` (SQLite, its own worker, this API token) in a work dir, with more
    settings: its address while it runs; it must stop cleanly."""
    port = free_port()
    up = Process(["up"], base_env(workdir, PORT=str(port), CRAWLHUB_API_TOKENS=token,
                                  DATABASE_URL=f"sqlite:///{workdir / 'hub.db'}", **env),
                 workdir)  # fmt: skip
    try:
        up.wait_for(f"http://127.0.0.1:{port}/readyz")
        yield f"http://127.0.0.1:{port}"
    finally:
        assert up.stop() == 0, up.output()


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


def test_up_serves_the_api_with_a_generated_token_and_deploy_creates_versions(
    workdir: Path,
) -> None:
    port = free_port()
    env = base_env(workdir, PORT=str(port), DATABASE_URL=f"sqlite:///{workdir / 'hub.db'}")
    up = Process(["up"], env, workdir)
    try:
        assert up.wait_for(f"http://127.0.0.1:{port}/readyz").json()["status"] == "ok"
        token_file = workdir / "data" / "api-token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert token in up.output()  # printed once, on first start
        api = f"http://127.0.0.1:{port}/api/spiders"
        assert httpx.get(api).status_code == 401
        listed = httpx.get(api, headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200 and listed.json()["total"] == 0

        client_env = {**env, "CRAWLHUB_URL": f"http://127.0.0.1:{port}"}  # token from the data dir
        scrapy = crawlhub(
            "deploy", str(FIXTURES / "pages_scrapy"), "--name", "pages", env=client_env, cwd=workdir
        )
        assert scrapy.returncode == 0, scrapy.stderr
        assert "version 1" in scrapy.stdout
        script = crawlhub(
            "deploy", str(FIXTURES / "hello.py"), "--name", "hello", env=client_env, cwd=workdir
        )
        assert script.returncode == 0, script.stderr
        again = crawlhub(
            "deploy", str(FIXTURES / "hello.py"), "--name", "hello", env=client_env, cwd=workdir
        )
        assert "version 2" in again.stdout, again.stderr

        headers = {"Authorization": f"Bearer {token}"}
        pages = httpx.get(f"{api}/pages", headers=headers).json()
        assert (
            pages["kind"] == "scrapy"
            and pages["entry"] == "pages"
            and pages["current_version"] == 1
        )
        hello = httpx.get(f"{api}/hello/versions", headers=headers).json()
        assert [v["number"] for v in hello["items"]] == [2, 1]
        assert hello["items"][0]["format"] == "py"

        # A refused upload leaves nothing behind; --entry and --kind apply to a re-deploy.
        fake = workdir / "fake.zip"
        fake.write_bytes(b"not a zip at all")
        refused = crawlhub("deploy", str(fake), "--name", "fake", env=client_env, cwd=workdir)
        assert refused.returncode == 1 and "crawlhub:" in refused.stderr
        assert httpx.get(f"{api}/fake", headers=headers).status_code == 404
        refused = crawlhub("deploy", str(fake), "--name", "pages", "--entry", "other",
                           "--kind", "scrapy", env=client_env, cwd=workdir)  # fmt: skip
        assert refused.returncode == 1
        assert httpx.get(f"{api}/pages", headers=headers).json()["entry"] == "pages"
        # The next version is another project: the spider is pointed at one of its spiders,
        # and the others become spiders of the project.
        renamed = crawlhub("deploy", str(FIXTURES / "news_scrapy"), "--name", "pages",
                           "--entry", "alpha", env=client_env, cwd=workdir)  # fmt: skip
        assert renamed.returncode == 0, renamed.stderr
        assert "entry alpha" in renamed.stdout and "version 2" in renamed.stdout
        assert "spiders: alpha, beta, gamma" in renamed.stdout, renamed.stdout

        # A project deployed once: every spider of it, listed by a worker.
        news = crawlhub("deploy", str(FIXTURES / "news_scrapy"), "--project", "news",
                        env=client_env, cwd=workdir)  # fmt: skip
        assert news.returncode == 0, news.stderr
        assert "created project news (scrapy): version 1" in news.stdout
        assert "the platform's environment: ready" in news.stdout
        assert "spiders: alpha, beta, gamma" in news.stdout
        listing = crawlhub("projects", "list", env=client_env, cwd=workdir).stdout
        assert any(line.split()[:3] == ["news", "scrapy", "1"] for line in listing.splitlines())
        shown = crawlhub("projects", "show", "news", env=client_env, cwd=workdir).stdout
        assert "ready" in shown and "alpha, beta, gamma" in shown, shown
        log = crawlhub("projects", "log", "news", env=client_env, cwd=workdir)
        assert log.stdout.strip() == "scrapy list: alpha, beta, gamma", log.stdout
        refused = crawlhub("deploy", str(fake), "--project", "nothing", "--kind", "scrapy",
                           env=client_env, cwd=workdir)  # fmt: skip
        assert refused.returncode == 1 and "crawlhub:" in refused.stderr
        projects = httpx.get(f"http://127.0.0.1:{port}/api/projects", headers=headers).json()
        assert sorted(p["name"] for p in projects["items"]) == ["hello", "news", "pages"]
    finally:
        code = up.stop(signal.SIGINT)
    assert code == 0, up.output()
    assert "stopped" in up.output()

    # A second start keeps the token and does not print it again.
    second = Process(["up"], env, workdir)
    try:
        second.wait_for(f"http://127.0.0.1:{port}/healthz")
        headers = {"Authorization": f"Bearer {token}"}
        listed = httpx.get(f"http://127.0.0.1:{port}/api/spiders", headers=headers).json()
        assert (
            listed["total"] == 7
        )  # pages, hello; beta, gamma of pages; alpha, news-beta, news-gamma
    finally:
        assert second.stop() == 0
    assert token not in second.output()


def test_deploy_reports_api_errors_and_unreachable_servers(workdir: Path) -> None:
    env = base_env(workdir, CRAWLHUB_URL=f"http://127.0.0.1:{free_port()}", CRAWLHUB_TOKEN="x")
    down = crawlhub("deploy", str(FIXTURES / "hello.py"), "--name", "hello", env=env, cwd=workdir)
    assert down.returncode == 3  # unreachable
    assert "cannot reach" in down.stderr
    missing = crawlhub("deploy", str(workdir / "nope.py"), "--name", "hello", env=env, cwd=workdir)
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_distributed_processes_start_and_stop_on_sigterm(
    workdir: Path, postgres_url: str, redis_url: str
) -> None:
    port = free_port()
    env = base_env(
        workdir,
        PORT=str(port),
        DATABASE_URL=postgres_url.replace("postgresql+psycopg://", "postgres://"),
        REDIS_URL=redis_url,
        CRAWLHUB_API_TOKENS="secret-one,secret-two",
    )
    migrated = crawlhub("migrate", env=env, cwd=workdir)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    web = Process(["web"], env, workdir)
    worker = Process(["worker"], env, workdir)
    ticker = Process(["ticker"], env, workdir)
    try:
        ready = web.wait_for(f"http://127.0.0.1:{port}/readyz")
        assert ready.json()["checks"] == {"database": "ok", "migrations": "ok", "redis": "ok"}
        headers = {"Authorization": "Bearer secret-two"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/spiders", headers=headers).status_code == 200
        worker.wait_output("worker ready")
        ticker.wait_output("ticker started")
        client_env = {
            **env,
            "CRAWLHUB_URL": f"http://127.0.0.1:{port}",
            "CRAWLHUB_TOKEN": "secret-one",
        }
        deployed = crawlhub(
            "deploy", str(FIXTURES / "hello.py"), "--name", "hello", env=client_env, cwd=workdir
        )
        assert deployed.returncode == 0, deployed.stderr
        ran = crawlhub("run", "hello", "--follow", env=client_env, cwd=workdir)
        assert ran.returncode == 0, ran.stderr + worker.output()
        assert "completed: 3 items" in ran.stderr
        assert "hello" in worker.output()  # the run was executed by the worker process
    finally:
        codes = [proc.stop() for proc in (web, worker, ticker)]
    assert codes == [0, 0, 0], [p.output() for p in (web, worker, ticker)]
    for proc in (web, worker, ticker):
        assert "secret-one" not in proc.output()
        assert postgres_url.split("@")[0] not in proc.output() or "postgres@" in postgres_url


def test_separate_processes_refuse_to_start_without_redis(workdir: Path) -> None:
    env = base_env(workdir, DATABASE_URL=f"sqlite:///{workdir / 'x.db'}", CRAWLHUB_API_TOKENS="t")
    for command in ("web", "worker", "ticker"):
        result = crawlhub(command, env=env, cwd=workdir)
        assert result.returncode == 2
        expected = f"crawlhub: REDIS_URL: required for `crawlhub {command}`"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected)


def test_invalid_setting_stops_a_process_with_one_line_naming_it(workdir: Path) -> None:
    result = crawlhub("migrate", env=base_env(workdir, PORT="http"), cwd=workdir)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crawlhub: PORT: ")
    allow = base_env(workdir, CRAWLHUB_CHANNEL_ALLOW_HOSTS="hooks.example, 10.0.0.0/33")
    result = crawlhub("migrate", env=allow, cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "crawlhub: CRAWLHUB_CHANNEL_ALLOW_HOSTS: '10.0.0.0/33' is neither a host name nor an "
        "address or CIDR"
    ]


def test_a_worker_refuses_a_concurrency_its_database_cannot_serve(
    workdir: Path, postgres_url: str, redis_url: str
) -> None:
    """Each run may hold three database sessions: a concurrency whose runs would need more
    connections than PostgreSQL lets ordinary users hold stops the worker at start, with one
    line naming the setting."""
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgres://")) as conn:
        most = int(conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
        kept = int(conn.execute("SHOW superuser_reserved_connections").fetchone()[0])  # type: ignore[index]
    threads = (most - kept) // 3 + 1
    env = base_env(workdir, REDIS_URL=redis_url, CRAWLHUB_WORKER_CONCURRENCY=str(threads),
                   DATABASE_URL=postgres_url.replace("postgresql+psycopg://", "postgres://"))  # fmt: skip
    assert crawlhub("migrate", env=env, cwd=workdir).returncode == 0
    result = crawlhub("worker", env=env, cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"crawlhub: CRAWLHUB_WORKER_CONCURRENCY={threads}: a worker needs up to {3 * threads + 4} "
        f"database connections (3 per run), and PostgreSQL lets ordinary users hold "
        f"{most - kept} (max_connections): lower the concurrency or raise max_connections")  # fmt: skip


def test_cli_runs_follows_and_lists_runs_of_the_embedded_instance(workdir: Path) -> None:
    port = free_port()
    env = base_env(workdir, PORT=str(port), DATABASE_URL=f"sqlite:///{workdir / 'hub.db'}")
    client_env = {**env, "CRAWLHUB_URL": f"http://127.0.0.1:{port}"}
    (workdir / "failing.py").write_text(
        "import sys\ndef run(p):\n    print('giving up', file=sys.stderr)\n    sys.exit(4)\n"
    )
    up = Process(["up"], env, workdir)
    try:
        up.wait_for(f"http://127.0.0.1:{port}/readyz")
        deployed = crawlhub(
            "deploy", str(FIXTURES / "hello.py"), "--name", "hello", env=client_env, cwd=workdir
        )
        assert deployed.returncode == 0, deployed.stderr
        followed = crawlhub("run", "hello", "-p", "count=4", "-p", "greeting=hej", "--follow",
                            env=client_env, cwd=workdir)  # fmt: skip
        assert followed.returncode == 0, followed.stderr
        assert "completed: 4 items" in followed.stderr
        task_id = followed.stderr.split()[1]
        printed = crawlhub("logs", task_id, env=client_env, cwd=workdir)
        assert printed.returncode == 0  # every line on stdout, CrawlHub's marked
        assert "[crawlhub] completed after" in printed.stdout and not printed.stderr
        exported = crawlhub("export", "hello", "--format", "csv", "-o", "hello.csv", "--excel",
                            env=client_env, cwd=workdir)  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        assert "wrote 4 items" in exported.stderr and not exported.stdout
        csv_text = (workdir / "hello.csv").read_text(encoding="utf-8-sig")
        assert csv_text.splitlines()[0] in ("n,greeting", "greeting,n") and "hej" in csv_text
        jsonl = crawlhub(
            "export", "hello", "--format", "jsonl", "--task", task_id, env=client_env, cwd=workdir
        )
        assert jsonl.returncode == 0, jsonl.stderr
        served = next(workdir.glob(f"hello-{task_id}.jsonl"))  # the server's file name
        assert [json.loads(x)["n"] for x in served.read_text().splitlines()] == [0, 1, 2, 3]
        listed = crawlhub("runs", "--spider", "hello", env=client_env, cwd=workdir)
        assert task_id in listed.stdout and "completed" in listed.stdout
        as_json = crawlhub("runs", "--spider", "hello", "--json", env=client_env, cwd=workdir)
        assert [t["id"] for t in json.loads(as_json.stdout)["items"]] == [task_id]

        crawlhub(
            "deploy", str(workdir / "failing.py"), "--name", "failing", env=client_env, cwd=workdir
        )
        token = (workdir / "data" / "api-token").read_text().strip()
        patched = httpx.patch(
            f"http://127.0.0.1:{port}/api/spiders/failing",
            json={"max_retries": 0},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert patched.status_code == 200, patched.text
        failed = crawlhub("run", "failing", "--follow", env=client_env, cwd=workdir)
        assert failed.returncode == 1
        assert "giving up" in failed.stdout and "failed (exit_code)" in failed.stderr
        shown = crawlhub("queues", env=client_env, cwd=workdir)
        assert shown.returncode == 0 and "crawlhub.runs" in shown.stdout, shown.stderr
        dead = crawlhub("queues", "dead-letters", env=client_env, cwd=workdir)
        assert "1 dead letter(s) in crawlhub.runs" in dead.stderr, dead.stdout + dead.stderr
        purged = crawlhub("queues", "purge", env=client_env, cwd=workdir)
        assert "purged 1 dead letter(s)" in purged.stderr
        bad_param = crawlhub("run", "hello", "-p", "novalue", env=client_env, cwd=workdir)
        assert bad_param.returncode == 2 and "KEY=VALUE" in bad_param.stderr
    finally:
        assert up.stop() == 0, up.output()


def test_ctrl_c_says_what_it_waits_for_twice_stops_at_once_and_the_next_start_hands_back(
    workdir: Path,
) -> None:
    """Ctrl-C during a run says what `up` waits for; a second one stops at once; the next
    `crawlhub up` knows it was the only worker and hands the cut-short run back at once (not
    after the 60 s lease), and the run then completes."""
    port = free_port()
    env = base_env(workdir, PORT=str(port), DATABASE_URL=f"sqlite:///{workdir / 'hub.db'}")
    client_env = {**env, "CRAWLHUB_URL": f"http://127.0.0.1:{port}"}
    marker = shared(workdir) / "first-attempt-started"
    (workdir / "slow.py").write_text(
        "import pathlib, time\n"
        "def run(p):\n"
        f"    marker = pathlib.Path({str(marker)!r})\n"
        "    if not marker.exists():\n"
        "        marker.write_text('x')\n"
        "        time.sleep(120)\n"
        "    return [{'done': True}]\n"
    )
    up = Process(["up"], env, workdir)
    up.wait_for(f"http://127.0.0.1:{port}/readyz")
    assert crawlhub("deploy", str(workdir / "slow.py"), "--name", "slow", env=client_env,
                    cwd=workdir).returncode == 0  # fmt: skip
    started = crawlhub("run", "slow", "--json", env=client_env, cwd=workdir)
    run_id = json.loads(started.stdout)["id"]
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, up.output()
        time.sleep(0.1)
    up.proc.send_signal(signal.SIGINT)
    up.wait_output("press Ctrl-C again to stop them now")
    assert "1 run(s) still running get up to" in up.output()
    code = up.stop(signal.SIGINT, timeout=10)
    assert code == 130 and "stopped at once" in up.output(), up.output()

    again = Process(["up"], env, workdir)
    try:
        again.wait_for(f"http://127.0.0.1:{port}/readyz")
        began = time.monotonic()
        deadline = began + 30
        while True:
            shown = crawlhub("runs", "--json", env=client_env, cwd=workdir)
            [task] = json.loads(shown.stdout)["items"]
            if task["status"] == "completed":
                break
            assert time.monotonic() < deadline, (task, again.output())
            time.sleep(0.2)
        assert task["id"] == run_id and task["items_count"] == 1 and task["retry_count"] == 0
        assert f"task {run_id} was running when CrawlHub last stopped" in again.output()
    finally:
        assert again.stop() == 0, again.output()


def test_the_default_relative_data_dir_keeps_a_scrapy_runs_stats(workdir: Path) -> None:
    """With nothing set, the data dir is ./crawlhub-data: resolved at start-up, so a spider
    running in its work dir still writes its stats where CrawlHub reads them."""
    port = free_port()
    env = base_env(workdir, PORT=str(port))
    del env["CRAWLHUB_DATA_DIR"]  # the default, relative to where `up` starts
    up = Process(["up"], env, workdir)
    site = Site(pages=3)
    try:
        up.wait_for(f"http://127.0.0.1:{port}/readyz")
        assert (workdir / "crawlhub-data" / "api-token").exists()
        client_env = {**env, "CRAWLHUB_URL": f"http://127.0.0.1:{port}"}
        deployed = crawlhub("deploy", str(FIXTURES / "news_scrapy"), "--project", "news",
                            env=client_env, cwd=workdir)  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
        ran = crawlhub("run", "alpha", "-p", f"start_url={site.url}", "--follow", "--json",
                       env=client_env, cwd=workdir)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        run_id = ran.stderr.split()[1]
        task = json.loads(crawlhub("runs", "--json", env=client_env, cwd=workdir).stdout)
        [done] = [t for t in task["items"] if t["id"] == run_id]
        assert done["stats"] is not None and done["stats"]["item_scraped_count"] == site.pages
        assert "Could not save the crawl stats" not in crawlhub("logs", run_id, env=client_env,
                                                                cwd=workdir).stdout  # fmt: skip
    finally:
        site.close()
        assert up.stop() == 0, up.output()


def test_workers_online_counts_worker_processes_only(
    workdir: Path, postgres_url: str, redis_url: str
) -> None:
    """A ticker (whose maintenance call touches Dramatiq's heartbeat set) and a web process
    that enqueues are not workers: 0 online with only them up, on the API, the dashboard's
    overview and /metrics. A worker counts from its boot until it stops (at once) or goes
    silent for three heartbeats (killed). (The overview's count is the same query.)"""
    port = free_port()
    env = base_env(workdir, PORT=str(port), REDIS_URL=redis_url, CRAWLHUB_API_TOKENS=TOKEN,
                   DATABASE_URL=postgres_url.replace("postgresql+psycopg://", "postgres://"),
                   CRAWLHUB_HEARTBEAT_S="0.5", CRAWLHUB_LEASE_S="5")  # fmt: skip
    assert crawlhub("migrate", env=env, cwd=workdir).returncode == 0
    web, ticker = Process(["web"], env, workdir), Process(["ticker"], env, workdir)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def online() -> list[dict[str, Any]]:
        workers: list[dict[str, Any]] = httpx.get(f"{base}/api/queues", headers=headers).json()[
            "workers"
        ]
        return workers

    def until(count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 15
        while len(found := online()) != count:
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
        return found

    workers: list[Process] = []
    try:
        web.wait_for(f"{base}/readyz")
        ticker.wait_output("ticker started")
        deployed = crawlhub("deploy", str(FIXTURES / "hello.py"), "--name", "hello", cwd=workdir,
                            env={**env, "CRAWLHUB_URL": base, "CRAWLHUB_TOKEN": TOKEN})  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr
        httpx.post(f"{base}/api/spiders/hello/run", headers=headers, json={}).raise_for_status()
        time.sleep(3)  # several ticker rounds, the maintenance call among them
        assert online() == []
        metrics = httpx.get(f"{base}/metrics").text
        assert "crawlhub_workers 0.0" in metrics, metrics
        workers = [Process(["worker"], env, workdir) for _ in range(2)]
        for worker in workers:
            worker.wait_output("worker ready")
        found = until(2)
        assert {w["pid"] for w in found} == {w.proc.pid for w in workers}
        assert all(w["threads"] == 4 and w["id"].endswith(f":{w['pid']}") for w in found)
        assert workers[0].stop() == 0
        assert [w["pid"] for w in online()] == [workers[1].proc.pid]  # stopped: gone at once
        workers[1].proc.kill()
        workers[1].proc.wait()
        until(0)  # killed: gone after three missed heartbeats
    finally:
        for proc in (web, ticker, *workers):
            if proc.proc.poll() is None:
                proc.stop()


def test_a_run_that_fails_three_times_prints_one_line_per_attempt_and_no_traceback(
    workdir: Path,
) -> None:
    """The server console of a run dead-lettered after three attempts: one line for each
    attempt's failure, none of Dramatiq's tracebacks (they are there at DEBUG)."""
    port = free_port()
    (workdir / "failing.py").write_text("import sys\ndef run(p):\n    sys.exit(4)\n")
    for level, traceback in (("INFO", False), ("DEBUG", True)):
        env = base_env(workdir, PORT=str(port), CRAWLHUB_LOG_LEVEL=level,
                       DATABASE_URL=f"sqlite:///{workdir / f'{level}.db'}",
                       CRAWLHUB_DATA_DIR=str(workdir / level))  # fmt: skip
        client_env = {**env, "CRAWLHUB_URL": f"http://127.0.0.1:{port}"}
        up = Process(["up"], env, workdir)
        try:
            up.wait_for(f"http://127.0.0.1:{port}/readyz")
            token = (workdir / level / "api-token").read_text().strip()
            deployed = crawlhub("deploy", str(workdir / "failing.py"), "--name", "failing",
                                env=client_env, cwd=workdir)  # fmt: skip
            assert deployed.returncode == 0, deployed.stderr
            patched = httpx.patch(
                f"http://127.0.0.1:{port}/api/spiders/failing",
                json={"max_retries": 2, "retry_backoff_min_s": 1, "retry_backoff_max_s": 1},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert patched.status_code == 200, patched.text
            failed = crawlhub("run", "failing", "--follow", env=client_env, cwd=workdir)
            assert failed.returncode == 1, failed.stderr
            task_id = failed.stderr.split()[1]
            deadline = time.monotonic() + 30
            while "dead-lettered" not in up.output():
                assert time.monotonic() < deadline, up.output()
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            assert up.stop() == 0, up.output()
        printed = up.output()
        assert ("Traceback" in printed) is traceback, printed
        if not traceback:
            about = [line for line in printed.splitlines() if task_id in line]
            attempts = [line for line in about if re.search(r"failing attempt \d failed", line)]
            assert [line.split(" attempt ")[1][:1] for line in attempts] == ["1", "2", "3"]
            assert "failed, to be retried (exit_code, exit 4)" in attempts[0]
            assert "Failed to process message" not in printed and "Retrying" not in printed
            assert len(about) <= 6, "\n".join(about)  # the 3 attempts, the alert, the dead letter
