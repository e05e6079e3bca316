"""Schedules over HTTP, and the ticker loop firing a real run end to end."""

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from crawlhub.repo.models import Schedule
from crawlhub.ticker import Ticker
from tests.integration.harness import running_hub


@pytest.fixture
def spider(client: TestClient) -> str:
    assert client.post("/api/spiders", json={"name": "books"}).status_code == 201
    return "books"


def create(client: TestClient, **body: object) -> dict[str, object]:
    response = client.post("/api/spiders/books/schedules", json={"cron": "0 * * * *", **body})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.usefixtures("spider")
def test_created_schedule_has_defaults_and_its_next_fire(client: TestClient) -> None:
    schedule = create(client)
    assert schedule["timezone"] == "UTC" and schedule["overlap"] == "forbid"
    assert schedule["catchup"] == "latest" and schedule["jitter_s"] == 0 and schedule["enabled"]
    next_fire = datetime.fromisoformat(str(schedule["next_fire_at"]))
    now = datetime.now(UTC)
    assert now < next_fire <= now + timedelta(hours=1)
    assert next_fire.minute == 0 and next_fire.second == 0
    listed = client.get("/api/spiders/books/schedules").json()
    assert [s["id"] for s in listed["items"]] == [schedule["id"]]


@pytest.mark.usefixtures("spider")
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"cron": "0 0 30 2 *"}, "never fires"),
        ({"cron": "@reboot"}, "@reboot"),
        ({"cron": "not a cron"}, ""),
        ({"cron": "* * * * * *"}, "5 fields"),
        ({"cron": "61 * * * *"}, ""),
        ({"cron": "0 * * * *", "timezone": "Mars/Base"}, "Mars/Base"),
        ({"cron": "0 * * * *", "overlap": "sometimes"}, ""),
        ({"cron": "0 * * * *", "catchup": "most"}, ""),
        ({"cron": "0 * * * *", "jitter_s": -1}, ""),
        ({"cron": "0 * * * *", "unknown": 1}, ""),
        ({"cron": ""}, ""),
    ],
)
def test_invalid_schedules_are_rejected_with_a_reason(
    client: TestClient, body: dict[str, object], reason: str
) -> None:
    response = client.post("/api/spiders/books/schedules", json=body)
    assert response.status_code == 422, response.text
    assert reason in response.text
    assert client.get("/api/spiders/books/schedules").json()["total"] == 0


@pytest.mark.usefixtures("spider")
def test_preview_lists_fire_times_in_utc_and_local_time(client: TestClient) -> None:
    schedule = create(client, cron="30 2 * * *", timezone="America/New_York")
    preview = client.get(
        f"/api/schedules/{schedule['id']}/preview", params={"n": 3, "after": "2026-03-07T00:00:00Z"}
    )
    assert preview.status_code == 200, preview.text
    items = preview.json()["items"]
    assert [i["utc"] for i in items] == [
        "2026-03-07T07:30:00Z",
        "2026-03-08T07:00:00Z",
        "2026-03-09T06:30:00Z",
    ]
    assert items[1]["local"] == "2026-03-08T03:00:00-04:00"
    assert (
        client.get(f"/api/schedules/{schedule['id']}/preview", params={"n": 1001}).status_code
        == 422
    )
    naive = client.get(
        f"/api/schedules/{schedule['id']}/preview", params={"after": "2026-03-07T00:00:00"}
    )
    assert naive.status_code == 422
    assert (
        client.get(
            f"/api/schedules/{schedule['id']}/preview", params={"after": "yesterday"}
        ).status_code
        == 422
    )


@pytest.mark.usefixtures("spider")
def test_patching_cron_or_zone_recomputes_the_next_fire(client: TestClient) -> None:
    schedule = create(client, cron="0 0 1 1 *")
    patched = client.patch(f"/api/schedules/{schedule['id']}", json={"cron": "*/5 * * * *"}).json()
    next_fire = datetime.fromisoformat(patched["next_fire_at"])
    assert next_fire - datetime.now(UTC) <= timedelta(minutes=5)
    assert (
        client.patch(f"/api/schedules/{schedule['id']}", json={"cron": "@reboot"}).status_code
        == 422
    )
    assert client.patch(f"/api/schedules/{schedule['id']}", json={"cron": None}).status_code == 422
    zoned = client.patch(
        f"/api/schedules/{schedule['id']}", json={"cron": "0 9 * * *", "timezone": "Asia/Tokyo"}
    )
    local = datetime.fromisoformat(zoned.json()["next_fire_at"]).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Tokyo")
    )
    assert (local.hour, local.minute) == (9, 0)


