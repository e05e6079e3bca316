"""Declaring the actors on a process's broker: only processes that consume messages do it."""

from crawlhub.actors import alert, prepare, run
from crawlhub.context import Context


def declare_actors(context: Context) -> None:
    """Declare every actor on the context's broker, bound to the context."""
    run.declare(context)
    alert.declare(context)
    prepare.declare(context)
