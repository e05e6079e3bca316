"""What a sandboxed process sees of the machine: bubblewrap's arguments for a view.

A new root built from read-only binds at their own paths: the system's programs and
libraries (`/usr` and its links), a short list of `/etc` (name resolution, certificates,
time zones, fonts), the interpreter and environment the process runs on, CrawlHub's
in-spider runtime; read-write, only what the process must write (a run's slot). `/tmp` and
`/dev/shm` are private tmpfs, `/proc` shows its own PID namespace, `/dev` the harmless
devices, `/etc/passwd` and `/etc/group` name its user and nothing of the machine's. Nothing
else: no home directory, no data dir beyond what is bound, no sockets of local services.
"""

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from crawlhub.sandbox.limits import MiB

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What programs read from /etc: resolving names, TLS, time zones, locales, fonts, browsers.
ETC = (
    "resolv.conf", "hosts", "host.conf", "nsswitch.conf", "gai.conf", "services", "protocols",
    "ssl", "ca-certificates", "ca-certificates.conf", "pki", "crypto-policies", "localtime",
    "timezone", "mime.types", "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
    "fonts", "chromium", "chromium.d", "os-release", "debian_version", "xdg", "locale.alias",
    "locale.conf", "magic", "mailcap",
)  # fmt: skip
SPIDER_NAME = "crawlhub-spider"


@dataclass(frozen=True)
class View:
    """The paths a sandboxed process sees beside the system's, each at its own path."""

    read_only: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    cwd: Path = Path("/")
    tmp_mb: int = 1024  # size of its private /tmp (and /dev/shm)
    home: Path = field(default=Path("/"))


def bwrap_args(view: View, uid: int | None) -> tuple[list[str], dict[str, bytes]]:
    """bubblewrap's options for this view, and the files it writes into it from descriptors
    (placeholder `{name}` in the options: the caller passes the data on a pipe)."""
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--dir", "/etc", "--dir", "/var"]  # bubblewrap 0.8 makes parents 0700 unless told
    for name in ETC:
        path = f"/etc/{name}"
        if os.path.lexists(path):
            args += ["--ro-bind-try", path, path]
    size = str(view.tmp_mb * MiB)
    args += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
             "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm",
             "--symlink", "/tmp", "/var/tmp"]  # fmt: skip
    made = {"/", "/tmp", "/dev", "/proc", "/etc", "/var"}
    shown: list[str] = []
    binds = [(p, "--ro-bind") for p in _outermost(view.read_only)]
    binds += [(p, "--bind") for p in dict.fromkeys(view.writable)]
    for bound, option in sorted(binds, key=lambda bind: len(bind[0].parts)):
        text = str(bound)
        if option == "--ro-bind" and any(_within(text, s) for s in (*SYSTEM_DIRS, *shown)):
            continue  # already in view, read-only
        for parent in reversed(bound.parents):
            if str(parent) not in made:  # bubblewrap 0.8 makes them 0700 unless told
                args += ["--dir", str(parent)]
                made.add(str(parent))
        args += [option, text, text]
        made.add(text)
        if option == "--ro-bind":
            shown.append(text)
    args += ["--perms", "0644", "--ro-bind-data", "{passwd}", "/etc/passwd",
             "--perms", "0644", "--ro-bind-data", "{group}", "/etc/group"]  # fmt: skip
    return args, accounts(uid if uid is not None else os.getuid(), view.home)


def accounts(uid: int, home: Path) -> dict[str, bytes]:
    """/etc/passwd and /etc/group of the sandbox: root, the process's user, nobody."""
    names = {0: "root", 65534: "nobody", uid: SPIDER_NAME if uid else "root"}
    passwd = "".join(f"{name}:x:{n}:{n}:{name}:{home if n == uid else '/'}:/usr/sbin/nologin\n"
                     for n, name in sorted(names.items()))  # fmt: skip
    group = "".join(f"{name}:x:{n}:\n" for n, name in sorted(names.items()))
    return {"passwd": passwd.encode(), "group": group.encode()}


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths that are not below another one of them."""
    unique = sorted({str(p) for p in paths}, key=len)
    kept: list[str] = []
    for path in unique:
        if not any(_within(path, outer) for outer in kept):
            kept.append(path)
    return [Path(p) for p in kept]


def _within(path: str, outer: str) -> bool:
    return path == outer or path.startswith(outer.rstrip("/") + "/")
