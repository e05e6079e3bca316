"""Warm launchers: the worker's side of child/launcher.py.

One launcher per interpreter, in-spider runtime, kind (python or scrapy) and slot, started
in the slot's sandbox as the slot's user on the first run that needs it, and stopped after
``CRAWLHUB_LAUNCHER_IDLE_S`` without one. A run started through a launcher is forked from
it instead of starting an interpreter: the same bootstrap, the same sandbox, the same
pipes. A launcher serves its slot's runs one at a time, so its cgroup is its run's: the
worker sets the run's limits on it before the forked run may go on, and counts the run's
events from there. (Moving a process into a cgroup of its own waits for an RCU grace
period, several milliseconds on cgroup v1: only when the launcher's cgroup cannot take the
run's limits, a lower memory limit than the launcher already uses, is the run moved.)

When a launcher cannot serve a run (the sandbox has no user or namespace of the slot's own,
it failed to start, it died, its environment changed since it started, the run sets a
variable an interpreter or the loader reads only when it starts), :func:`launch` raises
:class:`Unavailable` with the reason and the caller starts it cold.

Launchers are started by one long-lived thread of the worker: Linux kills a process whose
parent *thread* ends (the launcher's parent-death signal), and run threads come and go.
"""

import contextlib
import json
import logging
import os
import queue
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from crawlhub.child import launcher as child
from crawlhub.sandbox import slots, spawn
from crawlhub.sandbox.cgroups import Counters, Group
from crawlhub.sandbox.isolation import Isolation
from crawlhub.sandbox.limits import Limits
from crawlhub.sandbox.slots import Slot

logger = logging.getLogger(__name__)

