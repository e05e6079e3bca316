"""Prometheus metrics: counters of this process, and state read from the database and broker.

Counters and histograms are recorded where things happen (runs and deliveries in worker
processes, lateness in tickers) and served by that process: the web app at /metrics,
workers and tickers on CRAWLHUB_METRICS_PORT when it is set. In embedded mode all of them
are one process. Task and queue state is read from the source of truth at scrape time.
"""

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crawlhub.context import Context
from crawlhub.messaging import queues
from crawlhub.repo import tasks as task_repo

logger = logging.getLogger(__name__)

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


class StateCollector(Collector):
    """Tasks by status and queue depths, read when Prometheus scrapes."""

    def __init__(self, context: Context) -> None:
        self.context = context

    def collect(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily("crawlhub_tasks", "Tasks by status", labels=["status"])
        try:
            with self.context.db.session() as session:
                for status, count in task_repo.count_by_status(session).items():
                    tasks.add_metric([status], count)
            yield tasks
        except Exception as exc:  # a scrape must not fail because one source is down
            logger.warning("metrics: task counts unavailable: %s", exc)
        depth = GaugeMetricFamily("crawlhub_queue_messages", "Broker messages by queue and state",
                                  labels=["queue", "state"])  # fmt: skip
        workers = GaugeMetricFamily("crawlhub_workers", "Workers with a fresh heartbeat")
        try:
            counts, live = queues.overview(self.context.broker)
            for q in counts:
                for state in ("ready", "delayed", "in_flight", "dead_lettered"):
                    depth.add_metric([q.name, state], getattr(q, state))
            workers.add_metric([], len(live))
            yield depth
            yield workers
        except Exception as exc:
            logger.warning("metrics: queue depths unavailable: %s", exc)


def render(context: Context) -> bytes:
    """This process's counters plus the current state, in Prometheus text format."""
    state = CollectorRegistry(auto_describe=True)
    state.register(StateCollector(context))
    return generate_latest(REGISTRY) + generate_latest(state)
