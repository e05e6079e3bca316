"""What this worker can do to keep uploaded code away from it: the sandbox mode, found once.

- `bwrap`: bubblewrap gives every process tree its own PID, IPC and mount namespaces and a
  view of the machine of read-only binds (sandbox/views.py). As root it runs as root to
  build the view and the process then becomes its slot's user; as another user it makes an
  unprivileged user namespace (where Linux allows them).
- `users`: no namespaces (bubblewrap missing or refused, as under Docker's default seccomp
  profile) but the worker is root: each slot's processes run as the slot's own user, which
  owns nothing but the run's work dir, so runs cannot read or signal each other or the
  worker, though they see the machine's files that every user may read.
- `off`: neither; spiders run as the worker's user. Only for trying CrawlHub out.

`CRAWLHUB_SANDBOX=auto` (the default) takes the first that works and says why not the
others; naming a mode makes the worker refuse to start without it.
"""

import ctypes
import functools
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from crawlhub.errors import ConfigError
from crawlhub.sandbox.cgroups import Tree, tree

logger = logging.getLogger(__name__)

MODES = ("auto", "bwrap", "users", "off")
PR_SET_DUMPABLE = 4
PROBE_TIMEOUT_S = 30


@dataclass(frozen=True)
class Isolation:
    """The sandbox this worker puts uploaded code in."""

    mode: str  # bwrap | users | off
    switch_user: bool  # root: each slot has a user of its own
    uids: range | None
    bwrap: str | None  # bubblewrap's path, in mode bwrap
    setpriv: str
    env: str
    cgroups: Tree
    why: str = ""  # why not a stronger mode

    def describe(self) -> str:
        who = (f"slot users {self.uids.start}-{self.uids.stop - 1}"
               if self.uids is not None else "the worker's own user")  # fmt: skip
        what = {"bwrap": "bubblewrap namespaces", "users": "a user per slot, no namespaces",
                "off": "no sandbox"}[self.mode]  # fmt: skip
        return f"{what}, as {who}, {self.cgroups.describe()}"


def harden_process(*, server: bool) -> None:
    """Non-dumpable: /proc/<pid>/environ, /proc/<pid>/mem and ptrace are refused to other
    processes of this user. Servers also create files for their own user only."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(0), 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_DUMPABLE): %s", os.strerror(ctypes.get_errno()))
    if server:
        os.umask(0o077)


@functools.cache
def isolation(mode: str, uids: range) -> Isolation:
    """The sandbox for `CRAWLHUB_SANDBOX=mode` on this machine (probed once per process);
    ConfigError when a mode that was asked for is not available."""
    if mode not in MODES:
        raise ConfigError(f"CRAWLHUB_SANDBOX: {mode!r} is not one of {', '.join(MODES)}")
    root = os.geteuid() == 0
    setpriv, env = shutil.which("setpriv"), shutil.which("env", path="/usr/bin:/bin")
    if setpriv is None or env is None:
        raise ConfigError("setpriv and env (util-linux, coreutils) are needed to start spiders")
    slot_uids = uids if root else None
    why = ""
    if mode in ("auto", "bwrap"):
        problem = probe_bwrap(root)
        if problem is None:
            return Isolation("bwrap", root, slot_uids, shutil.which("bwrap"), setpriv, env,
                             tree())  # fmt: skip
        if mode == "bwrap":
            raise ConfigError(f"CRAWLHUB_SANDBOX=bwrap: {problem}")
        why = problem
    if mode in ("auto", "users") and root:
        return Isolation("users", True, uids, None, setpriv, env, tree(), why)
    if mode == "users":
        raise ConfigError("CRAWLHUB_SANDBOX=users: the worker must run as root to switch users")
    if mode == "auto":
        why = f"{why}; the worker is not root, so spiders cannot have users of their own"
    return Isolation("off", False, None, None, setpriv, env, tree(), why.strip("; "))


def probe_bwrap(root: bool) -> str | None:
    """Why bubblewrap cannot sandbox processes here (None when it can)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (Debian and Ubuntu: apt install bubblewrap)"
    flags = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
    if not root:
        flags += ["--unshare-user", "--disable-userns"]
    command = [bwrap, *flags, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
               "--tmpfs", "/tmp", "--", "/bin/sh", "-c", "exit 0"]  # noqa: S108  # fmt: skip
    try:
        probe = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                               check=False, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap failed: {exc}"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        return f"bubblewrap cannot make namespaces here ({last})"
    return None
