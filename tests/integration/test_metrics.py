"""/metrics: state gauges read at most every few seconds whatever the scrape rate, and the
optional CRAWLHUB_METRICS_TOKEN on the web process and on a worker's or ticker's port."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import event
from starlette.testclient import TestClient

from crawlhub import metrics
from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.repo.models import Spider, Task
from tests.conftest import TOKEN, make_settings

METRICS_TOKEN = "scrape-only-token-42"


def seed(context: Context, statuses: dict[str, int]) -> None:
    with context.db.session() as session:
        spider = Spider.standalone(name="measured", kind="python", entry="main:run")
        session.add(spider)
        session.flush()
        session.add_all(
            Task(spider_id=spider.id, trigger="manual", status=status)
            for status, n in statuses.items()
            for _ in range(n)
        )


@pytest.fixture
def grouped(context: Context) -> Iterator[list[str]]:
    """The GROUP BY statements run on the context's real engine while the test runs."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "GROUP BY" in statement.upper():
            seen.append(statement)

    event.listen(context.db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(context.db.engine, "before_cursor_execute", record)


def families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Prometheus' own parser over a scrape: family name -> labels -> value."""
    return {
        family.name: {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        for family in text_string_to_metric_families(text)
    }


def test_many_scrapes_within_the_window_count_the_tasks_once(
    client: TestClient, context: Context, grouped: list[str]
) -> None:
    seed(context, {"completed": 3, "failed": 2})
    answers = [client.get("/metrics") for _ in range(50)]
    assert {a.status_code for a in answers} == {200}
    assert len(grouped) == 1
    parsed = families(answers[-1].text)
    assert parsed["crawlhub_tasks"] == {(("status", "completed"),): 3, (("status", "failed"),): 2}
    assert "crawlhub_runs" in parsed and "crawlhub_queue_messages" in parsed


def test_concurrent_first_scrapes_wait_for_one_query(context: Context, grouped: list[str]) -> None:
    seed(context, {"pending": 1})
    slow_query(context)
    cache = metrics.StateCache.of(context)
    start = threading.Barrier(8)
    results: list[list[Any]] = []

    def scrape() -> None:
        start.wait()
        results.append(cache.families())

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert len(grouped) == 1


def test_a_scrape_during_a_refresh_gets_the_previous_figures_without_a_second_query(
    context: Context, grouped: list[str]
) -> None:
    now = [0.0]
    cache = metrics.StateCache(lambda: metrics.read_state(context), clock=lambda: now[0])
    first = cache.families()
    now[0] += metrics.STATE_TTL_S  # stale: the next scrape refreshes
    in_query = slow_query(context)
    refresher = threading.Thread(target=cache.families)
    refresher.start()
    assert in_query.wait(5)
    began = time.monotonic()
    assert cache.families() is first  # the old figures, at once, no query of its own
    assert time.monotonic() - began < 0.2
    refresher.join(timeout=10)
    assert len(grouped) == 2
    assert cache.families() is not first


def test_the_state_is_read_again_once_the_window_has_passed(
    context: Context, grouped: list[str]
) -> None:
    now = [100.0]
    cache = metrics.StateCache(lambda: metrics.read_state(context), clock=lambda: now[0])
    cache.families()
    now[0] += metrics.STATE_TTL_S - 0.01
    cache.families()
    assert len(grouped) == 1
    now[0] += 0.02
    cache.families()
    assert len(grouped) == 2
    cache.expire()
    cache.families()
    assert len(grouped) == 3


def slow_query(context: Context, seconds: float = 0.3) -> threading.Event:
    """Make the task count take a while; the event is set when one starts."""
    started = threading.Event()

    def stall(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "GROUP BY" in statement.upper():
            started.set()
            time.sleep(seconds)

    event.listen(context.db.engine, "before_cursor_execute", stall)
    return started


@pytest.fixture
def guarded(pg_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The web app with CRAWLHUB_METRICS_TOKEN set, with no default Authorization header."""
    context = Context.build(
        make_settings(tmp_path, database_url=pg_url, metrics_token=METRICS_TOKEN)
    )
    try:
        with TestClient(create_app(context)) as client:
            yield client
    finally:
        context.close()


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Bearer {TOKEN}", f"Basic {METRICS_TOKEN}", METRICS_TOKEN],
    ids=["none", "wrong", "api-token", "basic-scheme", "no-scheme"],
)
def test_with_a_metrics_token_set_other_scrapes_are_401(
    guarded: TestClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = guarded.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    assert METRICS_TOKEN not in response.text


def test_with_a_metrics_token_set_its_bearer_scrapes_and_prometheus_parses_it(
    guarded: TestClient,
) -> None:
    response = guarded.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    parsed = families(response.text)
    assert {"crawlhub_tasks", "crawlhub_runs", "crawlhub_workers"} <= parsed.keys()
    assert guarded.get("/healthz").status_code == 200  # liveness never needs a token


def test_worker_metrics_port_asks_for_the_metrics_token_too() -> None:
    server = metrics.serve(0, SecretStr(METRICS_TOKEN), host="127.0.0.1")
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
        answer = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert answer.status_code == 200
        assert "crawlhub_runs" in families(answer.text)
    finally:
        server.shutdown()
        server.server_close()


def test_worker_metrics_port_is_open_without_a_metrics_token() -> None:
    server = metrics.serve(0, None, host="127.0.0.1")
    try:
        answer = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics")
        assert answer.status_code == 200
        assert "crawlhub_items_ingested" in families(answer.text)
    finally:
        server.shutdown()
        server.server_close()
