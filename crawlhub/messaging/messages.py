"""The messages CrawlHub sends, addressed by actor name: no process needs the actors declared
to send (only workers declare them, to consume)."""

import uuid
from typing import Any

import dramatiq

from crawlhub.messaging.keys import (
    ALERT_ACTOR,
    ALERTS_QUEUE,
    BUILDS_QUEUE,
    PREPARE_ACTOR,
    RUN_ACTOR,
    RUNS_QUEUE,
)


def send(
    broker: dramatiq.Broker,
    queue: str,
    actor: str,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any] | None = None,
    *,
    delay_ms: int = 0,
    **options: Any,
) -> str:
    """Enqueue one message for an actor; returns the id the broker files it under."""
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=queue, actor_name=actor, args=tuple(args), kwargs=kwargs or {}, options=options
    )
    sent = broker.enqueue(message, delay=delay_ms or None)
    # The Redis broker files a message under its own id (the key in `dramatiq:<q>.msgs`).
    return str(sent.options.get("redis_message_id", sent.message_id))


def send_run(
    broker: dramatiq.Broker, task_id: uuid.UUID, *, delay_ms: int = 0, **options: Any
) -> str:
    """Send a task's run message; `options` carry its Retries settings."""
    return send(broker, RUNS_QUEUE, RUN_ACTOR, (str(task_id),), delay_ms=delay_ms, **options)


def run_message(task_id: uuid.UUID, **options: Any) -> "dramatiq.Message[Any]":
    """A task's run message, not sent yet (its `message_id` known before it is)."""
    return dramatiq.Message(queue_name=RUNS_QUEUE, actor_name=RUN_ACTOR, args=(str(task_id),),
                            kwargs={}, options=options)  # fmt: skip


def send_alert(broker: dramatiq.Broker, payload: dict[str, Any], *, delay_ms: int = 0) -> str:
    """Send an alert-delivery message (`{"alert_id"}`, optionally with `"channel_id"`)."""
    return send(broker, ALERTS_QUEUE, ALERT_ACTOR, (payload,), delay_ms=delay_ms)


def send_prepare(broker: dramatiq.Broker, version_id: uuid.UUID) -> str:
    """Ask a worker to get a new project version ready (environment, spider list)."""
    return send(broker, BUILDS_QUEUE, PREPARE_ACTOR, (str(version_id),))
