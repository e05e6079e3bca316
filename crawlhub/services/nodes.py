"""The fleet: every worker process as a node — its labels, slots, runs, machine and state —
and draining a node for a rolling upgrade (docs/guide/fleet.md)."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crawlhub.context import Context
from crawlhub.repo import workers as worker_repo
from crawlhub.repo.db import db_now
from crawlhub.repo.users import audit
from crawlhub.services import dispatch


@dataclass(frozen=True)
class Node:
    """A worker process as the Nodes page and the API show it."""

    id: str
    host: str
    pid: int
    version: str
    labels: list[str]
    slots: int
    running: int
    state: str  # online, draining, lost (silent for three heartbeats), stopped
    draining: bool
    machine: dict[str, Any]
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None


def nodes(context: Context) -> list[Node]:
    """Every node CrawlHub remembers (stopped and lost ones for a week), oldest first."""
    silent_for = timedelta(seconds=worker_repo.MISSED_BEATS * context.settings.heartbeat_s)
    with context.db.read() as session:
        now = db_now(session)
        rows = worker_repo.nodes(session)
        running = worker_repo.running_by_worker(session)
    found = []
    for row in rows:
        if row.stopped_at is not None:
            state = "stopped"
        elif row.last_seen_at < now - silent_for:
            state = "lost"
        else:
            state = "draining" if row.draining else "online"
        found.append(Node(row.id, row.host, row.pid, row.version, list(row.labels or []),
                          row.threads, running.get(row.id, 0), state, row.draining,
                          dict(row.machine or {}), row.started_at, row.last_seen_at,
                          row.stopped_at))  # fmt: skip
    return found


def set_draining(context: Context, node_id: str, draining: bool) -> Node:
    """Drain a node (it finishes its runs and takes no new ones, from its next heartbeat)
    or resume it."""
    with context.db.session() as session:
        worker_repo.set_draining(session, node_id, draining)
        audit(session, "node.drain" if draining else "node.resume", f"node:{node_id}")
    if not draining:
        dispatch.quietly(context)
    return next(n for n in nodes(context) if n.id == node_id)


def some_node_has(context: Context, labels: list[str]) -> bool:
    """Whether a live node that takes runs (online, not drained) has all these labels."""
    with context.db.read() as session:
        takers = worker_repo.takers(session, context.settings.heartbeat_s)
    return any(set(labels) <= node.labels for node in takers)
