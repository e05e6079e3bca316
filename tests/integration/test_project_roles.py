"""Roles per project: a member of one project meets another project's resources nowhere.

Generated from the application's route table: every route that names a resource is asked,
as a member of project `alpha` only, for project `beta`'s resource (by name, by id, by its
first characters) and must answer 404; every list and page that names no resource is read
and must not show anything of `beta`. Then what a member may do in its own project, as its
role there says, and a token limited to one project."""

import base64
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from crawlhub.alerting import alerts
from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.http.access import face_of
from crawlhub.repo.items import insert_items
from crawlhub.services import accounts
from crawlhub.web.permissions import SCRAPYD_ACTIONS, Action, action_of
from tests.conftest import TOKEN, make_settings
from tests.integration.test_access import declared, sign_in

PASSWORD = "correct horse battery"
SECRET = "beta-secret-marker"  # in beta's items, alert and run params


@pytest.fixture
def pg_context(pg_url: str, tmp_path: Path) -> Iterator[Context]:
    ctx = Context.build(make_settings(tmp_path, database_url=pg_url))
    yield ctx
    ctx.close()


@dataclass(frozen=True)
class Project:
    name: str
    id: str
    spider: str
    spider_id: str
    task: str
    schedule: str
    alert: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed(context: Context, client: TestClient, name: str, marker: str) -> Project:
    """A project with a spider, a version, a run (with items), a schedule and an alert."""
    admin = bearer(TOKEN)
    made = client.post("/api/projects", json={"name": name, "kind": "python"}, headers=admin)
    assert made.status_code == 201, made.text
    project_id = made.json()["id"]
    made = client.post("/api/spiders", json={"name": f"{name}-spider", "project": name},
                       headers=admin)  # fmt: skip
    assert made.status_code == 201, made.text
    spider = made.json()
    package = {"file": ("main.py", b"def run(params):\n    pass\n")}
    assert client.post(f"/api/spiders/{spider['id']}/versions", files=package,
                       headers=admin).status_code == 201  # fmt: skip
    task = client.post(f"/api/spiders/{spider['id']}/run", json={"params": {"m": marker}},
                       headers=admin).json()["id"]  # fmt: skip
    schedule = client.post(f"/api/spiders/{spider['id']}/schedules",
                           json={"cron": "0 * * * *"}, headers=admin).json()["id"]  # fmt: skip
    with context.db.session() as session:
        insert_items(session, uuid.UUID(spider["id"]), uuid.UUID(task), 1,
                     [(f'{{"m": "{marker}"}}', {"m": marker}, None)])  # fmt: skip
        alert = alerts.raise_alert(session, context, f"t-{name}", "error", f"{marker} alert",
                                   task_id=uuid.UUID(task))  # fmt: skip
    assert alert is not None
    return Project(name, project_id, spider["name"], spider["id"], task, schedule, str(alert))


def fill(path: str, beta: Project) -> list[str]:
    """Paths that name beta's resource for a declared path: by name, id and short id."""
    if "{name:scrapyd_endpoint}" in path or "{message_id}" in path or "/users" in path:
        return []  # Scrapyd endpoints take parameters (below); dead letters, users: no project
    if "/tokens/" in path or "/channels/" in path or "{name}" in path or path == "/static":
        return []
    if not re.search(r"{[^}]+}", path):
        return []
    names: dict[str, list[str]] = {
        "spider": [beta.spider], "job": [beta.task], "number": ["1"], "user": ["member"],
        "fmt": ["jsonl"], "project": [beta.name],
    }  # fmt: skip
    if path.startswith(("/api/projects/", "/projects/")):
        names["ref"] = [beta.name, beta.id, beta.id[:8]]
    elif path.startswith(("/api/spiders/", "/spiders/")):
        names["ref"] = [beta.spider, beta.spider_id, beta.spider_id[:8]]
    key = next((k for k in ("tasks", "runs", "schedules", "alerts") if f"/{k}/" in path), None)
    if key is not None:
        ident = {"tasks": beta.task, "runs": beta.task, "schedules": beta.schedule,
                 "alerts": beta.alert}[key]  # fmt: skip
        names["id"] = [ident, ident[:8]]
    if "{fmt}" in path or not any(f"{{{k}}}" in path for k in ("ref", "id", "project")):
        return []  # exports are asked with parameters (below)
    found = [path]
    for param, values in names.items():
        pattern = "{" + param + "(:[a-z]+)?}"
        found = [re.sub(pattern, value, p) for p in found for value in values]
    return [p for p in found if "{" not in p]


# Valid bodies, so that what answers is the lookup, not the validation.
BODIES = {
    ("PATCH", "/api/projects/{ref}"): {"name": "renamed"},
    ("PATCH", "/api/spiders/{ref}"): {"enabled": False},
    ("POST", "/api/spiders/{ref}/run"): {}, ("POST", "/api/spiders/{ref}/test-run"): {},
    ("POST", "/api/spiders/{ref}/schedules"): {"cron": "0 * * * *"},
    ("PATCH", "/api/schedules/{id}"): {"enabled": False},
    ("PUT", "/api/projects/{ref}/members/{user}"): {"role": "viewer"},
    ("PUT", "/api/spiders/{ref}/quality"): {"rules": None},
    ("POST", "/api/spiders/{ref}/quality/learn"): {"task_id": "x"},
}  # fmt: skip


