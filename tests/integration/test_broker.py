"""The Redis broker wakes idle workers when a message is sent (real Redis, real Worker)."""

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
from dramatiq import Worker

from crawlhub.messaging.broker import WAKE_TOKENS, build_broker, build_worker
from crawlhub.messaging.keys import QUEUE_WAKE_LIST
from tests.conftest import make_settings

QUEUE = "crawlhub.test-wake"
IDLE_POLL_MS = 1000  # Dramatiq's consumer backs off to this when idle: 5, 10, 20 … 1000 ms
IDLE_S = 2.5  # long enough for that backoff to reach its cap


@pytest.fixture
def broker(redis_url: str, tmp_path: Path) -> Iterator[dramatiq.Broker]:
    broker = build_broker(make_settings(tmp_path, redis_url=redis_url))
    yield broker
    broker.close()


def test_an_idle_worker_takes_a_new_message_at_once_not_at_its_next_poll(
    broker: dramatiq.Broker, redis_url: str
) -> None:
    done: dict[str, float] = {}
    arrived = threading.Event()

    def record(label: str) -> None:
        done[label] = time.monotonic()
        arrived.set()

    actor = dramatiq.actor(record, broker=broker, queue_name=QUEUE, actor_name="wake_record")
    worker = Worker(broker, queues={QUEUE}, worker_threads=1, worker_timeout=IDLE_POLL_MS)
    worker.start()
    try:
        # Polling alone would take 0-1 s, 0.39 s on average, for each: all three within
        # 0.1 s by chance is under 1 %.
        for label in ("first", "second", "third"):
            time.sleep(IDLE_S)
            arrived.clear()
            sent = time.monotonic()
            actor.send(label)
            assert arrived.wait(IDLE_POLL_MS / 1000 * 2), label
            assert done[label] - sent < 0.1, f"{label} took {done[label] - sent:.3f} s"
    finally:
        worker.stop(timeout=5000)
    client = redis.Redis.from_url(redis_url)
    try:
        for _ in range(WAKE_TOKENS + 10):  # with nobody waiting, tokens stay bounded
            actor.send("unread")
        assert client.llen(QUEUE_WAKE_LIST.format(queue=QUEUE)) == WAKE_TOKENS
    finally:
        client.close()


def test_a_busy_worker_leaves_the_next_run_to_an_idle_one(broker: dramatiq.Broker) -> None:
    started: dict[str, float] = {}

    def work(label: str) -> None:
        started[label] = time.monotonic()
        time.sleep(2.0)

    actor = dramatiq.actor(work, broker=broker, queue_name=QUEUE, actor_name="prefetch_work")
    busy = build_worker(broker, threads=1, poll_ms=100, queues=(QUEUE,))
    busy.start()
    idle = build_worker(broker, threads=1, poll_ms=100, queues=(QUEUE,))
    try:
        actor.send("first")
        actor.send("second")
        time.sleep(0.5)  # the busy worker runs the first and, with Dramatiq's prefetch of
        idle.start()  # two per thread, would sit on the second for the whole two seconds
        deadline = time.monotonic() + 5
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(started) == {"first", "second"}
        assert started["second"] - started["first"] < 1.0, started
    finally:
        busy.stop(timeout=5000)
        idle.stop(timeout=5000)


def test_a_full_worker_takes_its_next_message_as_soon_as_a_run_ends(
    broker: dramatiq.Broker,
) -> None:
    """With every prefetch slot taken, the consumer waits for a run to end, not for its
    poll: a backlog starts one message after another (seen: 27 ms median gaps)."""
    spans: list[tuple[float, float]] = []

    def busy(seconds: float) -> None:
        started = time.monotonic()
        time.sleep(seconds)
        spans.append((started, time.monotonic()))

    actor = dramatiq.actor(busy, broker=broker, queue_name=QUEUE, actor_name="wake_busy")
    worker = build_worker(broker, 1, IDLE_POLL_MS, queues=(QUEUE,))
    worker.start()
    try:
        for _ in range(6):
            actor.send(0.3)  # sent at once: the worker's one slot is full while the rest wait
        deadline = time.monotonic() + 30
        while len(spans) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop(timeout=5000)
    assert len(spans) == 6
    spans.sort()
    gaps = [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(spans)]
    # Polling, each gap would be the consumer's backoff left: up to 1 s as it grows.
    assert max(gaps) < 0.05, gaps
