"""The scheduler process: a loop of small steps that each claim work in the database.

Every round fires the schedules that are due; every few seconds it also sweeps runs whose
message never reached the broker and reaps runs whose worker stopped heartbeating. Between
rounds it sleeps until the next schedule is due (at most MAX_SLEEP_S, and less when a
schedule changes in this process), so fires are enqueued well under a second after their
time whatever the number of schedules. Any number of tickers may run at once.
"""

import logging
import threading
import time
from collections.abc import Callable

from crawlhub.context import Context
from crawlhub.errors import GiveWay, ServiceUnavailable
from crawlhub.housekeeping import steps as housekeeping
from crawlhub.scheduling import firing

logger = logging.getLogger(__name__)

MAX_SLEEP_S = 1.0  # longest sleep between rounds (bounds the delay of schedules other tickers add)
HOUSEKEEPING_EVERY_S = 5.0  # sweep and reap period
RETENTION_EVERY_S = 60.0  # expired items and logs are deleted this often
ERROR_BACKOFF_S = 1.0  # pause after a failed round (the database restarting, say)


class Ticker:
    """Runs the scheduling steps until stopped."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.stopping = threading.Event()
        self._next_housekeeping = 0.0
        self._next_retention = 0.0
        self._database_lost = False
        # When this ticker last got the database back after losing it (monotonic seconds).
        self.database_regained: float | None = None

    def tick(self) -> bool:
        """One round: fire, then sweep and reap when their time has come; True when busy."""
        busy = self._step(firing.fire)
        now = time.monotonic()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_EVERY_S
            busy |= self._step(housekeeping.sweep)
            if self.may_reap(now):
                busy |= self._step(housekeeping.reap)
            busy |= self._step(housekeeping.deliver)
            busy |= self._step(housekeeping.maintain)
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_EVERY_S
            busy |= self._step(housekeeping.expire)
        return busy

    def may_reap(self, now: float) -> bool:
        """Whether runs may be reaped now: not within a lease of getting the database back.

        A run's lease counts from the later of its last heartbeat and the moment this ticker
        regained the database, so an outage that kept workers from heartbeating makes no
        healthy run look lost: each gets a full lease to heartbeat again.
        """
        if self.database_regained is None:
            return True
        return now - self.database_regained >= self.context.settings.lease_s

    def _step(self, step: Callable[[Context], bool]) -> bool:
        try:
            busy = step(self.context)
        except GiveWay as exc:  # the database is there: the next round tries again
            logger.info("ticker step %s: %s", step.__name__, exc.message)
            self.stopping.wait(ERROR_BACKOFF_S)
            return False
        except ServiceUnavailable as exc:
            if not self._database_lost:
                logger.warning("ticker: %s; reaping pauses until a lease after it is back",
                               exc.message)  # fmt: skip
            self._database_lost = True
            self.stopping.wait(ERROR_BACKOFF_S)
            return False
        except Exception:
            # One failing step must not stop the loop: log it, back off, try again.
            logger.exception(
                "ticker step %s failed; retrying in %.0f s", step.__name__, ERROR_BACKOFF_S
            )
            self.stopping.wait(ERROR_BACKOFF_S)
            return False
        if self._database_lost and step is not housekeeping.maintain:  # that one is Redis's
            self._database_lost = False
            self.database_regained = time.monotonic()
            logger.info("ticker: the database is back; no run is reaped for %.0f s",
                        self.context.settings.lease_s)  # fmt: skip
        return busy

    def run(self) -> None:
        """Loop until stop() is called; the current round (one transaction) always completes."""
        logger.info("ticker started")
        wake = self.context.wake_ticker
        while not self.stopping.is_set():
            if self.tick():
                continue
            wake.wait(self._sleep_s())
            wake.clear()
        logger.info("ticker stopped")

    def _sleep_s(self) -> float:
        try:
            due_in = firing.seconds_until_due(self.context)
        except Exception as exc:
            logger.warning("ticker: cannot read the next due time: %s", exc)
            return MAX_SLEEP_S
        if due_in is None:
            return MAX_SLEEP_S
        return min(max(due_in, 0.0), MAX_SLEEP_S)

    def stop(self) -> None:
        """Ask the loop to finish its round and return."""
        self.stopping.set()
        self.context.wake_ticker.set()
