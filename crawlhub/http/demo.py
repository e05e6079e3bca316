"""A small book shop CrawlHub serves at /demo/books/ for the README's tour: something for the
example spider to crawl on any machine, with no site to set up and no network needed."""

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

BOOKS = [
    ("A Light in the Attic", "51.77"),
    ("Tipping the Velvet", "53.74"),
    ("Soumission", "50.10"),
    ("Sharp Objects", "47.82"),
    ("Sapiens", "54.23"),
    ("The Requiem Red", "22.65"),
    ("Olio", "23.88"),
    ("Mesaerion", "37.59"),
]


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
                        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")  # fmt: skip


async def shop(request: Request) -> Response:
    links = "".join(f'<li><a href="book/{n}.html">{html.escape(t)}</a></li>'
                    for n, (t, _) in enumerate(BOOKS, 1))  # fmt: skip
    return _page("Demo book shop", f"<ul>{links}</ul>")


async def book(request: Request) -> Response:
    number = request.path_params["number"]
    if not 1 <= number <= len(BOOKS):
        return HTMLResponse("no such book", status_code=404)
    title, price = BOOKS[number - 1]
    return _page(title, f'<p class="price">£{price}</p><a href="../">all books</a>')


ROUTES = [
    Route("/demo/books/", shop, methods=["GET"]),
    Route("/demo/books/book/{number:int}.html", book, methods=["GET"]),
]
