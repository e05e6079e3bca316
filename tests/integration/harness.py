"""A CrawlHub under test: context, real worker threads, API client, and helpers to wait on runs."""

import atexit
import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import uvicorn
from starlette.testclient import TestClient

from crawlhub.actors.registry import declare_actors
from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.messaging.broker import build_worker
from crawlhub.worker import sandboxes
from tests.conftest import TOKEN, make_settings

FINISHED = {"completed", "failed", "cancelled", "skipped"}
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")


def mode_settings(mode: str) -> dict[str, Any]:
    """running_hub settings for a sandbox mode. `bwrap` is the default. `users` is what a
    root worker falls back to without namespaces (Docker's default seccomp profile): spiders
    see the machine's files as their slot's user, so they run on the system's Python (the
    tests' is in root's home) with a data dir every user may traverse."""
    if mode == "bwrap":
        return {}
    python = next((p for p in SYSTEM_PYTHONS if os.access(p, os.X_OK)), None)
    assert python is not None, f"mode users needs one of {SYSTEM_PYTHONS}"
    base = Path(tempfile.mkdtemp(prefix="crawlhub-users-mode-"))
    base.chmod(0o711)
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    return {"sandbox": "users", "spider_python": python, "data_dir": base / "data"}


@dataclass
class Hub:
    context: Context
    client: TestClient
    tmp: Path

    def deploy(
        self, name: str, files: dict[str, str], *, kind: str = "python", **spider: Any
    ) -> str:
        """Create a spider from source files (dedented) and upload them as a zip."""
        body = {"name": name, "kind": kind, **spider}
        created = self.client.post("/api/spiders", json=body)
        assert created.status_code == 201, created.text
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path, source in files.items():
                archive.writestr(path, textwrap.dedent(source))
        uploaded = self.client.post(
            f"/api/spiders/{name}/versions", files={"file": ("pkg.zip", buffer.getvalue())}
        )
        assert uploaded.status_code == 201, uploaded.text
        return str(created.json()["id"])

    def run(self, name: str, **params: Any) -> dict[str, Any]:
        response = self.client.post(f"/api/spiders/{name}/run", json={"params": params})
        assert response.status_code == 202, response.text
        return response.json()  # type: ignore[no-any-return]

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/tasks/{quote(task_id, safe='')}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait(
        self, task_id: str, statuses: set[str] = FINISHED, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.task(task_id)
            if task["status"] in statuses:
                return task
            time.sleep(0.05)
        raise AssertionError(
            f"task {task_id} still {self.task(task_id)['status']} after {timeout}s"
        )

    def logs(self, task_id: str, **query: Any) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.client.get(
                f"/api/tasks/{quote(task_id, safe='')}/logs",
                params={"after_seq": after, "limit": 1000, **query},
            ).json()
            lines += page["items"]
            if not page["items"]:
                return lines
            after = page["next_after_seq"]


@contextmanager
def running_hub(database_url: str, tmp_path: Path, redis_url: str | None = None,
                threads: int = 4, **settings: Any) -> Iterator[Hub]:  # fmt: skip
    """A context with `threads` real Dramatiq worker threads consuming its broker."""
    context = Context.build(
        make_settings(tmp_path, database_url=database_url, redis_url=redis_url, **settings)
    )
    if threads:
        sandboxes.prepare_worker(context.settings)
    declare_actors(context)
    worker = build_worker(context.broker, threads, 100) if threads else None
    if worker is not None:
        worker.start()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with TestClient(create_app(context), headers=headers) as client:
            yield Hub(context, client, tmp_path)
    finally:
        if worker is not None:
            worker.stop(timeout=30_000)
        context.close()


class Site:
    """A local web site of `pages` linked pages on 127.0.0.1, served from a thread."""

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.hits = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits += 1
                number = int(self.path.strip("/").split("/")[-1] or 0) if self.path != "/" else 0
                links = "".join(f'<a href="/page/{n}">{n}</a>' for n in range(1, site.pages))
                body = f"<html><head><title>page {number}</title></head><body>{links}</body></html>"
                html_answer(self, 200, body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server, self.url = serve_in_thread(Handler)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def html_answer(handler: BaseHTTPRequestHandler, status: int, body: str) -> None:
    """Answer a test site's request with an HTML page."""
    data = body.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def serve_in_thread(handler: Any) -> tuple[ThreadingHTTPServer, str]:
    """A test site spiders can reach, served from a thread: its server and its URL."""
    server = serve_to_spiders(handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def protected_ports() -> set[int]:
    """The local ports the firewall refuses to spiders: CrawlHub's services', among them the
    random ports of the services tests start (refused until their entries expire)."""
    try:
        done = subprocess.run(["nft", "-j", "list", "set", "inet", "crawlhub", "local_ports"],
                              capture_output=True, text=True, timeout=10)  # fmt: skip
    except OSError:  # no nft: no firewall
        return set()
    if done.returncode != 0:  # no table yet
        return set()
    ports = set()
    for entry in json.loads(done.stdout)["nftables"]:
        for element in entry.get("set", {}).get("elem", []):
            ports.add(int(element["elem"]["val"] if isinstance(element, dict) else element))
    return ports


def serve_to_spiders(handler: Any) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 that spiders can reach: on a port the firewall does not
    refuse them (a random port may be one a test's service had)."""
    refused, taken = protected_ports(), []
    try:
        while True:
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            if server.server_address[1] not in refused:
                return server
            taken.append(server)  # held until a good one is found, so it is not given again
    finally:
        for server in taken:
            server.server_close()


def processes_of(task_id: str) -> list[int]:
    """Host pids of every live process whose environment names this task: a run's bootstrap
    and all it started (the pids a spider sees are those of its own PID namespace)."""
    return processes_holding("environ", f"CRAWLHUB_TASK_ID={task_id}")


def processes_holding(what: str, part: str) -> list[int]:
    """Live processes with `part` as one NUL-separated field of /proc/<pid>/<what>
    (`environ`: a variable=value, `cmdline`: an argument)."""
    needle, found = part.encode(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if needle in Path(f"/proc/{pid}/{what}").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:
            continue
    return [pid for pid in found if pid_alive(pid)]


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone; or going while it is read (ESRCH)
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextmanager
def served(hub: Hub, port: int = 0) -> Iterator[str]:
    """The hub's CrawlHub over real HTTP on a loopback port (a free one unless given), for
    clients that are programs or use their own HTTP library, as a web process of its own:
    its own context (async Redis clients belong to one event loop), the hub's database,
    broker and workers. Its base URL."""
    context = Context.build(hub.context.settings) if hub.context.settings.redis_url else None
    if not port:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    app = create_app(context or hub.context)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            loop="asyncio", http="h11", timeout_graceful_shutdown=2)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise AssertionError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        if context is not None:
            context.close()


class Outage:
    """A TCP proxy in front of a service (PostgreSQL): `cut()` drops every connection through
    it and refuses new ones, as a database that went away does; `restore()` lets them in."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.down = threading.Event()
        self.stopped = False
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.down.set()
        with self.lock:
            held, self.open = self.open, []
        for conn in held:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.stopped = True
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for conn in (source, sink):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
