"""Signing in by password: throttled per account name and per address, locked after ten
failures, and nothing tells an account that exists from one that does not."""

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.errors import Conflict
from crawlhub.housekeeping import retention
from crawlhub.repo.models import AuditEvent, SignInFailures
from crawlhub.services import accounts
from tests.conftest import TOKEN, make_settings

PASSWORD = "correct horse battery"


@pytest.fixture
def pg_context(pg_url: str, tmp_path: Path) -> Iterator[Context]:
    ctx = Context.build(make_settings(tmp_path, database_url=pg_url))
    accounts.create_user(ctx, "alice", PASSWORD, "operator")
    yield ctx
    ctx.close()


def attempts(context: Context, username: str, address: str, count: int) -> list[tuple[int, str]]:
    """`count` wrong passwords for a name from an address: each answer's status and message
    (numbers of seconds written as N), through the API's sign-in."""
    answers = []
    with TestClient(create_app(context), client=(address, 1234)) as client:
        for _ in range(count):
            answer = client.post("/api/login", json={"username": username,
                                                     "password": "wrong password!"})  # fmt: skip
            message = re.sub(r"\d+", "N", answer.json()["error"]["message"])
            answers.append((answer.status_code, message))
    return answers


def test_a_hundred_wrong_passwords_lock_the_account_and_tell_no_name_from_another(
    pg_context: Context,
) -> None:
    known = attempts(pg_context, "alice", "10.0.0.1", 100)
    unknown = attempts(pg_context, "mallory", "10.0.0.2", 100)
    assert known == unknown  # the same answers, in the same order
    assert {status for status, _ in known} == {401}
    assert known[0] == (401, "wrong user name or password")
    assert known[-1] == (401, "too many failed sign-ins: try again in N s")
    with TestClient(create_app(pg_context), client=("10.0.0.3", 1)) as client:
        locked = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
        assert locked.status_code == 401 and "try again in" in locked.text  # locked: 15 min
        wait = int(re.findall(r"\d+", locked.json()["error"]["message"])[0])
        assert 800 < wait <= 901
        other = client.post("/api/login", json={"username": "bob", "password": PASSWORD})
        assert other.json()["error"]["message"] == "wrong user name or password"
    events = [e.action for e in accounts.audit_events(pg_context, actor=None, action=None,
                                                      resource="user:alice", before_id=None,
                                                      limit=500)]  # fmt: skip
    assert "sign_in.locked" in events and events.count("sign_in.failed") >= 3


def test_an_unknown_name_costs_about_the_time_of_a_wrong_password(pg_context: Context) -> None:
    def took(username: str, address: str) -> float:
        started = time.perf_counter()
        attempts(pg_context, username, address, 2)  # before any backoff: two checks
        return time.perf_counter() - started

    for n in range(3):
        accounts.create_user(pg_context, f"known{n}", PASSWORD, "viewer")
    took("someone", "10.1.0.9")  # warm up
    known = min(took(f"known{n}", f"10.1.0.{n}") for n in range(3))
    unknown = min(took(f"nobody{n}", f"10.2.0.{n}") for n in range(3))
    assert 0.5 < known / unknown < 2, (known, unknown)


def test_an_address_is_locked_after_fifty_failures_whatever_the_names(
    pg_context: Context,
) -> None:
    for n in range(17):  # three names' worth each, under their own backoff
        attempts(pg_context, f"name{n}", "10.9.9.9", 3)
    with TestClient(create_app(pg_context), client=("10.9.9.9", 1)) as client:
        answer = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
        assert answer.status_code == 401 and "try again in" in answer.text
    with TestClient(create_app(pg_context), client=("10.9.9.8", 1)) as client:
        answer = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
        assert answer.status_code == 201, answer.text
        token = answer.json()["token"]
        me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert (me["name"], me["role"], me["scopes"]) == ("cli (alice)", "operator", ["run"])
        assert client.get("/api/me", headers={"Authorization": f"Bearer {TOKEN}"}).json()[
            "kind"] == "config"  # fmt: skip


