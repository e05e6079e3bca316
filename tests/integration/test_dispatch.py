"""The dispatcher on PostgreSQL, with nodes registered as workers register: limits per spider
and per project hold with 200 queued runs, a free slot goes to the project with the fewest
runs under way (then priority, then age), labels and full nodes say why a run waits, and the
FIFO order (`CRAWLHUB_DISPATCH_ORDER=fifo`) serves the oldest. Runs start and end here as a
worker's claim and record make them (real processes: test_nodes.py)."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.housekeeping import steps as housekeeping
from crawlhub.repo import tasks as task_repo
from crawlhub.repo import workers as worker_repo
from crawlhub.repo.models import Task
from crawlhub.scheduling import firing
from crawlhub.services import dispatch
from tests.conftest import TOKEN, make_settings

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def pg_context(pg_url: str, tmp_path: Path) -> Iterator[Context]:
    # Nodes registered here never heartbeat: they stay online for three heartbeats.
    ctx = Context.build(make_settings(tmp_path, database_url=pg_url, heartbeat_s=300, lease_s=900))
    yield ctx
    ctx.close()


@pytest.fixture
def api(pg_context: Context) -> Iterator[TestClient]:
    with TestClient(create_app(pg_context), headers=HEADERS) as client:
        yield client


def node(context: Context, name: str, slots: int, labels: list[str] | None = None) -> None:
    with context.db.session() as session:
        worker_repo.register(session, name, host=name.split(":")[0], pid=1, version="t",
                             threads=slots, labels=labels or [], machine={})  # fmt: skip


def spider(api: TestClient, name: str, project: str | None = None, **fields: Any) -> None:
    made = api.post("/api/spiders", json={"name": name, **({"project": project} if project
                                                             else {}), **fields})  # fmt: skip
    assert made.status_code == 201, made.text
    package = {"file": ("main.py", b"def run(params):\n    pass\n")}
    assert api.post(f"/api/spiders/{name}/versions", files=package).status_code == 201


def run(api: TestClient, name: str, **body: Any) -> dict[str, Any]:
    started = api.post(f"/api/spiders/{name}/run", json=body)
    assert started.status_code == 202, started.text
    found: dict[str, Any] = started.json()
    return found


def sent(context: Context, ids: list[str]) -> list[str]:
    """Those of these runs the dispatcher sent (a message, or claimed since), in order."""
    with context.db.read() as session:
        out = set(session.scalars(select(Task.id).where(
            Task.id.in_([uuid.UUID(t) for t in ids]),
            (Task.message_id.is_not(None)) | (Task.status != "pending"))))  # fmt: skip
    return [t for t in ids if uuid.UUID(t) in out]


def start(context: Context, task_id: str, on: str = "n1:1") -> None:
    with context.db.session() as session:
        assert task_repo.claim_task(session, uuid.UUID(task_id), f"{on}:t") is not None


def finish(context: Context, task_id: str) -> None:
    with context.db.session() as session:
        fence = task_repo.get_task(session, uuid.UUID(task_id)).fence
        task_repo.end_attempt(session, uuid.UUID(task_id), fence, status="completed",
                              reason=None, exit_code=0, error_message=None, stats=None,
                              retry=False)  # fmt: skip
    dispatch.dispatch(context)  # as the run actor does when its run ends


def test_limits_hold_with_200_queued_runs(pg_context: Context, api: TestClient) -> None:
    node(pg_context, "n1:1", 8)
    spider(api, "shop", max_concurrent_runs=2)
    spider(api, "news")
    spider(api, "blog", project="news")  # news' project: news and blog
    assert api.patch("/api/projects/news", json={"max_concurrent_runs": 3}).status_code == 200

    shop = [run(api, "shop")["id"] for _ in range(200)]
    first = sent(pg_context, shop)
    assert len(first) == 2
    waiting = api.get(f"/api/tasks/{shop[-1]}").json()
    assert waiting["status"] == "pending" and waiting["waiting_reason"] == "spider limit 2"
    assert waiting["priority"] == 10 and waiting["node_id"] is None
    listed = api.get("/api/tasks", params={"spider_id": "shop", "page_size": 5}).json()["items"]
    assert {t["waiting_reason"] for t in listed} == {"spider limit 2"}

    news = [run(api, "news")["id"] for _ in range(3)] + [run(api, "blog")["id"] for _ in range(3)]
    assert len(sent(pg_context, news)) == 3  # the project's limit, whichever spider
    held = [t for t in news if t not in sent(pg_context, news)]
    assert api.get(f"/api/tasks/{held[0]}").json()["waiting_reason"] == "project limit 3"

    # Runs start and end one by one: at no time are more than two of shop's under way, and
    # all 200 start, in the order they came.
    started: list[str] = []
    running: list[str] = []
    while len(started) < len(shop):
        out = [t for t in sent(pg_context, shop) if t not in started]
        assert out and len(running) + len(out) <= 2, (len(started), out)
        for task_id in out:
            start(pg_context, task_id)
        started += out
        running += out
        finish(pg_context, running.pop(0))
    assert started == shop
    done = api.get(f"/api/tasks/{shop[0]}").json()
    assert done["status"] == "completed" and done["node_id"] == "n1:1"

    # A limit raised lets the held runs start at once.
    assert api.patch("/api/projects/news", json={"max_concurrent_runs": None}).json()[
        "max_concurrent_runs"] is None  # fmt: skip
    assert len(sent(pg_context, news)) == 6


def test_a_free_slot_goes_to_the_project_with_fewer_runs(pg_context: Context,
                                                         api: TestClient) -> None:  # fmt: skip
    node(pg_context, "n1:1", 2)
    spider(api, "bulk")
    spider(api, "daily")
    bulk = [run(api, "bulk")["id"] for _ in range(500)]
    assert sent(pg_context, bulk) == bulk[:2]
    for task_id in bulk[:2]:
        start(pg_context, task_id)
    # daily's schedule fires: a scheduled run (priority 0) waits for a slot, not for 498 runs.
    made = api.post("/api/spiders/daily/schedules", json={"cron": "* * * * *"}).json()
    with pg_context.db.session() as session:
        session.execute(text("UPDATE schedule SET next_fire_at = now() - interval '1 second' "
                             "WHERE id = :id"), {"id": made["id"]})  # fmt: skip
    firing.fire(pg_context)
    (fired,) = api.get("/api/tasks", params={"spider_id": "daily"}).json()["items"]
    assert fired["priority"] == 0 and fired["trigger"] == "schedule"
    assert fired["waiting_reason"] == "every slot is taken"
    finish(pg_context, bulk[0])
    assert api.get(f"/api/tasks/{fired['id']}").json()["message_id"] is not None
    assert sent(pg_context, bulk) == bulk[:2]  # bulk's third run waits for the next slot

    # Within a project, priority first: a run at 50 goes before the 497 held before it.
    urgent = run(api, "bulk", priority=50)["id"]
    start(pg_context, fired["id"])
    finish(pg_context, fired["id"])
    assert sent(pg_context, [urgent]) == [urgent] and sent(pg_context, bulk) == bulk[:2]


def test_fifo_serves_the_oldest(pg_url: str, tmp_path: Path) -> None:
    context = Context.build(
        make_settings(
            tmp_path, database_url=pg_url, dispatch_order="fifo", heartbeat_s=300, lease_s=900
        )
    )
    try:
        with TestClient(create_app(context), headers=HEADERS) as api:
            node(context, "n1:1", 1)
            pg_context = context
            spider(api, "bulk")
            spider(api, "daily")
            bulk = [run(api, "bulk")["id"] for _ in range(5)]
            start(context, bulk[0])
            other = run(api, "daily", priority=100)["id"]
            finish(context, bulk[0])
            assert sent(pg_context, bulk) == bulk[:2] and sent(pg_context, [other]) == []
    finally:
        context.close()


def test_labels_and_full_nodes_say_why_a_run_waits(pg_context: Context,
                                                    api: TestClient) -> None:  # fmt: skip
    spider(api, "render", requires=["browser"])
    alone = run(api, "render")
    assert alone["waiting_reason"].startswith("no node takes runs")
    assert alone["message_id"] is None  # held: sent once a node can take it
    node(pg_context, "plain:1", 4)
    gpu = run(api, "render", requires=["gpu", "region=eu"])
    assert gpu["waiting_reason"] == "no node has labels gpu, region=eu"
    node(pg_context, "chrome:1", 1, ["browser"])  # a node registering dispatches
    dispatch.dispatch(pg_context)
    assert sent(pg_context, [alone["id"]]) == [alone["id"]]
    start(pg_context, alone["id"], on="chrome:1")
    second = run(api, "render")
    assert second["waiting_reason"] == "every slot is taken on nodes with labels browser"
    plain = run(api, "render", requires=[])
    assert plain["message_id"] is not None and plain["waiting_reason"] is None
    finish(pg_context, alone["id"])
    assert sent(pg_context, [second["id"]]) == [second["id"]]


def test_priorities_are_checked_and_scrapyd_s_is_honoured(pg_context: Context,
                                                          api: TestClient) -> None:  # fmt: skip
    spider(api, "shop")
    for bad in (1.5, "high", 10**7, None):
        refused = api.post("/api/spiders/shop/run", json={"priority": bad})
        assert refused.status_code == 422, bad
    assert run(api, "shop", priority=-3)["priority"] == -3
    for given, stored in (("7", 7), ("2.6", 3), (None, 0)):
        data = {"project": "shop", "spider": "shop", **({"priority": given} if given else {})}
        job = api.post("/schedule.json", data=data).json()
        assert job["status"] == "ok", job
        (task,) = [t for t in api.get("/api/tasks").json()["items"] if t["job_id"] == job["jobid"]]
        assert task["priority"] == stored
    for bad in ("nan", "inf", "1e99", "x"):
        job = api.post("/schedule.json", data={"project": "shop", "spider": "shop",
                                               "priority": bad}).json()  # fmt: skip
        assert job["status"] == "error" and "priority is invalid" in job["message"], bad
    assert api.patch("/api/spiders/shop", json={"max_concurrent_runs": 0}).status_code == 422
    assert api.patch("/api/projects/shop", json={"name": None}).status_code == 422


def test_a_jittered_fire_waits_out_its_jitter_held(pg_context: Context, api: TestClient) -> None:
    node(pg_context, "n1:1", 2)
    spider(api, "daily")
    made = api.post("/api/spiders/daily/schedules", json={"cron": "* * * * *", "jitter_s": 3600})
    with pg_context.db.session() as session:
        session.execute(text("UPDATE schedule SET next_fire_at = now() - interval '1 second' "
                             "WHERE id = :id"), {"id": made.json()["id"]})  # fmt: skip
    firing.fire(pg_context)
    (fired,) = api.get("/api/tasks", params={"spider_id": "daily"}).json()["items"]
    assert fired["message_id"] is None and fired["waiting_reason"].startswith("due at ")
    assert fired["waiting_reason"].endswith("UTC (its schedule's jitter)")
    with pg_context.db.session() as session:  # its jitter has passed: the sweep sends it
        session.execute(text("UPDATE task SET due_at = now() - interval '1 second'"))
    housekeeping.sweep(pg_context)
    assert sent(pg_context, [fired["id"]]) == [fired["id"]]
