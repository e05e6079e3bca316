"""Handlers of the process itself: liveness, readiness, Prometheus metrics, the API document."""

import logging

from prometheus_client import CONTENT_TYPE_LATEST
from spectree import Response as Resp
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crawlhub import metrics
from crawlhub.repo import migrate
from crawlhub.web.responses import ModelResponse, error_response
from crawlhub.web.schemas.common import Health
from crawlhub.web.validation import ctx, errors, spec

logger = logging.getLogger(__name__)


@spec.validate(resp=Resp(HTTP_200=Health), tags=["health"], security={})
async def healthz(request: Request) -> Response:
    """The process is alive."""
    return ModelResponse(Health(status="ok"))


@spec.validate(resp=Resp(HTTP_200=Health, HTTP_503=Health), tags=["health"], security={})
async def readyz(request: Request) -> Response:
    """The database (at the newest migration) and Redis answer."""
    context = ctx(request)
    checks = {"database": "ok", "migrations": "ok", "redis": "embedded"}
    try:
        at_head = await run_in_threadpool(migrate.is_at_head, context.db.engine)
        if not at_head:
            checks["migrations"] = "behind: run `crawlhub migrate`"
    except Exception as exc:  # any driver error means "not ready"
        logger.warning("readyz: database check failed: %s", type(exc).__name__)
        checks["database"] = checks["migrations"] = "unreachable"
    if context.redis is not None:
        try:
            await run_in_threadpool(context.redis.ping)
            checks["redis"] = "ok"
        except Exception as exc:
            logger.warning("readyz: redis check failed: %s", type(exc).__name__)
            checks["redis"] = "unreachable"
    ready = all(value in ("ok", "embedded") for value in checks.values())
    health = Health(status="ok" if ready else "unavailable", checks=checks)
    return ModelResponse(health, 200 if ready else 503)


@spec.validate(resp=Resp("HTTP_200", **errors(401)), tags=["health"], security={})
async def prometheus(request: Request) -> Response:
    """Prometheus metrics: this process's counters, task and queue state (read at most every
    few seconds); `Authorization: Bearer <CRAWLHUB_METRICS_TOKEN>` when that is set."""
    token = ctx(request).settings.metrics_token
    if not metrics.scrape_allowed(request.headers.get("authorization"), token):
        return error_response(401, "unauthorized", "a valid metrics bearer token is required")
    state: metrics.StateCache = request.app.state.metrics
    body = await run_in_threadpool(metrics.render, state)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return JSONResponse(spec.spec)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", prometheus, methods=["GET"]),
    Route("/api/openapi.json", openapi, methods=["GET"], include_in_schema=False),
]
