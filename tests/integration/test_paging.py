"""Paging: pages by number end at row 100 000 (422 naming the keyset cursor past it), and
GET /api/tasks reads on by keyset (`before` / `next_before`), as the dashboard's runs do."""

import html
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.repo.models import Spider, Task
from crawlhub.web.schemas.common import MAX_OFFSET_ROWS
from tests.conftest import TOKEN

MOMENT = datetime(2026, 3, 8, 12, 0, 0, 123456, tzinfo=UTC)


def seed(context: Context, per_moment: list[int], status: str = "completed") -> list[Task]:
    """Tasks of one spider, `n` of them sharing each moment (one second apart), newest
    first as the lists order them: created_at, then id, descending."""
    with context.db.session() as session:
        spider = session.query(Spider).filter_by(name="paged").one_or_none()
        if spider is None:
            spider = Spider.standalone(name="paged", kind="python", entry="main:run")
            session.add(spider)
            session.flush()
        rows = [
            Task(spider_id=spider.id, trigger="manual", status=status,
                 created_at=MOMENT + timedelta(seconds=second))
            for second, n in enumerate(per_moment)
            for _ in range(n)
        ]  # fmt: skip
        session.add_all(rows)
        session.flush()
        order = sorted(rows, key=lambda t: (t.created_at, t.id), reverse=True)
        session.expunge_all()
        return order


def walk(client: TestClient, **params: object) -> tuple[list[str], int]:
    """Every task id a keyset walk reads, and how many requests it took."""
    ids: list[str] = []
    requests = 0
    before: str | None = None
    while True:
        query = {**params, **({"before": before} if before else {})}
        response = client.get("/api/tasks", params=query)
        requests += 1
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [item["id"] for item in body["items"]]
        if before is not None:
            assert (body["total"], body["page"], body["total_pages"]) == (None, None, None)
        before = body["next_before"]
        if before is None:
            return ids, requests
        assert requests < 100, "the walk does not end"


@pytest.mark.parametrize(
    ("path", "params", "hint"),
    [
        ("/api/tasks", {"page": 1001, "page_size": 100}, "`before`"),
        ("/api/data", {"page": 101, "page_size": 1000}, "`after_id`"),
        ("/api/spiders", {"page": 1001, "page_size": 100}, "filters"),
    ],
)
def test_a_page_by_number_past_row_100000_is_422_pointing_to_keyset_paging(
    client: TestClient, path: str, params: dict[str, int], hint: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "page_too_deep"
    assert str(MAX_OFFSET_ROWS) in error["message"] and hint in error["message"]
    assert error["details"]["max_rows"] == MAX_OFFSET_ROWS


def test_the_deepest_page_by_number_still_answers(client: TestClient) -> None:
    for path, params in (
        ("/api/tasks", {"page": 1000, "page_size": 100}),
        ("/api/data", {"page": 100, "page_size": 1000}),
        ("/api/data", {"page": 101, "page_size": 1000, "after_id": 0}),  # page plays no part
    ):
        response = client.get(path, params=params)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["items"] == []


def test_keyset_walk_returns_every_task_once_in_order_despite_equal_timestamps(
    client: TestClient, context: Context
) -> None:
    expected = [str(t.id) for t in seed(context, [7, 1, 9, 4])]
    ids, requests = walk(client, page_size=4)
    assert ids == expected
    assert requests == 6  # 21 tasks by 4: the last page knows it is the last


def test_keyset_walk_keeps_its_filters(client: TestClient, context: Context) -> None:
    done = [str(t.id) for t in seed(context, [3, 5])]
    seed(context, [4, 2], status="failed")
    ids, _ = walk(client, page_size=3, status="completed", spider_id="paged")
    assert ids == done


def test_a_page_by_number_leads_on_by_keyset(client: TestClient, context: Context) -> None:
    expected = [str(t.id) for t in seed(context, [6, 6])]
    first = client.get("/api/tasks", params={"page_size": 5}).json()
    assert (first["total"], first["page"], first["total_pages"]) == (12, 1, 3)
    rest, _ = walk(client, page_size=5, before=first["next_before"])
    assert [t["id"] for t in first["items"]] + rest == expected
    last = client.get("/api/tasks", params={"page_size": 5, "page": 3}).json()
    assert len(last["items"]) == 2 and last["next_before"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"before": "yesterday"},
        {"before": f"2026-03-08T12:00:00,{uuid.uuid4()}"},  # no UTC offset
        {"before": "2026-03-08T12:00:00Z,not-a-uuid"},
        {"before": f"2026-03-08T12:00:00Z,{uuid.uuid4()}", "page": 2},
    ],
)
def test_a_bad_cursor_or_a_cursor_with_a_page_is_422(
    client: TestClient, params: dict[str, object]
) -> None:
    response = client.get("/api/tasks", params=params)
    assert response.status_code == 422, response.text
    assert "error" in response.json()


def test_dashboard_runs_list_pages_through_every_run_once(context: Context) -> None:
    expected = [str(t.id) for t in seed(context, [30, 1, 40, 50])]
    browser = TestClient(create_app(context))
    assert browser.post("/login", data={"token": TOKEN}, follow_redirects=False).is_redirect
    seen: list[str] = []
    url: str | None = "/runs"
    while url is not None:
        page = browser.get(url)
        assert page.status_code == 200
        seen += re.findall(r'<td><a href="/runs/([0-9a-f-]{36})">', page.text)
        older = re.search(r'<a href="(/runs\?[^"]+)">Older runs</a>', page.text)
        url = html.unescape(older.group(1)) if older else None
    assert seen == expected
