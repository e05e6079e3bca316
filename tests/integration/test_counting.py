"""List totals: exact for small lists, PostgreSQL's estimate for huge ones (flagged)."""

import json
import uuid

import pytest
from starlette.testclient import TestClient

from crawlhub.context import Context
from crawlhub.repo import pages
from crawlhub.repo.items import insert_items
from crawlhub.repo.models import Spider, Task


def seed(context: Context, tasks: int, items: int) -> uuid.UUID:
    with context.db.session() as session:
        spider = Spider.standalone(name="many", kind="python", entry="main:run")
        session.add(spider)
        session.flush()
        rows = [Task(spider_id=spider.id, trigger="manual", status="completed")
                for _ in range(tasks)]  # fmt: skip
        session.add_all(rows)
        session.flush()
        insert_items(session, spider.id, rows[0].id, 1,
                     [(json.dumps({"n": n}), {"n": n}, None) for n in range(items)])  # fmt: skip
        return spider.id


def test_small_lists_count_exactly(client: TestClient, context: Context) -> None:
    seed(context, tasks=7, items=9)
    tasks = client.get("/api/tasks", params={"page_size": 5}).json()
    assert (tasks["total"], tasks["total_exact"], tasks["total_pages"]) == (7, True, 2)
    items = client.get("/api/data", params={"spider_id": "many"}).json()
    assert (items["total"], items["total_exact"]) == (9, True)


def test_lists_over_the_cap_report_an_estimate_and_say_so(
    client: TestClient, context: Context, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "EXACT_COUNT_UP_TO", 5)
    seed(context, tasks=8, items=9)
    tasks = client.get("/api/tasks", params={"spider_id": "many", "status": "completed"}).json()
    items = client.get("/api/data", params={"spider_id": "many", "page_size": 2}).json()
    assert len(tasks["items"]) == 8 and len(items["items"]) == 2
    if database_url.startswith("sqlite"):  # SQLite always counts
        assert (tasks["total"], tasks["total_exact"]) == (8, True)
        assert (items["total"], items["total_exact"]) == (9, True)
    else:
        # The planner's guess for a fresh table, but never below what was counted (cap + 1).
        assert tasks["total_exact"] is False and tasks["total"] >= 6
        assert items["total_exact"] is False and items["total"] >= 6
        assert items["total_pages"] == (items["total"] + 1) // 2
    # The filter's own rows are what is listed and counted: another status has none.
    failed = client.get("/api/tasks", params={"status": "failed"}).json()
    assert (failed["total"], failed["total_exact"], failed["items"]) == (0, True, [])


def test_numbers_beyond_the_database_columns_are_422_not_500(client: TestClient) -> None:
    for path, params in (
        ("/api/tasks", {"page": 10**18}),
        ("/api/spiders", {"page": 1_000_001}),
        ("/api/data", {"page": 10**18}),
        ("/api/data", {"after_id": 2**63}),
        (f"/api/tasks/{uuid.uuid4()}/logs", {"after_seq": 2**31}),
        (f"/api/tasks/{uuid.uuid4()}/logs", {"attempt": 2**31}),
    ):
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
    assert client.get("/api/tasks", params={"page": 5_000}).json()["items"] == []
