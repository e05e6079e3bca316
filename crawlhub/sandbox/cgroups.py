"""A cgroup per sandboxed process tree (a run, a launcher, a build), below the worker's own.

The kernel then counts what the tree uses, whatever it forks: memory (`memory.max`, or
`memory.limit_in_bytes` on cgroup v1) and tasks (`pids.max`), kills it over its memory limit,
and lets the worker find and kill every process of it at the end. Both cgroup versions are
served: v2 where the worker's cgroup is delegated to it (systemd `Delegate=yes`, a container
with a private cgroup namespace), v1 where the memory and pids hierarchies are writable (as
root). Where neither is possible, :func:`tree` says why and runs get no cgroup.
"""

import contextlib
import functools
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from crawlhub.sandbox.limits import Limits, MiB

logger = logging.getLogger(__name__)

CONTROLLERS = ("memory", "pids")
MS_REMOUNT, MS_BIND = 32, 4096  # <sys/mount.h>
PREFIX = "crawlhub-"
KILL_ROUNDS = 200  # a fork bomb is outrun within this many passes


@dataclass(frozen=True)
class Counters:
    """Events of a cgroup since it was made."""

    oom_kills: int  # processes the kernel killed over the memory limit
    forks_refused: int  # forks refused at the process limit

    def since(self, before: "Counters") -> "Counters":
        return Counters(self.oom_kills - before.oom_kills,
                        self.forks_refused - before.forks_refused)  # fmt: skip


class Group:
    """One cgroup (v1: one directory per controller)."""

    def __init__(self, version: int, dirs: dict[str, Path]) -> None:
        self.version = version
        self.dirs = dirs

    def limit(self, limits: Limits) -> None:
        """Set the memory and task limits (swap counted with memory where it can be)."""
        memory = str(limits.memory_mb * MiB)
        if self.version == 2:
            self._write("memory", "memory.max", memory)
            self._write("memory", "memory.swap.max", "0", optional=True)
            self._write("pids", "pids.max", str(limits.processes))
            return
        # v1 keeps memory+swap at or above memory: raise that first, lower it last
        swap = self.dirs.get("memory", Path("/nonexistent")) / "memory.memsw.limit_in_bytes"
        raising = swap.exists() and int(swap.read_text()) < int(memory)
        if raising:
            self._write("memory", "memory.memsw.limit_in_bytes", memory)
        self._write("memory", "memory.limit_in_bytes", memory)
        if not raising:
            self._write("memory", "memory.memsw.limit_in_bytes", memory, optional=True)
        self._write("pids", "pids.max", str(limits.processes))

    def add(self, pid: int) -> None:
        """Move a process (with all its threads) into the cgroup."""
        for directory in set(self.dirs.values()):
            (directory / "cgroup.procs").write_text(str(pid))

    def counters(self) -> Counters:
        memory = "memory.events" if self.version == 2 else "memory.oom_control"
        return Counters(self._event("memory", memory, "oom_kill"),
                        self._event("pids", "pids.events", "max"))  # fmt: skip

    def pids(self) -> set[int]:
        found: set[int] = set()
        for directory in set(self.dirs.values()):
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        return found

    def kill(self, spare: frozenset[int] = frozenset()) -> None:
        """SIGKILL every process in the cgroup but those `spare`d, until none is left."""
        if self.version == 2 and not spare:
            for directory in set(self.dirs.values()):
                with contextlib.suppress(OSError):  # Linux 5.14 and later
                    (directory / "cgroup.kill").write_text("1")
        for _ in range(KILL_ROUNDS):
            found = self.pids() - spare
            if not found:
                return
            for pid in found:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        logger.warning("processes left in cgroup %s after %d rounds of SIGKILL",
                       self.dirs, KILL_ROUNDS)  # fmt: skip

    def remove(self) -> None:
        """Kill what is left and remove the cgroup."""
        self.kill()
        for directory in set(self.dirs.values()):
            for _ in range(100):  # the last processes may take a moment to be reaped
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)

    def _write(self, controller: str, name: str, value: str, *, optional: bool = False) -> None:
        directory = self.dirs.get(controller)
        if directory is None:
            return
        try:
            (directory / name).write_text(value)
        except FileNotFoundError:
            if not optional:
                raise

    def _event(self, controller: str, name: str, key: str) -> int:
        directory = self.dirs.get(controller)
        try:
            text = (directory / name).read_text() if directory else ""
        except OSError:
            return 0
        for line in text.splitlines():
            field, _, value = line.partition(" ")
            if field == key and value.strip().isdigit():
                return int(value)
        return 0


@dataclass(frozen=True)
class Tree:
    """Where this worker makes its cgroups; `why` says why it makes none."""

    version: int | None
    bases: dict[str, Path]
    why: str | None = None

    def group(self, name: str, limits: Limits) -> Group | None:
        """A new cgroup with these limits (None when this worker has no cgroups)."""
        if self.version is None:
            return None
        dirs = {controller: base / name for controller, base in self.bases.items()}
        for directory in set(dirs.values()):
            with contextlib.suppress(FileExistsError):  # left by an earlier attempt: reused
                directory.mkdir()
        group = Group(self.version, dirs)
        group.limit(limits)
        return group

    def describe(self) -> str:
        if self.version is None:
            return f"no cgroups ({self.why})"
        return f"cgroup v{self.version} ({', '.join(sorted(self.bases))})"


