"""Handlers of a spider's data quality rules."""

from dataclasses import asdict

from spectree import Response as Resp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crawlhub.services import quality
from crawlhub.web.responses import ModelResponse
from crawlhub.web.schemas.quality import LearnRequest, Learnt, QualityOut, QualitySet
from crawlhub.web.validation import body_of, ctx, errors, spec


@spec.validate(resp=Resp(HTTP_200=QualityOut, **errors(404)), tags=["quality"])
def get_rules(request: Request) -> Response:
    """A spider's data quality rules in force, and where they come from."""
    found = quality.rules_of(ctx(request), request.path_params["ref"])
    return ModelResponse(QualityOut(**asdict(found)))


@spec.validate(json=QualitySet, resp=Resp(HTTP_200=QualityOut, **errors(404, 422)),
               tags=["quality"])  # fmt: skip
def set_rules(request: Request) -> Response:
    """Set a spider's own rules (they win over its version's crawlhub.toml), or clear them."""
    body = body_of(request, QualitySet)
    found = quality.set_rules(ctx(request), request.path_params["ref"], body.rules)
    return ModelResponse(QualityOut(**asdict(found)))


@spec.validate(json=LearnRequest, resp=Resp(HTTP_200=Learnt, **errors(404, 409, 422)),
               tags=["quality"])  # fmt: skip
def learn(request: Request) -> Response:
    """Rules a good run suggests: a schema of the types its fields had, coverage a margin
    under its own, item counts against the median; not saved (edit, then PUT them)."""
    body = body_of(request, LearnRequest)
    rules = quality.learn_from(ctx(request), request.path_params["ref"], body.task_id)
    return ModelResponse(Learnt(rules=rules))


ROUTES = [
    Route("/api/spiders/{ref}/quality", get_rules, methods=["GET"]),
    Route("/api/spiders/{ref}/quality", set_rules, methods=["PUT"]),
    Route("/api/spiders/{ref}/quality/learn", learn, methods=["POST"]),
]
