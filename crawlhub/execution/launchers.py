"""Warm launchers: the worker's side of child/launcher.py.

One launcher per interpreter, in-spider runtime and kind (python or scrapy), started on
the first run that needs it and stopped after ``CRAWLHUB_LAUNCHER_IDLE_S`` without one.
A run started through a launcher is forked from it instead of starting an interpreter:
the same bootstrap, the same containment, the same pipes. When a launcher cannot serve
a run (it failed to start, it died, its environment changed since it started, the run
sets a variable an interpreter reads only when it starts), :func:`launch` raises
:class:`Unavailable` with the reason and the caller starts the run cold.

Launchers are started by one long-lived thread of the worker: Linux kills a process whose
parent *thread* ends (the launcher's parent-death signal), and run threads come and go.
"""

import contextlib
import json
import logging
import os
import queue
import select
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from crawlhub.child import launcher as child
from crawlhub.config import Settings
from crawlhub.execution import sandbox
from crawlhub.execution.environments import Runtime

logger = logging.getLogger(__name__)

ITEMS_FD = child.ITEMS_FD
START_TIMEOUT_S = 30.0  # importing Scrapy on a busy machine
ANSWER_TIMEOUT_S = 5.0  # a launcher that does not fork within this is broken
RETRY_AFTER_S = 60.0  # a launcher that failed to start is not tried again for this long
KEEPER_TICK_S = 5.0
ARG_ROOM = 4096  # bytes of command line a run's may be written over
ENV_ROOM = 64 * 1024  # bytes of environment likewise
# What an interpreter reads only when it starts (beyond PYTHON*): a run that sets one
# differently from its launcher starts cold.
STARTUP_VARIABLES = ("LANG", "LC_ALL", "LC_CTYPE")


class Unavailable(Exception):
    """This run cannot start warm; the message says why."""


@dataclass(frozen=True)
class Key:
    python: str
    kind: str
    variables: tuple[tuple[str, str], ...]


class Launched:
    """A run forked by a launcher, waited for like a ``subprocess.Popen``."""

    def __init__(self, pid: int, answers: socket.socket, launcher: "Launcher") -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.lost = False  # the launcher died before the run's end was known
        self._answers = answers
        self._buffer = b""
        self._launcher = launcher

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._read(left)
            if self.returncode is None and deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"run {self.pid}", timeout or 0.0)
        return self.returncode

    def _read(self, timeout: float | None) -> None:
        ready, _, _ = select.select([self._answers], [], [], timeout)
        if not ready:
            return
        try:
            chunk = self._answers.recv(child.NUMBER.size - len(self._buffer))
        except OSError:
            chunk = b""
        if not chunk:  # the launcher died, and the run with it (its parent-death signal)
            self.lost = True
            self._end(-9)
            return
        self._buffer += chunk
        if len(self._buffer) == child.NUMBER.size:
            (status,) = child.NUMBER.unpack(self._buffer)
            self._end(os.waitstatus_to_exitcode(status))

    def _end(self, code: int) -> None:
        self.returncode = code
        self._answers.close()
        self._launcher.ended()


