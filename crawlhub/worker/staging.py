"""Getting an attempt's spider started: its work dir in the slot, its environment (built now
when this machine lacks it), its command and variables, and its process, forked from a warm
launcher or started cold, in the slot's sandbox either way."""

import contextlib
import fcntl
import io
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from crawlhub.context import Context
from crawlhub.errors import NotFound
from crawlhub.registry import archives
from crawlhub.repo import projects as project_repo
from crawlhub.sandbox import spawn
from crawlhub.sandbox.cgroups import Counters
from crawlhub.sandbox.limits import Limits
from crawlhub.sandbox.slots import Slot
from crawlhub.worker import environments, launchers, sandboxes, workdirs
from crawlhub.worker.attempts import Attempt
from crawlhub.worker.capture import LogSink
from crawlhub.worker.environments import Runtime

STATS_FILE = ".crawlhub-stats.json"
ITEM_PIPE_BYTES = 1024 * 1024  # the item pipe's size and its reader's buffer


class Process(Protocol):
    """A spider's process tree: started in its sandbox, or forked by a warm launcher."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def counters(self) -> Counters | None: ...

    def kill_tree(self) -> None: ...

    def close(self) -> None: ...


class Staging:
    """What an attempt's spider starts from (its work dir, its environment), and its start."""

    def __init__(self, context: Context, attempt: Attempt, slot: Slot, limits: Limits,
                 logs: LogSink, keep_lease: Callable[[], None]) -> None:  # fmt: skip
        self.db = context.db
        self.settings = context.settings
        self.a = attempt
        self.slot = slot
        self.limits = limits
        self.logs = logs
        self.keep_lease = keep_lease  # called while an environment builds
        self.work: Path | None = None
        self.work_fd: int | None = None  # the work dir as it was made (renames do not fool it)
        self.runtime: Runtime | None = None

    def close(self) -> None:
        if self.work_fd is not None:
            os.close(self.work_fd)
            self.work_fd = None

    def prepare(self) -> Path:
        """The run's work dir in its slot: a copy of the version, given to the slot's user."""
        assert self.slot is not None
        limits = archives.Limits.of(self.settings)
        module = archives.module_path(self.a.entry) if self.a.kind == "python" else "main.py"
        source = workdirs.extracted_version(
            self.settings.data_dir, self.a.sha256, self._archive, self.a.filename, module, limits
        )
        # Named by the fence, unique per claim: a fenced-out attempt that cleans up late never
        # removes the directory of the attempt that owns the task now.
        work = workdirs.fresh_workdir(source, self.slot.root / f"{self.a.task_id}-{self.a.fence}")
        self.slot.hand_over(work)
        self.work_fd = os.open(work, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return work

    def _archive(self) -> bytes:
        """The version's package (read only when this machine has not extracted it yet)."""
        with self.db.read() as session:
            version = project_repo.version_by_id(session, self.a.version_id)
        if version is None:
            raise NotFound(f"version {self.a.version} of spider {self.a.spider_name} is gone")
        if not version.archive:
            raise NotFound(f"the package of version {self.a.version} was dropped by retention "
                           "(CRAWLHUB_KEEP_VERSIONS); deploy it again to run it")  # fmt: skip
        return version.archive

    def prepare_runtime(self) -> Runtime:
        """The platform's environment, or the project's (built now when this machine has
        not got it yet, its build log going into the run's log)."""
        assert self.slot is not None
        if not self.a.requirements:
            return environments.platform_runtime(self.settings)
        ready = environments.built(self.settings, self.a.requirements, self.a.kind)
        if ready is not None:  # the usual case: no thread, no lock
            return ready
        built: list[Runtime | BaseException] = []
        taken = self.slot

        def build() -> None:
            try:
                built.append(environments.ensure(
                    self.settings, self.a.requirements or "", self.a.kind, self.logs.system,
                    sandboxes.builder(self.settings, taken),
                )[1])  # fmt: skip
            except BaseException as exc:  # handed to the run's thread
                built.append(exc)

        # A build (or waiting for another worker's) may take minutes: the task keeps its
        # lease and the build log shows live meanwhile. A cancel is acted on once it ends.
        builder = threading.Thread(target=build, name="env-build", daemon=True)
        builder.start()
        while builder.is_alive():
            builder.join(self.settings.heartbeat_s)
            if builder.is_alive():
                self.keep_lease()
        if isinstance(built[0], BaseException):
            raise built[0]
        return built[0]

    def command(self) -> list[str]:
        assert self.runtime is not None
        base = [self.runtime.python, "-m", "crawlhub.child.bootstrap", self.a.kind, self.a.entry]
        if self.a.kind == "python":
            return base
        for key, value in self.a.params.items():
            base += ["-a", f"{key}={_text(value)}"]
        for name, value in self.a.settings.items():
            base += ["-s", f"{name}={_text(value)}"]
        return base

    def start(self, command: list[str]) -> tuple["Process", list[IO[bytes]], str]:
        """Start the spider: forked from its environment's warm launcher when it can be,
        else in an interpreter of its own, in its slot's sandbox either way. Returns the
        process, its stdout, stderr and item pipes, and how it started."""
        assert self.runtime is not None and self.work is not None and self.slot is not None
        runtime, work, taken = self.runtime, self.work, self.slot
        cgroup = f"run-{self.a.task_id}-{self.a.fence}"
        how = "cold start"
        if launchers.POOL.take_loss(str(self.a.task_id)):
            how = "cold start (no warm start: its launcher died under its last attempt)"
        elif self.settings.warm_start:
            key, start = sandboxes.launcher(self.settings, runtime, self.a.kind, taken)
            try:
                return *self._spawn(lambda fds: launchers.launch(
                    key, start, command[3:], self.environment(launchers.ITEMS_FD), str(work),
                    fds, cgroup, self.limits,
                ), taken), "warm start"  # fmt: skip
            except launchers.Unavailable as exc:
                how = f"cold start (no warm start: {exc})"
        view = sandboxes.view(self.settings, runtime, taken, work, self.limits)
        isolation = sandboxes.isolation_of(self.settings)

        def cold(fds: tuple[int, int, int]) -> spawn.Sandboxed:
            spec = spawn.Spec(command, self.environment(fds[2]), view, self.limits, cgroup)
            return spawn.start(isolation, taken, spec, stdout=fds[0], stderr=fds[1],
                               pass_fds=(fds[2],))  # fmt: skip

        return *self._spawn(cold, taken), how

    @staticmethod
    def _spawn(
        start: Callable[[tuple[int, int, int]], "Process"], taken: Slot
    ) -> tuple["Process", list[IO[bytes]]]:
        """Start a process on three new pipes (stdout, stderr, items), given their write
        ends, which are then its alone (and its user's, so that it may open them again as
        /dev/fd/N); returns it and the read ends (closed when it did not start)."""
        pipes = [os.pipe() for _ in range(3)]
        # The item pipe holds more than the default 64 KiB: a busy spider and the reader then
        # take turns in large pieces, not in a wake-up every few hundred items.
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipes[2][1], fcntl.F_SETPIPE_SZ, ITEM_PIPE_BYTES)
        try:
            for _, write in pipes:
                taken.hand_over_pipe(write)
            proc = start((pipes[0][1], pipes[1][1], pipes[2][1]))
        except BaseException:
            for read, _ in pipes:
                os.close(read)
            raise
        finally:
            for _, write in pipes:
                os.close(write)
        sizes = (io.DEFAULT_BUFFER_SIZE, io.DEFAULT_BUFFER_SIZE, ITEM_PIPE_BYTES)
        return proc, [
            os.fdopen(read, "rb", size) for (read, _), size in zip(pipes, sizes, strict=True)
        ]

    def environment(self, items_fd: int) -> dict[str, str]:
        assert self.work is not None and self.runtime is not None and self.slot is not None
        env = sandboxes.base_env(self.settings, self.runtime, self.slot, self.work)
        runtime_paths = {name: env[name] for name in self.runtime.variables()}
        env.update(self.a.env)
        env.update(
            {
                "CRAWLHUB_TASK_ID": str(self.a.task_id),
                "CRAWLHUB_SPIDER": self.a.spider_name,
                "CRAWLHUB_ATTEMPT": str(self.a.attempt),
                "CRAWLHUB_PARAMS": json.dumps(self.a.params),
                "CRAWLHUB_ITEMS_FD": str(items_fd),
                "CRAWLHUB_STATS_PATH": str(self.work / STATS_FILE),
            }
        )
        for name, value in runtime_paths.items():  # before the spider's own
            env[name] = f"{value}:{self.a.env[name]}" if self.a.env.get(name) else value
        return env


def _text(value: Any) -> str:
    """A spider argument or setting on Scrapy's command line: strings as they are, else JSON."""
    return value if isinstance(value, str) else json.dumps(value)
