"""Shared set-up of the benchmarks: an in-process CrawlHub served over real HTTP, and reporting.

`Hub` stands up what `crawlhub up` runs, on PostgreSQL and Redis: a fresh database
(dropped and recreated), Redis db 14 (flushed), real Dramatiq worker threads and the
Starlette app under uvicorn on a free loopback port. Benchmarks talk to it with httpx.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psycopg
import redis
import uvicorn
from dramatiq import Worker

from crawlhub.actors.registry import declare_actors
from crawlhub.api import create_app
from crawlhub.config import load_settings
from crawlhub.context import Context
from crawlhub.repo import migrate
from crawlhub.worker import launchers, sandboxes

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST_URL = PG_ADMIN_URL.rsplit("/", 1)[0]
DB_NAME = os.environ.get("BENCH_DB_NAME", "crawlhub_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
TOKEN = "bench-token"  # noqa: S105 - a throwaway token of a loopback-only instance
FINISHED = frozenset({"completed", "failed", "cancelled", "skipped"})
PYTHON = sys.executable


ROOT = Path(__file__).resolve().parent.parent


def db_url(driver: str = "postgresql+psycopg") -> str:
    """The benchmark database's URL (SQLAlchemy form by default, libpq form with 'postgresql')."""
    return f"{PG_HOST_URL.replace('postgresql', driver, 1)}/{DB_NAME}"


def require_bootstrap() -> None:
    """Stop with a clear message when the child-side launcher is not there yet."""
    if importlib.util.find_spec("crawlhub.child.bootstrap") is None:
        sys.exit("crawlhub.child.bootstrap is missing: runs cannot start; benchmark not run")


def recreate_database(name: str = DB_NAME) -> None:
    """Drop and create a benchmark database (the shared one by default)."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def flush_redis() -> None:
    """Empty the benchmark's Redis database."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_ts(value: str) -> float:
    """An API timestamp (ISO 8601, UTC) as epoch seconds."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def line_ts(
    lines: Sequence[dict[str, Any]], stream: str, prefix: str | tuple[str, ...] = ""
) -> float:
    """The time of a run's first log line on `stream` whose text starts with `prefix`."""
    return next(
        parse_ts(line["ts"])
        for line in lines
        if line["stream"] == stream and line["text"].startswith(prefix)
    )


