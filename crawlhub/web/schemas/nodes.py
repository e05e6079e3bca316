"""Models of the fleet's nodes."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class NodeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="host:pid")
    host: str
    pid: int
    version: str
    labels: list[str] = Field(description="CRAWLHUB_WORKER_LABELS")
    slots: int = Field(description="runs it runs at once")
    running: int
    state: Literal["online", "draining", "lost", "stopped"] = Field(
        description="lost: silent for three heartbeats"
    )
    draining: bool
    machine: dict[str, Any] = Field(
        description="as its last heartbeat read it: load, cpus, memory_mb, memory_free_mb, "
        "disk_mb, disk_free_mb (its data dir), environments (keys)"
    )
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None


class NodePage(BaseModel):
    items: list[NodeOut]
