"""Getting a new project version ready on a worker: its environment built, its Scrapy
spiders listed (`scrapy list`, run contained like any spider, in the project's own
environment), and what happened recorded on the version."""

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import uuid
from pathlib import Path

from crawlhub.context import Context
from crawlhub.execution import environments, sandbox, workdirs
from crawlhub.execution.environments import BuildFailed, Runtime
from crawlhub.packages import archives, projects
from crawlhub.repo import projects as repo

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
    try:
        if version.requirements:
            key, runtime = environments.ensure(settings, version.requirements, kind, lines.append)
        spiders = None
        if kind == "scrapy":
            source = workdirs.extracted_version(
                settings.data_dir, version.sha256, version.archive, version.filename, "main.py",
                archives.Limits.of(settings),
            )  # fmt: skip
            spiders = list_spiders(context, runtime, source)
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


def list_spiders(context: Context, runtime: Runtime, source: Path) -> list[str]:
    """The Scrapy spiders of an extracted project, found by its own code as `scrapy list`
    finds them, in a throwaway work dir, contained as a run is."""
    settings = context.settings
    identity = sandbox.spider_identity(settings.spider_user)
    work = workdirs.fresh_workdir(settings.data_dir, source, f"list-{uuid.uuid4().hex}")
    try:
        sandbox.hand_over(work, identity)
        read, write = os.pipe()
        env = {**sandbox.base_env(work), **runtime.variables(), "CRAWLHUB_ITEMS_FD": str(write),
               **sandbox.jail_env(settings, identity, runtime.shown())}  # fmt: skip
        chunks: list[bytes] = []
        reader = threading.Thread(target=_read_all, args=(read, chunks), daemon=True)
        reader.start()
        try:
            proc = subprocess.Popen(
                [runtime.python, "-m", "crawlhub.child.bootstrap", "list"], cwd=work, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                pass_fds=(write,), start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(write)
        try:
            output, _ = proc.communicate(timeout=LIST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ListingFailed(f"scrapy list took longer than {LIST_TIMEOUT_S} s") from None
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
    finally:
        workdirs.remove_workdir(work)


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
