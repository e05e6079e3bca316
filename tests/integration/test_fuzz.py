"""SPEC §12: Schemathesis against /api/openapi.json finds no 5xx, on both databases.

Every operation of the published schema is called with inputs generated from it (valid and
invalid: GenerationMode positive and negative), through the whole ASGI app with a valid
token, which every case carries (no 401). Derandomised, so CI sees the same cases on every
run; `CRAWLHUB_FUZZ_EXAMPLES` raises the count per operation for a longer local run.

Generated path parameters name nothing that exists, so each operation is also called on real
objects (a spider with a version, its schedule, a run, an alert, a channel, each export
format): otherwise a handler would answer almost every case with its 404 before reading the
rest of the input.

(Schemathesis' own pytest plugin reads a private attribute pytest 9 no longer has, so the
operations are driven here with Hypothesis directly.)
"""

import os
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.openapi import from_asgi
from starlette.testclient import TestClient

from crawlhub.alerting import alerts
from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.data.formats import FORMATS
from crawlhub.messaging.keys import RUNS_QUEUE
from crawlhub.repo import workers
from crawlhub.services import accounts
from crawlhub.web import sse
from tests.conftest import TOKEN

EXAMPLES = int(os.environ.get("CRAWLHUB_FUZZ_EXAMPLES", "20"))
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_no_operation_answers_generated_input_with_a_server_error(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A log stream re-checks its run this often: the pinned run never started, so its
    # stream would otherwise hold each case for a whole second before it ends.
    monkeypatch.setattr(sse, "LIVE_BLOCK_MS", 10)
    app = create_app(context)
    client = TestClient(app, headers=AUTH)
    schema = from_asgi("/api/openapi.json", app, headers=AUTH)
    # Otherwise the bearer scheme is generated as an `Authorization` header parameter, and
    # negative mode drops or mangles it: the token we pass goes too, and most invalid cases
    # end at the 401 of the auth middleware instead of reaching validation and the handlers.
    schema.config.generation.update(with_security_parameters=False)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40  # every route, not an empty schema passing vacuously
    for operation in operations:
        pinned = existing_objects(operation, client, context)
        for mode in GenerationMode if can_be_invalid(operation) else [GenerationMode.POSITIVE]:
            strategies = [operation.as_strategy(mode, path_parameters=p) for p in pinned]

            @given(case=st.one_of(operation.as_strategy(mode), *strategies))
            @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def call(case: Case) -> None:
                response = case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
                if case.operation.label != "POST /api/login":  # its 401: a wrong password
                    assert response.status_code != 401, f"{case.operation.label}: no token sent"

            call()


def can_be_invalid(operation: APIOperation) -> bool:
    """Whether negative mode has anything to make invalid: any string is a valid path
    parameter, so only a query, headers, cookies or a body can be."""
    return bool(operation.query or operation.headers or operation.cookies or operation.body)


def existing_objects(
    operation: APIOperation, client: TestClient, context: Context
) -> list[dict[str, str]]:
    """Path parameters naming objects that exist, made afresh for each operation (cases of
    the one before may have renamed, disabled or deleted theirs); none without parameters.
    Its negative cases get the objects its positive ones left: they are invalid anyway."""
    names = {parameter.name for parameter in operation.path_parameters}
    if not names:
        return []
    if "fmt" in names:
        return [{"fmt": fmt} for fmt in FORMATS]
    if "name" in names:  # a queue; a dead letter's message_id stays generated
        return [{"name": RUNS_QUEUE}]
    collection = operation.path.split("/")[2]  # /api/<collection>/{ref or id}/...
    if operation.path.endswith("/test-run"):
        # A spider without a version: its test run answers 409 at once instead of streaming
        # a run that no worker here will start.
        collection = "bare"
    objects = make_objects(client, context)
    if names == {"ref", "number"}:  # a version of a project
        return [{"ref": objects["projects"], "number": "1"}]
    if names == {"ref", "user"}:  # a member of a project
        return [{"ref": objects["projects"], "user": objects["users"]}]
    (name,) = names
    return [{name: objects[collection]}]


def make_objects(client: TestClient, context: Context) -> dict[str, str]:
    """One object of each kind, by the collection of the API path that names it."""
    spider = post(client, "/api/spiders", json={"name": f"f{uuid.uuid4().hex[:8]}"})
    package = {"file": ("main.py", b"def run(params):\n    pass\n")}
    post(client, f"/api/spiders/{spider}/versions", files=package, key="number")
    bare = post(client, "/api/spiders", json={"name": f"f{uuid.uuid4().hex[:8]}"})
    schedule = post(client, f"/api/spiders/{spider}/schedules", json={"cron": "0 * * * *"})
    # An e-mail channel: its test send fails at once on the unset SMTP host, no network.
    channel = post(client, "/api/channels", json={"kind": "email", "target": "ops@example.com"})
    task = post(client, f"/api/spiders/{spider}/run", json={})
    # Cancelled while pending: its log stream ends after one look at the live log.
    assert client.post(f"/api/tasks/{task}/cancel").status_code == 200
    with context.db.session() as session:
        alert = alerts.raise_alert(
            session, context, f"fuzz-{uuid.uuid4().hex[:8]}", "error", "fuzz",
            task_id=uuid.UUID(task),
        )  # fmt: skip
    assert alert is not None  # a type of its own: not folded into an earlier alert
    node = f"fuzz-{uuid.uuid4().hex[:8]}:1"  # a worker's row, as its registration writes it
    with context.db.session() as session:
        workers.register(session, node, host="fuzz", pid=1, version="0", threads=1,
                         labels=["browser"], machine={"cpus": 1})  # fmt: skip
    project = client.get(f"/api/spiders/{spider}").json()["project_id"]
    user = post(client, "/api/users", key="username", json={
        "username": f"u{uuid.uuid4().hex[:8]}", "password": "a password!", "role": "viewer"})  # fmt: skip
    token, _ = accounts.create_token(context, accounts.get_user(context, user).id, "fuzz",
                                     ["read"], None)  # fmt: skip
    return {"spiders": spider, "bare": bare, "schedules": schedule, "channels": channel,
            "tasks": task, "alerts": str(alert), "projects": project, "users": user,
            "tokens": str(token.id), "nodes": node}  # fmt: skip


def post(client: TestClient, path: str, key: str = "id", **request: Any) -> str:
    """The `key` of what a POST created."""
    response = client.post(path, **request)
    assert response.status_code in (201, 202), response.text
    return str(response.json()[key])