ITEMS_FD = child.ITEMS_FD
START_TIMEOUT_S = 30.0  # importing Scrapy on a busy machine
ANSWER_TIMEOUT_S = 5.0  # a launcher that does not fork within this is broken
RETRY_AFTER_S = 60.0  # a launcher that failed to start is not tried again for this long
KEEPER_TICK_S = 5.0
ARG_ROOM = 4096  # bytes of command line a run's may be written over
ENV_ROOM = 64 * 1024  # bytes of environment likewise
# What an interpreter or the loader reads only when it starts (beyond PYTHON* and LD_*): a
# run that sets one differently from its launcher starts cold.
STARTUP_VARIABLES = ("LANG", "LC_ALL", "LC_CTYPE", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES")
STARTUP_PREFIXES = ("PYTHON", "LD_")


class Unavailable(Exception):
    """This run cannot start warm; the message says why."""


@dataclass(frozen=True)
class Key:
    python: str
    kind: str
    variables: tuple[tuple[str, str], ...]
    slot: int


@dataclass(frozen=True)
class Start:
    """How to start a launcher: its sandbox and environment."""

    isolation: Isolation
    slot: Slot
    spec: spawn.Spec  # argv is filled in by the launcher


@dataclass
class RunGroup:
    """The cgroup a forked run counts in: its launcher's (spare: the launcher's own
    processes), or one of its own (`own`: removed with the run)."""

    group: Group
    before: Counters
    spare: frozenset[int] = frozenset()
    own: bool = False


class Launched:
    """A run forked by a launcher, waited for like a ``subprocess.Popen``."""

    def __init__(self, pid: int, answers: socket.socket, launcher: "Launcher",
                 cgroup: RunGroup | None) -> None:  # fmt: skip
        self.pid = pid  # in this worker's PID namespace
        self.returncode: int | None = None
        self.lost = False  # the launcher died before the run's end was known
        self.cgroup = cgroup
        self._answers = answers
        self._buffer = b""
        self._launcher = launcher

    def counters(self) -> Counters | None:
        if self.cgroup is None:
            return None
        return self.cgroup.group.counters().since(self.cgroup.before)

    def kill_tree(self) -> None:
        """SIGKILL the run's process group and what it left in its cgroup (the launcher
        also kills what is left in its namespace when the run has ended)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.group.kill(self.cgroup.spare)

    def close(self) -> None:
        if self.cgroup is not None and self.cgroup.own:
            self.cgroup.group.remove()

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
        size = len(child.STATUS) + child.NUMBER.size
        try:
            chunk = self._answers.recv(size - len(self._buffer))
        except OSError:
            chunk = b""
        if not chunk:  # the launcher died, and the run with it (its parent-death signal)
            self.lost = True
            self._end(-9)
            return
        self._buffer += chunk
        if len(self._buffer) == size:
            (status,) = child.NUMBER.unpack(self._buffer[len(child.STATUS) :])
            self._end(os.waitstatus_to_exitcode(status))

    def _end(self, code: int) -> None:
        self.returncode = code
        self._answers.close()
        self._launcher.ended()


class Launcher:
    """One launcher process and the socket pair the worker talks to it on."""

    def __init__(self, key: Key, start: Start) -> None:
        self.key = key
        self.env = start.spec.env
        self.limits = start.spec.limits
        self.run_limits: Limits | None = self.limits  # what its cgroup holds now
        self.isolation = start.isolation
        self.lock = threading.Lock()
        self.active = 0
        self.retired = False
        self.last_used = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The greeting's credentials: the launcher's pid as this worker numbers it.
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.control = ours
        read, write = os.pipe()
        env = {
            **start.spec.env,
            child.FD_ENV: str(theirs.fileno()),
            child.ROOM_ENV: " " * ENV_ROOM,
            child.CLEAN_ENV: _cleaning(start.isolation),
        }
        argv = [key.python, "-m", "crawlhub.child.launcher", key.kind, " " * ARG_ROOM]
        spec = replace(start.spec, env=env, argv=argv)
        try:
            # stdout and stderr are a pipe, as a run's are: the forked run's sys.stdout and
            # sys.stderr are the launcher's, over the run's own pipes
            self.proc = spawn.start(start.isolation, start.slot, spec, stdout=write,
                                    stderr=write, pass_fds=(theirs.fileno(),))  # fmt: skip
        except (OSError, ValueError) as exc:
            ours.close()
            raise Unavailable(f"cannot start {key.python}: {exc}") from exc
        finally:
            theirs.close()
            os.close(write)
        self.output = os.fdopen(read, "rb")
        self.slot = start.slot.number
        if start.isolation.bwrap is None:  # it is its slot's user's process: spare it
            slots.keep(self.slot, self.proc.pid)
        threading.Thread(target=self._relay, name="launcher-output", daemon=True).start()
        ready, _, _ = select.select([ours], [], [], START_TIMEOUT_S)
        greeting, pid = _greeting(ours) if ready else ({}, None)
        if not ready or "error" in greeting or "pid" not in greeting or pid is None:
            self.close(kill=True)
            why = greeting.get("error") or ("no answer" if not ready else "it exited")
            raise Unavailable(f"the launcher could not start: {why}")
        self.greeting = greeting
        # Its own processes, spared when what a run left in its cgroup is killed: the
        # sandbox it started in (bubblewrap and its init), the launcher.
        self.own = frozenset({self.proc.pid, pid, _parent(pid)})
        self.fingerprint = self._fingerprint()
        logger.info("warm launcher %d for %s spiders on %s (slot %d): %d modules in %.2f s",
                    self.proc.pid, key.kind, key.python, key.slot, greeting["modules"],
                    greeting["seconds"])  # fmt: skip

    def _relay(self) -> None:
        """What the launcher itself prints (nothing, unless it fails) goes to the worker's log."""
        with self.output as output:
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

    def launch(self, argv: Sequence[str], env: dict[str, str], cwd: str,
               fds: tuple[int, int, int], cgroup: str, limits: Limits) -> Launched:  # fmt: skip
        """Fork a run: ``fds`` are its stdout, stderr and item pipe write ends; it goes on
        once it is in a cgroup named ``cgroup`` with these limits."""
        for name, value in env.items():
            if (name.startswith(STARTUP_PREFIXES) or name in STARTUP_VARIABLES) and \
                    self.env.get(name) != value:  # fmt: skip
                raise Unavailable(f"the run sets {name}, which is read when a program starts")
        for name in self.env:
            if (name.startswith(STARTUP_PREFIXES) or name in STARTUP_VARIABLES) and \
                    name not in env:  # fmt: skip
                raise Unavailable(f"the run unsets {name}")
        nproc = self.isolation.switch_user and self.isolation.cgroups.version is None
        # Set by the forked run itself before it goes on (lowering its own hard limits).
        limit = {str(k): v for k, v in spawn.rlimits(limits, nproc=nproc).items()}
        spec = json.dumps({"argv": list(argv), "env": env, "cwd": cwd, "rlimits": limit}).encode()
        answers, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The kernel tells the forked run's pid as this worker's PID namespace numbers it.
        answers.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        with self.lock:
            self.active += 1
            self.last_used = time.monotonic()
        # Nothing to do between the fork and the run going when it counts in the launcher's
        # cgroup and that holds its limits already (the last run's): GO goes with the run,
        # and the forked child does not wait for a round trip to the worker.
        own, group = self.proc.group, None
        if own is not None and _counted(limits) == _counted(self.run_limits):
            group = RunGroup(own, own.counters(), self.own)
        early = group is not None
        try:
            try:
                socket.send_fds(self.control, [b"run"], [*fds, theirs.fileno()])
                # read by the forked child, as the launcher does not wait for it
                answers.sendall(child.NUMBER.pack(len(spec)) + spec + (child.GO if early else b""))
            except OSError as exc:
                raise Unavailable(f"the launcher is gone ({exc})") from exc
            finally:
                theirs.close()
            pid = self._ready(answers)
            if not early:
                group = self._cgroup(cgroup, limits, pid)
                answers.sendall(child.GO)
        except BaseException:
            if early:  # its run may be going, and the worker gives up on it: kill both
                self.proc.kill_tree()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
            answers.close()
            if group is not None and group.own:
                group.group.remove()
            self.ended()
            raise
        return Launched(pid, answers, self, group)

    def _cgroup(self, name: str, limits: Limits, pid: int) -> RunGroup | None:
        """The cgroup the run counts in, with its limits, when the launcher's did not hold them
        already (`launch` sent GO with the run then): the launcher's, its limits changed, else
        one of its own (None without cgroups). The forked run waits for it."""
        own = self.proc.group
        if own is None:
            return None
        try:
            self.run_limits = None
            own.limit(limits)
            self.run_limits = limits
            return RunGroup(own, own.counters(), self.own)
        except OSError:  # its memory limit is below what the launcher uses already
            own.limit(self.limits)
            self.run_limits = self.limits
        moved = spawn.add_to_cgroup(self.isolation, name, limits, pid)
        return None if moved is None else RunGroup(moved, moved.counters(), own=True)

    @staticmethod
    def _ready(answers: socket.socket) -> int:
        """The forked run's pid, from the credentials of its `R` (Unavailable if none)."""
        ready, _, _ = select.select([answers], [], [], ANSWER_TIMEOUT_S)
        if not ready:
            raise Unavailable("the launcher did not answer")
        try:
            data, ancillary, _, _ = answers.recvmsg(1, socket.CMSG_SPACE(child.CREDENTIALS.size))
        except OSError as exc:
            raise Unavailable(f"the launcher died ({exc})") from exc
        for level, kind, payload in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS) and data == child.READY:
                pid, _, _ = child.CREDENTIALS.unpack(payload[: child.CREDENTIALS.size])
                return int(pid)
        raise Unavailable("the launcher died" if not data else "the run did not start")

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
            self.proc.kill_tree()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill_tree()
        self.proc.close()
        slots.keep(self.slot, self.proc.pid, kept=False)


