"""The one place the Dramatiq broker is built."""

import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dramatiq
import redis
from dramatiq import Middleware, Worker
from dramatiq.broker import Consumer
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import compute_backoff, dq_name, q_name
from dramatiq.errors import ConnectionClosed

from crawlhub.config import Settings
from crawlhub.messaging.keys import (
    DRAMATIQ_NAMESPACE,
    QUEUE_WAKE_LIST,
    QUEUED_RUNS,
    QUEUES,
    RUN_ACTOR,
)

WAKE_TOKENS = 16  # tokens kept when no worker waits: enough to wake every idle consumer


class WakingRedisBroker(RedisBroker):
    """Dramatiq's Redis broker whose idle workers wake as soon as a message is sent.

    Dramatiq's consumer finds an empty queue and sleeps up to the worker timeout before it
    looks again, so a run sent to an idle worker waited 50-100 ms. Here `enqueue` also
    pushes a token on the queue's wake list (`keys.QUEUE_WAKE_LIST`) and an idle consumer
    waits on that list with BLPOP for at most the same timeout: it takes the message at
    once, and an idle worker costs no more Redis round trips than before. As every message
    sent brings a token, a consumer that found its queue empty waits for one at once for the
    whole timeout, where Dramatiq's backoff polled again after 2.5-5 ms, 5-10 ms, … (each
    poll a Lua call in Redis and a turn of the worker's GIL, in the middle of the run just
    taken); only a message Redis' maintenance puts back (its worker died) comes without a
    token, and is found within the timeout. Delay queues have no tokens (their messages
    become due by time) and keep Dramatiq's backoff.

    Only Dramatiq's public surface is used: `consume` wraps the consumer Dramatiq builds
    (asked never to sleep) in `_WakingConsumer`, and commands go through its `do_*`
    dispatch, as Dramatiq's own consumer sends them.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        # Acks and nacks Redis did not take (it was restarting, or unreachable): settled by
        # the next consumer of their queue, so no finished run stays "in flight".
        self.owed: list[tuple[str, str, Any]] = []  # (queue, "ack" | "nack", message)
        self.owed_lock = threading.Lock()
        self._maintainer: RedisBroker | None = None

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        inner = super().consume(queue_name, prefetch, 0)
        return _WakingConsumer(self, inner, queue_name, prefetch, timeout)

    def owe(self, queue: str, kind: str, message: Any) -> None:
        with self.owed_lock:
            self.owed.append((queue, kind, message))

    def settle(self, queue: str, consumer: Consumer) -> None:
        """Send the acks and nacks of a queue that Redis did not take, through `consumer`
        (raises while Redis still cannot take them: they stay owed)."""
        with self.owed_lock:
            mine = [entry for entry in self.owed if entry[0] == queue]
        for entry in mine:
            _, kind, message = entry
            getattr(consumer, kind)(message)
            with self.owed_lock:
                self.owed.remove(entry)

    def maintain(self, queue: str) -> None:
        """Run Dramatiq's Redis maintenance for a queue and its delay queue now, instead of
        by chance: it puts the unacknowledged messages of workers whose heartbeat expired
        back on the queue and drops dead letters older than their retention. A second
        broker on the same client, whose every command maintains, sends one cheap command."""
        if self._maintainer is None:
            self._maintainer = RedisBroker(
                client=self.client, namespace=self.namespace, middleware=[],
                heartbeat_timeout=self.heartbeat_timeout, dead_message_ttl=self.dead_message_ttl,
                maintenance_chance=MAINTENANCE_SCALE,
            )  # type: ignore[no-untyped-call]  # fmt: skip
        for name in (queue, dq_name(queue)):
            self._maintainer.do_qsize(name)

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> Any:
        """Dramatiq's enqueue, then in one round trip: the run counted in `QUEUED_RUNS` (see
        `QueuedRuns`) and, unless it is delayed, a wake token for the queue's idle consumers."""
        message = super().enqueue(message, delay=delay)
        task_id = _run_task(message)
        if task_id is None and delay is not None:
            return message
        with self.client.pipeline(transaction=False) as pipe:
            if task_id is not None:
                pipe.hincrby(QUEUED_RUNS, task_id, 1)
            if delay is None:
                key = QUEUE_WAKE_LIST.format(queue=message.queue_name)
                pipe.lpush(key, 1)
                pipe.ltrim(key, 0, WAKE_TOKENS - 1)
            pipe.execute()
        return message