@pytest.mark.usefixtures("spider")
def test_resuming_a_paused_schedule_does_not_replay_missed_fires(
    client: TestClient, context: object
) -> None:
    schedule = create(client, cron="* * * * *")
    assert (
        client.patch(f"/api/schedules/{schedule['id']}", json={"enabled": False}).json()["enabled"]
        is False
    )
    with context.db.session() as session:  # type: ignore[attr-defined]
        session.execute(update(Schedule).values(next_fire_at=datetime.now(UTC) - timedelta(days=2)))
    resumed = client.patch(f"/api/schedules/{schedule['id']}", json={"enabled": True}).json()
    assert datetime.fromisoformat(resumed["next_fire_at"]) > datetime.now(UTC)


@pytest.mark.usefixtures("spider")
def test_delete_schedule_and_unknown_ids_are_404(client: TestClient) -> None:
    schedule = create(client)
    assert client.delete(f"/api/schedules/{schedule['id']}").status_code == 204
    for method in ("GET", "PATCH", "DELETE"):
        kwargs = {"json": {}} if method == "PATCH" else {}
        assert (
            client.request(method, f"/api/schedules/{schedule['id']}", **kwargs).status_code == 404
        )
    assert client.get("/api/schedules/nope").status_code == 404
    assert client.get(f"/api/schedules/{uuid.uuid4()}/preview").status_code == 404
    assert (
        client.post("/api/spiders/ghost/schedules", json={"cron": "0 * * * *"}).status_code == 404
    )


def test_ticker_loop_fires_a_due_schedule_within_a_second_and_the_run_completes(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with running_hub(pg_url, tmp_path, redis_url) as hub:
        hub.deploy("tick", {"main.py": "def run(p):\n    return [{'fired': True}]\n"})
        schedule = hub.client.post("/api/spiders/tick/schedules", json={"cron": "0 0 1 1 *"}).json()
        ticker = Ticker(hub.context)
        thread = threading.Thread(target=ticker.run)
        thread.start()
        try:
            due = datetime.now(UTC) + timedelta(seconds=1.5)
            with hub.context.db.session() as session:
                session.execute(update(Schedule).values(next_fire_at=due))
            hub.context.wake_ticker.set()
            deadline = time.monotonic() + 30
            tasks: list[dict[str, object]] = []
            while not tasks and time.monotonic() < deadline:
                tasks = hub.client.get("/api/tasks", params={"trigger": "schedule"}).json()["items"]
                time.sleep(0.05)
            assert tasks, "the schedule did not fire"
            task = hub.wait(str(tasks[0]["id"]))
        finally:
            ticker.stop()
            thread.join(timeout=10)
        assert not thread.is_alive()
        assert task["status"] == "completed" and task["items_count"] == 1
        assert task["schedule_id"] == schedule["id"] and task["scheduled_for"] is not None
        created = datetime.fromisoformat(str(task["created_at"]))
        assert created - due < timedelta(seconds=1), f"fired {created - due} late"


def test_sweep_resends_a_run_whose_message_redis_lost(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    import redis

    with running_hub(pg_url, tmp_path, redis_url, threads=1) as hub:
        hub.deploy("lost", {"main.py": "import time\ndef run(p):\n    time.sleep(float(p['s']))\n"})
        blocker = hub.run("lost", s=2)["id"]  # keeps the only worker thread busy
        hub.wait(blocker, {"running"})
        victim = hub.run("lost", s=0)["id"]
        redis.Redis.from_url(redis_url).flushdb()  # Redis loses the queued message
        with hub.context.db.session() as session:
            from crawlhub.repo.models import Task

            session.execute(
                update(Task).where(Task.id == uuid.UUID(victim)).values(
                    created_at=datetime.now(UTC) - timedelta(minutes=5)
                )
            )  # fmt: skip
        from crawlhub.housekeeping import steps as housekeeping

        housekeeping.sweep(hub.context)
        task = hub.wait(victim, timeout=30)
    assert task["status"] == "completed"
