"""The worker's use of the sandbox (crawlhub/sandbox/): which slot, view, environment and
limits each process of uploaded code gets (runs, warm launchers, listings, builds), and
what a worker checks and sets up when it starts."""

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from crawlhub.child import launcher as child
from crawlhub.config import Settings
from crawlhub.errors import ConfigError
from crawlhub.sandbox import firewall, slots, spawn
from crawlhub.sandbox import limits as run_limits
from crawlhub.sandbox.isolation import Isolation, isolation
from crawlhub.sandbox.limits import Limits
from crawlhub.sandbox.slots import Slot
from crawlhub.sandbox.views import View
from crawlhub.worker import environments, launchers
from crawlhub.worker.environments import Builder, Runtime

logger = logging.getLogger(__name__)

REACH_TIMEOUT_S = 60
# Settings of the in-interpreter jail the sandbox replaced: read by nothing now.
OBSOLETE = {"CRAWLHUB_SPIDER_USER": "CRAWLHUB_SPIDER_UIDS",
            "CRAWLHUB_SPIDER_NAMESPACES": "CRAWLHUB_SANDBOX"}  # fmt: skip
# Run in the sandbox at a worker's start: the spider interpreter and CrawlHub's runtime work.
REACH_CHECK = "import os, crawlhub.child.bootstrap; print(os.getuid())"


def isolation_of(settings: Settings) -> Isolation:
    """This worker's sandbox (found once per process)."""
    return isolation(settings.sandbox, settings.spider_uid_range)


@contextlib.contextmanager
def slot(settings: Settings) -> Iterator[Slot]:
    """A slot of this worker for one process tree of uploaded code (see slots.Pool.take)."""
    found = isolation_of(settings)
    uids = found.uids if found.switch_user else None
    strays = found.mode == "users"  # no PID namespace ends what a run leaves behind
    with slots.pool(settings.data_dir, uids).take(settings.data_dir, strays=strays) as taken:
        yield taken


def default_limits(settings: Settings) -> Limits:
    return Limits(settings.memory_limit_mb, settings.max_processes, settings.max_open_files,
                  settings.disk_limit_mb, settings.max_files)  # fmt: skip


def limits_of(settings: Settings, overrides: Mapping[str, int] | None) -> Limits:
    """A spider's limits: the defaults, with those it sets in their place."""
    return default_limits(settings).merged(overrides)


def view(settings: Settings, runtime: Runtime, taken: Slot, cwd: Path, limits: Limits) -> View:
    """What a spider (or a launcher, with cwd /) sees: its interpreter, environment and
    runtime read-only, its slot read-write."""
    shown = tuple(Path(p) for p in settings.sandbox_read_only.split(":") if p)
    shared = tuple(Path(p) for p in settings.sandbox_writable.split(":") if p)
    return View(read_only=(*runtime.paths, *shown), writable=(taken.root, *shared), cwd=cwd,
                tmp_mb=limits.disk_mb, home=cwd)  # fmt: skip


def base_env(settings: Settings, runtime: Runtime, taken: Slot, home: Path) -> dict[str, str]:
    """A spider process's environment before its own variables: nothing of the worker's."""
    env = environments.base_env(home)
    env["PATH"] = f"{os.path.dirname(runtime.python)}:{env['PATH']}"
    env.update(runtime.variables())
    if isolation_of(settings).bwrap is None:  # no private /tmp: the slot's own
        env["TMPDIR"] = str(taken.tmp)
    return env


def launcher(settings: Settings, runtime: Runtime, kind: str,
             taken: Slot) -> tuple[launchers.Key, launchers.Start]:  # fmt: skip
    """Which launcher serves runs of this kind, runtime and slot, and how it starts: with
    the default memory and task limits, and resource limits no run's go beyond (each run
    lowers its own)."""
    limits = replace(default_limits(settings), open_files=run_limits.BOUNDS["open_files"][1],
                     disk_mb=run_limits.BOUNDS["disk_mb"][1])  # fmt: skip
    env = base_env(settings, runtime, taken, Path("/"))
    variables = tuple(sorted(runtime.variables().items()))
    key = launchers.Key(runtime.python, kind, variables, taken.number)
    name = f"launcher-{taken.number}-{kind}-{abs(hash(key)) % 10**8}"
    shown = view(settings, runtime, taken, Path("/"), default_limits(settings))
    spec = spawn.Spec([], env, shown, limits, name)
    return key, launchers.Start(isolation_of(settings), taken, spec)


