"""Hostile input in the dashboard's newer forms (Quality rules, members, token projects,
nodes): a clear answer beside the field or a 4xx, never a 500, and nothing stored."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.services import accounts
from tests.conftest import TOKEN, make_settings
from tests.integration.test_access import PASSWORD, sign_in

HOSTILE_RULES = [
    "{not json", "[]", '{"coverage": {"price": "x"}}', '{"schema": {"type": 12}}',
    '{"coverage": {"\\u0000": 0.5}}', "1e999", '{"items": {"runs": 100000}}',
    "[" * 5000 + "]" * 5000, '{"on_fail": "rm -rf /"}',
]  # fmt: skip


@pytest.fixture
def browser(pg_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    context = Context.build(make_settings(tmp_path, database_url=pg_url))
    accounts.create_user(context, "ops", PASSWORD, "admin")
    with TestClient(create_app(context)) as client:
        admin = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post("/api/spiders", json={"name": "shop"}, headers=admin).status_code == 201
        yield client, sign_in(client, "ops")
    context.close()


@pytest.mark.parametrize("text", HOSTILE_RULES)
def test_rules_the_editor_cannot_take_are_shown_beside_it_and_not_saved(
    browser: tuple[TestClient, str], text: str
) -> None:
    client, csrf = browser
    answer = client.post("/spiders/shop/quality", data={"csrf": csrf, "rules": text})
    assert answer.status_code == 422, answer.text[:300]
    assert 'id="error-rules"' in answer.text
    rules = client.get("/api/spiders/shop/quality",
                       headers={"Authorization": f"Bearer {TOKEN}"}).json()  # fmt: skip
    assert rules["own"] is None


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/projects/shop/members", {"username": "no\x00body", "role": "viewer"}),
        ("/projects/shop/members", {"username": "ops", "role": "emperor"}),
        ("/projects/shop/members", {"username": "x" * 5000, "role": "viewer"}),
        ("/projects/shop/members/no%00body/remove", {}),
        ("/account/tokens", {"name": "t", "scope-read": "on", "projects": "shop,\x00"}),
        ("/account/tokens", {"name": "t", "scope-read": "on", "projects": "nowhere"}),
        ("/nodes/%00/drain", {}),
        ("/nodes/" + "n" * 3000 + "/resume", {}),
        ("/spiders/shop/quality/learn", {"run": "\x00"}),
        ("/spiders/shop/quality/learn", {"run": "0" * 200}),
    ],
)
def test_hostile_member_token_node_and_learn_forms_are_refused_not_a_500(
    browser: tuple[TestClient, str], path: str, data: dict[str, str]
) -> None:
    client, csrf = browser
    answer = client.post(path, data={"csrf": csrf, **data}, follow_redirects=False)
    assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text[:300])
    members = client.get("/api/projects/shop/members",
                         headers={"Authorization": f"Bearer {TOKEN}"}).json()  # fmt: skip
    assert members["items"] == []
