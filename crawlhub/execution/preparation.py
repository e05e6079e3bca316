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

from crawlhub.context import Context
from crawlhub.execution import environments, sandboxes, workdirs
from crawlhub.execution.environments import BuildFailed, Runtime
from crawlhub.packages import archives, projects
from crawlhub.repo import projects as repo
from crawlhub.sandbox import spawn
from crawlhub.sandbox.slots import Slot

logger = logging.getLogger(__name__)

LIST_TIMEOUT_S = 180


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
                    settings.data_dir, version.sha256, version.archive, version.filename,
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
    chunks: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(read, chunks), daemon=True)
    reader.start()
    try:
        proc = spawn.start(sandboxes.isolation_of(settings), taken, spec, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, pass_fds=(write,))  # fmt: skip
    finally:
        os.close(write)
    try:
        output, _ = proc.proc.communicate(timeout=LIST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill_tree()
        proc.proc.communicate()  # what it printed, and its pipes closed
        raise ListingFailed(f"scrapy list took longer than {LIST_TIMEOUT_S} s") from None
    finally:
        proc.close()
    reader.join(5)
    text = output.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        last = text.splitlines()[-1] if text else f"exit {proc.returncode}"
        raise ListingFailed(f"scrapy list failed: {last}\n{text}")
    try:
        names = json.loads(b"".join(chunks))
    except ValueError:
        raise ListingFailed(f"scrapy list gave no spider names\n{text}") from None
    return [str(n) for n in names]


def _read_all(fd: int, chunks: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as pipe:
        chunks.append(pipe.read())


def collect_environments(context: Context) -> None:
    """Delete this machine's environments that no current version uses and no run used for
    CRAWLHUB_ENV_TTL_DAYS."""
    try:
        with context.db.read() as session:
            keep = repo.current_env_keys(session)
        environments.collect(context.settings, keep)
    except Exception as exc:  # clean-up must never fail a build or a worker's start
        logger.warning("cleaning up environments failed: %s", exc)
