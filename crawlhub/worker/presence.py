"""A worker process's life as Dramatiq tells it: registered and heartbeating from its boot
(and recording the outcomes an earlier process left), telling its runs to wind down when it
starts shutting down, marked stopped at the end.

"Workers online" counts these rows only (`repo.workers.online`): a ticker or a web process
touches Dramatiq's own heartbeat set too, but never registers.
"""

import logging
import os
import socket
import threading
import time

import dramatiq

from crawlhub import __version__
from crawlhub.context import Context
from crawlhub.repo import workers as worker_repo
from crawlhub.sandbox import firewall
from crawlhub.worker.outcomes import Recorder

logger = logging.getLogger(__name__)


def worker_id() -> str:
    """This process's name among the workers: host:pid (a run's `worker` adds its thread)."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
            with self.context.db.session() as session:
                worker_repo.register(session, self.id, host=socket.gethostname(),
                                     pid=os.getpid(), version=__version__,
                                     threads=threads)  # fmt: skip
        except Exception as exc:  # the heartbeat thread tries again
            logger.warning("worker %s: could not register: %s", self.id, exc)
            return False
        return True

    def _beat(self, threads: int) -> None:
        failing = False
        renew_at = time.monotonic() + firewall.RENEW_S
        while not self._stop.wait(self.context.settings.heartbeat_s):
            if time.monotonic() >= renew_at:  # this worker's services stay refused to spiders
                firewall.refresh()
                renew_at = time.monotonic() + firewall.RENEW_S
            try:
                with self.context.db.session() as session:
                    known = worker_repo.beat(session, self.id)
                if not known:
                    known = self._register(threads)
                if failing and known:
                    logger.info("worker %s: heartbeating again", self.id)
                failing = not known
            except Exception as exc:
                if not failing:
                    logger.warning("worker %s: heartbeat failed: %s", self.id, exc)
                failing = True