def leaks(text: str, beta: Project) -> list[str]:
    marks = (SECRET, beta.id, beta.spider_id, beta.task, beta.schedule, beta.alert, beta.spider)
    return [mark for mark in marks if mark in text]


def test_a_member_of_one_project_meets_the_other_projects_resources_nowhere(
    pg_context: Context,
) -> None:
    app = create_app(pg_context)
    member = accounts.create_user(pg_context, "member", PASSWORD, "none")
    with TestClient(app) as client:
        alpha = seed(pg_context, client, "alpha", "alpha-marker")
        beta = seed(pg_context, client, "beta", SECRET)
        accounts.set_member(pg_context, alpha.name, "member", "admin")
        _, plain = accounts.create_token(pg_context, member.id, "all", ["admin"], None)
        headers = bearer(plain)
        me = client.get("/api/me", headers=headers).json()
        assert me["role"] == "none" and me["projects"] == {alpha.id: "admin"}
        checked = 0
        # Every route naming a resource: beta's is not found, whatever the action.
        for method, declared_path, _ in declared(pg_context):
            paths = fill(declared_path, beta)
            if not paths or action_of(method, declared_path, {}) in (Action.OPEN,
                                                                     Action.INSTANCE):  # fmt: skip
                continue
            for path in paths:
                ui = face_of(path) == "ui"
                upload = method == "POST" and path.endswith("/versions")
                files = {"file": ("main.py", b"def run(params):\n    pass\n")} if upload else None
                if ui:
                    client.cookies.clear()
                    csrf = sign_in(client, "member")
                    answer = client.request(method, path, data={"csrf": csrf}, files=files,
                                            follow_redirects=False)  # fmt: skip
                else:
                    answer = client.request(method, path, headers=headers, files=files,
                                            json=BODIES.get((method, declared_path)))  # fmt: skip
                what = (method, path, answer.status_code, answer.text[:300])
                assert answer.status_code == 404, what
                echoed = [mark for mark in leaks(answer.text, beta) if mark not in path]
                assert echoed == [], what  # the 404 names what was asked, nothing more
                checked += 1
        assert checked > 60
        # Every list, page and export: nothing of beta, alpha's there.
        client.cookies.clear()
        sign_in(client, "member")
        reads = ["/api/projects", "/api/spiders", "/api/tasks", "/api/alerts",
                 "/api/alerts/unread-count", "/api/data", "/api/data/export/jsonl",
                 "/api/data/export/csv", "/api/queues/crawlhub.runs/dead-letters",
                 "/", "/overview/running", "/spiders", "/projects", "/runs", "/schedules",
                 "/data", "/alerts", "/queues", "/export/jsonl", "/api/me"]  # fmt: skip
        for path in reads:
            answer = client.get(path, headers=headers if path.startswith("/api") else {})
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            assert leaks(answer.text, beta) == [], (path, leaks(answer.text, beta))
        assert alpha.spider in client.get("/api/spiders", headers=headers).text
        assert "alpha-marker" in client.get("/api/data/export/jsonl", headers=headers).text
        for what in ("spider_id", "task_id"):
            ref = beta.spider if what == "spider_id" else beta.task
            for path in ("/api/data", "/api/data/export/jsonl"):
                answer = client.get(path, params={what: ref}, headers=headers)
                assert answer.status_code == 404, (path, what, answer.text)
        # The Scrapyd API: beta is not a project there.
        basic = base64.b64encode(f"member:{plain}".encode()).decode()
        scrapyd = {"Authorization": f"Basic {basic}"}
        assert client.get("/listprojects.json", headers=scrapyd).json()["projects"] == ["alpha"]
        for endpoint in SCRAPYD_ACTIONS:
            params = {"project": beta.name, "spider": beta.spider, "job": beta.task}
            answer = client.post(f"/{endpoint}.json", data=params, headers=scrapyd)
            assert leaks(answer.text, beta) == [], (endpoint, answer.text)
            if endpoint not in ("daemonstatus", "listprojects", "listjobs"):
                assert answer.json()["status"] == "error", (endpoint, answer.text)
        jobs = client.get("/listjobs.json", headers=scrapyd).json()
        assert beta.task not in str(jobs) and alpha.task in str(jobs)
        for page in ("/jobs", "/logs/", "/items/"):
            assert leaks(client.get(page, headers=scrapyd).text, beta) == [], page


