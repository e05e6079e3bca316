"""The scheduler process: a loop of small steps that each claim work in the database.

Each step is a `() -> bool` that does one short transaction and reports whether it
found work; the loop runs the steps again at once while any of them is busy and
otherwise sleeps. The scheduling steps (fire due schedules, sweep unsent runs, reap
lost runs) arrive with the scheduling work (issue 4); until then the loop has none.
"""

import logging
import threading
from collections.abc import Callable, Sequence

from crawlhub.context import Context

logger = logging.getLogger(__name__)

Step = Callable[[], bool]
IDLE_SLEEP_S = 1.0  # upper bound on sleep between rounds when no step had work


class Ticker:
    """Runs its steps in a loop until stopped."""

    def __init__(self, context: Context, steps: Sequence[Step] = ()) -> None:
        self.context = context
        self.steps = list(steps)

    def tick(self) -> bool:
        """Run every step once; True when any of them did work."""
        busy = False
        for step in self.steps:
            try:
                busy |= step()
            except Exception:
                # One failing step (database restarting, say) must not stop the others or the loop.
                logger.exception("ticker step %s failed; retrying next round", step.__name__)
        return busy

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set; returns after finishing the current round."""
        logger.info("ticker started with %d step(s)", len(self.steps))
        while not stop.is_set():
            if not self.tick():
                stop.wait(IDLE_SLEEP_S)
        logger.info("ticker stopped")
