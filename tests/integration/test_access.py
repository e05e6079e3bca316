"""Who may do what, from the application's own route table: every route (API, Scrapyd API,
dashboard) is in the permission table, and answers every role, a configured token, no
credentials, a disabled user and an expired or revoked token as the table says."""

import base64
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.repo.models import ApiToken
from crawlhub.services import accounts
from crawlhub.web.permissions import ROLE_ACTIONS, SCRAPYD_ACTIONS, TABLE, Action, action_of
from tests.conftest import TOKEN, make_settings

PASSWORD = "correct horse battery"


@pytest.fixture
def pg_context(pg_url: str, tmp_path: Path) -> Iterator[Context]:
    ctx = Context.build(make_settings(tmp_path, database_url=pg_url))
    yield ctx
    ctx.close()


def declared(context: Context) -> list[tuple[str, str, Route | Mount]]:
    """(method, path, route) of every route the app serves (HEAD is GET's)."""
    found = []
    for route in create_app(context).routes:
        if isinstance(route, Mount):
            found.append(("GET", route.path, route))
        elif isinstance(route, Route):
            found += [(m, route.path, route) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


def test_every_route_of_the_app_is_in_the_permission_table(pg_context: Context) -> None:
    routes = declared(pg_context)
    assert len(routes) > 100
    missing = [(m, p) for m, p, _ in routes if (m, p) not in TABLE]
    assert missing == []
    stale = set(TABLE) - {(m, p) for m, p, _ in routes}
    assert stale == set(), "lines of the table no route has"


@dataclass(frozen=True)
class Caller:
    name: str
    headers: dict[str, str]
    role: str | None  # None: may do nothing (no or dead credentials)


def callers(context: Context) -> list[Caller]:
    """One user per role with a token as wide as the role, a configured token, nobody, and
    the credentials that must stop working: a disabled user's, an expired and a revoked
    token."""
    found = [Caller("config token", {"Authorization": f"Bearer {TOKEN}"}, "admin"),
             Caller("nobody", {}, None)]  # fmt: skip
    for index, role in enumerate(accounts.ROLES):
        user = accounts.create_user(context, role, PASSWORD, role)
        _, plain = accounts.create_token(context, user.id, "all", [accounts.SCOPES[index]], None)
        found.append(Caller(role, {"Authorization": f"Bearer {plain}"}, role))
    gone = accounts.create_user(context, "gone", PASSWORD, "admin")
    _, gone_token = accounts.create_token(context, gone.id, "t", ["admin"], None)
    accounts.update_user(context, "gone", disabled=True)
    admin = accounts.get_user(context, "admin")
    expired, expired_plain = accounts.create_token(context, admin.id, "old", ["admin"], None)
    with context.db.session() as session:
        session.execute(update(ApiToken).where(ApiToken.id == expired.id)
                        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))  # fmt: skip
    revoked, revoked_plain = accounts.create_token(context, admin.id, "revoked", ["admin"], None)
    accounts.revoke_token(context, None, revoked.id)
    for name, plain in (("disabled user", gone_token), ("expired token", expired_plain),
                        ("revoked token", revoked_plain)):  # fmt: skip
        found.append(Caller(name, {"Authorization": f"Bearer {plain}"}, None))
    return found


def concrete(path: str) -> list[tuple[str, dict[str, str]]]:
    """Paths to request for a declared one (each Scrapyd endpoint for its pattern)."""
    if "{name:scrapyd_endpoint}" in path:
        return [(path.replace("{name:scrapyd_endpoint}", name), {"name": name})
                for name in SCRAPYD_ACTIONS]  # fmt: skip
    filled = re.sub(r"{number(:int)?}", "1", path)
    filled = re.sub(r"{(id|message_id)}", str(uuid.uuid4()), filled)
    return [(re.sub(r"{[^}]+}", "x", filled), {})]


