"""Spider registry over HTTP, on SQLite and on PostgreSQL."""

import uuid

from sqlalchemy import select
from starlette.testclient import TestClient

from crawlhub.context import Context
from crawlhub.repo.models import Spider, Task


def create(client: TestClient, **body: object) -> dict[str, object]:
    response = client.post("/api/spiders", json={"name": "books", **body})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_created_spider_has_the_spec_defaults(client: TestClient) -> None:
    spider = create(client)
    assert uuid.UUID(str(spider["id"]))
    assert spider["kind"] == "python"
    assert spider["entry"] == "main:run"
    assert spider["timeout_s"] == 3600
    assert spider["max_retries"] == 3
    assert spider["params"] == {} and spider["env"] == {}
    assert spider["dedup_keys"] is None
    assert spider["enabled"] is True
    assert spider["current_version"] is None
    assert str(spider["created_at"]).endswith("Z") or "+00:00" in str(spider["created_at"])


def test_scrapy_spider_entry_defaults_to_its_name(client: TestClient) -> None:
    assert create(client, kind="scrapy")["entry"] == "books"


def test_spider_is_found_by_id_and_by_name(client: TestClient) -> None:
    spider = create(client)
    by_id = client.get(f"/api/spiders/{spider['id']}").json()
    by_name = client.get("/api/spiders/books").json()
    assert by_id == by_name == spider


