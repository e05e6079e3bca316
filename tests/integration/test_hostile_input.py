"""Hostile input answers 4xx with the error envelope, never 500 (named regression cases of
the containment issue), on both databases."""

import json
import re
import uuid

import pytest
from starlette.testclient import TestClient

from tests.conftest import TOKEN

NESTED = '{"params": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}"


def post_json(client: TestClient, path: str, text: str) -> tuple[int, dict[str, object]]:
    response = client.post(path, content=text, headers={"Content-Type": "application/json"})
    return response.status_code, response.json()


def make_spider(client: TestClient) -> str:
    name = f"h{uuid.uuid4().hex[:8]}"
    assert client.post("/api/spiders", json={"name": name}).status_code == 201
    return name


@pytest.mark.parametrize(
    "body",
    [
        NESTED,
        '{"params": {"n": 1' + "0" * 5000 + "}}",
        '{"params": {"n": NaN}}',
        '{"params": {"n": -Infinity}}',
    ],
    ids=["nested-50000", "5000-digit-integer", "nan", "infinity"],
)
def test_json_the_api_cannot_hold_is_a_400(client: TestClient, body: str) -> None:
    status, answer = post_json(client, f"/api/spiders/{make_spider(client)}/run", body)
    assert status == 400
    assert answer["error"]["code"] == "bad_request"  # type: ignore[index]


@pytest.mark.parametrize("bad", ["a\u0000b", "\ud800"], ids=["nul", "lone-surrogate"])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/spiders", lambda bad: {"name": "x1", "params": {"k": bad}}),
        ("/api/spiders", lambda bad: {"name": "x2", "env": {"K": bad}}),
        ("/api/spiders", lambda bad: {"name": "x3", "dedup_keys": [bad]}),
        ("/api/spiders", lambda bad: {"name": "x4", "params": {bad: 1}}),
        ("/api/channels", lambda bad: {"kind": "webhook", "target": f"https://h/{bad}"}),
        ("/api/channels", lambda bad: {"kind": "email", "target": f"a{bad}@b.example"}),
        ("/api/channels", lambda bad: {"kind": "webhook", "target": "https://h/x",
                                       "secret": bad}),
    ],
    ids=["params", "env", "dedup-keys", "param-key", "target", "email", "secret"],
)  # fmt: skip
def test_nul_and_lone_surrogates_are_a_422_naming_where(
    client: TestClient, path: str, body: object, bad: str
) -> None:
    text = json.dumps(body(bad))  # type: ignore[operator]
    status, answer = post_json(client, path, text)
    assert status == 422, answer
    error = answer["error"]
    assert error["code"] == "invalid_input"  # type: ignore[index]
    assert error["message"].startswith("body.")  # type: ignore[index]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_times_outside_what_utc_can_hold_are_a_422(client: TestClient, moment: str) -> None:
    for params in ({"since": moment}, {"until": moment}):
        for path in ("/api/data", "/api/data/export/csv"):
            response = client.get(path, params=params)
            assert response.status_code == 422, (path, params, response.text)
    spider = make_spider(client)
    schedule = client.post(f"/api/spiders/{spider}/schedules", json={"cron": "* * * * *"})
    preview = client.get(f"/api/schedules/{schedule.json()['id']}/preview",
                         params={"after": moment})  # fmt: skip
    assert preview.status_code == 422, preview.text
    last = client.get(f"/api/schedules/{schedule.json()['id']}/preview",
                      params={"after": "9999-12-31T23:50:00Z", "n": 1000})  # fmt: skip
    assert last.status_code == 200  # the calendar ends: fewer fires, not a 500


def test_export_fields_with_a_nul_are_a_422_before_anything_is_sent(client: TestClient) -> None:
    response = client.get("/api/data/export/csv", params={"fields": "a,b\u0000c"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("webhook", "http://[::1"),
        ("slack", "http://host.example/a\r\nX-Injected: 1"),
        ("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=a b"),
        ("webhook", "http://127.0.0.1\\@hooks.example.com/"),
        ("email", "ops@example.com,victim@example.org"),
        ("email", "ops@example.com\r\nBcc: victim@example.org"),
    ],
    ids=["unclosed-ipv6", "crlf-header", "space", "backslash", "two-addresses", "crlf-email"],
)
def test_malformed_channel_targets_are_a_422_naming_the_field_on_create_and_patch(
    client: TestClient, kind: str, target: str
) -> None:
    created = client.post("/api/channels", json={"kind": kind, "target": target})
    good = "ops@example.com" if kind == "email" else "https://93.184.216.34/hook"
    channel = client.post("/api/channels", json={"kind": kind, "target": good})
    assert channel.status_code == 201, channel.text
    patched = client.patch(f"/api/channels/{channel.json()['id']}", json={"target": target})
    for response in (created, patched):
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_input"
        assert ["target"] in [detail["loc"] for detail in error["details"]], error
        assert "X-Injected" not in response.text and "victim" not in response.text
    stored = client.get("/api/channels").json()["items"]
    assert [c["target"] for c in stored] == [good]