@functools.cache
def tree() -> Tree:
    """This process's cgroup tree for its sandboxes, made once (and removed at exit)."""
    try:
        mounts = _mounts()
        own = _own_paths()
    except OSError as exc:
        return Tree(None, {}, f"cannot read this process's cgroups: {exc}")
    found = _v1(mounts, own) if any(c in mounts for c in CONTROLLERS) else None
    if found is None and "" in mounts:
        found = _v2(mounts[""], own.get("", "/"))
    if found is None:
        return Tree(None, {}, "no memory or pids controller is mounted")
    return found


def _v1(mounts: dict[str, tuple[Path, str]], own: dict[str, str]) -> Tree:
    bases: dict[str, Path] = {}
    problems = []
    for controller in CONTROLLERS:
        if controller not in mounts:
            problems.append(f"no {controller} hierarchy")
            continue
        mountpoint, root = mounts[controller]
        base = _below(mountpoint, root, own.get(controller, "/")) / f"{PREFIX}{os.getpid()}"
        try:
            _clear_stale(base.parent)
            base.mkdir(exist_ok=True)
        except OSError as exc:
            problems.append(f"cannot make {base}: {exc.strerror}")
            continue
        bases[controller] = base
    if not bases:
        return Tree(None, {}, "; ".join(problems))
    _remove_at_exit(bases)
    if problems:
        logger.warning("cgroup v1: %s", "; ".join(problems))
    return Tree(1, bases)


def _v2(mount: tuple[Path, str], own: str) -> Tree:
    """Make the worker's cgroup a parent: the worker moves into a leaf of its own (a cgroup
    with processes cannot also hold cgroups with controllers), runs go beside it."""
    mountpoint, root = mount
    parent = _below(mountpoint, root, own)
    _writable(mountpoint)
    try:
        available = (parent / "cgroup.controllers").read_text().split()
        missing = [c for c in CONTROLLERS if c not in available]
        if missing:
            return Tree(None, {}, f"{' and '.join(missing)} not delegated to {parent}")
        _clear_stale(parent)
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        if not all(c in enabled for c in CONTROLLERS):
            leaf = parent / f"{PREFIX}worker-{os.getpid()}"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in CONTROLLERS))
        base = parent / f"{PREFIX}runs-{os.getpid()}"
        base.mkdir(exist_ok=True)
        (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in CONTROLLERS))
    except OSError as exc:
        return Tree(None, {}, f"cgroup {parent} is not this worker's to divide ({exc.strerror}); "
                    "give the worker a cgroup of its own (systemd: Delegate=yes)")  # fmt: skip
    _remove_at_exit({"memory": base})
    return Tree(2, dict.fromkeys(CONTROLLERS, base))


def _writable(mountpoint: Path) -> None:
    """A container's private cgroup namespace is mounted read-only: as root with SYS_ADMIN
    (docker-compose.yml gives the worker both), make it writable in this mount namespace."""
    if os.geteuid() != 0 or not os.statvfs(mountpoint).f_flag & os.ST_RDONLY:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(None, os.fsencode(mountpoint), None, MS_REMOUNT | MS_BIND, None) != 0:
        logger.info("cgroup file system %s stays read-only: %s", mountpoint,
                    os.strerror(ctypes.get_errno()))  # fmt: skip


def _mounts() -> dict[str, tuple[Path, str]]:
    """Controller ("" for cgroup v2) → (mount point, root of the mount in the hierarchy)."""
    found: dict[str, tuple[Path, str]] = {}
    with open("/proc/self/mountinfo") as info:
        for line in info:
            before, _, after = line.partition(" - ")
            fields, tail = before.split(), after.split()
            if len(tail) < 3 or len(fields) < 5:
                continue
            root, mountpoint = _unescape(fields[3]), Path(_unescape(fields[4]))
            if tail[0] == "cgroup2":
                found.setdefault("", (mountpoint, root))
            elif tail[0] == "cgroup":
                for option in tail[2].split(","):
                    if option in CONTROLLERS:
                        found.setdefault(option, (mountpoint, root))
    return found


def _own_paths() -> dict[str, str]:
    """Controller ("" for v2) → this process's cgroup path, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    with open("/proc/self/cgroup") as cgroups:
        for line in cgroups:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                found[controller] = path
    return found


def _below(mountpoint: Path, root: str, path: str) -> Path:
    relative = os.path.relpath(path, root) if path.startswith(root) else path.lstrip("/")
    return mountpoint / relative if relative != "." else mountpoint


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")


def _clear_stale(parent: Path) -> None:
    """Remove the cgroups of workers that are gone (empty ones only)."""
    for entry in parent.glob(f"{PREFIX}*"):
        pid = entry.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            for child in sorted(entry.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    child.rmdir()


def _remove_at_exit(bases: dict[str, Path]) -> None:
    import atexit

    def remove() -> None:
        for base in set(bases.values()):
            for child in base.iterdir() if base.is_dir() else ():
                if child.is_dir():
                    Group(1, {"any": child}).remove()
            with contextlib.suppress(OSError):
                base.rmdir()

    atexit.register(remove)
