"""A warm launcher: one interpreter per environment, kind and slot that has imported the
bootstrap (and Scrapy, for Scrapy spiders) once, and forks a fresh process per run.

Started by the worker inside the slot's sandbox, as the slot's user, never by hand::

    python -m crawlhub.child.launcher python|scrapy [room]

(``room``, and the variable ``CRAWLHUB_LAUNCHER_ROOM``, are blank space a run's command
line and environment are written over.)

The worker holds the other end of a ``SOCK_SEQPACKET`` socket pair, whose end here is the
descriptor named by ``CRAWLHUB_LAUNCHER_FD``. The first message is the launcher's
greeting (JSON: its pid, what it imported, its site-packages, or an ``error``). Then each
run is one message carrying four descriptors: the run's stdout, stderr and item pipe
write ends, and a stream socket of its own. On that socket the worker has already written
the run (a length-prefixed JSON object: ``argv``, ``env``, ``cwd``); the launcher forks,
and the forked child, once it has taken the run's descriptors and environment, says
``R`` with its credentials (so the worker learns its pid as the worker's PID namespace
numbers it, from the kernel) and waits for ``g``: meanwhile the worker sets the run's
limits on the cgroup it counts in (when that is the launcher's, holding them already, the
``g`` comes with the run, and a worker that then gives up on the run kills the launcher).
When the child has ended, the launcher kills whatever the run left in its PID namespace,
empties /tmp and /dev/shm, and answers ``S`` and the wait status (an 8-byte integer).
The launcher serves one run at a time (its slot's), is the child's parent, and exits when
the worker closes the socket pair (or dies: the launcher dies with it, and its run with
the launcher).

The forked child becomes what ``python -m crawlhub.child.bootstrap ARGV`` would have been
in that work dir with that environment: its own session and process group, the pipes on
stdout, stderr and fd 3, no other descriptor of the launcher, the run's environment
(also in ``/proc/<pid>/environ``) and command line (``/proc/<pid>/cmdline``), ``sys.path``
led by the work dir. Nothing imported here may start a thread, open a connection or
install a reactor: the launcher checks for threads and for Twisted's reactor after its
imports and refuses to serve otherwise. Standard library only, but for the bootstrap.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import gc
import importlib
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time

from crawlhub.child import bootstrap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import NoReturn

FD_ENV = "CRAWLHUB_LAUNCHER_FD"
ROOM_ENV = "CRAWLHUB_LAUNCHER_ROOM"
# How a launcher clears up after a run: "namespace" (alone in a PID namespace with private
# /tmp and /dev/shm: kill all but itself and init, empty them), "user" (no namespace: empty
# $TMPDIR; the worker kills the slot user's other processes), "" (nothing).
CLEAN_ENV = "CRAWLHUB_LAUNCHER_CLEAN"
READY, GO, STATUS = b"R", b"g", b"S"
CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
PR_SET_DUMPABLE = 4
CLEAN_ROUNDS = 100
ITEMS_FD = 3  # where the item pipe is in a run started by a launcher
MAX_MESSAGE = 64
MAX_RUN_BYTES = 16 * 1024 * 1024
NUMBER = struct.Struct("!q")
KINDS = ("python", "scrapy")

# Imported by every launcher, beyond the bootstrap: what python spiders commonly use.
PYTHON_PRELOAD = (
    "asyncio", "traceback", "typing", "urllib.request", "datetime", "re", "orjson",
)  # fmt: skip
# Scrapy's own entry points; the classes its default settings name are imported too.
SCRAPY_PRELOAD = (
    "scrapy", "scrapy.cmdline", "scrapy.crawler", "scrapy.utils.project", "scrapy.utils.reactor",
    "scrapy.utils.log", "scrapy.spiderloader", "scrapy.core.engine", "scrapy.core.scraper",
    "scrapy.core.downloader", "scrapy.exporters", "twisted.internet.asyncioreactor",
    "crawlhub.child.scrapy_extension",
)  # fmt: skip
REACTOR = "twisted.internet.reactor"


def main(argv: list[str]) -> list[str] | None:
    """Serve runs until the worker closes the socket pair. Returns only in a forked child,
    with the bootstrap's arguments: the caller runs the bootstrap."""
    control = socket.socket(fileno=int(os.environ.pop(FD_ENV)))
    os.environ.pop(ROOM_ENV, None)
    clean = os.environ.pop(CLEAN_ENV, "")
    bootstrap.die_with_parent()
    _dumpable(False)  # the runs it forks share its user: they may not read its memory
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the worker's to handle
    try:
        if len(argv) < 1 or argv[0] not in KINDS:
            raise ValueError(f"usage: python -m crawlhub.child.launcher {'|'.join(KINDS)}")
        os.close(os.pidfd_open(os.getpid()))  # runs are watched by pidfd (Linux 5.3)
        started = time.monotonic()
        preloaded = preload(argv[0])
        greeting = {
            "pid": os.getpid(), "kind": argv[0], "modules": len(sys.modules),
            "preloaded": preloaded, "seconds": round(time.monotonic() - started, 4),
            "paths": site_paths(), "python": sys.executable,
        }  # fmt: skip
    except Exception as exc:
        greeting = {"error": f"{type(exc).__name__}: {exc}"}
    retitle(sys.orig_argv[:4], dict(os.environ))  # the room is for runs, not for `ps`
    control.send(json.dumps(greeting).encode())
    if "error" in greeting:
        return None
    # What is loaded now is never collected: a run's collections then leave the pages it
    # shares with the launcher alone, instead of copying them to mark their objects.
    gc.freeze()
    return Launcher(control, clean=clean).serve()


