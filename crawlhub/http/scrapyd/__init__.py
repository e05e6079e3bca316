"""The Scrapyd-compatible API: Scrapyd 1.6's JSON endpoints (`endpoints`) and the web pages
its tools read (`site`), under /scrapyd/ and at the root, where python-scrapyd-api and
ScrapydWeb look for them; the root's `/` stays CrawlHub's dashboard (docs/scrapyd.md)."""

from starlette.routing import Route

from crawlhub.http.scrapyd import endpoints, site
from crawlhub.http.scrapyd.endpoints import ENDPOINTS, PREFIX

METHODS = ["GET", "HEAD", "POST", "OPTIONS"]

ROUTES = [
    Route(f"{PREFIX}/{{name:scrapyd_endpoint}}.json", endpoints.endpoint, methods=METHODS),
    Route("/{name:scrapyd_endpoint}.json", endpoints.endpoint, methods=METHODS),
    *site.ROUTES,
]


def is_scrapyd_path(path: str) -> bool:
    """Whether a request path belongs to the Scrapyd API (and so needs a token)."""
    if path == PREFIX or path.startswith(PREFIX + "/"):
        return True
    name = path[1:].removesuffix(".json")
    return (path.endswith(".json") and name in ENDPOINTS) or site.is_site_path(path)


__all__ = ["PREFIX", "ROUTES", "is_scrapyd_path"]
