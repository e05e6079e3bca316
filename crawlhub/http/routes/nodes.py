"""Handlers of the fleet's nodes."""

from spectree import Response as Resp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crawlhub.services import nodes
from crawlhub.web.responses import ModelResponse
from crawlhub.web.schemas.nodes import NodeOut, NodePage
from crawlhub.web.validation import ctx, errors, spec


@spec.validate(resp=Resp(HTTP_200=NodePage), tags=["nodes"])
def list_nodes(request: Request) -> Response:
    """Every node (worker process) with its labels, slots, runs, machine and state."""
    found = nodes.nodes(ctx(request))
    return ModelResponse(NodePage(items=[NodeOut.model_validate(n) for n in found]))


@spec.validate(resp=Resp(HTTP_200=NodeOut, **errors(404)), tags=["nodes"])
def drain(request: Request) -> Response:
    """Drain a node: it finishes its runs and takes no new ones (from its next heartbeat)."""
    node = nodes.set_draining(ctx(request), request.path_params["id"], True)
    return ModelResponse(NodeOut.model_validate(node))


@spec.validate(resp=Resp(HTTP_200=NodeOut, **errors(404)), tags=["nodes"])
def resume(request: Request) -> Response:
    """Resume a drained node: it takes runs again."""
    node = nodes.set_draining(ctx(request), request.path_params["id"], False)
    return ModelResponse(NodeOut.model_validate(node))


ROUTES = [
    Route("/api/nodes", list_nodes, methods=["GET"]),
    Route("/api/nodes/{id}/drain", drain, methods=["POST"]),
    Route("/api/nodes/{id}/resume", resume, methods=["POST"]),
]
