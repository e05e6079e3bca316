"""Models of the broker's queues, workers and dead letters."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from crawlhub.messaging.queues import QueueCounts
from crawlhub.web.schemas.common import Strict


class WorkerOut(BaseModel):
    """A worker process that heartbeats its registration."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    host: str
    pid: int
    version: str
    threads: int
    started_at: datetime
    last_heartbeat: datetime


class Queues(BaseModel):
    """Per-queue message counts and the workers online (worker processes whose own heartbeat
    is fresh; a ticker or a web process never counts)."""

    queues: list[QueueCounts]
    workers: list[WorkerOut]


class DeadLetter(BaseModel):
    message_id: str
    actor: str
    task_id: str | None
    spider: str | None = Field(description="the run's spider (null: not a run's message)")
    error: str | None = Field(
        description="the last line of the run's own error (the whole is "
        "the task's), else of the message's"
    )
    attempts: int = Field(description="how many times it was tried")
    retries: int = Field(description="Dramatiq's count of the message's failures")
    dead_at: datetime


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    total: int


class Requeued(BaseModel):
    requeued: str
    task_id: str | None


class DeadLetterQuery(Strict):
    limit: int = Field(100, ge=1, le=1000)
