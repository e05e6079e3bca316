"""The in-process broker's dead letters keep the time they died (not the time they are
listed), as Redis's dead-letter set does by its scores."""

import time
from datetime import UTC, datetime
from pathlib import Path

import dramatiq

from crawlhub.config import load_settings
from crawlhub.messaging import queues
from crawlhub.messaging.broker import build_broker, build_worker
from crawlhub.messaging.keys import RUNS_QUEUE


def test_a_dead_letter_of_the_embedded_broker_shows_when_it_died(tmp_path: Path) -> None:
    broker = build_broker(load_settings(data_dir=tmp_path, redis_url=None))

    @dramatiq.actor(broker=broker, queue_name=RUNS_QUEUE, actor_name="run", max_retries=0)
    def run(task_id: str) -> None:
        raise RuntimeError("the spider broke")

    run.send("0e2d3c4b-0000-0000-0000-000000000000")
    worker = build_worker(broker, 1, 50)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not queues.dead_letters(broker, RUNS_QUEUE, 10)[1]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        died = datetime.now(UTC)
        time.sleep(1.2)
        [letter], total = queues.dead_letters(broker, RUNS_QUEUE, 10)
    finally:
        worker.stop()
    assert total == 1 and letter.error == "RuntimeError: the spider broke"
    assert abs((letter.dead_at - died).total_seconds()) < 0.5, (letter.dead_at, died)