class Pool:
    """This worker's launchers, and the thread that starts and stops them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.launchers: dict[Key, Launcher] = {}
        self.failed: dict[Key, tuple[float, str]] = {}  # when, why a start failed
        self.starting: dict[Key, threading.Event] = {}
        self.requests: queue.Queue[tuple[Key, Start, int]] = queue.Queue()
        self.generation = 0  # moved on by stop(): a launcher asked for before is not kept
        self.idle_s = 600.0
        self.keeper: threading.Thread | None = None
        self.losses: set[str] = set()  # runs whose launcher died under them: next time cold

    def lost_under(self, run: str) -> None:
        """Note that a run's launcher died under it: its next attempt here starts cold (a
        spider that kills its own launcher cannot make its run start over and over)."""
        with self.lock:
            self.losses.add(run)

    def take_loss(self, run: str) -> bool:
        """Whether a run lost its launcher before (forgotten once asked)."""
        with self.lock:
            if run in self.losses:
                self.losses.discard(run)
                return True
            return False

    def get(self, key: Key, start: Start, *, wait: bool) -> Launcher:
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
            event = self._request(key, start)
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

    def _request(self, key: Key, start: Start) -> threading.Event:
        """Have the keeper start a launcher for ``key`` (once). Holds self.lock."""
        event = self.starting.get(key)
        if event is None:
            event = self.starting[key] = threading.Event()
            self.requests.put((key, start, self.generation))
        if self.keeper is None:
            self.keeper = threading.Thread(target=self._keep, name="launcher-keeper", daemon=True)
            self.keeper.start()
        return event

    def _keep(self) -> None:
        while True:
            try:
                key, start, generation = self.requests.get(timeout=KEEPER_TICK_S)
            except queue.Empty:
                self._stop_idle()
                continue
            try:
                started: Launcher | None = Launcher(key, start)
                failure = None
            except Unavailable as exc:
                started, failure = None, str(exc)
                logger.warning("warm launcher for %s spiders on %s: %s", key.kind, key.python,
                               failure)  # fmt: skip
            except Exception as exc:
                started, failure = None, f"the launcher could not start: {exc}"
                logger.exception("warm launcher for %s spiders on %s", key.kind, key.python)
            with self.lock:
                stale = generation != self.generation
                if started is not None and not stale:
                    self.launchers[key] = started
                    self.failed.pop(key, None)
                elif started is None:
                    self.failed[key] = (time.monotonic(), failure or "")
                self.starting.pop(key).set()
            if started is not None and stale:  # asked for before the pool stopped
                started.close()

    def _stop_idle(self) -> None:
        """Stop the launchers idle for too long, and retire those whose environment changed
        (each once its run has ended)."""
        now = time.monotonic()
        with self.lock:
            idle = [key for key, launcher in self.launchers.items()
                    if launcher.active <= 0 and now - launcher.last_used > self.idle_s]  # fmt: skip
            changed = [key for key, launcher in self.launchers.items()
                       if key not in idle and launcher.changed()]  # fmt: skip
            stopped = [self.launchers.pop(key) for key in idle]
            retired = [self.launchers.pop(key) for key in changed]
        for launcher in stopped:
            logger.info("warm launcher %d idle for %.0f s: stopped", launcher.proc.pid,
                        now - launcher.last_used)  # fmt: skip
            self._retire(launcher)
        for launcher in retired:
            logger.info("warm launcher %d: its environment changed; it stops after its run",
                        launcher.proc.pid)  # fmt: skip
            self._retire(launcher)

    def stop(self) -> None:
        """Stop every launcher, each once its runs have ended (a worker that stops)."""
        with self.lock:
            stopped = list(self.launchers.values())
            self.launchers.clear()
            self.generation += 1
        for launcher in stopped:
            self._retire(launcher)

    def current(self) -> list[Launcher]:
        with self.lock:
            return list(self.launchers.values())


POOL = Pool()


def launch(key: Key, start: Start, argv: Sequence[str], env: dict[str, str], cwd: str,
           fds: tuple[int, int, int], cgroup: str, limits: Limits) -> Launched:  # fmt: skip
    """Start a run through its warm launcher; Unavailable says why it cannot."""
    if not _cleaning(start.isolation):
        raise Unavailable("runs share the worker's user and namespaces (CRAWLHUB_SANDBOX=off)")
    launcher = POOL.get(key, start, wait=True)
    try:
        return launcher.launch(argv, env, cwd, fds, cgroup, limits)
    except Unavailable:
        if not launcher.alive():  # killed by `launch`, or dead: its successor starts now
            with contextlib.suppress(Unavailable):
                POOL.get(key, start, wait=False)
        raise


def warm_up(starts: Sequence[tuple[Key, Start]]) -> None:
    """Start these launchers ahead of their first run (at a worker's start)."""
    for key, start in starts:
        if _cleaning(start.isolation):
            with contextlib.suppress(Unavailable):  # it is starting
                POOL.get(key, start, wait=False)


def _cleaning(isolation: Isolation) -> str:
    """How a launcher clears up after each run, in this sandbox ("": it cannot)."""
    return {"bwrap": "namespace", "users": "user"}.get(isolation.mode, "")


def _counted(limits: Limits | None) -> tuple[int, int] | None:
    """What of a run's limits its cgroup holds."""
    return None if limits is None else (limits.memory_mb, limits.processes)


def _greeting(control: socket.socket) -> tuple[dict[str, Any], int | None]:
    """A launcher's greeting, and its pid from the credentials the kernel attached."""
    try:
        data, ancillary, _, _ = control.recvmsg(65536, socket.CMSG_SPACE(child.CREDENTIALS.size))
    except OSError:
        return {}, None
    pid = None
    for level, kind, payload in ancillary:
        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
            pid = int(child.CREDENTIALS.unpack(payload[: child.CREDENTIALS.size])[0])
    try:
        greeting = json.loads(data or b"{}")
    except ValueError:
        return {"error": "a greeting that is not JSON"}, None
    return (greeting if isinstance(greeting, dict) else {}), pid


def _parent(pid: int) -> int:
    """A process's parent (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _status(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"
