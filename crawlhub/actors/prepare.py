"""The `prepare` actor: gets a newly uploaded project version ready on a worker."""

import uuid

import dramatiq

from crawlhub.context import Context
from crawlhub.messaging.keys import BUILDS_QUEUE, PREPARE_ACTOR
from crawlhub.worker import preparation


def declare(context: Context) -> "dramatiq.Actor[[str], None]":
    """The prepare actor, bound to the context's broker."""

    def prepare(version_id: str) -> None:
        preparation.prepare_version(context, uuid.UUID(version_id))

    return dramatiq.actor(
        actor_name=PREPARE_ACTOR,
        queue_name=BUILDS_QUEUE,
        broker=context.broker,
        max_retries=3,  # a database hiccup; a failed build is recorded, not raised
        min_backoff=5000,
        max_backoff=60_000,
        time_limit=4 * 3600 * 1000,
    )(prepare)