def test_personal_tokens_are_shown_once_no_wider_than_the_role_and_revocable(
    pg_context: Context,
) -> None:
    with TestClient(create_app(pg_context), client=("10.3.0.1", 1)) as client:
        signed = client.post("/api/login", json={"username": "alice", "password": PASSWORD,
                                                 "token_name": "laptop"})  # fmt: skip
        assert signed.status_code == 201, signed.text
        alice = {"Authorization": f"Bearer {signed.json()['token']}"}
        wider = client.post("/api/tokens", headers=alice, json={"name": "ci",
                                                                "scopes": ["deploy"]})  # fmt: skip
        assert wider.status_code == 400 and "wider than alice's role" in wider.text
        past = client.post("/api/tokens", headers=alice, json={
            "name": "old", "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"})  # fmt: skip
        assert past.status_code == 400
        made = client.post("/api/tokens", headers=alice, json={"name": "ci", "scopes": ["read"]})
        assert made.status_code == 201 and made.json()["token"].startswith("chp_")
        ci = {"Authorization": f"Bearer {made.json()['token']}"}
        assert client.get("/api/tasks", headers=ci).status_code == 200
        refused = client.post("/api/spiders/x/run", headers=ci, json={})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["message"] == (
            "ci (alice) may not run here (role operator, scopes read)"
        )
        listed = {t["name"]: t for t in client.get("/api/tokens", headers=alice).json()["items"]}
        assert set(listed) == {"laptop", "ci"} and "token" not in listed["ci"]
        assert listed["ci"]["last_used_at"] is not None and listed["ci"]["hint"].startswith("chp_")
        revoked = client.delete(f"/api/tokens/{listed['ci']['id']}", headers=alice)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert client.get("/api/tasks", headers=ci).status_code == 401
        assert client.get("/api/users", headers=alice).status_code == 403  # admins only
        actions = [e["action"] for e in client.get(
            "/api/audit", headers={"Authorization": f"Bearer {TOKEN}"}).json()["items"]]  # fmt: skip
        assert actions[:3] == ["token.revoke", "token.create", "token.create"]


def test_the_account_page_changes_the_password_and_makes_and_revokes_tokens(
    pg_context: Context,
) -> None:
    with TestClient(create_app(pg_context), client=("10.4.0.1", 1)) as browser:
        signed = browser.post("/login", data={"username": "alice", "password": PASSWORD},
                              follow_redirects=False)  # fmt: skip
        assert signed.status_code == 303
        page = browser.get("/account").text
        assert "alice</strong>, role <strong>operator" in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        made = browser.post("/account/tokens", data={"csrf": csrf, "name": "ci",
                                                     "scope-read": "on", "days": "30"})  # fmt: skip
        token = re.search(r'<code id="new-token">(chp_[^<]+)</code>', made.text)
        assert token is not None and "Copy it now" in made.text
        assert token.group(1) not in browser.get("/account").text  # shown once
        ci = {"Authorization": f"Bearer {token.group(1)}"}
        assert browser.get("/api/me", headers=ci).json()["scopes"] == ["read"]
        [listed] = accounts.list_tokens(pg_context, accounts.get_user(pg_context, "alice").id)
        browser.post(f"/account/tokens/{listed.id}/revoke", data={"csrf": csrf})
        assert browser.get("/api/me", headers=ci).status_code == 401
        changed = browser.post("/account/password", data={
            "csrf": csrf, "current": PASSWORD, "new": "another long one", "again":
            "another long one"}, follow_redirects=False)  # fmt: skip
        assert changed.status_code == 303
        assert browser.get("/runs", follow_redirects=False).status_code == 303  # signed out
    with TestClient(create_app(pg_context), client=("10.4.0.2", 1)) as browser:
        again = browser.post("/login", data={"username": "alice", "password": "another long one"},
                             follow_redirects=False)  # fmt: skip
        assert again.status_code == 303


def test_failure_counts_and_audit_events_are_forgotten_in_time(pg_context: Context) -> None:
    attempts(pg_context, "someone", "10.5.0.1", 2)
    with pg_context.db.read() as session:
        assert session.scalar(select(func.count()).select_from(SignInFailures)) == 2
    later = datetime.now(UTC) + timedelta(days=400)  # past the hour and the 365 days
    retention.expire_history(pg_context.db, pg_context.settings, later)
    with pg_context.db.read() as session:
        assert session.scalar(select(func.count()).select_from(SignInFailures)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_the_last_enabled_admin_cannot_be_disabled_or_demoted(pg_context: Context) -> None:
    accounts.create_user(pg_context, "root", PASSWORD, "admin")
    for change in ({"disabled": True}, {"role": "developer"}):
        with pytest.raises(Conflict, match="last enabled admin"):
            accounts.update_user(pg_context, "root", **change)  # type: ignore[arg-type]
    accounts.create_user(pg_context, "second", PASSWORD, "admin")
    assert accounts.update_user(pg_context, "root", disabled=True).disabled
    with pytest.raises(Conflict):
        accounts.update_user(pg_context, "second", role="viewer")
