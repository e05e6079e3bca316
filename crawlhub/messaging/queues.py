"""Inspecting the broker's queues: counts, live workers, dead letters (requeue, purge)."""

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, xq_name

from crawlhub.errors import NotFound
from crawlhub.messaging import messages
from crawlhub.messaging.keys import DRAMATIQ_NAMESPACE, QUEUED_RUNS, QUEUES, RUN_ACTOR

logger = logging.getLogger(__name__)


@dataclass
class QueueCounts:
    """Messages of one queue by state (the API serves this shape as it is)."""

    name: str
    ready: int
    delayed: int
    in_flight: int
    dead_lettered: int


@dataclass
class DeadMessage:
    """A dead-lettered message, decoded."""

    message_id: str
    actor: str
    task_id: str | None
    error: str | None
    retries: int
    dead_at: datetime
    data: dict[str, Any]


def _key(*parts: str) -> str:
    return ":".join((DRAMATIQ_NAMESPACE, *parts))


def check_queue(name: str) -> str:
    """A known queue name; NotFound otherwise."""
    if name not in QUEUES:
        raise NotFound(f"queue '{name[:80]}' not found (queues: {', '.join(QUEUES)})")
    return name


def overview(broker: dramatiq.Broker) -> list[QueueCounts]:
    """Message counts of every queue (in flight: held by consumers whose Dramatiq heartbeat
    is fresh; who counts as a worker is `repo.workers.online`'s business)."""
    if isinstance(broker, RedisBroker):
        client: Any = broker.client  # redis-py's reply types are too loose to check
        now_ms = time.time() * 1000
        beats = client.zrange(_key("__heartbeats__"), 0, -1, withscores=True)
        live = [(w.decode(), s) for w, s in beats if s >= now_ms - broker.heartbeat_timeout]
        counts = []
        for queue in QUEUES:
            with client.pipeline(transaction=False) as pipe:
                pipe.llen(_key(queue))
                pipe.hlen(_key(dq_name(queue) + ".msgs"))
                pipe.zcard(_key(xq_name(queue)))
                for worker, _ in live:
                    pipe.scard(_key(f"__acks__.{worker}.{queue}"))
                ready, delayed, dead, *acks = pipe.execute()
            counts.append(QueueCounts(queue, ready, delayed, sum(acks), dead))
        return counts
    assert isinstance(broker, StubBroker)
    counts = [
        QueueCounts(
            q,
            broker.queues[q].qsize(),
            # Held by the worker until due as well as waiting: neither is acknowledged yet.
            broker.queues[dq_name(q)].unfinished_tasks,
            broker.queues[q].unfinished_tasks - broker.queues[q].qsize(),
            len(broker.dead_letters_by_queue[q]),
        )
        for q in QUEUES
    ]
    return counts


def queued_tasks(broker: dramatiq.Broker, task_ids: list[str]) -> set[str] | None:
    """Which of these tasks have a run message in the Redis broker: ready, delayed or being
    worked on (until acknowledged), as the broker's count beside its queues says
    (`broker.QueuedRuns`): one lookup of these ids, not a read of every message. None for
    the in-process broker, which cannot lose a message while its process lives."""
    if not isinstance(broker, RedisBroker):
        return None
    if not task_ids:
        return set()
    client: Any = broker.client  # redis-py's reply types are too loose to check
    counts = client.hmget(QUEUED_RUNS, task_ids)
    return {task_id for task_id, count in zip(task_ids, counts, strict=True)
            if count is not None and int(count) > 0}  # fmt: skip


