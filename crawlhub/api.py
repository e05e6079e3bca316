"""The HTTP API's app: middleware, error handlers and the routes of `crawlhub.http.routes`."""

import contextlib
import re
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from crawlhub import metrics
from crawlhub.context import Context
from crawlhub.http import demo, scrapyd
from crawlhub.http.access import Access
from crawlhub.http.middleware import BodyLimit, CollapseSlashes
from crawlhub.http.routes import (
    alerts,
    data,
    health,
    nodes,
    projects,
    quality,
    queues,
    runs,
    schedules,
    spiders,
    users,
)
from crawlhub.ui import routes as dashboard
from crawlhub.web.responses import EXCEPTION_HANDLERS
from crawlhub.web.validation import spec

# Requests that carry a package upload (API and dashboard) get the upload size limit.
UPLOAD_PATHS = re.compile(
    r"^(/api/(spiders|projects)/[^/]+/versions|/(spiders|projects)(/[^/]+/versions)?"
    r"|(/scrapyd)?/+addversion\.json)/?$"
)
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the uploaded file

ROUTES = [
    *health.ROUTES,
    *projects.ROUTES,
    *spiders.ROUTES,
    *quality.ROUTES,
    *nodes.ROUTES,
    *runs.ROUTES,
    *schedules.ROUTES,
    *alerts.ROUTES,
    *queues.ROUTES,
    *data.ROUTES,
    *users.ROUTES,
    *scrapyd.ROUTES,
    *demo.ROUTES,
    *dashboard.ROUTES,
]


def create_app(context: Context) -> Starlette:
    """The ASGI app serving the API for a process context."""
    settings = context.settings
    middleware = [
        Middleware(CollapseSlashes),
        Middleware(Access, context=context, routes=ROUTES),
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
    app.state.metrics = metrics.StateCache.of(context)  # one per process: see STATE_TTL_S
    spec.app = app  # spectree reads routes from here; we serve the document ourselves
    return app
