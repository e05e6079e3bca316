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
from crawlhub.scheduling import firing, housekeeping

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

    def tick(self) -> bool:
        """One round: fire, then sweep and reap when their time has come; True when busy."""
        busy = self._step(firing.fire)
        now = time.monotonic()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_EVERY_S
            busy |= self._step(housekeeping.sweep)
            busy |= self._step(housekeeping.reap)
            busy |= self._step(housekeeping.maintain)
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_EVERY_S
            busy |= self._step(housekeeping.expire)
        return busy

    def _step(self, step: Callable[[Context], bool]) -> bool:
        try:
            return step(self.context)
        except Exception:
            # One failing step must not stop the loop: log it, back off, try again.
            logger.exception(
                "ticker step %s failed; retrying in %.0f s", step.__name__, ERROR_BACKOFF_S
            )
            self.stopping.wait(ERROR_BACKOFF_S)
            return False

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
