"""Slots: a worker runs at most one sandboxed process tree per slot at a time (a run, a
listing, a build), and each slot has a user of its own, as build farms have their builder
users, so that runs cannot read or signal each other even where there are no namespaces.

A slot is a number claimed with a lock file for as long as the worker lives: machine-wide
when the worker is root (the number gives the uid, `CRAWLHUB_SPIDER_UIDS`), per data dir
otherwise. Its work area is `<data dir>/work/slot-<n>/`, owned by the worker: a run's work
dir is made in it and given to the slot's user, and `tmp/` in it is the run's /tmp. Both
are emptied when the slot is taken and when it is given back.
"""

import contextlib
import fcntl
import os
import shutil
import signal
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MACHINE_LOCKS = Path("/run/crawlhub/slots")  # as root: one set of slot numbers per machine
KILL_ROUNDS = 100
# Slot number → pids of the processes of its user that outlive runs (its warm launchers,
# where they run in no PID namespace of their own): spared when strays are killed.
KEEPERS: dict[int, set[int]] = {}
_keepers_lock = threading.Lock()


def keep(number: int, pid: int, *, kept: bool = True) -> None:
    """Spare (or no longer spare) a process of slot `number`'s user from stray killing."""
    with _keepers_lock:
        pids = KEEPERS.setdefault(number, set())
        if kept:
            pids.add(pid)
        else:
            pids.discard(pid)


@dataclass(frozen=True)
class Slot:
    """One slot of this worker."""

    number: int
    uid: int | None  # None: processes keep the worker's own user
    data_dir: Path

    @property
    def gid(self) -> int | None:
        return self.uid

    @property
    def root(self) -> Path:
        return self.data_dir / "work" / f"slot-{self.number}"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def ensure(self) -> None:
        """Make the slot's directories (the worker's, traversable; its /tmp the user's)."""
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.root.chmod(0o711)
        self.tmp.mkdir(mode=0o700, exist_ok=True)
        self.hand_over(self.tmp)

    def hand_over(self, path: Path) -> None:
        """Give a directory tree the worker made (a copy: no links) to the slot's user."""
        if self.uid is None:
            return
        for root, dirs, files in os.walk(path):
            os.lchown(root, self.uid, self.uid)
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), self.uid, self.uid)

    def hand_over_pipe(self, fd: int) -> None:
        """Give a pipe the worker made to the slot's user, who may then open it again by
        path (/dev/stdout, /dev/fd/N): the pipe, never a shared file such as /dev/null."""
        if self.uid is not None and stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.fchown(fd, self.uid, self.uid)

    def kill_strays(self) -> None:
        """SIGKILL every process of the slot's user but its keepers: what a run, a listing
        or a build left where no namespace or cgroup ends with it (mode `users`)."""
        if self.uid is None:
            return
        for _ in range(KILL_ROUNDS):
            with _keepers_lock:
                spared = set(KEEPERS.get(self.number, ()))
            strays = [pid for pid in _pids_of(self.uid) if pid not in spared]
            if not strays:
                return
            for pid in strays:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def wipe(self) -> None:
        """Remove everything a run left in the slot (links unlinked, never followed); the
        directories themselves stay, as a warm launcher has them in its view."""
        self.ensure()
        for directory in (self.tmp, self.root):
            for entry in os.scandir(directory):
                if entry.path == str(self.tmp):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
        self.tmp.chmod(0o700)  # as it was made, whatever its user did to it


class Pool:
    """The slot numbers this process holds under one lock directory: claimed as they are
    first needed and kept, the lowest free one given out first (its launchers are the warm
    ones). A number is one slot whatever the data dir, so its user runs one tree at a time.
    A slot is emptied when it is given back, and when its number is first claimed."""

    def __init__(self, lock_dir: Path, uids: range | None) -> None:
        self.lock_dir = lock_dir
        self.uids = uids
        self.size = len(uids) if uids is not None else 1024
        self.lock = threading.Lock()
        self.free: list[int] = []
        self.claimed: dict[int, int] = {}  # slot number → the lock file's descriptor

    def slot(self, number: int, data_dir: Path) -> Slot:
        uid = self.uids[number] if self.uids is not None else None
        return Slot(number, uid, data_dir)

    @contextlib.contextmanager
    def take(self, data_dir: Path, *, strays: bool = False) -> Iterator[Slot]:
        """A slot for one sandboxed process tree, emptied before and after; `strays`: its
        user's processes left behind are killed after it (no namespace ends them)."""
        with self.lock:
            fresh = not self.free  # a number new to this process: what is left is a dead one's
            number = min(self.free) if self.free else self._claim()
            if number in self.free:
                self.free.remove(number)
        slot = self.slot(number, data_dir)
        try:
            if fresh or not slot.root.is_dir():  # else emptied when it was last given back
                slot.wipe()
            yield slot
        finally:
            if strays:
                slot.kill_strays()
            with contextlib.suppress(OSError):
                slot.wipe()
            with self.lock:
                self.free.append(number)

    def first(self, data_dir: Path) -> Slot:
        """The slot the first run will take (to warm its launchers), claimed now."""
        with self.lock:
            if not self.claimed:
                self.free.append(self._claim())
            slot = self.slot(min(self.claimed), data_dir)
        slot.ensure()
        return slot

    def _claim(self) -> int:
        """Lock the lowest slot number no other worker holds. Holds self.lock."""
        self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for number in range(self.size):
            if number in self.claimed:
                continue
            fd = os.open(self.lock_dir / f"slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            os.set_inheritable(fd, False)
            self.claimed[number] = fd
            return number
        raise RuntimeError(f"every one of the {self.size} slots is taken (CRAWLHUB_SPIDER_UIDS "
                           "is too small for this machine's workers)")  # fmt: skip


_pools: dict[tuple[Path, range | None], Pool] = {}
_pools_lock = threading.Lock()


def pool(data_dir: Path, uids: range | None) -> Pool:
    """This process's slot pool: machine-wide numbers for a root worker, else per data dir."""
    lock_dir = MACHINE_LOCKS if uids is not None and _writable_run() else data_dir / "slots"
    key = (lock_dir, uids)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = Pool(lock_dir, uids)
        return _pools[key]


def _pids_of(uid: int) -> list[int]:
    """Live processes whose real user is `uid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            found.append(int(entry))
                        break
                    if line.startswith("State:") and line.split()[1] == "Z":
                        break
        except (OSError, ValueError, IndexError):
            continue
    return found


def _writable_run() -> bool:
    try:
        MACHINE_LOCKS.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(MACHINE_LOCKS, os.W_OK)
