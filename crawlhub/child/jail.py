"""Confine a run before the spider's code: its own PID namespace, its own user, its limits.

The bootstrap calls :func:`contain` once. It forks: the parent (the *warden*) stays behind,
waits, and exits with the spider's status; the child returns and becomes the spider.

- **PID namespace** (``unshare``, as root, or in a user namespace of the worker's user): the
  spider is process 1 of a namespace with its own ``/proc``. It cannot see or signal the
  worker or other runs, and when it ends, or the warden dies, the kernel kills every
  process left in the namespace, ``setsid`` and double-forked ones included.
- **Child subreaper**, where no namespace can be made (e.g. Docker's default seccomp
  profile): processes that leave the spider's tree are re-parented to the warden, which
  kills them all when the spider ends; the worker kills the warden's whole tree on cancel
  and timeout.
- **Identity**: with ``CRAWLHUB_SPIDER_UID``/``GID`` set (the worker can change user), the
  spider drops to that user with no supplementary groups; a root-owned data dir is then
  out of its reach. In a user namespace it keeps the worker's user but drops every
  capability.
- **Limits**: address space (``CRAWLHUB_MEMORY_LIMIT_MB``), processes of its user
  (``CRAWLHUB_MAX_PROCESSES``, ``RLIMIT_NPROC``) and open files per process
  (``CRAWLHUB_MAX_OPEN_FILES``), as hard limits the spider cannot raise.

Standard library only: this runs in every spider's interpreter.
"""

from __future__ import annotations

import ctypes
import os
import resource
import select
import signal
import stat
import sys

# Not `from typing import NoReturn`: importing typing costs every run ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

UID_ENV = "CRAWLHUB_SPIDER_UID"
GID_ENV = "CRAWLHUB_SPIDER_GID"
MEMORY_LIMIT_ENV = "CRAWLHUB_MEMORY_LIMIT_MB"
PROCESSES_ENV = "CRAWLHUB_MAX_PROCESSES"
OPEN_FILES_ENV = "CRAWLHUB_MAX_OPEN_FILES"
NAMESPACES_ENV = "CRAWLHUB_SPIDER_NAMESPACES"  # "0": a subreaper only
HIDE_ENV = "CRAWLHUB_HIDE"  # newline-separated paths the spider must not see (its work dir stays)
SHOW_ENV = "CRAWLHUB_SHOW"  # newline-separated dirs below those it still reads (its environment)

EXIT_USAGE = 2
EXIT_WARDEN_GONE = 70

# <linux/sched.h>, <sys/mount.h>, <linux/prctl.h>, <linux/capability.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


def contain(pipes: tuple[int, ...] = ()) -> None:
    """Fork the spider off into its confinement; only the spider returns. ``pipes`` (its
    output and item pipes) become the spider user's, so that it may reopen them by path
    (``/dev/stdout``, ``/dev/fd/N``).

    The warden exits with the spider's status, or dies by the signal that killed it."""
    uid, gid = _number(UID_ENV), _number(GID_ENV)
    if (uid is None) != (gid is None) or uid == 0:
        _fail(f"{UID_ENV} and {GID_ENV} must both name a user other than root")
    limits = _limits()
    # entered: the next child starts a PID namespace; no_namespace: why it cannot have its
    # own /proc and mounts too (None when it can)
    no_namespace: str | None = "turned off by CRAWLHUB_SPIDER_NAMESPACES"
    entered = False
    if os.environ.pop(NAMESPACES_ENV, "1") != "0":
        entered, no_namespace = _unshare(in_user_namespace=uid is None and os.geteuid() != 0)
    die_with_parent()  # entering a user namespace cleared it
    if not entered:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    life_read, life_write = os.pipe()  # closed by the kernel when the warden dies
    warden = os.getpid()
    pid = os.fork()
    if pid:
        os.close(life_read)
        _warden(pid, subreaper=not entered)
    os.close(life_write)
    hidden = [path for path in os.environ.pop(HIDE_ENV, "").split("\n") if path]
    shown = [path for path in os.environ.pop(SHOW_ENV, "").split("\n") if path]
    if no_namespace is None:
        try:
            _mount_proc()
            _hide(hidden, shown)
        except OSError as exc:
            no_namespace = str(exc)
    _apply_limits(limits)
    if uid is not None and gid is not None:
        for fd in pipes:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):  # never a shared file such as /dev/null
                os.fchown(fd, uid, gid)
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)  # drops every capability, and clears the parent-death signal
    elif os.geteuid() != 0:
        _drop_capabilities()  # held in our user namespace since unshare
    die_with_parent()
    if _closed(life_read) or (not entered and os.getppid() != warden):
        raise SystemExit(EXIT_WARDEN_GONE)
    os.close(life_read)
    if no_namespace is not None:
        print(f"crawlhub: this run has no namespaces of its own ({no_namespace}); processes "
              "it leaves behind are killed when it ends", file=sys.stderr)  # fmt: skip


