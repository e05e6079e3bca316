"""Declaring the actors on a process's broker: only processes that consume messages do it."""

from crawlhub.actors import alert, prepare, run
from crawlhub.context import Context
from crawlhub.worker import outcomes, presence


def declare_actors(context: Context) -> None:
    """Declare every actor on the context's broker, bound to the context, and the hooks of a
    worker process's life (its registration, its shutdown, its outcome recorder)."""
    recorder = outcomes.Recorder(context)
    run.declare(context, recorder)
    alert.declare(context)
    prepare.declare(context)
    context.broker.add_middleware(presence.WorkerLife(context, recorder))
