"""Queues: messages by state, live workers, dead letters to requeue or purge."""

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from crawlhub.messaging import queues
from crawlhub.messaging.keys import QUEUES
from crawlhub.services import activity, runs
from crawlhub.ui.rendering import action, back, page, render
from crawlhub.web.sessions import Session
from crawlhub.web.validation import ctx

DEAD_SHOWN = 100


@page
def list_queues(request: Request, session: Session) -> Response:
    """Depths, workers and the newest dead letters of each queue."""
    broker = ctx(request).broker
    counts = queues.overview(broker)
    workers = activity.workers_online(ctx(request))
    dead = {name: runs.dead_letters(ctx(request), name, DEAD_SHOWN) for name in QUEUES}
    return render(request, session, "queues.html", counts=counts, workers=workers, dead=dead)


@action
def requeue(request: Request, session: Session, form: FormData) -> Response:
    """Run a dead letter again."""
    params = request.path_params
    task_id = runs.requeue_dead_letter(ctx(request), params["name"], params["message_id"])
    if task_id is None:
        return back("/queues", "Message sent again.")
    return back(
        f"/runs/{task_id}",
        "Requeued: the run is pending again, its attempts continue from the last one.",
    )


@page
def confirm_purge(request: Request, session: Session) -> Response:
    """Ask before dropping a queue's dead letters for good."""
    name = queues.check_queue(request.path_params["name"])
    _, total = queues.dead_letters(ctx(request).broker, name, 1)
    return render(request, session, "purge.html", name=name, total=total)


@action
def purge(request: Request, session: Session, form: FormData) -> Response:
    """Drop every dead letter of a queue."""
    gone = queues.purge(ctx(request).broker, request.path_params["name"])
    return back("/queues", f"Purged {gone} dead letter(s).")