def test_duplicate_name_is_a_conflict(client: TestClient) -> None:
    create(client)
    response = client.post("/api/spiders", json={"name": "books"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


def test_names_that_are_not_slugs_are_rejected(client: TestClient) -> None:
    for name in ["Books", "-books", "", "a" * 65, "bo oks", "böoks", "books/x", "../x"]:
        response = client.post("/api/spiders", json={"name": name})
        assert response.status_code == 422, name
        assert response.json()["error"]["details"][0]["loc"] == ["name"]


def test_hostile_spider_fields_are_rejected_with_the_field_named(client: TestClient) -> None:
    cases = [
        ({"kind": "perl"}, "kind"),
        ({"entry": "main"}, ""),
        ({"entry": "os.system('x'):run"}, ""),
        ({"kind": "scrapy", "entry": "bad name"}, ""),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": "soon"}, "timeout_s"),
        ({"max_retries": -1}, "max_retries"),
        ({"env": {"CRAWLHUB_TASK_ID": "x"}}, "env"),
        ({"env": {"BAD-NAME": "x"}}, "env"),
        ({"env": {"A": 1}}, "env"),
        ({"params": [1, 2]}, "params"),
        ({"dedup_keys": []}, "dedup_keys"),
        ({"dedup_keys": ["url", "url"]}, "dedup_keys"),
        ({"retry_backoff_min_s": 50, "retry_backoff_max_s": 5}, ""),
        ({"unknown_field": 1}, "unknown_field"),
        ({"timeout_s": None}, ""),
    ]
    for extra, field in cases:
        response = client.post("/api/spiders", json={"name": "books", **extra})
        assert response.status_code == 422, (extra, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_input"
        locs = [".".join(map(str, d["loc"])) for d in error["details"]]
        assert any(loc.startswith(field) for loc in locs), (extra, locs)
    assert client.get("/api/spiders").json()["total"] == 0


def test_patch_changes_only_the_given_fields(client: TestClient) -> None:
    spider = create(client, params={"a": 1}, dedup_keys=["url"])
    patched = client.patch("/api/spiders/books", json={"timeout_s": 60, "dedup_keys": None})
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["timeout_s"] == 60
    assert body["dedup_keys"] is None
    assert body["params"] == {"a": 1}
    assert body["updated_at"] >= spider["updated_at"]


def test_patch_rename_onto_an_existing_name_is_a_conflict(client: TestClient) -> None:
    create(client)
    create(client, name="films")
    response = client.patch("/api/spiders/films", json={"name": "books"})
    assert response.status_code == 409
    assert client.get("/api/spiders/films").status_code == 200


def test_patch_backoff_is_checked_against_the_stored_values(client: TestClient) -> None:
    create(client, retry_backoff_min_s=10, retry_backoff_max_s=20)
    response = client.patch("/api/spiders/books", json={"retry_backoff_min_s": 30})
    assert response.status_code == 422
    assert client.get("/api/spiders/books").json()["retry_backoff_min_s"] == 10


def test_a_spiders_limits_are_its_own_over_the_defaults_and_refused_beside_their_field(
    client: TestClient,
) -> None:
    created = create(client, limits={"memory_mb": 4096, "processes": 64})
    assert created["limits"] == {"memory_mb": 4096, "processes": 64}
    for bad in ({"memory_mb": 63}, {"memory_mb": "lots"}, {"swap_mb": 1}, {"files": True},
                {"disk_mb": 10 * 1024 * 1024 + 1}, ["memory_mb"]):  # fmt: skip
        response = client.patch("/api/spiders/books", json={"limits": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["details"][0]["loc"][0] == "limits", bad
    assert client.get("/api/spiders/books").json()["limits"] == created["limits"]
    reset = client.patch("/api/spiders/books", json={"limits": None})
    assert reset.status_code == 200 and reset.json()["limits"] == {}


def test_unknown_spider_is_404_for_every_method(client: TestClient) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        kwargs = {"json": {}} if method == "PATCH" else {}
        response = client.request(method, "/api/spiders/nope", **kwargs)
        assert response.status_code == 404, method
        assert response.json()["error"]["code"] == "not_found"
    assert client.get(f"/api/spiders/{uuid.uuid4()}").status_code == 404


def test_list_paginates_and_filters(client: TestClient) -> None:
    for n in range(5):
        create(client, name=f"s{n}", kind="scrapy" if n % 2 else "python")
    page = client.get("/api/spiders", params={"page": 2, "page_size": 2}).json()
    assert page["total"] == 5 and page["page"] == 2 and page["page_size"] == 2
    assert page["total_pages"] == 3
    assert len(page["items"]) == 2
    names = [s["name"] for p in (1, 2, 3) for s in client.get(
        "/api/spiders", params={"page": p, "page_size": 2}).json()["items"]]  # fmt: skip
    assert sorted(names) == [f"s{n}" for n in range(5)]
    scrapy = client.get("/api/spiders", params={"kind": "scrapy"}).json()
    assert {s["name"] for s in scrapy["items"]} == {"s1", "s3"}
    assert client.get("/api/spiders", params={"page": 0}).status_code == 422
    assert client.get("/api/spiders", params={"page_size": 101}).status_code == 422
    assert client.get("/api/spiders", params={"bogus": 1}).status_code == 422


def test_delete_removes_the_spider_and_its_versions(client: TestClient) -> None:
    spider = create(client)
    files = {"file": ("main.py", b"def run(params):\n    return []\n")}
    assert client.post("/api/spiders/books/versions", files=files).status_code == 201
    assert client.delete("/api/spiders/books").status_code == 204
    assert client.get(f"/api/spiders/{spider['id']}").status_code == 404
    assert client.get(f"/api/spiders/{spider['id']}/versions").status_code == 404
    create(client)  # the name is free again
    assert client.get("/api/spiders/books/versions").json()["total"] == 0


def test_delete_with_an_active_task_is_refused(client: TestClient, context: Context) -> None:
    spider = create(client)
    with context.db.session() as session:
        session.add(
            Task(spider_id=uuid.UUID(str(spider["id"])), trigger="manual", status="running")
        )
    response = client.delete("/api/spiders/books")
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"active_tasks": 1}
    assert client.get("/api/spiders/books").status_code == 200


def test_env_values_are_write_only_and_a_hidden_value_sent_back_keeps_what_is_stored(
    client: TestClient, context: Context
) -> None:
    """A spider's env often holds credentials: the API and the dashboard show its names,
    never its values; a client that sends back what it read changes nothing."""
    spider = create(client, env={"API_KEY": "sk-live-123", "REGION": "eu"})
    assert spider["env"] == {"API_KEY": "********", "REGION": "********"}
    shown = client.get("/api/spiders/books")
    assert "sk-live-123" not in shown.text and 'eu"' not in shown.text
    changed = client.patch("/api/spiders/books",
                           json={"env": {**shown.json()["env"], "REGION": "us"}})  # fmt: skip
    assert changed.status_code == 200, changed.text
    with context.db.session() as session:
        stored = session.scalars(select(Spider.env).where(Spider.name == "books")).one()
    assert stored == {"API_KEY": "sk-live-123", "REGION": "us"}
    listed = client.get("/api/spiders").text
    assert "sk-live-123" not in listed
    renamed = client.patch("/api/spiders/books", json={"env": {"API_TOKEN": "********"}})
    assert renamed.status_code == 422 and "has none" in renamed.text  # never stored as a value
