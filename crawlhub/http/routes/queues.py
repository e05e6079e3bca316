"""Handlers of the broker's queues: depths, workers, dead letters."""

from spectree import Response as Resp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crawlhub.messaging import queues
from crawlhub.services import activity, runs
from crawlhub.web.responses import ModelResponse
from crawlhub.web.schemas.common import Count
from crawlhub.web.schemas.queues import (
    DeadLetter,
    DeadLetterPage,
    DeadLetterQuery,
    Queues,
    Requeued,
    WorkerOut,
)
from crawlhub.web.validation import ctx, errors, query_of, spec


@spec.validate(resp=Resp(HTTP_200=Queues), tags=["queues"])
def list_queues(request: Request) -> Response:
    """Per queue: ready, delayed, in flight and dead-lettered messages; live workers."""
    context = ctx(request)
    listed = [WorkerOut.model_validate(w) for w in activity.workers_online(context)]
    return ModelResponse(Queues(queues=queues.overview(context.broker), workers=listed))


@spec.validate(
    query=DeadLetterQuery, resp=Resp(HTTP_200=DeadLetterPage, **errors(404)), tags=["queues"]
)
def list_dead_letters(request: Request) -> Response:
    """The newest dead letters of a queue, decoded (task id, actor, error, time)."""
    q = query_of(request, DeadLetterQuery)
    found, total = runs.dead_letters(ctx(request), request.path_params["name"], q.limit)
    items = [DeadLetter(message_id=d.message.message_id, actor=d.message.actor,
                        task_id=d.message.task_id, spider=d.spider, error=d.error,
                        attempts=d.attempts, retries=d.message.retries,
                        dead_at=d.message.dead_at) for d in found]  # fmt: skip
    return ModelResponse(DeadLetterPage(items=items, total=total))


@spec.validate(resp=Resp(HTTP_200=Requeued, **errors(404)), tags=["queues"])
def requeue_dead_letter(request: Request) -> Response:
    """Run a dead letter again: its task becomes pending with the retry counter reset."""
    params = request.path_params
    task_id = runs.requeue_dead_letter(ctx(request), params["name"], params["message_id"])
    return ModelResponse(Requeued(requeued=params["message_id"], task_id=task_id))


@spec.validate(resp=Resp(HTTP_200=Count, **errors(404)), tags=["queues"])
def purge_dead_letters(request: Request) -> Response:
    """Drop every dead letter of a queue; returns how many."""
    return ModelResponse(
        Count(count=queues.purge(ctx(request).broker, request.path_params["name"]))
    )


ROUTES = [
    Route("/api/queues", list_queues, methods=["GET"]),
    Route("/api/queues/{name}/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/api/queues/{name}/dead-letters", purge_dead_letters, methods=["DELETE"]),
    Route(
        "/api/queues/{name}/dead-letters/{message_id}/requeue",
        requeue_dead_letter,
        methods=["POST"],
    ),
]
