"""The long-lived objects a process shares: settings, database, broker, Redis, tokens."""

import threading
from dataclasses import dataclass, field

import dramatiq
import redis

from crawlhub.config import Settings, read_token_file
from crawlhub.messaging.broker import install_broker
from crawlhub.messaging.livelog import LiveLog, MemoryLiveLog, RedisLiveLog
from crawlhub.repo.db import Database

# Database sessions one run may hold at once: its supervisor's, and a writer of its log lines
# and of its items (the output readers write when the supervisor falls behind).
SESSIONS_PER_RUN = 3
SESSIONS_BESIDE_RUNS = 4  # the worker's heartbeat, its outcome recorder, builds, alerts


def sessions_needed(settings: Settings) -> int:
    """The database sessions a worker may hold at once with every thread running a run."""
    return SESSIONS_PER_RUN * settings.worker_concurrency + SESSIONS_BESIDE_RUNS


@dataclass
class Context:
    """Everything a web, worker or ticker process needs, built once at start-up."""

    settings: Settings
    db: Database
    broker: dramatiq.Broker
    redis: "redis.Redis | None"
    live: LiveLog
    tokens: tuple[str, ...] = field(default=(), repr=False)
    # Set when a schedule changes, so a ticker in this process re-reads its next due time.
    wake_ticker: threading.Event = field(default_factory=threading.Event)
    # Set when this process's worker starts shutting down: runs get the shutdown grace to
    # finish, then are handed back to the queue (not failed, no retry counted).
    stopping: threading.Event = field(default_factory=threading.Event)
    # Set while this worker's node is drained: its runs go on, new ones are handed back.
    draining: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def build(cls, settings: Settings, *, runs_here: bool = False) -> "Context":
        """Connect lazily to every configured service (nothing is contacted yet). A process
        that `runs_here` (a worker, `crawlhub up`) sizes its database pool for its runs.

        Messages are sent by actor name, so only a process that consumes them declares the
        actors on this broker (`crawlhub.actors.registry.declare_actors`).
        """
        pool = max(settings.db_pool_size, sessions_needed(settings)) if runs_here \
            else settings.db_pool_size  # fmt: skip
        db = Database(settings.database_url.get_secret_value(), pool_size=pool,
                      pool_timeout_s=settings.db_pool_timeout_s)  # fmt: skip
        client = None
        if settings.redis_url is not None:
            client = redis.Redis.from_url(
                settings.redis_url.get_secret_value(), socket_timeout=5, socket_connect_timeout=5
            )
        tokens = settings.tokens + read_token_file(settings.data_dir)
        live: LiveLog = (
            MemoryLiveLog()
            if settings.redis_url is None
            else RedisLiveLog(settings.redis_url.get_secret_value())
        )
        return cls(settings, db, install_broker(settings), client, live, tokens)

    def close(self) -> None:
        """Release connections and the broker."""
        self.db.dispose()
        if self.redis is not None:
            self.redis.close()
        self.live.close()
        self.broker.close()
