"""Dashboard sign-in without a browser: every page and form needs a session, every form its
CSRF token; the cookie is signed, strict and expiring; pages carry no inline script."""

import re
import time

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.ui import routes as dashboard
from crawlhub.web.sessions import COOKIE, issue, verify
from tests.conftest import TOKEN

OPEN = {"/login", "/login/sso", "/login/sso/callback"}  # sign-in itself: test_sso.py


def dashboard_routes() -> list[tuple[str, str]]:
    pairs = []
    for route in dashboard.ROUTES:
        if not isinstance(route, Route) or route.path in OPEN:
            continue
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                pairs.append((method, re.sub(r"{[^}]+}", "x", route.path)))
    return pairs


@pytest.fixture
def browser(context: Context) -> TestClient:
    """A client with no token: it gets in only through the sign-in form."""
    return TestClient(create_app(context))


def sign_in(browser: TestClient) -> str:
    response = browser.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    page = browser.get("/").text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_every_page_and_form_sends_a_signed_out_visitor_to_login(browser: TestClient) -> None:
    routes = dashboard_routes()
    assert len(routes) >= 30
    for method, path in routes:
        response = browser.request(method, path, follow_redirects=False)
        assert response.status_code == 303, (method, path)
        assert response.headers["location"].startswith("/login?next="), (method, path)
    browser.cookies.set(COOKIE, "eyJleHAiOjk5OTk5OTk5OTl9.forged")
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_every_form_is_refused_without_its_csrf_token(browser: TestClient) -> None:
    csrf = sign_in(browser)
    for method, path in dashboard_routes():
        if method != "POST":
            continue
        for token in (None, "wrong", csrf[:-1]):
            data = {} if token is None else {"csrf": token}
            response = browser.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403, (path, token)
            assert "security token" in response.text


def test_the_session_cookie_is_http_only_strict_and_expires(
    browser: TestClient, context: Context
) -> None:
    response = browser.post("/login", data={"token": TOKEN}, follow_redirects=False)
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert f"Max-Age={12 * 3600}" in cookie
    assert TOKEN not in cookie
    assert "Secure" not in cookie  # plain http here; https gets Secure
    secure = TestClient(create_app(context), base_url="https://hub.example")
    assert "Secure" in secure.post("/login", data={"token": TOKEN},
                                   follow_redirects=False).headers["set-cookie"]  # fmt: skip
    value = issue((TOKEN,), -1 / 3600, token=TOKEN)  # expired a second ago
    assert verify((TOKEN,), value) is None
    assert verify((TOKEN,), issue((TOKEN,), 1, token=TOKEN)) is not None


def test_removing_a_token_signs_out_its_sessions() -> None:
    value = issue(("old-token", "other"), 1, token="old-token")
    assert verify(("old-token", "other"), value) is not None
    assert verify(("other",), value) is None
    assert verify(("other", "old-token"), value) is not None  # order does not matter


def test_sign_in_never_redirects_to_another_site(browser: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example", "javascript:alert(1)", "x"):
        response = browser.post("/login", data={"token": TOKEN, "next": target},
                                follow_redirects=False)  # fmt: skip
        assert response.headers["location"] == "/", target
        browser.cookies.clear()


def test_sign_out_ends_the_session(browser: TestClient) -> None:
    csrf = sign_in(browser)
    response = browser.post("/logout", data={"csrf": csrf}, follow_redirects=False)
    assert response.headers["location"] == "/login"
    assert 'crawlhub_session=""' in response.headers["set-cookie"]
    browser.cookies.clear()
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_pages_carry_a_strict_csp_and_no_inline_script(browser: TestClient) -> None:
    sign_in(browser)
    for path in ("/", "/spiders", "/runs", "/schedules", "/schedules/new", "/data", "/alerts",
                 "/queues", "/login"):  # fmt: skip
        response = browser.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        html = response.text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), path
        assert not re.search(r"\sstyle\s*=", html), path


def test_a_session_survives_until_it_expires(browser: TestClient, context: Context) -> None:
    browser.cookies.set(COOKIE, issue(context.tokens, 0.5 / 3600, token=TOKEN))
    assert browser.get("/", follow_redirects=False).status_code == 200
    time.sleep(0.6)
    assert browser.get("/", follow_redirects=False).status_code == 303


def test_a_signed_in_visitor_of_the_sign_in_page_goes_straight_on(browser: TestClient) -> None:
    sign_in(browser)
    answer = browser.get("/login?next=/runs", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/runs")
