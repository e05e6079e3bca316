"""The HTTP API (SPEC §8): the app, its middleware and its routes (handlers in crawlhub.routes)."""

import contextlib
import logging
import re
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST
from spectree import Response as Resp
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crawlhub import metrics
from crawlhub.context import Context
from crawlhub.repo import migrate
from crawlhub.routes import alerts, data, queues, runs, schedules, spiders
from crawlhub.schemas import Health
from crawlhub.web import EXCEPTION_HANDLERS, BearerAuth, BodyLimit, ModelResponse, ctx, spec

logger = logging.getLogger(__name__)

UPLOAD_PATHS = re.compile(r"^/api/spiders/[^/]+/versions/?$")
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the uploaded file


# --- health -----------------------------------------------------------------------------


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


@spec.validate(resp=Resp("HTTP_200"), tags=["health"], security={})
async def prometheus(request: Request) -> Response:
    """Prometheus metrics: this process's counters, task and queue state."""
    body = await run_in_threadpool(metrics.render, ctx(request))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return JSONResponse(spec.spec)


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", prometheus, methods=["GET"]),
    Route("/api/openapi.json", openapi, methods=["GET"], include_in_schema=False),
    *spiders.ROUTES,
    *runs.ROUTES,
    *schedules.ROUTES,
    *alerts.ROUTES,
    *queues.ROUTES,
    *data.ROUTES,
]


def create_app(context: Context) -> Starlette:
    """The ASGI app serving the API for a process context."""
    settings = context.settings
    middleware = [
        Middleware(BearerAuth, tokens=context.tokens),
        Middleware(
            BodyLimit,
            default=settings.max_request_bytes,
            large=settings.max_upload_bytes + MULTIPART_OVERHEAD,
            large_paths=UPLOAD_PATHS,
        ),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await context.live.aclose()

    app = Starlette(
        routes=ROUTES,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.ctx = context
    spec.app = app  # spectree reads routes from here; we serve the document ourselves
    return app
