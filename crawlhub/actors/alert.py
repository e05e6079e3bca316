"""The `alert` actor: delivers alerts to channels, and takes run messages whose retries ran out."""

import uuid
from typing import Any

import dramatiq

from crawlhub.alerting import alerts
from crawlhub.context import Context
from crawlhub.messaging.keys import ALERT_ACTOR, ALERTS_QUEUE


def declare(context: Context) -> "dramatiq.Actor[..., None]":
    """The alert actor, bound to the context's broker."""

    def alert(payload: dict[str, Any], retry_info: dict[str, Any] | None = None) -> None:
        if "actor_name" in payload:  # sent by Retries' on_retry_exhausted: a dead-lettered run
            alerts.handle_dead_letter(context, payload)
            return
        # Older messages may name one channel: every due delivery of the alert goes now.
        alerts.deliver(context, uuid.UUID(payload["alert_id"]))

    return dramatiq.actor(
        actor_name=ALERT_ACTOR,
        queue_name=ALERTS_QUEUE,
        broker=context.broker,
        max_retries=5,  # database hiccups; channel failures are retried per channel instead
        min_backoff=1000,
        max_backoff=60_000,
    )(alert)
