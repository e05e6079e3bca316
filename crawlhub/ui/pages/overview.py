"""The overview: health, what needs attention, what runs now, what fires next, run history."""

from starlette.requests import Request
from starlette.responses import Response

from crawlhub.services import activity
from crawlhub.ui import charts
from crawlhub.ui.rendering import page, render
from crawlhub.web.sessions import Session
from crawlhub.web.validation import ctx


@page
def overview(request: Request, session: Session) -> Response:
    """The overview page."""
    view = activity.overview(ctx(request))
    return render(
        request,
        session,
        "overview.html",
        view=view,
        day=charts.stacked(view.day, "Runs per hour, last 24 hours"),
        week=charts.stacked(view.week, "Runs per hour, last 7 days"),
    )


@page
def running(request: Request, session: Session) -> Response:
    """The "Running now" table alone, which the overview refreshes every few seconds."""
    now, rows = activity.running_now(ctx(request))
    return render(request, session, "_running.html", now=now, running=rows)
