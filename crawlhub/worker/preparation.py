"""Getting a new project version ready on a worker: its environment built, its Scrapy
spiders listed (`scrapy list`, run in a slot's sandbox like any spider, in the project's
own environment), and what happened recorded on the version."""

import contextlib
import json
import logging
import os
import subprocess
import threading
import uuid
from pathlib import Path
from typing import IO

from crawlhub.context import Context
from crawlhub.registry import archives, projects
from crawlhub.repo import projects as repo
from crawlhub.sandbox import spawn
from crawlhub.sandbox.slots import Slot
from crawlhub.worker import environments, sandboxes, workdirs
from crawlhub.worker.environments import BuildFailed, Runtime

logger = logging.getLogger(__name__)

LIST_TIMEOUT_S = 180
MAX_OUTPUT_BYTES = 256 * 1024  # of what a listing prints, kept for its error message
MAX_NAMES_BYTES = 1024 * 1024  # of the spider names it writes (thousands of spiders)


class ListingFailed(Exception):
    """`scrapy list` did not give the project's spiders."""


def prepare_version(context: Context, version_id: uuid.UUID) -> None:
    """Build the version's environment and list its spiders; record the outcome."""
    settings = context.settings
    with context.db.read() as session:
        version = repo.version_by_id(session, version_id)
        if version is None:
            return
        project = repo.get_project(session, str(version.project_id))
        kind, name, number = project.kind, project.name, version.number
    lines: list[str] = []
    runtime, key = environments.platform_runtime(settings), None
    spiders = None
    try:
        # A slot only for what runs code of the upload's: its build, its spider listing.
        runs_code = bool(version.requirements) or kind == "scrapy"
        with sandboxes.slot(settings) if runs_code else contextlib.nullcontext() as taken:
            if version.requirements:
                assert taken is not None
                builder = sandboxes.builder(settings, taken)
                key, runtime = environments.ensure(settings, version.requirements, kind,
                                                   lines.append, builder)  # fmt: skip
            if kind == "scrapy":
                assert taken is not None
                source = workdirs.extracted_version(
                    settings.data_dir, version.sha256, lambda: version.archive, version.filename,
                    "main.py", archives.Limits.of(settings),
                )  # fmt: skip
                spiders = list_spiders(context, runtime, source, taken)
                lines.append(f"scrapy list: {', '.join(spiders) or '(no spiders)'}")
    except (BuildFailed, ListingFailed) as exc:
        message = exc.message if isinstance(exc, BuildFailed) else str(exc)
        log = exc.log if isinstance(exc, BuildFailed) else "\n".join([*lines, message])
        if isinstance(exc, BuildFailed):
            key = exc.key
        projects.record_prepared(context.db, version_id, status="failed", log=log,
                                 error=message, env_key=key)  # fmt: skip
        logger.warning("project %s version %d cannot run: %s", name, number, message)
        return
    created = projects.record_prepared(
        context.db, version_id, status="ready", log="\n".join(lines), env_key=key, spiders=spiders
    )
    logger.info("project %s version %d ready%s", name, number,
                f"; new spiders: {', '.join(created)}" if created else "")  # fmt: skip
    collect_environments(context)


def list_spiders(context: Context, runtime: Runtime, source: Path, taken: Slot) -> list[str]:
    """The Scrapy spiders of an extracted project, found by its own code as `scrapy list`
    finds them, in a throwaway work dir of the slot, sandboxed as a run is."""
    settings = context.settings
    work = workdirs.fresh_workdir(source, taken.root / f"list-{uuid.uuid4().hex}")
    taken.hand_over(work)
    limits = sandboxes.default_limits(settings)
    read, write = os.pipe()
    taken.hand_over_pipe(write)
    env = {**sandboxes.base_env(settings, runtime, taken, work), "CRAWLHUB_ITEMS_FD": str(write)}
    spec = spawn.Spec([runtime.python, "-m", "crawlhub.child.bootstrap", "list"], env,
                      sandboxes.view(settings, runtime, taken, work, limits), limits,
                      f"list-{taken.number}-{uuid.uuid4().hex[:8]}")  # fmt: skip
    names_read = _Capped(os.fdopen(read, "rb"), MAX_NAMES_BYTES)
    try:
        proc = spawn.start(sandboxes.isolation_of(settings), taken, spec, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, pass_fds=(write,))  # fmt: skip
    finally:
        os.close(write)
    assert proc.proc.stdout is not None
    printed = _Capped(proc.proc.stdout, MAX_OUTPUT_BYTES)
    try:
        proc.proc.wait(timeout=LIST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill_tree()
        proc.proc.wait()
        raise ListingFailed(f"scrapy list took longer than {LIST_TIMEOUT_S} s") from None
    finally:
        printed.join()
        names_read.join()
        proc.close()
    text = printed.text()
    if proc.returncode != 0:
        last = text.splitlines()[-1] if text else f"exit {proc.returncode}"
        raise ListingFailed(f"scrapy list failed: {last}\n{text}")
    if names_read.dropped:
        raise ListingFailed(f"scrapy list gave over {MAX_NAMES_BYTES} bytes of spider names")
    try:
        names = json.loads(names_read.kept)
    except ValueError:
        raise ListingFailed(f"scrapy list gave no spider names\n{text}") from None
    return [str(n) for n in names]


class _Capped:
    """A pipe read to its end by a thread, keeping at most `cap` bytes of it: its start and
    its end (where an error's traceback is), and counting what is dropped between."""

    def __init__(self, pipe: IO[bytes], cap: int) -> None:
        self.head = b""
        self.tail = b""
        self.dropped = 0
        self._thread = threading.Thread(target=self._read, args=(pipe, cap), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes], cap: int) -> None:
        head_cap, tail_cap = cap // 4, cap - cap // 4
        with pipe:
            while chunk := pipe.read(65536):
                room = head_cap - len(self.head)
                self.head += chunk[:room]
                self.tail += chunk[max(room, 0) :]
                if len(self.tail) > tail_cap:
                    self.dropped += len(self.tail) - tail_cap
                    self.tail = self.tail[-tail_cap:]

    @property
    def kept(self) -> bytes:
        return self.head + self.tail

    def join(self) -> None:
        self._thread.join(5)

    def text(self) -> str:
        if not self.dropped:
            return self.kept.decode("utf-8", "replace").strip()
        return (
            f"{self.head.decode('utf-8', 'replace')}\n…[{self.dropped} bytes not kept]…\n"
            f"{self.tail.decode('utf-8', 'replace')}"
        ).strip()


def collect_environments(context: Context) -> None:
    """Delete this machine's environments that no current version uses and no run used for
    CRAWLHUB_ENV_TTL_DAYS, and its extracted versions no run used for as long."""
    try:
        with context.db.read() as session:
            keep = repo.current_env_keys(session)
        environments.collect(context.settings, keep)
        workdirs.collect(context.settings.data_dir, context.settings.env_ttl_days)
    except Exception as exc:  # clean-up must never fail a build or a worker's start
        logger.warning("cleaning up environments failed: %s", exc)
