"""The long-lived objects a process shares: settings, database, broker, Redis, tokens."""

import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import redis

from crawlhub.actors import alert as alert_actor
from crawlhub.actors import run as run_actor
from crawlhub.broker import install_broker
from crawlhub.config import Settings
from crawlhub.livelog import LiveLog, MemoryLiveLog, RedisLiveLog
from crawlhub.repo.db import Database

TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret


@dataclass
class Context:
    """Everything a web, worker or ticker process needs, built once at start-up."""

    settings: Settings
    db: Database
    broker: dramatiq.Broker
    redis: "redis.Redis | None"
    live: LiveLog
    tokens: tuple[str, ...] = field(default=())
    # Set when a schedule changes, so a ticker in this process re-reads its next due time.
    wake_ticker: threading.Event = field(default_factory=threading.Event)
    run_actor: "dramatiq.Actor[[str], None] | Any" = None  # set by build()
    alert_actor: "dramatiq.Actor[..., None] | Any" = None  # set by build()

    @classmethod
    def build(cls, settings: Settings) -> "Context":
        """Connect lazily to every configured service (nothing is contacted yet)."""
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
        context = cls(settings, db, install_broker(settings), client, live, tokens)
        context.run_actor = run_actor.declare(context)
        context.alert_actor = alert_actor.declare(context)
        return context

    def close(self) -> None:
        """Release connections and the broker."""
        self.db.dispose()
        if self.redis is not None:
            self.redis.close()
        self.live.close()
        self.broker.close()


def token_path(data_dir: Path) -> Path:
    """Where `crawlhub up` keeps the API token it generated."""
    return data_dir / TOKEN_FILE


def read_token_file(data_dir: Path) -> tuple[str, ...]:
    """The token stored in the data dir, if there is one."""
    try:
        token = token_path(data_dir).read_text().strip()
    except FileNotFoundError:
        return ()
    return (token,) if token else ()


def ensure_token_file(data_dir: Path) -> str | None:
    """Create the data dir's token on first start; returns it only when newly created."""
    path = token_path(data_dir)
    if path.exists():
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL: two processes starting at once cannot both think they created it; 0600 from birth.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(token + "\n")
    return token