def test_every_api_and_scrapyd_route_answers_every_caller_as_the_table_says(
    pg_context: Context,
) -> None:
    app = create_app(pg_context)
    everyone = callers(pg_context)
    checked = 0
    with TestClient(app) as client:
        for method, declared_path, _ in declared(pg_context):
            if not (declared_path.startswith("/api") or "scrapyd" in declared_path
                    or declared_path.startswith(("/jobs", "/logs", "/items"))):  # fmt: skip
                continue
            for path, params in concrete(declared_path):
                action = action_of(method, declared_path, params)
                assert action is not None
                for caller in everyone:
                    answer = client.request(method, path, headers=caller.headers)
                    what = (method, path, caller.name, answer.status_code, answer.text[:200])
                    if action is Action.OPEN:
                        assert answer.status_code not in (401, 403), what
                    elif caller.role is None:
                        assert answer.status_code == 401, what
                    elif action in ROLE_ACTIONS[caller.role]:
                        assert answer.status_code not in (401, 403), what
                    else:
                        assert answer.status_code == 403, what
                        if path.startswith("/api"):
                            assert answer.json()["error"]["code"] == "forbidden", what
                    checked += 1
    assert checked > 700


def sign_in(client: TestClient, username: str) -> str:
    """Sign a browser in by password; the CSRF token of its session."""
    answer = client.post("/login", data={"username": username, "password": PASSWORD},
                         follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/account").text)
    assert found is not None
    return found.group(1)


def test_every_dashboard_route_answers_every_role_as_the_table_says(pg_context: Context) -> None:
    callers(pg_context)
    app = create_app(pg_context)
    for role in accounts.ROLES:
        with TestClient(app) as browser:
            csrf = sign_in(browser, role)
            for method, declared_path, _ in declared(pg_context):
                if declared_path.startswith(("/api", "/scrapyd", "/jobs", "/logs", "/items",
                                             "/{name")) or declared_path == "/logout":  # fmt: skip
                    continue
                for path, params in concrete(declared_path):
                    action = action_of(method, declared_path, params)
                    assert action is not None
                    answer = browser.request(method, path, data={"csrf": csrf},
                                             follow_redirects=False)  # fmt: skip
                    what = (method, path, role, answer.status_code)
                    if action is Action.OPEN or action in ROLE_ACTIONS[role]:
                        assert answer.status_code != 403, what
                        assert "/login" not in answer.headers.get("location", ""), what
                    else:
                        assert answer.status_code == 403, what
    with TestClient(app) as stranger:  # no session: every page but sign-in sends to it
        answer = stranger.get("/runs", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


def test_a_disabled_user_is_signed_out_on_the_next_request_and_their_tokens_stop(
    pg_context: Context,
) -> None:
    callers(pg_context)
    user = accounts.create_user(pg_context, "carol", PASSWORD, "operator")
    _, plain = accounts.create_token(pg_context, user.id, "ci", ["run"], None)
    with TestClient(create_app(pg_context)) as browser:
        sign_in(browser, "carol")
        assert browser.get("/runs", follow_redirects=False).status_code == 200
        assert browser.get("/api/me", headers={"Authorization": f"Bearer {plain}"}).json()[
            "name"] == "ci (carol)"  # fmt: skip
        basic = base64.b64encode(f"carol:{plain}".encode()).decode()
        scrapyd = {"Authorization": f"Basic {basic}"}
        assert browser.get("/listprojects.json", headers=scrapyd).json()["status"] == "ok"
        someone = base64.b64encode(f"mallory:{plain}".encode()).decode()  # not its owner
        assert browser.get("/listprojects.json", headers={"Authorization": f"Basic {someone}"}
                           ).status_code == 401  # fmt: skip
        accounts.update_user(pg_context, "carol", disabled=True)
        gone = browser.get("/runs", follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
        assert browser.get("/api/me", headers={"Authorization": f"Bearer {plain}"}
                           ).status_code == 401  # fmt: skip
        assert browser.get("/listprojects.json", headers=scrapyd).status_code == 401
