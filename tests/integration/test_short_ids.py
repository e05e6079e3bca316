"""Short ids: the first characters of an id (the dashboard shows eight) name the object
wherever its full id does, when no other id starts with them."""

import uuid
from datetime import UTC, datetime

from starlette.testclient import TestClient

from crawlhub.context import Context
from crawlhub.repo.models import Alert, Schedule
from tests.integration.test_activity import add_spider, add_task


def test_a_unique_prefix_names_a_run_an_ambiguous_one_lists_the_matches(
    client: TestClient, context: Context
) -> None:
    spider = add_spider(context, "shorty")
    now = datetime.now(UTC)
    one = add_task(
        context, spider, "completed", now, id=uuid.UUID("3621d832-aaaa-4aaa-8aaa-000000000001")
    )
    add_task(
        context, spider, "completed", now, id=uuid.UUID("77aa1111-aaaa-4aaa-8aaa-000000000001")
    )
    add_task(
        context, spider, "completed", now, id=uuid.UUID("77aa2222-aaaa-4aaa-8aaa-000000000002")
    )
    for ref in ("3621d832", "3621D832", "3621d832-aaaa", "3621"):
        found = client.get(f"/api/tasks/{ref}")
        assert found.status_code == 200, (ref, found.text)
        assert found.json()["id"] == str(one)
    assert client.get("/api/tasks/3621d832/logs").status_code == 200
    ambiguous = client.get("/api/tasks/77aa")
    assert ambiguous.status_code == 400
    error = ambiguous.json()["error"]
    assert error["code"] == "ambiguous"
    assert "77aa1111-aaaa-4aaa-8aaa-000000000001" in error["message"]
    assert "77aa2222-aaaa-4aaa-8aaa-000000000002" in error["message"]
    assert client.get("/api/tasks/77aa2").json()["id"].startswith("77aa2222")
    for missing in ("ffff0000", "362", "zzzz1234", "3621d832" + "0" * 30):
        assert client.get(f"/api/tasks/{missing}").status_code == 404, missing


def test_spiders_schedules_and_alerts_take_short_ids_and_a_name_wins_over_a_prefix(
    client: TestClient, context: Context
) -> None:
    spider = add_spider(context, "beef")
    other = add_spider(context, "other")
    with context.db.session() as session:
        schedule = Schedule(spider_id=spider, cron="0 6 * * *", timezone="UTC",
                            next_fire_at=datetime.now(UTC))  # fmt: skip
        alert = Alert(type="task_failed", level="error", message="m", spider_id=spider)
        session.add_all([schedule, alert])
        session.flush()
        schedule_id, alert_id = schedule.id, alert.id
    assert client.get(f"/api/spiders/{str(other)[:8]}").json()["name"] == "other"
    assert client.get("/api/spiders/beef").json()["id"] == str(spider)  # its name, not an id
    assert client.get(f"/api/schedules/{str(schedule_id)[:8]}").json()["id"] == str(schedule_id)
    read = client.post(f"/api/alerts/{str(alert_id)[:8]}/read")
    assert read.status_code == 200, read.text
    assert read.json()["id"] == str(alert_id)
