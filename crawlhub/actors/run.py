"""The `run` actor: executes one attempt of a task on a worker thread."""

import uuid

import dramatiq

from crawlhub import outages
from crawlhub.context import Context
from crawlhub.errors import Reported, ServiceUnavailable
from crawlhub.messaging.keys import ALERT_ACTOR, RUN_ACTOR, RUNS_QUEUE
from crawlhub.services import dispatch, nodes, runs
from crawlhub.worker import supervisor
from crawlhub.worker.attempts import Elsewhere
from crawlhub.worker.outcomes import Recorder

# Dramatiq's TimeLimit cannot interrupt the supervisor's blocking waits; the runner enforces
# each spider's own timeout instead, so the actor's limit is effectively off.
NO_TIME_LIMIT_MS = 10 * 365 * 24 * 3600 * 1000
# A run message a node does not take (drained, or lacking the run's labels) goes back to the
# queue this late; later when no live node has the labels (the run's page says so).
HAND_BACK_MS = 500
UNPLACEABLE_MS = 5000


def declare(context: Context, recorder: Recorder) -> "dramatiq.Actor[[str], None]":
    """The run actor, bound to the context's broker, database and live log, and to the
    process's recorder of outcomes an outage keeps from the database."""

    def run(task_id: str) -> None:
        if context.draining.is_set():  # another node takes it (this one may again later)
            runs.enqueue(context, uuid.UUID(task_id), delay_ms=HAND_BACK_MS)
            return
        try:
            ended = supervisor.execute(context, uuid.UUID(task_id), recorder)
        except Elsewhere as exc:  # a node with its labels takes it; none yet: ask again later
            placeable = nodes.some_node_has(context, exc.labels)
            runs.enqueue(context, uuid.UUID(task_id),
                         delay_ms=HAND_BACK_MS if placeable else UNPLACEABLE_MS)  # fmt: skip
            return
        except ServiceUnavailable as exc:  # nothing ran: no retry of the task is counted
            raise dramatiq.Retry(
                f"task {task_id}: {exc.message}", delay=int(outages.CLAIM_RETRY_S * 1000)
            ) from exc
        if ended is not None:  # a slot is free (a run handed back is held again): fill it
            dispatch.quietly(context)
        if ended is not None and (
            ended.status == "retrying" or (ended.status == "failed" and ended.retryable)
        ):
            # Raising hands the message to Dramatiq's Retries: re-sent with the spider's
            # backoff while the task is `retrying`, else dead-lettered (then the alert actor).
            raise RunFailed(f"task {task_id} attempt failed; task is {ended.status}",
                            retry=ended.status == "retrying")  # fmt: skip

    return dramatiq.actor(
        actor_name=RUN_ACTOR,
        queue_name=RUNS_QUEUE,
        broker=context.broker,
        time_limit=NO_TIME_LIMIT_MS,
        retry_when=should_retry,
        on_retry_exhausted=ALERT_ACTOR,
    )(run)


class RunFailed(Reported):
    """An attempt failed; raised so that Dramatiq retries or dead-letters the message."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def should_retry(retries: int, exc: BaseException) -> bool:
    """Dramatiq's retry rule for run messages (the policy is `crawlhub.outages`'s): the
    spider's failure as its task's state says (it counts them); an outage always, counting
    nothing; anything else is CrawlHub's own bug, tried once more, then dead-lettered (and
    the run failed with reason `error`)."""
    if isinstance(exc, RunFailed):
        return exc.retry
    if isinstance(exc, dramatiq.Retry) or outages.is_outage(exc):
        return True
    return retries < outages.BUG_RETRIES