class _WakingConsumer(Consumer):
    """Dramatiq's own consumer (`inner`, which never sleeps), with the wait between two
    empty fetches spent where it can be cut short, and acks Redis did not take kept."""

    def __init__(
        self, broker: WakingRedisBroker, inner: Consumer, queue_name: str, prefetch: int,
        timeout: int,
    ) -> None:  # fmt: skip
        self.broker = broker
        self.inner = inner
        self.queue_name = queue_name
        self.prefetch = prefetch
        self.wait_ms = timeout
        self.wake_key = QUEUE_WAKE_LIST.format(queue=queue_name)
        self.tokens = q_name(queue_name) == queue_name  # not a delay queue: sends bring tokens
        self.misses = 0  # empty fetches in a row: the wait grows with them, as Dramatiq's
        # Ids of the messages handed out and not yet acked or nacked through this consumer
        # (after a restart, Dramatiq acks the earlier consumer's messages through this one).
        self.held: set[str] = set()
        self.freed = threading.Event()  # set when a worker thread acks or nacks a message

    def __next__(self) -> Any:
        if self.broker.owed:
            try:
                self.broker.settle(self.queue_name, self.inner)
            except (ConnectionClosed, redis.RedisError) as exc:
                raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        self.freed.clear()
        full = len(self.held) >= self.prefetch  # the inner consumer will not fetch
        message = next(self.inner)
        if message is not None:
            self.misses = 0
            self.held.add(message.message_id)
            return message
        # The wait Dramatiq would have slept (its backoff: short while messages keep
        # coming, up to the timeout when idle), cut short by what can end it: a run ending
        # when every prefetch slot is taken (a backlog waits in Redis for it), else a wake
        # token (the whole timeout: the next message sent brings one).
        self.misses, wait_ms = compute_backoff(self.misses, max_backoff=self.wait_ms)
        if full:
            self.freed.wait(max(wait_ms, 1) / 1000)
            return None
        if self.tokens:
            wait_ms = self.wait_ms
        try:
            self.broker.client.blpop([self.wake_key], timeout=max(wait_ms, 1) / 1000)
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        return None

    def ack(self, message: Any) -> None:
        self._settle(message, "ack")

    def nack(self, message: Any) -> None:
        self._settle(message, "nack")

    def requeue(self, messages: Any) -> None:
        self.inner.requeue(messages)

    def close(self) -> None:
        self.inner.close()

    def _settle(self, message: Any, kind: str) -> None:
        try:
            getattr(self.inner, kind)(message)
        except (ConnectionClosed, redis.RedisError):  # kept, and sent when Redis is back
            self.broker.owe(self.queue_name, kind, message)
        finally:
            self.held.discard(message.message_id)  # set operations are atomic under the GIL
            self.freed.set()


def open_without_password(url: str) -> bool:
    """Whether the Redis of `url` answers a client that gives no password."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]  # the host and port, without user and password
    bare = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    client = redis.Redis.from_url(bare, socket_connect_timeout=5, socket_timeout=5)
    try:
        return bool(client.ping())
    except redis.RedisError:  # NOAUTH, or unreachable: nothing to say
        return False
    finally:
        client.close()


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A RedisBroker for REDIS_URL, or Dramatiq's in-process broker when it is unset."""
    broker: dramatiq.Broker
    if settings.redis_url is None:
        broker = StubBroker()
        broker.add_middleware(DeathTime())
    else:
        broker = WakingRedisBroker(
            url=settings.redis_url.get_secret_value(),
            namespace=DRAMATIQ_NAMESPACE,
            # Dramatiq keeps dead letters 7 days by default; operators need longer to notice.
            dead_message_ttl=settings.dead_letter_ttl_days * 86_400_000,
        )
        broker.add_middleware(QueuedRuns())
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


class QueuedRuns(Middleware):
    """Counts the run messages the Redis broker holds per task, in one hash beside its
    queues (`keys.QUEUED_RUNS`): +1 when one is enqueued (`WakingRedisBroker.enqueue`, with
    its wake token; a retry, or a delayed message becoming due, is a new one), -1 when one is
    acknowledged or dead-lettered (here). The sweep looks up the tasks it checks there
    (`queues.queued_tasks`) instead of reading every message of the queues."""

    # Decrement, dropping the field at zero: no entry is left behind for a finished task.
    _RELEASE = """
    local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
    if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
    return left
    """

    def after_ack(self, broker: dramatiq.Broker, message: Any) -> None:
        self._release(broker, message)

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        self._release(broker, message)

    def _release(self, broker: dramatiq.Broker, message: Any) -> None:
        task_id = _run_task(message)
        if task_id is not None:
            client: Any = broker.client  # type: ignore[attr-defined]
            client.eval(self._RELEASE, 1, QUEUED_RUNS, task_id)


def _run_task(message: Any) -> str | None:
    if message.actor_name != RUN_ACTOR or not message.args:
        return None
    return str(message.args[0])


class DeathTime(Middleware):
    """Stamps a message when it is dead-lettered: the in-process broker keeps no time of its
    own (Redis scores its dead-letter set by it)."""

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        message.options["dead_at"] = time.time()


def build_worker(
    broker: dramatiq.Broker, threads: int, poll_ms: int, queues: tuple[str, ...] = QUEUES
) -> Worker:
    """A Dramatiq worker for every CrawlHub queue that never holds a message it cannot start.

    Dramatiq's consumers prefetch twice as many messages as the worker has threads; with
    long runs, a busy worker then sits on runs another worker's idle threads could start
    (seen: two 20-second runs waiting 20 s while another worker had 3 idle threads). A
    prefetch of one per thread keeps the rest in Redis for whoever is free.
    """
    worker = Worker(broker, queues=set(queues), worker_threads=threads, worker_timeout=poll_ms)
    worker.queue_prefetch = threads
    return worker


def install_broker(settings: Settings) -> dramatiq.Broker:
    """Build the broker and make it Dramatiq's global one, before any actor is declared."""
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    return broker