def dead_letters(broker: dramatiq.Broker, queue: str, limit: int) -> tuple[list[DeadMessage], int]:
    """The newest dead letters of a queue, decoded, and how many there are."""
    check_queue(queue)
    if isinstance(broker, RedisBroker):
        client: Any = broker.client  # redis-py's reply types are too loose to check
        total = client.zcard(_key(xq_name(queue)))
        entries = client.zrevrange(_key(xq_name(queue)), 0, limit - 1, withscores=True)
        ids = [i for i, _ in entries]
        bodies = client.hmget(_key(xq_name(queue) + ".msgs"), ids) if ids else []
        found = []
        for (message_id, score), body in zip(entries, bodies, strict=True):
            if body is not None:
                found.append(_decode(message_id.decode(), json.loads(body), score / 1000))
        return found, total
    assert isinstance(broker, StubBroker)
    proxies = broker.dead_letters_by_queue[queue]
    newest = list(reversed(proxies))[:limit]
    return [_decode(p.message_id, p.asdict(), p.options.get("dead_at") or time.time())
            for p in newest], len(proxies)  # fmt: skip


def _decode(message_id: str, data: dict[str, Any], dead_at: float) -> DeadMessage:
    options = data.get("options", {})
    args = data.get("args") or [None]
    trace = (options.get("traceback") or "").strip().splitlines()
    first = args[0]
    task_id = str(first) if data.get("actor_name") == RUN_ACTOR else None
    return DeadMessage(message_id, data.get("actor_name", "?"), task_id,
                       trace[-1] if trace else None, int(options.get("retries", 0)),
                       datetime.fromtimestamp(dead_at, UTC), data)  # fmt: skip


def resend(broker: dramatiq.Broker, queue: str, message: DeadMessage) -> None:
    """Send a dead letter's message again with its arguments (its actor's own retries)."""
    messages.send(broker, queue, message.actor, message.data.get("args", []),
                  message.data.get("kwargs"))  # fmt: skip
    logger.info("dead letter %s of actor %s sent again", message.message_id, message.actor)


def find(broker: dramatiq.Broker, queue: str, message_id: str) -> DeadMessage:
    """One dead letter, left in its set; NotFound when it is not there."""
    check_queue(queue)
    if isinstance(broker, RedisBroker):
        client: Any = broker.client  # redis-py's reply types are too loose to check
        body = client.hget(_key(xq_name(queue) + ".msgs"), message_id)
        score = client.zscore(_key(xq_name(queue)), message_id)
        if body is None or score is None:
            raise NotFound(f"no dead letter '{message_id[:80]}' in {queue}")
        return _decode(message_id, json.loads(body), score / 1000)
    assert isinstance(broker, StubBroker)
    for proxy in broker.dead_letters_by_queue[queue]:
        if proxy.message_id == message_id:
            return _decode(message_id, proxy.asdict(), time.time())
    raise NotFound(f"no dead letter '{message_id[:80]}' in {queue}")


def remove(broker: dramatiq.Broker, queue: str, message_id: str) -> None:
    """Drop one dead letter (gone already: nothing to do)."""
    check_queue(queue)
    if isinstance(broker, RedisBroker):
        client: Any = broker.client
        with client.pipeline() as pipe:
            pipe.zrem(_key(xq_name(queue)), message_id)
            pipe.hdel(_key(xq_name(queue) + ".msgs"), message_id)
            pipe.execute()
        return
    assert isinstance(broker, StubBroker)
    proxies = broker.dead_letters_by_queue[queue]
    proxies[:] = [proxy for proxy in proxies if proxy.message_id != message_id]


def purge(broker: dramatiq.Broker, queue: str) -> int:
    """Drop every dead letter of a queue; returns how many."""
    check_queue(queue)
    if isinstance(broker, RedisBroker):
        client: Any = broker.client  # redis-py's reply types are too loose to check
        count = int(client.zcard(_key(xq_name(queue))))
        client.delete(_key(xq_name(queue)), _key(xq_name(queue) + ".msgs"))
    else:
        assert isinstance(broker, StubBroker)
        count = len(broker.dead_letters_by_queue[queue])
        broker.dead_letters_by_queue[queue].clear()
    logger.info("purged %d dead letter(s) of %s", count, queue)
    return count
