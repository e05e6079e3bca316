"""The dispatcher: which waiting runs go to the queue now, and why the others wait.

A run is created *held*: pending, with no message. The dispatcher sends held runs to the
run queue only while a live node has a free slot for them (its slots, less the runs it
runs, less the runs sent and not claimed yet), their spider and project are under their
`max_concurrent_runs`, and a node has the labels they require. Which run a free slot takes:
the run of the project with the fewest runs under way, then the highest priority, then the
oldest (fair share; `CRAWLHUB_DISPATCH_ORDER=fifo`: the oldest, as a plain queue). So the
queue in Redis holds about as many runs as there are free slots: a project's burst of 500
runs waits in PostgreSQL, and another project's run takes the next slot that frees.

It runs when something may let a run start: a run is created or a schedule fires, a run
ends, a node registers or is resumed, a limit is raised, and every few seconds in the
ticker's sweep. One dispatcher decides at a time (an advisory lock); the claim's
compare-and-set still makes a run start once, whatever is sent twice. Retries keep their
message (Dramatiq's backoff) and count under the limits while they wait.
"""

import contextlib
import logging
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dramatiq

from crawlhub.context import Context
from crawlhub.messaging import messages
from crawlhub.repo import dispatch as repo
from crawlhub.repo import tasks as task_repo
from crawlhub.repo import workers as worker_repo
from crawlhub.repo.db import Session
from crawlhub.repo.dispatch import Active, Caps, Held
from crawlhub.repo.models import Task

logger = logging.getLogger(__name__)

ROUND_LIMIT = 64  # the most runs one round sends (the next round sends more)
MANUAL_PRIORITY = 10  # a run started by someone, above a schedule's (0)
PRIORITY_BOUND = 1_000_000  # priorities lie within ± this
_LOCK = threading.Lock()  # SQLite has no advisory lock: one dispatcher per process


@dataclass
class Node:
    """A live node that takes runs, and its free slots."""

    id: str
    labels: frozenset[str]
    free: int


@dataclass
class Fleet:
    """The live nodes that take runs; `free`: slots free across them (none when no node is
    live: runs wait for one to register)."""

    nodes: list[Node]
    free: int

    def can_place(self, requires: frozenset[str]) -> bool:
        """Whether a node with these labels has a free slot."""
        return self.free > 0 and any(requires <= n.labels and n.free > 0 for n in self.nodes)

    def take(self, requires: frozenset[str]) -> None:
        """Count a slot of the freest node with these labels as taken."""
        matching = [n for n in self.nodes if requires <= n.labels and n.free > 0]
        max(matching, key=lambda n: n.free).free -= 1
        self.free -= 1


def fleet_of(session: Session, heartbeat_s: float, active: Active) -> Fleet:
    """The live nodes that take runs, with their free slots (their slots, less the runs
    they run, less the runs sent and not claimed yet across them)."""
    live = worker_repo.takers(session, heartbeat_s)
    nodes = [Node(n.id, n.labels, max(n.slots - active.nodes.get(n.id, 0), 0)) for n in live]
    return Fleet(nodes, sum(n.free for n in nodes) - active.unclaimed)


def over_limit(spider_id: uuid.UUID, project_id: uuid.UUID, caps: Caps, active: Active
               ) -> str | None:  # fmt: skip
    """Why a spider's run may not start now for its limits ("spider limit 2"), or None."""
    if caps.spider is not None and active.spiders.get(spider_id, 0) >= caps.spider:
        return f"spider limit {caps.spider}"
    if caps.project is not None and active.projects.get(project_id, 0) >= caps.project:
        return f"project limit {caps.project}"
    return None


def plan(held: Iterable[Held], caps: dict[uuid.UUID, Caps], active: Active, fleet: Fleet,
         *, fifo: bool = False) -> list[Held]:  # fmt: skip
    """The held runs to send now, in order (`held` is best first within each spider)."""
    queues: dict[uuid.UUID, deque[Held]] = {}
    for run in held:
        queues.setdefault(run.spider_id, deque()).append(run)

    def rank(run: Held) -> tuple[Any, ...]:
        if fifo:
            return (run.created_at,)
        return (active.projects.get(run.project_id, 0), -run.priority, run.created_at)

    chosen: list[Held] = []
    while queues and fleet.free > 0:
        best = min((q[0] for q in queues.values()), key=rank)
        line = queues[best.spider_id]
        if over_limit(best.spider_id, best.project_id, caps[best.spider_id], active):
            del queues[best.spider_id]  # none of this spider's runs starts this round
            continue
        line.popleft()
        if not line:
            del queues[best.spider_id]
        if not fleet.can_place(best.requires):
            continue  # its spider's next run may require other labels
        fleet.take(best.requires)
        active.spiders[best.spider_id] = active.spiders.get(best.spider_id, 0) + 1
        active.projects[best.project_id] = active.projects.get(best.project_id, 0) + 1
        chosen.append(best)
    return chosen


def run_options(retries_left: int, backoff_min_s: int, backoff_max_s: int) -> dict[str, Any]:
    """The Retries options of a run message: retries left and the spider's backoff (ms)."""
    return {
        "max_retries": max(retries_left, 0),
        "min_backoff": backoff_min_s * 1000,
        "max_backoff": backoff_max_s * 1000,
    }