@pytest.mark.parametrize("number", ["1e400", "-1e400"], ids=["1e400", "minus-1e400"])
def test_a_number_beyond_a_double_is_a_400_and_nothing_is_stored(
    client: TestClient, number: str
) -> None:
    """It parsed as infinity: PostgreSQL's jsonb refused it with a 500, SQLite stored a bare
    `Infinity`, which is not JSON."""
    spider = make_spider(client)
    params = f'"params": {{"n": {number}}}'
    for method, path, text in [
        ("POST", "/api/spiders", f'{{"name": "{make_spider(client)}x", {params}}}'),
        ("PATCH", f"/api/spiders/{spider}", f"{{{params}}}"),
        ("POST", f"/api/spiders/{spider}/schedules", f'{{"cron": "* * * * *", {params}}}'),
    ]:
        response = client.request(
            method, path, content=text, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["code"] == "bad_request"
    assert client.get(f"/api/spiders/{spider}").json()["params"] == {}
    assert client.get(f"/api/spiders/{spider}/schedules").json()["items"] == []


def test_a_content_length_of_thousands_of_digits_is_a_413(client: TestClient) -> None:
    """int() refuses over 4 300 digits: the body limit raised a 500 before reading a byte."""
    for length in ("9" * 5000, "0" * 5000 + "2"):
        response = client.post(
            "/api/spiders",
            content=b"{}",
            headers={"Content-Type": "application/json", "Content-Length": length},
        )
        expected = 413 if length.startswith("9") else 422  # 00…02 is two bytes: `{}`
        assert response.status_code == expected, response.text


@pytest.mark.parametrize("value", ["\u00b2", "9" * 23, "9" * 5000, "-1", "12x"],
                         ids=["superscript-two", "23-digits", "5000-digits", "negative", "junk"])  # fmt: skip
def test_a_last_event_id_the_stream_never_sent_is_ignored(client: TestClient, value: str) -> None:
    name = make_spider(client)
    task_id = uuid.uuid4()
    with client.stream("GET", f"/api/tasks/{task_id}/logs/stream",
                       headers={"Last-Event-ID": value.encode("latin-1")}) as response:  # fmt: skip
        assert response.status_code == 404  # the task, not the header, decides
    assert client.get(f"/api/spiders/{name}").status_code == 200


@pytest.mark.parametrize("value", ["\u00b2", "9" * 23, "9" * 5000],
                         ids=["superscript-two", "23-digits", "5000-digits"])  # fmt: skip
def test_dashboard_number_parameters_that_are_not_numbers_are_ignored(
    client: TestClient, value: str
) -> None:
    dashboard_sign_in(client)
    name = make_spider(client)
    files = {"file": ("main.py", b"def run(params):\n    return []\n")}
    assert client.post(f"/api/spiders/{name}/versions", files=files).status_code == 201
    task_id = client.post(f"/api/spiders/{name}/run", json={}).json()["id"]
    assert client.get(f"/spiders?page={value}").status_code == 200
    assert client.get(f"/data?after_id={value}").status_code == 200
    for query in ("attempt", "after_seq", "before_seq"):
        assert client.get(f"/runs/{task_id}?{query}={value}").status_code == 200
    assert client.post(f"/api/tasks/{task_id}/cancel").status_code == 200  # its stream ends
    assert client.get(f"/runs/{task_id}/log/stream?after_seq={value}").status_code == 200


@pytest.mark.parametrize(
    "params",
    ['{"n": NaN}', '{"n": 1e400}', '{"s": "a\\u0000b"}', '{"s": "\\ud800"}',
     "[" * 100_000 + "]" * 100_000],
    ids=["nan", "1e400", "nul", "lone-surrogate", "nested-100000"],
)  # fmt: skip
def test_dashboard_json_fields_the_api_would_refuse_are_shown_beside_the_field(
    client: TestClient, params: str
) -> None:
    csrf = dashboard_sign_in(client)
    name = make_spider(client)
    run = client.post(f"/spiders/{name}/run", data={"csrf": csrf, "params": params})
    assert run.status_code == 422, run.text[:300]
    settings = client.post(f"/spiders/{name}/settings", data={"csrf": csrf, "params": params})
    assert settings.status_code == 422, settings.text[:300]


def dashboard_sign_in(client: TestClient) -> str:
    response = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
    assert found is not None
    return found.group(1)
