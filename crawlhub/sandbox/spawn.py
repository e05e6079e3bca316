"""Starting a process of uploaded code: unprivileged from its first instruction.

Every such process (a cold run, a warm launcher, a spider listing, a build step) starts as

    sh -c SHIM  →  bwrap VIEW --  →  setpriv USER --  →  env -i ENV  →  the program

where only the last is not the system's own: `sh` waits until the worker has put it in its
cgroup and set its resource limits (so nothing of the tree escapes them), bubblewrap builds
its namespaces and view (as root it binds from anywhere, so an interpreter in root's home
works), setpriv becomes the slot's user with no capabilities, no supplementary groups and
`no_new_privs`, and `env` sets the program's environment: variables such as `LD_PRELOAD`
or `PYTHONPATH` reach only the unprivileged program, never a step before it. SIGTERM is
ignored up to `env` (which restores it), so a cancel reaches the program and not the
sandbox around it. Without bubblewrap (mode `users` or `off`) the chain is the same less
that step.
"""

import contextlib
import os
import re
import resource
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from crawlhub.sandbox.cgroups import Counters, Group
from crawlhub.sandbox.isolation import Isolation
from crawlhub.sandbox.limits import Limits
from crawlhub.sandbox.slots import Slot
from crawlhub.sandbox.views import View, bwrap_args

# Waits for one line on stdin (the worker's go-ahead), then becomes the sandbox.
SHIM = "trap '' TERM INT HUP; read -r _ || exit 70; exec \"$@\" </dev/null"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SIGNALS = range(1, 65)


@dataclass(frozen=True)
class Spec:
    """A program to start in the sandbox."""

    argv: Sequence[str]
    env: dict[str, str]
    view: View
    limits: Limits
    name: str  # of its cgroup: unique among what runs at once


class Sandboxed:
    """A process tree started in the sandbox, waited for like a `subprocess.Popen`."""

    def __init__(self, proc: "subprocess.Popen[bytes]", group: Group | None, *,
                 wrapped: bool) -> None:  # fmt: skip
        self.proc = proc
        self.pid = proc.pid
        self.group = group
        self.wrapped = wrapped  # bubblewrap reports a signal as the exit status 128 + signal

    @property
    def returncode(self) -> int | None:
        return self._code(self.proc.returncode)

    def poll(self) -> int | None:
        return self._code(self.proc.poll())

    def wait(self, timeout: float | None = None) -> int:
        code = self._code(self.proc.wait(timeout))
        assert code is not None
        return code

    def counters(self) -> Counters | None:
        return self.group.counters() if self.group else None

    def kill_tree(self) -> None:
        """SIGKILL every process of the tree, wherever it went (its cgroup, else its process
        group, whose namespace ends with it)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.group is not None:
            self.group.kill()

    def close(self) -> None:
        """Kill what is left of the tree and remove its cgroup."""
        self.kill_tree()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.group is not None:
            self.group.remove()

    def _code(self, code: int | None) -> int | None:
        if code is not None and self.wrapped and code - 128 in SIGNALS:
            return -(code - 128)
        return code


def command(isolation: Isolation, slot: Slot, spec: Spec) -> tuple[list[str], dict[str, bytes]]:
    """The chain that starts `spec` (without the shim), and the data bubblewrap reads."""
    chain: list[str] = []
    data: dict[str, bytes] = {}
    if isolation.bwrap is not None:
        view_args, data = bwrap_args(spec.view, slot.uid)
        chain += [isolation.bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                  "--unshare-cgroup-try", "--die-with-parent"]  # fmt: skip
        if isolation.switch_user:  # bubblewrap is root: setpriv needs these three, once
            chain += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                      "--cap-add", "CAP_SETPCAP"]  # fmt: skip
        else:
            chain += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
        chain += [*view_args, "--"]
    chain += [isolation.setpriv, "--no-new-privs", "--pdeathsig", "KILL"]
    if isolation.switch_user:
        assert slot.uid is not None
        chain += [f"--reuid={slot.uid}", f"--regid={slot.uid}", "--clear-groups",
                  "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all"]  # fmt: skip
    # env changes directory too: as the program's user, into a directory that may be its alone
    chain += ["--", isolation.env, "--default-signal=TERM,INT,HUP", "-i", "-C", str(spec.view.cwd)]
    for name, value in spec.env.items():
        if not VARIABLE.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        chain.append(f"{name}={value}")
    program = list(spec.argv)
    if not program or "=" in program[0] or not program[0].startswith("/"):
        raise ValueError(f"not an absolute program path: {program[:1]}")
    return [*chain, *program], data


def start(isolation: Isolation, slot: Slot, spec: Spec, *, stdout: int | IO[bytes] | None,
          stderr: int | IO[bytes] | None, pass_fds: Sequence[int] = ()) -> Sandboxed:  # fmt: skip
    """Start `spec` in the sandbox of `slot`; its stdin is /dev/null."""
    chain, data = command(isolation, slot, spec)
    readers: list[int] = []
    for name, content in data.items():
        read, write = os.pipe()
        readers.append(read)
        os.write(write, content)  # far below a pipe's buffer
        os.close(write)
        chain[chain.index(f"{{{name}}}")] = str(read)
    go_read, go_write = os.pipe()
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", SHIM, "crawlhub-sandbox", *chain], stdin=go_read, stdout=stdout,
            stderr=stderr, pass_fds=(*pass_fds, *readers), env={"PATH": SAFE_PATH},
            cwd="/", start_new_session=True,
            umask=0o022,
        )  # fmt: skip
    except BaseException:
        os.close(go_write)
        raise
    finally:
        os.close(go_read)
        for fd in readers:
            os.close(fd)
    group = None
    try:
        group = isolation.cgroups.group(spec.name, spec.limits)
        if group is not None:
            group.add(proc.pid)
        apply_rlimits(proc.pid, spec.limits, nproc=isolation.switch_user and group is None)
        os.write(go_write, b"\n")
    except BaseException:
        proc.kill()
        proc.wait()
        if group is not None:
            group.remove()
        raise
    finally:
        os.close(go_write)
    return Sandboxed(proc, group, wrapped=isolation.bwrap is not None)


def rlimits(limits: Limits, *, nproc: bool) -> dict[int, int]:
    """The hard resource limits of a run's processes. `nproc`: count processes per user
    too (the slot's user), where no cgroup counts them."""
    wanted = limits.rlimits()
    if nproc:
        wanted[resource.RLIMIT_NPROC] = limits.processes
    return wanted


def apply_rlimits(pid: int, limits: Limits, *, nproc: bool) -> None:
    """Set a process's hard resource limits (it and what it starts cannot raise them)."""
    for which, value in rlimits(limits, nproc=nproc).items():
        _, hard = resource.prlimit(pid, which)
        if hard != resource.RLIM_INFINITY and value > hard and os.geteuid() != 0:
            value = hard  # a worker that is not root cannot raise its own hard limit
        try:
            resource.prlimit(pid, which, (value, value))
        except (ValueError, OSError):  # above what the kernel allows (nr_open): its hard one
            resource.prlimit(pid, which, (hard, hard))


def add_to_cgroup(isolation: Isolation, name: str, limits: Limits, pid: int) -> Group | None:
    """Put a process that waits to be let go (a forked warm run) in a cgroup of its own,
    with the memory and task limits of its run."""
    group = isolation.cgroups.group(name, limits)
    try:
        if group is not None:
            group.add(pid)
    except BaseException:
        if group is not None:
            group.remove()
        raise
    return group
