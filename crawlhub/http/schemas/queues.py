"""Models of the broker's queues, workers and dead letters."""

from datetime import datetime

from pydantic import BaseModel, Field

from crawlhub.http.schemas.common import Strict
from crawlhub.messaging.queues import QueueCounts, Worker


class Queues(BaseModel):
    """Per-queue message counts and the live workers (from Dramatiq's heartbeats)."""

    queues: list[QueueCounts]
    workers: list[Worker]


class DeadLetter(BaseModel):
    message_id: str
    actor: str
    task_id: str | None
    error: str | None
    retries: int
    dead_at: datetime


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    total: int


class Requeued(BaseModel):
    requeued: str
    task_id: str | None


class DeadLetterQuery(Strict):
    limit: int = Field(100, ge=1, le=1000)
