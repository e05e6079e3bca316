"""A worker process's life as Dramatiq tells it: registered and heartbeating from its boot
(and recording the outcomes an earlier process left), telling its runs to wind down when it
starts shutting down, marked stopped at the end.

"Workers online" counts these rows only (`repo.workers.online`): a ticker or a web process
touches Dramatiq's own heartbeat set too, but never registers.
"""

import contextlib
import logging
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import dramatiq

from crawlhub import __version__
from crawlhub.config import Settings
from crawlhub.context import Context
from crawlhub.repo import workers as worker_repo
from crawlhub.sandbox import firewall
from crawlhub.services import dispatch
from crawlhub.worker import environments
from crawlhub.worker.outcomes import Recorder

logger = logging.getLogger(__name__)


def worker_id() -> str:
    """This process's name among the workers: host:pid (a run's `worker` adds its thread)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def machine(settings: Settings) -> dict[str, Any]:
    """What a node's heartbeat tells of its machine: its load, cpus, memory, the disk of its
    data dir, and the environments it holds (what it could not read is left out)."""
    found: dict[str, Any] = {"cpus": os.cpu_count() or 1}
    with contextlib.suppress(OSError):
        found["load"] = round(os.getloadavg()[0], 2)
    with contextlib.suppress(OSError, ValueError, IndexError):
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        found["memory_mb"] = int(info["MemTotal"].split()[0]) // 1024
        found["memory_free_mb"] = int(info["MemAvailable"].split()[0]) // 1024
    with contextlib.suppress(OSError):
        disk = shutil.disk_usage(settings.data_dir)
        found["disk_mb"], found["disk_free_mb"] = disk.total // 2**20, disk.free // 2**20
    with contextlib.suppress(OSError):
        found["environments"] = environments.held(settings)
    return found


class WorkerLife(dramatiq.Middleware):
    """Dramatiq's boot and shutdown hooks of a worker process."""

    def __init__(self, context: Context, recorder: Recorder) -> None:
        self.context = context
        self.recorder = recorder
        self.id = worker_id()
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._register(worker.worker_threads)
        self.recorder.resume()
        self._beats = threading.Thread(target=self._beat, args=(worker.worker_threads,),
                                       name="crawlhub-presence", daemon=True)  # fmt: skip
        self._beats.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Runs get the shutdown grace to finish, then are handed back (supervisor).
        self.context.stopping.set()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.recorder.stop()
        self._stop.set()
        if self._beats is not None:
            self._beats.join(timeout=5)
        try:
            with self.context.db.session() as session:
                worker_repo.stopped(session, self.id)
        except Exception as exc:  # it stops counting after three missed heartbeats anyway
            logger.warning("worker %s: could not mark itself stopped: %s", self.id, exc)

    def _register(self, threads: int) -> bool:
        try:
            settings = self.context.settings
            with self.context.db.session() as session:
                worker_repo.register(session, self.id, host=socket.gethostname(),
                                     pid=os.getpid(), version=__version__, threads=threads,
                                     labels=settings.labels,
                                     machine=machine(settings))  # fmt: skip
        except Exception as exc:  # the heartbeat thread tries again
            logger.warning("worker %s: could not register: %s", self.id, exc)
            return False
        dispatch.quietly(self.context)  # its slots are free: runs held for one start now
        return True

    def _drain(self, draining: bool) -> None:
        """Take no new runs while the node is drained (its running ones go on)."""
        if draining and not self.context.draining.is_set():
            logger.info("worker %s: draining: it takes no new runs", self.id)
            self.context.draining.set()
        elif not draining and self.context.draining.is_set():
            logger.info("worker %s: resumed: it takes runs again", self.id)
            self.context.draining.clear()

    def _beat(self, threads: int) -> None:
        failing = False
        renew_at = time.monotonic() + firewall.RENEW_S
        while not self._stop.wait(self.context.settings.heartbeat_s):
            if time.monotonic() >= renew_at:  # this worker's services stay refused to spiders
                firewall.refresh()
                renew_at = time.monotonic() + firewall.RENEW_S
            try:
                read = machine(self.context.settings)
                with self.context.db.session() as session:
                    draining = worker_repo.beat(session, self.id, read)
                known = draining is not None or self._register(threads)
                self._drain(bool(draining))
                if failing and known:
                    logger.info("worker %s: heartbeating again", self.id)
                failing = not known
            except Exception as exc:
                if not failing:
                    logger.warning("worker %s: heartbeat failed: %s", self.id, exc)
                failing = True