def builder(settings: Settings, taken: Slot) -> Builder:
    return Builder(isolation_of(settings), taken, default_limits(settings))


def prepare_worker(settings: Settings) -> Isolation:
    """At a worker's start: find the sandbox, lay out the data dir, keep spiders off
    CrawlHub's services, check a spider can start, warm the first slot's launchers.

    ConfigError when spiders cannot start here, rather than failing every run."""
    found = isolation_of(settings)
    launchers.POOL.idle_s = settings.launcher_idle_s
    data = settings.data_dir
    check_shown_paths(settings)
    for name, instead in OBSOLETE.items():
        if name in os.environ:
            logger.warning("%s is no longer read: spiders run in bubblewrap's sandbox as slot "
                           "users (see %s; docs/guide/security.md)", name, instead)  # fmt: skip
    for path, mode in ((data, 0o711), (data / "work", 0o711), (data / "versions", 0o700)):
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() in (0, path.stat().st_uid):
            path.chmod(mode)
    pool = slots.pool(data, found.uids if found.switch_user else None)
    first = pool.first(data)
    runtime = environments.platform_runtime(settings)
    _check_reach(settings, found, runtime)
    urls = [settings.database_url.get_secret_value()]
    if settings.redis_url is not None:
        urls.append(settings.redis_url.get_secret_value())
    services = firewall.protect(found, urls)
    logger.info("sandbox: %s; CrawlHub's database and Redis: %s", found.describe(), services)
    if found.mode != "bwrap":
        logger.warning("spiders run without namespaces of their own (%s): %s (docs/guide/"
                       "security.md)", found.why,
                       "each slot's user keeps runs apart" if found.switch_user else
                       "they can read what the worker's user can")  # fmt: skip
    if found.cgroups.version is None:
        logger.warning("runs have no memory or process limits: %s", found.cgroups.why)
    if settings.warm_start:  # the platform's launchers, ready for the first runs
        launchers.warm_up([launcher(settings, runtime, kind, first) for kind in child.KINDS])
    return found


def check_shown_paths(settings: Settings) -> None:
    """The paths an operator shows every spider must keep the data dir out of their view."""
    data = settings.data_dir.resolve()
    for name, value in (("CRAWLHUB_SANDBOX_READ_ONLY", settings.sandbox_read_only),
                        ("CRAWLHUB_SANDBOX_WRITABLE", settings.sandbox_writable)):  # fmt: skip
        for path in (Path(p).resolve() for p in value.split(":") if p):
            if path == data or data.is_relative_to(path) or path.is_relative_to(data):
                raise ConfigError(f"{name}: {path} would show spiders the data dir {data} "
                                  "(its token file, database, other runs)")  # fmt: skip


def _check_reach(settings: Settings, found: Isolation, runtime: Runtime) -> None:
    """Start the spider interpreter in a slot's sandbox, as a run does."""
    with slot(settings) as taken:
        limits = default_limits(settings)
        spec = spawn.Spec([runtime.python, "-c", REACH_CHECK],
                          base_env(settings, runtime, taken, taken.root),
                          view(settings, runtime, taken, taken.root, limits), limits,
                          f"check-{taken.number}")  # fmt: skip
        try:
            proc = spawn.start(found, taken, spec, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot start spiders: {exc}") from exc
        try:
            output, _ = proc.proc.communicate(timeout=REACH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            output = b"no answer within a minute"
        finally:
            proc.close()
    text = output.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        raise ConfigError(
            f"spiders cannot start {runtime.python} in the sandbox ({found.mode}): "
            f"{text.splitlines()[-1] if text else f'exit {proc.returncode}'}. Set "
            "CRAWLHUB_SPIDER_PYTHON to an interpreter with Scrapy that spiders may run"
        )
    if found.switch_user and text.splitlines()[-1:] != [str(taken.uid)]:
        raise ConfigError(f"a spider ran as uid {text!r}, not as its slot's {taken.uid}")