def zip_files(files: dict[str, str]) -> bytes:
    """A zip of source files (dedented)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, source in files.items():
            archive.writestr(path, textwrap.dedent(source))
    return buffer.getvalue()


class Hub:
    """A CrawlHub instance (API + worker threads) in this process, reached over HTTP; with
    `processes`, a distributed one instead: `crawlhub web` and `crawlhub worker` in
    processes of their own, as the Procfile runs them (this process keeps a Context for
    direct database access only)."""

    def __init__(
        self, *, worker_threads: int = 2, worker_timeout_ms: int = 100, warm_start: bool = True,
        processes: bool = False, env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.env = env or {}  # more settings of the processes (CRAWLHUB_*)
        self.worker_threads = worker_threads
        self.warm_start = warm_start
        self.processes = processes
        self._children: list[subprocess.Popen[bytes]] = []
        self.worker_timeout_ms = worker_timeout_ms
        self._tmp = tempfile.TemporaryDirectory(prefix="crawlhub-bench-")
        self.data_dir = Path(self._tmp.name)
        self.data_dir.chmod(0o711)  # as root, spiders run as another user and must reach it
        self.context: Context | None = None
        self.worker: Worker | None = None
        self.server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self.client: httpx.Client | None = None
        self.base_url = ""

    def __enter__(self) -> Hub:
        require_bootstrap()
        logging.basicConfig(level=logging.WARNING)
        recreate_database()
        flush_redis()
        settings = load_settings(
            database_url=db_url(), redis_url=REDIS_URL, api_tokens=TOKEN,
            data_dir=self.data_dir, worker_concurrency=self.worker_threads,
            warm_start=self.warm_start,
        )  # fmt: skip
        self.context = Context.build(settings)
        migrate.upgrade(self.context.db.engine)
        if self.processes:
            try:
                self._start_processes()
            except BaseException:
                self.__exit__(None, None, None)
                raise
            return self
        sandboxes.prepare_worker(settings)  # as `crawlhub worker` does, launchers warmed up
        declare_actors(self.context)  # the worker threads consume run and alert messages
        self.worker = Worker(
            self.context.broker,
            worker_threads=self.worker_threads,
            worker_timeout=self.worker_timeout_ms,
        )
        self.worker.start()
        port = free_port()
        config = uvicorn.Config(
            create_app(self.context), host="127.0.0.1", port=port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self._server_thread = threading.Thread(target=self.server.run, daemon=True)
        self._server_thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self._server_thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.base_url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )
        return self

    def _start_processes(self) -> None:
        port = free_port()
        env = {
            **os.environ, "DATABASE_URL": db_url(), "REDIS_URL": REDIS_URL,
            "CRAWLHUB_API_TOKENS": TOKEN, "CRAWLHUB_DATA_DIR": str(self.data_dir),
            "CRAWLHUB_WORKER_CONCURRENCY": str(self.worker_threads), "PORT": str(port),
            "CRAWLHUB_WARM_START": str(self.warm_start).lower(), "CRAWLHUB_LOG_LEVEL": "INFO",
            **self.env,
        }  # fmt: skip
        logs = self.data_dir.parent / f"{self.data_dir.name}-logs"
        logs.mkdir()
        for role in ("worker", "web"):
            with (logs / f"{role}.log").open("wb") as out:
                self._children.append(subprocess.Popen(
                    [PYTHON, "-m", "crawlhub", role], env=env, stdout=out,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                ))  # fmt: skip
        self.base_url = f"http://127.0.0.1:{port}"
        self.client = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (
                    self.client.get("/readyz").status_code == 200
                    and b"worker ready" in (logs / "worker.log").read_bytes()
                ):
                    break
            for child in self._children:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"crawlhub {child.args[3]} did not start (exit {child.poll()}): see {logs}"
                    )
            time.sleep(0.05)
        time.sleep(1.0)  # the worker's launchers warm up

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.client is not None:
            self.client.close()
        if self.server is not None:
            self.server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(10)
        if self.worker is not None:
            self.worker.stop(timeout=30_000)
        launchers.POOL.stop()
        for child in self._children:
            child.terminate()
        for child in self._children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        shutil.rmtree(f"{self.data_dir}-logs", ignore_errors=True)
        if self.context is not None:
            self.context.close()
        self._tmp.cleanup()

    @property
    def http(self) -> httpx.Client:
        assert self.client is not None, "Hub used outside its with block"
        return self.client

    @property
    def ctx(self) -> Context:
        assert self.context is not None, "Hub used outside its with block"
        return self.context

    # --- API helpers --------------------------------------------------------------------------

    def create_spider(self, name: str, kind: str = "python", **fields: Any) -> dict[str, Any]:
        response = self.http.post("/api/spiders", json={"name": name, "kind": kind, **fields})
        _expect(response, 201)
        return dict(response.json())

    def upload(self, name: str, filename: str, content: bytes) -> dict[str, Any]:
        response = self.http.post(
            f"/api/spiders/{name}/versions", files={"file": (filename, content)}
        )
        _expect(response, 201)
        return dict(response.json())

    def deploy_python(self, name: str, source: str, **fields: Any) -> None:
        """A python spider from one module's source (entry main:run)."""
        self.create_spider(name, "python", **fields)
        self.upload(name, "main.py", textwrap.dedent(source).encode())

    def deploy_zip(self, name: str, kind: str, files: dict[str, str], **fields: Any) -> None:
        self.create_spider(name, kind, **fields)
        self.upload(name, "project.zip", zip_files(files))

    def run(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.http.post(f"/api/spiders/{name}/run", json={"params": params or {}})
        _expect(response, 202)
        return dict(response.json())

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/tasks/{task_id}")
        _expect(response, 200)
        return dict(response.json())

    def wait(self, task_id: str, timeout: float = 60, poll: float = 0.05, first: float = 0.0
             ) -> dict[str, Any]:  # fmt: skip
        """Poll a task until it has finished (the first poll after `first` seconds)."""
        deadline = time.monotonic() + timeout
        time.sleep(first)
        while True:
            task = self.task(task_id)
            if task["status"] in FINISHED:
                return task
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {task['status']} after {timeout} s")
            time.sleep(poll)

    def logs(self, task_id: str) -> list[dict[str, Any]]:
        """Every persisted log line of a task."""
        lines: list[dict[str, Any]] = []
        after = 0
        for _ in range(10_000):  # bounded: 10 M lines at most
            response = self.http.get(
                f"/api/tasks/{task_id}/logs", params={"after_seq": after, "limit": 1000}
            )
            _expect(response, 200)
            page = response.json()
            if not page["items"]:
                break
            lines += page["items"]
            after = page["next_after_seq"]
        return lines

    def expect_completed(self, task: dict[str, Any]) -> None:
        """Raise with the task's logs when a run did not complete."""
        if task["status"] == "completed":
            return
        tail = "\n".join(
            f"  [{line['stream']}] {line['text']}" for line in self.logs(task["id"])[-30:]
        )
        raise RuntimeError(
            f"task {task['id']} ended {task['status']} ({task.get('reason')}, exit "
            f"{task.get('exit_code')}): {task.get('error_message')}\nlast log lines:\n{tail}"
        )


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} → "
            f"{response.status_code}: {response.text[:500]}"
        )


# --- measurement helpers --------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of a non-empty sample."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """`with timed() as t:` … then t[0] is the elapsed seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


# --- reporting ------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a benchmark's result table."""

    metric: str
    value: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: informational, no target


def machine() -> str:
    """One line describing where the benchmark ran."""
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    pg = "?"
    with contextlib.suppress(Exception), psycopg.connect(PG_ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg = str(row[0]) if row else "?"
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC | nproc {nproc} | {cpu} | load {load} | "
        f"Python {platform.python_version()} | PostgreSQL {pg} | {platform.system()} "
        f"{platform.release()}"
    )


def report(title: str, rows: Sequence[Row], notes: Sequence[str] = ()) -> None:
    """Print a benchmark's result table."""
    header = Row("metric", "value", "baseline", "ratio", "target", None)
    cells = [
        (r.metric, r.value, r.baseline, r.ratio, r.target, _met(r.met)) for r in (header, *rows)
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(6)]
    print(f"\n== {title}")
    print(f"   {machine()}")
    for n, c in enumerate(cells):
        print("   " + "  ".join(text.ljust(width) for text, width in zip(c, widths, strict=True)))
        if n == 0:
            print("   " + "  ".join("-" * width for width in widths))
    for note in notes:
        print(f"   note: {note}")
    sys.stdout.flush()


def _met(met: bool | None) -> str:
    if met is None:
        return ""
    return "met" if met else "NOT MET"
