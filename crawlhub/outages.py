"""The one outage and retry policy of a run: what is whose failure, and how long to wait.

Three kinds of failure end or interrupt an attempt, and only one is the spider's:

- **An outage** — the database or Redis unreachable, a deadlock or serialization failure, no
  free connection in the pool (`errors.ServiceUnavailable` and `errors.GiveWay`), a warm
  launcher dying under its runs. Tried again with the waits below, as long as it lasts; never
  counted as a retry of the spider, never dead-lettered.
- **The spider's failure** — it exited non-zero, timed out, went over a limit. Retried by
  the spider's `max_retries` with its backoff (the task's state counts them).
- **CrawlHub's own bug** — any other exception. Logged with its traceback, its message tried
  once more, then the run fails with reason `error`.

Every wait between tries of an outage comes from WAITS_S: a step blocked on the database
(`patiently`), a reader thread whose write failed (`pause`), a worker's outcome recorder,
and a run message whose claim met an outage (sent again after the last of them, as a
delayed message rather than a waiting thread).

One more failure is nobody's here: **a channel's receiver** refusing or failing an alert
delivery. Its tries (DELIVERY_WAITS_S, then given up and shown on the alert) are spaced for a
remote service coming back, minutes rather than seconds, and live here beside the others so
that every retry table of CrawlHub is in this one module.
"""

import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from crawlhub.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")
WAITS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)  # between tries of a step an outage blocks, then 15 s
BUG_RETRIES = 1  # a message that met CrawlHub's own bug is tried this many times more
CLAIM_RETRY_S = WAITS_S[-1]  # a run whose claim met an outage is sent again this much later
DELIVERY_WAITS_S = (2, 10, 60, 300)  # before an alert delivery's tries 2, 3, 4, 5
DELIVERY_TRIES = len(DELIVERY_WAITS_S) + 1  # then the delivery is given up (shown as failed)


def wait_s(tries: int, cap_s: float | None = None) -> float:
    """How long to wait after `tries` failed tries (0-based), at most `cap_s`."""
    wait = WAITS_S[min(tries, len(WAITS_S) - 1)]
    return wait if cap_s is None else min(wait, cap_s)


def is_outage(exc: BaseException) -> bool:
    """Whether an exception is an outage rather than a failure of the spider or of CrawlHub."""
    return isinstance(exc, ServiceUnavailable)


def patiently(action: Callable[[], T], what: str, task_id: uuid.UUID, limit_s: float) -> T:
    """Run a database step, trying again while an outage blocks it (each wait logged), for
    at most `limit_s`; then the outage is raised to the caller."""
    started = time.monotonic()
    for tries in itertools.count():
        try:
            return action()
        except ServiceUnavailable as exc:
            wait = wait_s(tries)
            if time.monotonic() - started + wait > limit_s:
                raise
            logger.warning("task %s: %s failed (%s); trying again in %.1f s",
                           task_id, what, exc.message, wait)  # fmt: skip
            time.sleep(wait)
    raise AssertionError("unreachable")


def pause(flush: Callable[[], None], task_id: uuid.UUID) -> None:
    """Flush from a reader thread. When the database or Redis fails, pause instead of letting
    the reader die: the batch stays buffered, the spider waits on its pipe meanwhile, and the
    next line (or the supervisor's next tick) tries again."""
    try:
        flush()
    except Exception as exc:
        logger.warning("task %s: write failed, will retry: %s", task_id, exc)
        time.sleep(WAITS_S[0])