def preload(kind: str) -> int:
    """Import what runs of this kind import first; how many modules were asked for."""
    names = list(PYTHON_PRELOAD)
    if kind == "scrapy":
        names += SCRAPY_PRELOAD
    for name in names:
        _import(name)
    if kind == "scrapy":
        names += [_import(path.rpartition(".")[0]) for path in scrapy_defaults()]
    if REACTOR in sys.modules:
        raise RuntimeError("importing Scrapy installed a Twisted reactor: not fork-safe")
    if threading.active_count() != 1:
        raise RuntimeError(f"importing started threads: {threading.enumerate()}")
    return len(names)


def scrapy_defaults() -> Iterator[str]:
    """The classes Scrapy's default settings name (middlewares, extensions, handlers, ...)."""
    try:
        from scrapy.settings import default_settings
    except ImportError:
        return
    for name in dir(default_settings):
        value = getattr(default_settings, name)
        values = value if isinstance(value, dict | list | tuple) else [value]
        for path in values:
            if isinstance(path, str) and path.startswith("scrapy.") and "." in path[7:]:
                yield path


def _import(name: str) -> str:
    with contextlib.suppress(Exception):  # not in this environment (an older Scrapy)
        importlib.import_module(name)
    return name


def site_paths() -> list[str]:
    """Where this interpreter finds packages: a change there means a new launcher."""
    import sysconfig

    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    paths.update(path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path)
    return sorted(path for path in paths if os.path.isdir(path))


class Launcher:
    def __init__(self, control: socket.socket, *, clean: str) -> None:
        self.control = control
        self.clean = clean
        self.poller = select.poll()  # not epoll: no descriptor for a child to inherit
        self.poller.register(control, select.POLLIN)
        self.runs: dict[int, tuple[int, socket.socket]] = {}  # pidfd → (pid, run socket)

    def serve(self) -> list[str] | None:
        while True:
            for fd, _ in self.poller.poll():
                if fd == self.control.fileno():
                    try:
                        message, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 4)
                    except OSError:
                        message, fds = b"", []
                    if not message:  # the worker closed the pair: stop
                        return None
                    if len(fds) != 4:
                        for fd_ in fds:
                            os.close(fd_)
                        continue
                    argv = self.fork(fds)
                    if argv is not None:
                        return argv  # in the child
                else:
                    self.reap(fd)

    def fork(self, fds: list[int]) -> list[str] | None:
        stdout, stderr, items, run_fd = fds
        run = socket.socket(fileno=run_fd)
        try:
            pid = os.fork()
        except OSError:
            run.close()
            for fd in (stdout, stderr, items):
                os.close(fd)
            return None
        if pid == 0:
            return self.become_run(stdout, stderr, items, run)
        for fd in (stdout, stderr, items):
            os.close(fd)
        pidfd = os.pidfd_open(pid)  # works: checked at start
        self.runs[pidfd] = (pid, run)
        self.poller.register(pidfd, select.POLLIN)
        return None

    def reap(self, pidfd: int) -> None:
        pid, run = self.runs.pop(pidfd)
        self.poller.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        if self.clean:
            clean_up(self.clean)
        with contextlib.suppress(OSError):  # the worker gave up on this run
            run.sendall(STATUS + NUMBER.pack(status))
        run.close()

    def become_run(self, stdout: int, stderr: int, items: int, run: socket.socket) -> list[str]:
        """In the forked child: take the run's descriptors and environment, then wait for
        the worker to let it go (in the run's cgroup, under its limits)."""
        os.setsid()
        try:
            argv, env, cwd = _read_run(run)
        except (OSError, ValueError) as exc:
            print(f"crawlhub: launcher: no run to start: {exc}", file=sys.stderr)
            os._exit(bootstrap.EXIT_USAGE)
        # Copies above 0-3 first (the lowest free numbers there), so that no dup2 below
        # overwrites a descriptor not yet in place.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, ITEMS_FD + 1)
                for fd in (stdout, stderr, items)]  # fmt: skip
        os.dup2(high[0], 1)
        os.dup2(high[1], 2)
        os.dup2(high[2], ITEMS_FD)
        try:
            credentials = CREDENTIALS.pack(os.getpid(), os.getuid(), os.getgid())
            run.sendmsg([READY], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, credentials)])
            go = run.recv(1)
        except OSError:
            go = b""
        if go != GO:  # the worker gave up on this run (or died)
            os._exit(bootstrap.EXIT_PARENT_GONE)
        for sock in (self.control, run, *(r for _, r in self.runs.values())):
            sock.detach()  # closed below by number; never again by a finaliser
        os.closerange(ITEMS_FD + 1, os.sysconf("SC_OPEN_MAX"))
        _dumpable(True)  # as an exec would leave it
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        time.tzset()
        sys.argv = [bootstrap.__file__, *argv]
        sys.path[0] = cwd  # as `python -m` started in the work dir has it
        importlib.invalidate_caches()
        retitle([sys.executable, "-m", bootstrap.__name__, *argv], env)
        return argv


