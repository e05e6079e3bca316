"""What the sandbox tests share: a worker process as root with secrets in its environment, a
recorder that uploaded code reports to, and the report it sends (who ran it, what it saw)."""

import ast
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crawlhub.config import load_settings

IN_CI = bool(os.environ.get("CI"))
SLOT_UIDS = load_settings().spider_uid_range
INTERPRETER_IN_ROOT = sorted(
    {Path(p).relative_to("/root").parts[0] for p in (sys.prefix, sys.base_prefix)
     if p.startswith("/root/")})  # fmt: skip


def require_root() -> None:
    """The sandbox tests start workers as root (how deployments run them): not root is a
    skip locally and a failure in CI, where a skipped isolation test is a failed one."""
    if os.geteuid() != 0:
        message = "the sandbox tests start workers as root"
        if IN_CI:
            pytest.fail(f"{message}; CI runs as root")
        pytest.skip(message)


# Uploaded code calls this to say who ran it and what it could reach. RECORDER_PORT,
# WORKER_PID and DATA_DIR are filled in by `report_code`.
REPORT = r"""
def _crawlhub_report(phase, **extra):
    import os, socket, sys
    def read(path, size=65536):
        try:
            with open(path, "rb") as f:
                return f.read(size).decode("utf-8", "replace")
        except OSError as exc:
            return "!" + type(exc).__name__
    def listing(path):
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            return "!" + type(exc).__name__
    status = read("/proc/self/status")
    report = {
        "phase": phase, "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
        "groups": os.getgroups(), "argv": list(getattr(sys, "argv", [])), "cwd": os.getcwd(),
        "cmdline": read("/proc/self/cmdline").replace("\0", " "),
        "status": {line.split(":")[0]: line.split(":", 1)[1].strip()
                   for line in status.splitlines() if line.startswith(("Cap", "NoNewPrivs"))},
        "env": dict(os.environ),
        "parent_environ": read("/proc/%d/environ" % os.getppid()),
        "worker_environ": read("/proc/WORKER_PID/environ"),
        "token": read("DATA_DIR/api-token"),
        "data_dir": listing("DATA_DIR"),
        "root_home": listing("/root"),
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    }
    report.update(extra)
    connection = socket.create_connection(("127.0.0.1", RECORDER_PORT), timeout=10)
    connection.sendall((repr(report) + "\n").encode())
    connection.close()
"""


class Recorder:
    """A TCP server on loopback keeping the reports (one `repr` of a dict per line) that
    uploaded code sends it."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        data = b""
        with connection:
            connection.settimeout(30)
            try:
                while chunk := connection.recv(65536):
                    data += chunk
            except OSError:
                pass
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                with self.lock:
                    self.reports.append(ast.literal_eval(line))

    def of(self, phase: str) -> list[dict[str, Any]]:
        with self.lock:
            return [report for report in self.reports if report["phase"] == phase]

    def wait_for(self, phase: str, count: int = 1, timeout: float = 90) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.of(phase)) < count:
            assert time.monotonic() < deadline, f"no {phase!r} report; got {self.phases()}"
            time.sleep(0.05)
        return self.of(phase)

    def phases(self) -> list[str]:
        with self.lock:
            return [report["phase"] for report in self.reports]

    def close(self) -> None:
        self.server.close()


@dataclass
class Worker:
    proc: "subprocess.Popen[bytes]"
    output: Path
    data_dir: Path
    secrets: dict[str, str]

    def report_code(self, recorder: Recorder) -> str:
        """REPORT, for this worker and recorder."""
        return (REPORT.replace("RECORDER_PORT", str(recorder.port))
                .replace("WORKER_PID", str(self.proc.pid))
                .replace("DATA_DIR", str(self.data_dir)))  # fmt: skip


@contextmanager
def worker_process(tmp_path: Path, pg_url: str, redis_url: str, *, data_root: Path | None = None,
                   **extra: str) -> Iterator[Worker]:  # fmt: skip
    """`crawlhub worker` as root in a process of its own, its environment full of secrets
    and a token file in its data dir, as `crawlhub up` leaves one."""
    data_dir = (data_root or tmp_path.parent) / f"worker-data-{time.monotonic_ns()}"
    data_dir.mkdir()
    found = {k: f"{k}-{secrets.token_hex(8)}" for k in ("db", "redis", "token", "smtp", "file")}
    (data_dir / "api-token").write_text(found["file"])
    (data_dir / "api-token").chmod(0o600)
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        # Trust authentication ignores the password; it is there to be looked for.
        "DATABASE_URL": pg_url.replace("postgres@", f"postgres:{found['db']}@", 1),
        "REDIS_URL": f"{redis_url}?client_name={found['redis']}",
        "CRAWLHUB_API_TOKENS": found["token"],
        "CRAWLHUB_SMTP_PASSWORD": found["smtp"],
        "CRAWLHUB_DATA_DIR": str(data_dir),
        "CRAWLHUB_WORKER_CONCURRENCY": "2",
        **extra,
    }
    output = tmp_path.parent / f"worker-{time.monotonic_ns()}.log"
    with output.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "crawlhub", "worker"], env=env,
                                cwd=data_dir, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while b"worker ready" not in output.read_bytes():
            assert proc.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.1)
        yield Worker(proc, output, data_dir, found)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def slot_processes() -> list[tuple[int, int, str]]:
    """(pid, uid, command line) of live processes of the slot users."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            uid = os.stat(f"/proc/{entry}").st_uid
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if uid in SLOT_UIDS and state != "Z":
            found.append((int(entry), uid, command))
    return found


def assert_unprivileged(report: dict[str, Any], worker: Worker, *, namespaces: bool = True) -> None:
    """What holds for every process of uploaded code: a slot's user, no capabilities at
    all, no_new_privs, none of CrawlHub's secrets, nothing of its processes or data
    (without namespaces, mode `users`: the data dir is there, but not its to read)."""
    where = f"{report['phase']} {report['argv']}"
    assert report["uid"] in SLOT_UIDS and report["euid"] == report["uid"], where
    assert report["gid"] == report["uid"] and report["groups"] == [], where
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(report["status"][name], 16) == 0, (where, name, report["status"])
    assert report["status"]["NoNewPrivs"] == "1", where
    text = repr(report)
    leaked = [name for name, secret in worker.secrets.items() if secret in text]
    assert leaked == [], f"{where} found {leaked}"
    assert not any(k.startswith(("DATABASE", "REDIS", "CRAWLHUB_API", "CRAWLHUB_SMTP"))
                   for k in report["env"]), where  # fmt: skip
    assert report["worker_environ"].startswith("!"), where
    assert report["token"].startswith("!"), where
    seen = report["data_dir"]
    if not namespaces:
        assert seen == "!PermissionError" and report["root_home"] == "!PermissionError", where
        return
    # Of root's home, only the way to the interpreter when it lives there (pyenv's, here).
    assert report["root_home"] in (INTERPRETER_IN_ROOT, "!FileNotFoundError"), where
    # of the data dir, it sees what it runs on (runtime, environments) and the slots
    assert seen == "!FileNotFoundError" or set(seen) <= {"runtime", "envs", "work"}, (where, seen)
    assert max(report["pids"]) < 100, (where, "it sees processes beyond its own namespace")