def reader_gone(fd: int) -> bool:
    """Whether the pipe that ``fd`` writes to has no reader left (the worker died)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(event & select.POLLERR for _, event in poller.poll(0))


def die_with_parent() -> None:
    """Have Linux SIGKILL this process when its parent dies."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _unshare(*, in_user_namespace: bool) -> tuple[bool, str | None]:
    """Enter new PID and mount namespaces for our next child: whether they were entered,
    and why mounts cannot be made in them (None when they can).

    Without root, a new user namespace gives the right to; not when the spider is to
    switch user (with CAP_SETUID), as only the worker's own user exists in it."""
    flags = CLONE_NEWPID | CLONE_NEWNS
    uid, gid = os.geteuid(), os.getegid()
    if in_user_namespace:
        flags |= CLONE_NEWUSER
    if _libc.unshare(flags) != 0:
        return False, f"unshare: {os.strerror(ctypes.get_errno())}"
    try:
        if in_user_namespace:  # the same user inside as outside: files keep their owners
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        # Private before anything is mounted, or the spider's /proc would replace the host's.
        if _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    except OSError as exc:  # half made (e.g. AppArmor): a PID namespace, nothing mounted
        return True, f"setting up its namespaces: {exc}"
    return True, None


def _mount_proc() -> None:
    """A /proc that shows only this namespace's processes."""
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    if _libc.mount(b"proc", b"/proc", b"proc", flags, None) != 0:
        raise OSError(ctypes.get_errno(), "mounting its /proc")


def _hide(paths: list[str], shown: list[str]) -> None:
    """Cover each directory with an empty read-only tmpfs (the work dir, if below one, is
    bound back in place, and each of `shown` read-only) and each file with /dev/null, in
    this mount namespace only."""
    work = os.getcwd()
    for path in paths:
        if os.path.isdir(path):
            below = [d for d in shown if d.startswith(path.rstrip("/") + "/")]
            held = [os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for d in below]
            _mount(b"tmpfs", path, b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0711,size=64k")
            umask = os.umask(0o066)  # traversable, not listable, on the way down
            if work.startswith(path.rstrip("/") + "/"):
                os.makedirs(work, exist_ok=True)
                _mount(b"/proc/self/cwd", work, None, MS_BIND)  # the real one, still our cwd
            for directory, fd in zip(below, held, strict=True):
                os.makedirs(directory, exist_ok=True)
                _mount(f"/proc/self/fd/{fd}".encode(), directory, None, MS_BIND)
                os.close(fd)
                _read_only(directory)
            os.umask(umask)
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        elif os.path.exists(path):
            _mount(b"/dev/null", path, None, MS_BIND)
    os.chdir(work)


def _read_only(directory: str) -> None:
    """Make a bind mount read-only, keeping the flags a user namespace may not drop (a
    noexec file system stays noexec); left writable (by its owner only) where refused."""
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    if os.statvfs(directory).f_flag & os.ST_NOEXEC:
        flags |= MS_NOEXEC
    try:
        _mount(None, directory, None, flags)
    except OSError as exc:
        print(f"crawlhub: {directory} stays writable by its owner ({exc})", file=sys.stderr)


def _mount(source: bytes | None, target: str, kind: bytes | None, flags: int,
           data: bytes | None = None) -> None:  # fmt: skip
    if _libc.mount(source, os.fsencode(target), kind, flags, data) != 0:
        raise OSError(ctypes.get_errno(), f"hiding {target}")


def _warden(pid: int, *, subreaper: bool) -> None:
    """Wait for the spider; then kill what it left behind and exit as it did."""
    # The worker signals the whole process group, spider included: nothing to forward.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: None)
    while True:
        try:
            child, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(EXIT_USAGE)
        if child == pid:
            break
    if subreaper:
        kill_descendants(os.getpid())
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)  # die of it too, so the worker sees what killed the spider
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    os._exit(os.waitstatus_to_exitcode(status))


def kill_descendants(root: int) -> list[int]:
    """SIGKILL every process below ``root`` (found by parent pid), until none is left."""
    killed: list[int] = []
    for _ in range(100):
        found = descendants(root)
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        if root == os.getpid():  # they are (or become) our children: reap them
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
    return killed


def descendants(root: int) -> list[int]:
    """The processes below ``root``, deepest first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found[::-1]


def _limits() -> dict[int, int]:
    wanted = {
        resource.RLIMIT_AS: _number(MEMORY_LIMIT_ENV, scale=1024 * 1024),
        resource.RLIMIT_NPROC: _number(PROCESSES_ENV),
        resource.RLIMIT_NOFILE: _number(OPEN_FILES_ENV),
    }
    return {which: value for which, value in wanted.items() if value is not None}


def _apply_limits(limits: dict[int, int]) -> None:
    """Soft and hard limits alike, so the spider cannot raise them again."""
    for which, value in limits.items():
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY and value > hard and os.geteuid() != 0:
            value = hard
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):  # above what this process may set: keep the lower one
            resource.setrlimit(which, (hard, hard))


def _drop_capabilities() -> None:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]

    empty = (Data * 2)()
    if _libc.capset(ctypes.byref(Header(CAPABILITY_VERSION_3, 0)), empty) != 0:
        _fail(f"could not drop capabilities: {os.strerror(ctypes.get_errno())}")


def _closed(fd: int) -> bool:
    """Whether every write end of the pipe ``fd`` reads from is closed."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(event & select.POLLHUP for _, event in poller.poll(0))


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        code = ctypes.get_errno()
        print(f"crawlhub: prctl({option}) failed: {os.strerror(code)}", file=sys.stderr)


def _write(path: str, text: str) -> None:
    with open(path, "w") as out:
        out.write(text)


def _number(name: str, scale: int = 1) -> int | None:
    text = os.environ.pop(name, "")  # the spider has no use for them
    if not text:
        return None
    if not text.isdigit() or int(text) == 0:
        _fail(f"{name}={text!r} is not a positive number")
    return int(text) * scale


def _fail(message: str) -> NoReturn:
    print(f"crawlhub: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)