def clean_up(how: str) -> None:
    """After a run: kill every process it left and empty its temporary directories, so the
    next run of the slot finds nothing of it (the worker also kills its cgroup, if any)."""
    me = os.getpid()
    for _ in range(CLEAN_ROUNDS if how == "namespace" else 0):
        # every process of this PID namespace but its init and this one
        left = [pid for pid in _live_pids() if pid not in (1, me)]
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if not left:
            break
        time.sleep(0.002)
    private = ("/tmp", "/dev/shm")  # noqa: S108  (the sandbox's own)
    for directory in private if how == "namespace" else (os.environ.get("TMPDIR"),):
        if directory:
            _empty(directory)


def _live_pids() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    if stat.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                        found.append(int(entry))
            except (OSError, IndexError):
                continue
    return found


def _empty(directory: str) -> None:
    """Remove what is in a directory, on its own file system only: what is mounted below it
    (the slot and the paths the worker binds, when they lie below /tmp) is not the run's."""
    try:
        device = os.lstat(directory).st_dev
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                if entry.stat(follow_symlinks=False).st_dev == device:
                    _empty(entry.path)
                    os.rmdir(entry.path)  # fails where a mount point lies below: it stays
            else:
                os.unlink(entry.path)


def _dumpable(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(int(on)), 0, 0, 0)


def retitle(argv: list[str], env: dict[str, str]) -> None:
    """Show the run's command line and environment in /proc/<pid>/cmdline and environ, as an
    exec would have: rewritten in place in the launcher's own (padded) argument and
    environment areas, whole entries as far as they fit."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        arg_start, arg_end, env_start, env_end = map(int, fields[45:49])
    except (OSError, ValueError, IndexError):
        return
    _fill(arg_start, arg_end, b"".join(os.fsencode(arg) + b"\0" for arg in argv))
    _fill(env_start, env_end, b"".join(os.fsencode(f"{k}={v}") + b"\0" for k, v in env.items()))


def _fill(start: int, end: int, block: bytes) -> None:
    size = end - start
    if size <= 0:
        return
    if len(block) > size:
        block = block[: block.rfind(b"\0", 0, size) + 1]
    ctypes.memmove(start, block + b"\0" * (size - len(block)), size)


def _read_run(run: socket.socket) -> tuple[list[str], dict[str, str], str]:
    """The run the worker wrote on its socket: arguments, environment, work dir."""
    (size,) = NUMBER.unpack(_read_exactly(run, NUMBER.size))
    if not 0 < size <= MAX_RUN_BYTES:
        raise ValueError(f"a run of {size} bytes")
    spec = json.loads(_read_exactly(run, size))
    argv, env, cwd = spec.get("argv"), spec.get("env"), spec.get("cwd")
    limits = spec.get("rlimits", {})
    if not (isinstance(argv, list) and all(isinstance(arg, str) for arg in argv)
            and isinstance(env, dict) and all(isinstance(v, str) for v in env.values())
            and isinstance(cwd, str) and isinstance(limits, dict)):  # fmt: skip
        raise ValueError("not a run")
    for which, value in limits.items():  # hard limits: neither the run nor its children
        _, hard = resource.getrlimit(int(which))  # can raise them again
        wanted = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
        resource.setrlimit(int(which), (wanted, wanted))
    return argv, env, cwd


def _read_exactly(run: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = run.recv(size - len(data))
        if not chunk:
            raise ValueError("the worker closed the run's socket")
        data += chunk
    return bytes(data)


def run(argv: list[str]) -> NoReturn:
    """Run the bootstrap in a forked child and end the process as Python ends, but for
    tearing down the modules: non-daemon threads are waited for, atexit functions run,
    stdout and stderr are flushed, an uncaught exception goes to sys.excepthook. Objects
    still alive are not finalised (Python does not promise it either): in a forked process
    that would copy every page it shares with the launcher, 20 ms with the standard
    library's modules loaded and 90 ms with Scrapy's."""
    try:
        code = exit_code(bootstrap.main(argv))
    except SystemExit as exc:
        code = exit_code(exc.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # what Py_FinalizeEx does first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def exit_code(code: object) -> int:
    """The status `sys.exit(code)` ends a process with (printing a message code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    args = main(sys.argv[1:])
    if args is None:
        sys.exit(0)
    run(args)