class Launcher:
    """One launcher process and the socket pair the worker talks to it on."""

    def __init__(self, key: Key, env: dict[str, str]) -> None:
        self.key = key
        self.env = env
        self.lock = threading.Lock()
        self.active = 0
        self.retired = False
        self.last_used = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = ours
        try:
            self.proc = subprocess.Popen(
                [key.python, "-m", "crawlhub.child.launcher", key.kind, " " * ARG_ROOM],
                # stdout and stderr are pipes, as a run's are: the forked run's sys.stdout
                # and sys.stderr are the launcher's, over the run's own pipes
                cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={**env, child.FD_ENV: str(theirs.fileno()), child.ROOM_ENV: " " * ENV_ROOM},
                pass_fds=(theirs.fileno(),), start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            ours.close()
            raise Unavailable(f"cannot start {key.python}: {exc}") from exc
        finally:
            theirs.close()
        threading.Thread(target=self._relay, name="launcher-output", daemon=True).start()
        ready, _, _ = select.select([ours], [], [], START_TIMEOUT_S)
        greeting = json.loads(ours.recv(65536) or b"{}") if ready else {}
        if not ready or "error" in greeting or "pid" not in greeting:
            self.close(kill=True)
            why = greeting.get("error") or ("no answer" if not ready else "it exited")
            raise Unavailable(f"the launcher could not start: {why}")
        self.greeting = greeting
        self.fingerprint = self._fingerprint()
        logger.info("warm launcher %d for %s spiders on %s: %d modules in %.2f s",
                    self.proc.pid, key.kind, key.python, greeting["modules"],
                    greeting["seconds"])  # fmt: skip

    def _relay(self) -> None:
        """What the launcher itself prints (nothing, unless it fails) goes to the worker's log."""
        assert self.proc.stdout is not None
        with self.proc.stdout as output:
            for line in output:
                logger.warning("launcher %d: %s", self.proc.pid,
                               line.decode("utf-8", "replace").rstrip())  # fmt: skip

    def _fingerprint(self) -> tuple[int, ...]:
        """What changes when packages are installed, removed or upgraded in the environment."""
        found: list[int] = []
        for path in (self.key.python, *self.greeting["paths"]):
            try:
                info = os.stat(path)
                found += [info.st_ino, info.st_mtime_ns]
            except OSError:
                found += [-1, -1]
        return tuple(found)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def changed(self) -> bool:
        return self._fingerprint() != self.fingerprint

    def launch(self, argv: Sequence[str], env: dict[str, str], cwd: Path,
               fds: tuple[int, int, int]) -> Launched:  # fmt: skip
        """Fork a run: ``fds`` are its stdout, stderr and item pipe write ends."""
        for name, value in env.items():
            if (name.startswith("PYTHON") or name in STARTUP_VARIABLES) and \
                    self.env.get(name) != value:  # fmt: skip
                raise Unavailable(f"the run sets {name}, which Python reads when it starts")
        for name in self.env:
            if (name.startswith("PYTHON") or name in STARTUP_VARIABLES) and name not in env:
                raise Unavailable(f"the run unsets {name}")
        spec = json.dumps({"argv": list(argv), "env": env, "cwd": str(cwd)}).encode()
        answers, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with self.lock:
            self.active += 1
            self.last_used = time.monotonic()
        try:
            try:
                socket.send_fds(self.control, [b"run"], [*fds, theirs.fileno()])
                # read by the forked child, as the launcher does not wait for it
                answers.sendall(child.NUMBER.pack(len(spec)) + spec)
            except OSError as exc:
                raise Unavailable(f"the launcher is gone ({exc})") from exc
            finally:
                theirs.close()
            ready, _, _ = select.select([answers], [], [], ANSWER_TIMEOUT_S)
            data = answers.recv(child.NUMBER.size) if ready else b""
            if len(data) != child.NUMBER.size:
                raise Unavailable("the launcher did not answer" if not ready
                                  else "the launcher died")  # fmt: skip
        except BaseException:
            answers.close()
            self.ended()
            raise
        (pid,) = child.NUMBER.unpack(data)
        return Launched(pid, answers, self)

    def ended(self) -> None:
        with self.lock:
            self.active -= 1
            self.last_used = time.monotonic()
            done = self.retired and self.active <= 0
        if done:
            self.close()

    def close(self, *, kill: bool = False) -> None:
        """Stop the launcher: closing its socket pair ends it (its runs are over)."""
        self.control.close()
        if kill:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Pool:
    """This worker's launchers, and the thread that starts and stops them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.launchers: dict[Key, Launcher] = {}
        self.failed: dict[Key, tuple[float, str]] = {}  # when, why a start failed
        self.starting: dict[Key, threading.Event] = {}
        self.requests: queue.Queue[tuple[Key, dict[str, str]]] = queue.Queue()
        self.idle_s = 600.0
        self.keeper: threading.Thread | None = None

    def get(self, key: Key, env: dict[str, str], *, wait: bool) -> Launcher:
        """The launcher for ``key``, started now when there is none (waiting for it when
        ``wait``, else asking for it and raising Unavailable)."""
        with self.lock:
            found = self.launchers.get(key)
            why = None
            if found is not None and not found.alive():
                why = f"the launcher exited ({_status(found.proc.returncode)}); restarting it"
            elif found is not None and found.changed():
                why = "the environment changed since its launcher started; starting a new one"
            elif found is not None:
                return found
            else:
                failed = self.failed.get(key)
                if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER_S:
                    raise Unavailable(failed[1])
            if found is not None:
                del self.launchers[key]
            event = self._request(key, env)
        if found is not None:  # outside the lock: stopping it may take a moment
            self._retire(found)  # a dead one at once, a changed one after its last run
            raise Unavailable(why)
        if not wait:
            raise Unavailable("its launcher is starting")
        event.wait(START_TIMEOUT_S + 5)
        with self.lock:
            found = self.launchers.get(key)
            if found is None:
                raise Unavailable(self.failed.get(key, (0.0, "its launcher is starting"))[1])
            return found

    def _retire(self, launcher: Launcher) -> None:
        with launcher.lock:
            launcher.retired = True
            idle = launcher.active <= 0
        if idle:
            launcher.close()

    def _request(self, key: Key, env: dict[str, str]) -> threading.Event:
        """Have the keeper start a launcher for ``key`` (once). Holds self.lock."""
        event = self.starting.get(key)
        if event is None:
            event = self.starting[key] = threading.Event()
            self.requests.put((key, env))
        if self.keeper is None:
            self.keeper = threading.Thread(target=self._keep, name="launcher-keeper", daemon=True)
            self.keeper.start()
        return event

    def _keep(self) -> None:
        while True:
            try:
                key, env = self.requests.get(timeout=KEEPER_TICK_S)
            except queue.Empty:
                self._stop_idle()
                continue
            try:
                started: Launcher | None = Launcher(key, env)
                failure = None
            except Unavailable as exc:
                started, failure = None, str(exc)
                logger.warning("warm launcher for %s spiders on %s: %s", key.kind, key.python,
                               failure)  # fmt: skip
            except Exception as exc:
                started, failure = None, f"the launcher could not start: {exc}"
                logger.exception("warm launcher for %s spiders on %s", key.kind, key.python)
            with self.lock:
                if started is not None:
                    self.launchers[key] = started
                    self.failed.pop(key, None)
                else:
                    self.failed[key] = (time.monotonic(), failure or "")
                self.starting.pop(key).set()

    def _stop_idle(self) -> None:
        now = time.monotonic()
        with self.lock:
            idle = [key for key, launcher in self.launchers.items()
                    if launcher.active <= 0 and now - launcher.last_used > self.idle_s]  # fmt: skip
            stopped = [self.launchers.pop(key) for key in idle]
        for launcher in stopped:
            logger.info("warm launcher %d idle for %.0f s: stopped", launcher.proc.pid,
                        now - launcher.last_used)  # fmt: skip
            self._retire(launcher)

    def stop(self) -> None:
        """Stop every launcher, each once its runs have ended (a worker that stops)."""
        with self.lock:
            stopped = list(self.launchers.values())
            self.launchers.clear()
        for launcher in stopped:
            self._retire(launcher)

    def current(self) -> list[Launcher]:
        with self.lock:
            return list(self.launchers.values())


POOL = Pool()


def key_of(runtime: Runtime, kind: str) -> tuple[Key, dict[str, str]]:
    """Which launcher serves runs of this kind on this runtime, and its environment."""
    variables = runtime.variables()
    env = {**sandbox.base_env(Path("/")), **variables}
    return Key(runtime.python, kind, tuple(sorted(variables.items()))), env


def launch(settings: Settings, runtime: Runtime, kind: str, argv: Sequence[str],
           env: dict[str, str], cwd: Path, fds: tuple[int, int, int]) -> Launched:  # fmt: skip
    """Start a run through its warm launcher; Unavailable says why it cannot."""
    POOL.idle_s = settings.launcher_idle_s
    key, launcher_env = key_of(runtime, kind)
    return POOL.get(key, launcher_env, wait=True).launch(argv, env, cwd, fds)


def warm_up(settings: Settings, runtime: Runtime) -> None:
    """Start the launchers of this runtime ahead of its first run (at a worker's start)."""
    POOL.idle_s = settings.launcher_idle_s
    for kind in child.KINDS:
        key, env = key_of(runtime, kind)
        with contextlib.suppress(Unavailable):  # it is starting
            POOL.get(key, env, wait=False)


def _status(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"
