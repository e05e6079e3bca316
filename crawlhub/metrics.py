"""Prometheus metrics: counters of this process, and state read from the database and broker.

Counters and histograms are recorded where things happen (runs and deliveries in worker
processes, lateness in tickers) and served by that process: the web app at /metrics,
workers and tickers on CRAWLHUB_METRICS_PORT when it is set. In embedded mode all of them
are one process. Task and queue state is read from the source of truth, at most once every
STATE_TTL_S seconds per process whatever the scrape rate. With CRAWLHUB_METRICS_TOKEN set,
every one of these endpoints asks for `Authorization: Bearer <that token>`.
"""

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import make_wsgi_app as prometheus_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import SecretStr

from crawlhub.context import Context
from crawlhub.messaging import queues
from crawlhub.repo import tasks as task_repo
from crawlhub.repo import workers as worker_repo

logger = logging.getLogger(__name__)

# Task counts are a GROUP BY over every task: however often (and by how many Prometheus
# servers) a process is scraped, the database and broker are asked at most this often.
STATE_TTL_S = 5.0

RUNS = Counter(
    "crawlhub_runs", "Run attempts ended, by the status they left the task in", ["status"]
)
RUN_SECONDS = Histogram(
    "crawlhub_run_duration_seconds", "Wall time of run attempts",
    buckets=(0.5, 1, 2, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)  # fmt: skip
ITEMS = Counter("crawlhub_items_ingested", "Items stored")
DUPLICATES = Counter("crawlhub_items_duplicate", "Items not stored because of dedup_keys")
DELIVERIES = Counter("crawlhub_alert_deliveries", "Alert delivery attempts", ["kind", "result"])
LATENESS = Histogram(
    "crawlhub_schedule_lateness_seconds", "How long after its due time a fire was enqueued",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 60, 300),
)  # fmt: skip


def read_state(context: Context) -> list[Metric]:
    """Tasks by status, queue depths and live workers, read now; a source that is down is
    left out (and logged) rather than failing the scrape."""
    families: list[Metric] = []
    tasks = GaugeMetricFamily("crawlhub_tasks", "Tasks by status", labels=["status"])
    try:
        with context.db.read() as session:
            for status, count in task_repo.count_by_status(session).items():
                tasks.add_metric([status], count)
        families.append(tasks)
    except Exception as exc:  # a scrape must not fail because one source is down
        logger.warning("metrics: task counts unavailable: %s", exc)
    depth = GaugeMetricFamily("crawlhub_queue_messages", "Broker messages by queue and state",
                              labels=["queue", "state"])  # fmt: skip
    try:
        for q in queues.overview(context.broker):
            for state in ("ready", "delayed", "in_flight", "dead_lettered"):
                depth.add_metric([q.name, state], getattr(q, state))
        families.append(depth)
    except Exception as exc:
        logger.warning("metrics: queue depths unavailable: %s", exc)
    workers = GaugeMetricFamily("crawlhub_workers", "Worker processes online (heartbeating "
                                "their registration)")  # fmt: skip
    try:
        with context.db.read() as session:
            workers.add_metric([], len(worker_repo.online(session, context.settings.heartbeat_s)))
        families.append(workers)
    except Exception as exc:
        logger.warning("metrics: workers online unavailable: %s", exc)
    return families


class StateCache:
    """The state gauges of one process, read at most once every `ttl_s` seconds.

    One scrape at a time refreshes them; a scrape that comes while another refreshes gets
    the previous figures at once (or, before there are any, waits for the refresh) rather
    than starting a second query. Thread-safe: Starlette serves scrapes from its pool.
    """

    def __init__(
        self,
        read: Callable[[], list[Metric]],
        ttl_s: float = STATE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read, self.ttl_s, self.clock = read, ttl_s, clock
        self._refreshing = threading.Lock()
        self._snapshot: tuple[float, list[Metric]] | None = None  # (read at, families)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_CachedCollector(self))

    @classmethod
    def of(cls, context: Context) -> "StateCache":
        """The cache of a process context's task and queue state."""
        return cls(lambda: read_state(context))

    def families(self) -> list[Metric]:
        """The state gauges, no older than ttl_s unless a refresh is under way."""
        snapshot = self._snapshot
        if snapshot is not None:
            if self.clock() - snapshot[0] < self.ttl_s:
                return snapshot[1]
            if not self._refreshing.acquire(blocking=False):
                return snapshot[1]
        else:
            self._refreshing.acquire()
        try:
            snapshot = self._snapshot  # another scrape may have refreshed while we waited
            if snapshot is None or self.clock() - snapshot[0] >= self.ttl_s:
                families = self.read()
                snapshot = self._snapshot = (self.clock(), families)
            return snapshot[1]
        finally:
            self._refreshing.release()

    def expire(self) -> None:
        """Make the next scrape read the state again."""
        self._snapshot = None


class _CachedCollector(Collector):
    def __init__(self, cache: StateCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        yield from self.cache.families()


def render(state: StateCache) -> bytes:
    """This process's counters plus the (cached) current state, in Prometheus text format."""
    return generate_latest(REGISTRY) + generate_latest(state.registry)


def scrape_allowed(authorization: str | None, token: SecretStr | None) -> bool:
    """Whether a scrape with this Authorization header may read the metrics: always when
    no metrics token is set (or it is blank), else only with `Bearer <token>` (compared in
    constant time). API tokens are not accepted: a scraper gets the least privilege."""
    expected = token.get_secret_value().strip() if token is not None else ""
    if not expected:
        return True
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wsgi_app(token: SecretStr | None, registry: CollectorRegistry = REGISTRY) -> WSGIApp:
    """prometheus_client's WSGI app for a registry, behind the metrics token when set."""
    metrics = prometheus_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not scrape_allowed(environ.get("HTTP_AUTHORIZATION"), token):
            start_response("401 Unauthorized", [
                ("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", "Bearer"),
            ])  # fmt: skip
            return [b"a valid metrics bearer token is required\n"]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up the process's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def serve(port: int, token: SecretStr | None, host: str = "") -> WSGIServer:
    """Serve this process's counters at :port/metrics on a daemon thread (a worker's or a
    ticker's CRAWLHUB_METRICS_PORT), behind the metrics token when set."""
    server = make_server(host, port, wsgi_app(token), _ThreadingServer, _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="crawlhub-metrics", daemon=True)
    thread.start()
    return server
