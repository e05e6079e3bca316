"""The long-lived objects a process shares: settings, database, broker, Redis, tokens."""

import threading
from dataclasses import dataclass, field

import dramatiq
import redis

from crawlhub.config import Settings, read_token_file
from crawlhub.messaging.broker import install_broker
from crawlhub.messaging.livelog import LiveLog, MemoryLiveLog, RedisLiveLog
from crawlhub.repo.db import Database


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

    @classmethod
    def build(cls, settings: Settings) -> "Context":
        """Connect lazily to every configured service (nothing is contacted yet).

        Messages are sent by actor name, so only a process that consumes them declares the
        actors on this broker (`crawlhub.actors.registry.declare_actors`).
        """
        db = Database(settings.database_url.get_secret_value(), pool_size=settings.db_pool_size)
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
