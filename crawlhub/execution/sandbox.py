"""What a spider may reach: the worker's side of containment (the child's is child/jail.py).

Every CrawlHub server process is non-dumpable, so no other process of its user can read
its environment or memory. When the worker can change user, spiders run as
CRAWLHUB_SPIDER_USER and the data dir is the worker's alone, but for each run's work dir.
"""

import ctypes
import functools
import logging
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from crawlhub.child import jail
from crawlhub.config import Settings
from crawlhub.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_SPIDER_USER = "crawlhub-spider"
FALLBACK_SPIDER_USER = "nobody"
PR_SET_DUMPABLE = 4
CAP_SETGID, CAP_SETUID = 6, 7
# Run as the spider user at start-up: can it start its interpreter and reach its work dirs?
_REACH_CHECK = "import os, sys; os.chdir(sys.argv[1]); import crawlhub.child.bootstrap"


@dataclass(frozen=True)
class SpiderIdentity:
    """The user spiders run as, when it is not the worker's own."""

    name: str
    uid: int
    gid: int


def harden_process(*, server: bool) -> None:
    """Non-dumpable: /proc/<pid>/environ, /proc/<pid>/mem and ptrace are refused to other
    processes of this user. Servers also create files for their own user only."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, ctypes.c_ulong(0), 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_DUMPABLE): %s", os.strerror(ctypes.get_errno()))
    if server:
        os.umask(0o077)


def spider_python(settings: Settings) -> str:
    """The interpreter that starts spiders."""
    return str(settings.spider_python or sys.executable)


def can_switch_user() -> bool:
    """Root, or holding CAP_SETUID and CAP_SETGID."""
    if os.geteuid() == 0:
        return True
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            caps = int(line.split()[1], 16)
            return bool(caps & (1 << CAP_SETUID)) and bool(caps & (1 << CAP_SETGID))
    return False


@functools.cache
def spider_identity(user: str) -> SpiderIdentity | None:
    """Who spiders run as: None when the worker cannot change user (they run as it does)."""
    if not can_switch_user():
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        if user != DEFAULT_SPIDER_USER:
            raise ConfigError(f"CRAWLHUB_SPIDER_USER: no user {user!r} on this machine") from None
        entry = pwd.getpwnam(FALLBACK_SPIDER_USER)
        logger.info("no user %r: spiders run as %r", user, FALLBACK_SPIDER_USER)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise ConfigError(f"CRAWLHUB_SPIDER_USER: {user!r} is root; spiders never run as root")
    return SpiderIdentity(entry.pw_name, entry.pw_uid, entry.pw_gid)


def work_root(settings: Settings) -> Path:
    """Where runs' work dirs live."""
    return settings.data_dir / "work"


def prepare_worker(settings: Settings) -> SpiderIdentity | None:
    """At a worker's start: lay out the data dir for spiders and check they can run.

    The data dir and work/ are traversable but not listable; versions/ is the worker's
    alone. Raises ConfigError when the spider user cannot start its interpreter or reach
    its work dirs, rather than failing every run."""
    identity = spider_identity(settings.spider_user)
    work = work_root(settings)
    work.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "versions").mkdir(exist_ok=True)
    for path, mode in ((settings.data_dir, 0o711), (work, 0o711),
                       (settings.data_dir / "versions", 0o700)):  # fmt: skip
        if os.geteuid() in (0, path.stat().st_uid):
            path.chmod(mode)
    if identity is None:
        logger.warning(
            "spiders run as this worker's user (%s): they can read its data dir, though not "
            "its environment; run the worker as root to give them a user of their own "
            "(README: Security model)", pwd.getpwuid(os.geteuid()).pw_name,
        )  # fmt: skip
        return None
    python = spider_python(settings)
    try:
        check = subprocess.run(
            [python, "-c", _REACH_CHECK, str(work)], cwd="/", env={"PATH": os.defpath},
            user=identity.uid, group=identity.gid, extra_groups=[],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        problem = check.stderr.strip().splitlines()[-1] if check.returncode else ""
    except OSError as exc:
        problem = str(exc)
    if problem:
        raise ConfigError(
            f"spiders run as {identity.name!r}, who cannot start {python} in {work}: "
            f"{problem}. Set CRAWLHUB_SPIDER_PYTHON to an interpreter with CrawlHub installed "
            f"that every user can run, and let others traverse every directory above "
            f"CRAWLHUB_DATA_DIR (chmod o+x)"
        )
    logger.info("spiders run as %s (uid %d)", identity.name, identity.uid)
    return identity


def hidden_paths(settings: Settings) -> list[Path]:
    """What a run's mount namespace covers: the data dir (but for the run's own work dir)
    and an embedded database, whichever user the spider runs as."""
    paths = [settings.data_dir]
    url = settings.database_url.get_secret_value()
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        database = Path(url.removeprefix("sqlite:///")).absolute()
        paths += [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
    return paths


def jail_env(
    settings: Settings, identity: SpiderIdentity | None, shown: list[Path]
) -> dict[str, str]:
    """The variables the bootstrap's jail reads (and removes before spider code runs):
    limits, what to hide and what to show again, and the user to become."""
    env = {
        jail.PROCESSES_ENV: str(settings.max_processes),
        jail.OPEN_FILES_ENV: str(settings.max_open_files),
        jail.HIDE_ENV: "\n".join(map(str, hidden_paths(settings))),
    }
    if shown:
        env[jail.SHOW_ENV] = "\n".join(map(str, shown))
    if settings.memory_limit_mb:
        env[jail.MEMORY_LIMIT_ENV] = str(settings.memory_limit_mb)
    if not settings.spider_namespaces:
        env[jail.NAMESPACES_ENV] = "0"
    if identity is not None:
        env[jail.UID_ENV] = str(identity.uid)
        env[jail.GID_ENV] = str(identity.gid)
    return env


def base_env(home: Path) -> dict[str, str]:
    """What every spider process (and build) starts from: nothing of the worker's own."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return env


def hand_over(work: Path, identity: SpiderIdentity | None) -> None:
    """Give a fresh work dir to the spider user (it is the worker's own otherwise)."""
    if identity is None:
        return
    for root, _, files in os.walk(work):  # a copy: no symbolic links in it
        os.chown(root, identity.uid, identity.gid)
        for name in files:
            os.chown(os.path.join(root, name), identity.uid, identity.gid)
