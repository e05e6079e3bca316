"""The `run` actor: executes one attempt of a task on a worker thread."""

import uuid

import dramatiq

from crawlhub.context import Context
from crawlhub.execution import runs, supervisor
from crawlhub.messaging.keys import ALERT_ACTOR, RUN_ACTOR, RUNS_QUEUE

# Dramatiq's TimeLimit cannot interrupt the supervisor's blocking waits; the runner enforces
# each spider's own timeout instead, so the actor's limit is effectively off.
NO_TIME_LIMIT_MS = 10 * 365 * 24 * 3600 * 1000


def declare(context: Context) -> "dramatiq.Actor[[str], None]":
    """The run actor, bound to the context's broker, database and live log."""

    def run(task_id: str) -> None:
        ended = supervisor.execute(context, uuid.UUID(task_id))
        if ended is not None and ended.status == "pending":  # interrupted by our shutdown
            runs.enqueue(context, uuid.UUID(task_id))  # if this fails, the sweep resends it
            return
        if ended is not None and (
            ended.status == "retrying" or (ended.status == "failed" and ended.retryable)
        ):
            # Raising hands the message to Dramatiq's Retries: re-sent with backoff while
            # retries remain, else dead-lettered (and passed to the alert actor).
            raise RunFailed(f"task {task_id} attempt failed; task is {ended.status}")

    return dramatiq.actor(
        actor_name=RUN_ACTOR,
        queue_name=RUNS_QUEUE,
        broker=context.broker,
        time_limit=NO_TIME_LIMIT_MS,
        max_retries=0,  # each message carries the task's own max_retries and backoff
        on_retry_exhausted=ALERT_ACTOR,
    )(run)


class RunFailed(Exception):
    """An attempt failed; raised so that Dramatiq retries or dead-letters the message."""
