"""Nodes: every worker process with its labels, slots, runs, machine and state; drain and
resume (instance admins)."""

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from crawlhub.services import nodes
from crawlhub.ui.rendering import action, back, page, render
from crawlhub.web.sessions import Session
from crawlhub.web.validation import ctx


@page
def list_nodes(request: Request, session: Session) -> Response:
    """The fleet."""
    found = nodes.nodes(ctx(request))
    return render(request, session, "nodes.html", nodes=found,
                  online=sum(n.state in ("online", "draining") for n in found))  # fmt: skip


@action
def drain(request: Request, session: Session, form: FormData) -> Response:
    """Drain a node: it finishes its runs and takes no new ones."""
    node = nodes.set_draining(ctx(request), request.path_params["id"], True)
    return back("/nodes", f"{node.id} is draining: it finishes its runs and takes no new ones "
                          "from its next heartbeat.")  # fmt: skip


@action
def resume(request: Request, session: Session, form: FormData) -> Response:
    """Resume a drained node."""
    node = nodes.set_draining(ctx(request), request.path_params["id"], False)
    return back("/nodes", f"{node.id} takes runs again.")