def test_a_members_role_on_its_project_decides_what_it_may_do_there(
    pg_context: Context,
) -> None:
    app = create_app(pg_context)
    with TestClient(app) as client:
        alpha = seed(pg_context, client, "alpha", "alpha-marker")
        beta = seed(pg_context, client, "beta", SECRET)
        # A viewer everywhere, an operator on alpha.
        dora = accounts.create_user(pg_context, "dora", PASSWORD, "viewer")
        accounts.set_member(pg_context, "alpha", "dora", "operator")
        _, plain = accounts.create_token(pg_context, dora.id, "ci", ["run"], None)
        headers = bearer(plain)
        # The dashboard's run list offers Cancel where dora may cancel only.
        sign_in(client, "dora")
        listed = client.get("/runs").text
        assert f"Cancel run {alpha.task}" in listed and beta.task in listed
        assert f"Cancel run {beta.task}" not in listed
        client.cookies.clear()
        # Reads everything; runs alpha's spider, not beta's; deploys nothing.
        assert client.get(f"/api/spiders/{beta.spider}", headers=headers).status_code == 200
        assert client.post(f"/api/spiders/{alpha.spider}/run", json={},
                           headers=headers).status_code == 202  # fmt: skip
        refused = client.post(f"/api/spiders/{beta.spider}/run", json={}, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
        assert client.post(f"/api/tasks/{beta.task}/cancel", headers=headers).status_code == 403
        assert client.post(f"/api/tasks/{alpha.task}/cancel", headers=headers).status_code == 200
        package = {"file": ("main.py", b"def run(params):\n    pass\n")}
        assert client.post(f"/api/spiders/{alpha.spider}/versions", files=package,
                           headers=headers).status_code == 403  # fmt: skip
        # "Mark all read" marks the alerts of the projects where dora may.
        assert client.post("/api/alerts/read-all", headers=headers).status_code == 200
        read = {a["id"]: a["is_read"] for a in client.get(
            "/api/alerts", headers=bearer(TOKEN)).json()["items"]}  # fmt: skip
        assert read[alpha.alert] is True and read[beta.alert] is False
        # A scope wider than dora's widest role is refused.
        with pytest.raises(accounts.BadRequest):
            accounts.create_token(pg_context, dora.id, "wide", ["deploy"], None)
        # Made alpha's admin: deletes there and manages its members, not beta's.
        accounts.set_member(pg_context, "alpha", "dora", "admin")
        _, admin_plain = accounts.create_token(pg_context, dora.id, "adm", ["admin"], None)
        admin = bearer(admin_plain)
        put = client.put("/api/projects/alpha/members/member-less", json={"role": "viewer"},
                         headers=admin)  # fmt: skip
        assert put.status_code == 404  # no such user
        accounts.create_user(pg_context, "erin", PASSWORD, "none")
        put = client.put("/api/projects/alpha/members/erin", json={"role": "viewer"},
                         headers=admin)  # fmt: skip
        assert put.status_code == 200 and put.json()["role"] == "viewer", put.text
        assert [m["username"] for m in client.get("/api/projects/alpha/members",
                                                   headers=admin).json()["items"]] == [
            "dora", "erin"]  # fmt: skip
        assert client.put("/api/projects/beta/members/erin", json={"role": "viewer"},
                          headers=admin).status_code == 403  # fmt: skip
        assert client.delete("/api/projects/alpha/members/erin", headers=admin).status_code == 204
        assert client.delete(f"/api/spiders/{beta.spider}", headers=admin).status_code == 403
        # No project is made by someone without a role on every project.
        made = client.post("/api/projects", json={"name": "gamma", "kind": "python"},
                           headers=admin)  # fmt: skip
        assert made.status_code == 403, made.text
        events = client.get("/api/audit", params={"action": "member.set"},
                            headers=bearer(TOKEN)).json()["items"]  # fmt: skip
        assert any(e["resource"] == "project:alpha/erin" and e["actor"] == "adm (dora)"
                   for e in events)  # fmt: skip


def test_a_token_limited_to_a_project_reaches_no_other(pg_context: Context) -> None:
    app = create_app(pg_context)
    with TestClient(app) as client:
        alpha = seed(pg_context, client, "alpha", "alpha-marker")
        beta = seed(pg_context, client, "beta", SECRET)
        dev = accounts.create_user(pg_context, "dev", PASSWORD, "developer")
        _, plain = accounts.create_token(pg_context, dev.id, "alpha-ci", ["deploy"], None,
                                         projects=["alpha"])  # fmt: skip
        headers = bearer(plain)
        assert client.get(f"/api/spiders/{beta.spider}", headers=headers).status_code == 404
        assert client.get(f"/api/tasks/{beta.task}", headers=headers).status_code == 404
        assert leaks(client.get("/api/tasks", headers=headers).text, beta) == []
        assert alpha.task in client.get("/api/tasks", headers=headers).text
        package = {"file": ("main.py", b"def run(params):\n    pass\n")}
        assert client.post(f"/api/spiders/{alpha.spider}/versions", files=package,
                           headers=headers).status_code == 201  # fmt: skip
        listed = client.get("/api/tokens", headers=headers).json()["items"]
        assert listed[0]["project_ids"] == [alpha.id]
        # Made over the API by project name; an unknown one is a 404.
        made = client.post("/api/tokens", json={"name": "t2", "scopes": ["read"],
                                                "projects": ["nope"]}, headers=headers)  # fmt: skip
        assert made.status_code == 404