@dataclass
class Round:
    """One round of the dispatcher: the message ids of the runs it sent (once they are), and
    what it decided on, which tells a run it left held why it waits."""

    sent: dict[uuid.UUID, str] = field(default_factory=dict)
    fleet: Fleet | None = None
    active: Active = field(default_factory=Active)
    caps: dict[uuid.UUID, tuple[uuid.UUID, Caps]] = field(default_factory=dict)

    def tell(self, task: Task) -> Task:
        """A task of this round told why it waits (`waiting_reason`), if it does."""
        if task.status == "pending" and task.id not in self.sent and self.fleet is not None:
            task.waiting_reason = reason(task, self.fleet, self.caps, self.active)
        return task


def dispatch(context: Context) -> dict[uuid.UUID, str]:
    """Send the held runs that may start now; their message ids."""
    with deciding(context) as (_, done):
        pass
    return done.sent


@contextlib.contextmanager
def deciding(context: Context) -> Iterator[tuple[Session, Round]]:
    """A transaction the dispatcher decides in before it commits: what the caller writes in
    it first (a run created) is sent in the same round. Yields the session and the round,
    whose `sent` is filled once the block has committed and the messages are sent.

    The runs are marked sent (their message id) in the deciding transaction and sent after
    its commit, so a worker that takes a message at once finds its run free to claim; a run
    whose message the broker refused is held again (or, should that fail too, sent again by
    the ticker's sweep, which finds it missing from the broker)."""
    done = Round()
    out: dict[uuid.UUID, dramatiq.Message[Any]] = {}
    with _LOCK, context.db.session() as session:
        yield session, done
        repo.lock(session)
        active = done.active = repo.active(session)
        fleet = done.fleet = fleet_of(session, context.settings.heartbeat_s, active)
        # No slot free: no run can be sent, none is read (a burst queued while every slot is
        # taken costs each of its runs no look at the others).
        held, caps = repo.held(session, ROUND_LIMIT) if fleet.free > 0 else ([], {})
        if held:
            done.caps = {run.spider_id: (run.project_id, caps[run.spider_id]) for run in held}
            fifo = context.settings.dispatch_order == "fifo"
            for run in plan(held, caps, active, fleet, fifo=fifo)[:ROUND_LIMIT]:
                options = run_options(run.retries_left, run.backoff_min_s, run.backoff_max_s)
                out[run.id] = messages.run_message(run.id, **options)
            if out:
                task_repo.set_message_ids(session, {t: m.message_id for t, m in out.items()})
    refused = []
    for task_id, message in out.items():
        try:
            context.broker.enqueue(message)
        except Exception as exc:
            logger.error("task %s: could not be sent (%s); it is held again", task_id, exc)
            refused.append(task_id)
    if refused:
        with context.db.session() as session:
            task_repo.set_message_ids(session, dict.fromkeys(refused))
    done.sent.update((t, m.message_id) for t, m in out.items() if t not in refused)


def quietly(context: Context) -> None:
    """Dispatch where a failure must not stop the caller (the ticker's sweep dispatches
    again)."""
    try:
        dispatch(context)
    except Exception as exc:
        logger.warning("dispatch failed: %s", exc)


def tell_waiting(context: Context, session: Session, tasks: list[Task]) -> list[Task]:
    """The tasks, each pending one told why it does not start (`waiting_reason`), by the
    dispatcher's rules: no node takes runs, none has the labels it requires, its spider's
    or project's limit, or every slot is taken. Nothing is asked when none is pending."""
    pending = [t for t in tasks if t.status == "pending"]
    if not pending:
        return tasks
    active = repo.active(session)
    fleet = fleet_of(session, context.settings.heartbeat_s, active)
    held = [t for t in pending if t.message_id is None]
    caps = repo.caps_of(session, {t.spider_id for t in held}) if held else {}
    for task in pending:
        task.waiting_reason = reason(task, fleet, caps, active)
    return tasks


def reason(task: Task, fleet: Fleet, caps: dict[uuid.UUID, tuple[uuid.UUID, Caps]],
           active: Active) -> str | None:  # fmt: skip
    """Why one pending task does not start, or None (it is about to)."""
    requires = frozenset(task.requires or ())
    if not fleet.nodes:
        return "no node takes runs (none is online, or every one is drained)"
    if not any(requires <= n.labels for n in fleet.nodes):
        return f"no node has labels {', '.join(sorted(requires))}"
    if task.message_id is not None:
        return None  # sent: the next free slot with its labels takes it
    if task.due_at is not None and task.due_at > datetime.now(UTC):
        return f"due at {task.due_at:%H:%M:%S} UTC (its schedule's jitter)"
    if task.spider_id in caps:
        project_id, limits = caps[task.spider_id]
        limited = over_limit(task.spider_id, project_id, limits, active)
        if limited is not None:
            return limited
    if not fleet.can_place(requires):
        return "every slot is taken" + (f" on nodes with labels {', '.join(sorted(requires))}"
                                        if requires else "")  # fmt: skip
    return None
