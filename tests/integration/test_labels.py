"""Labels a node must have, set from the dashboard's forms and the API (placement itself,
with real worker processes, is in test_nodes.py)."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.services import accounts
from tests.conftest import TOKEN, make_settings
from tests.integration.test_access import PASSWORD, sign_in


@pytest.fixture
def pg_context(pg_url: str, tmp_path: Path) -> Iterator[Context]:
    ctx = Context.build(make_settings(tmp_path, database_url=pg_url))
    yield ctx
    ctx.close()


def test_labels_from_the_forms_and_the_api_and_why_a_run_waits(pg_context: Context) -> None:
    accounts.create_user(pg_context, "ops", PASSWORD, "admin")
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(pg_context)) as client:
        assert client.post("/api/spiders", json={"name": "shop"}, headers=admin).status_code == 201
        package = {"file": ("main.py", b"def run(params):\n    pass\n")}
        assert client.post("/api/spiders/shop/versions", files=package,
                           headers=admin).status_code == 201  # fmt: skip
        refused = client.patch("/api/spiders/shop", json={"requires": ["a b"]}, headers=admin)
        assert refused.status_code == 422
        csrf = sign_in(client, "ops")
        made = client.post("/schedules", data={
            "csrf": csrf, "spider": "shop", "cron": "0 * * * *", "timezone": "UTC",
            "overlap": "forbid", "catchup": "latest", "jitter_s": "0", "params": "{}",
            "settings": "{}", "requires": "browser, region=eu"}, follow_redirects=False)  # fmt: skip
        assert made.status_code == 303, made.text
        (schedule,) = client.get("/api/spiders/shop/schedules", headers=admin).json()["items"]
        assert schedule["requires"] == ["browser", "region=eu"]
        bad = client.post(f"/schedules/{schedule['id']}", data={
            "csrf": csrf, "cron": "0 * * * *", "timezone": "UTC", "overlap": "forbid",
            "catchup": "latest", "jitter_s": "0", "params": "{}", "settings": "{}",
            "requires": "no spaces allowed"})  # fmt: skip
        assert bad.status_code == 422 and 'id="error-requires"' in bad.text
        ran = client.post("/spiders/shop/run", data={"csrf": csrf, "params": "{}",
                                                     "requires": "gpu"}, follow_redirects=False)  # fmt: skip
        assert ran.status_code == 303
        run_id = re.sub(r"^/runs/", "", ran.headers["location"])
        task = client.get(f"/api/tasks/{run_id}", headers=admin).json()
        assert task["requires"] == ["gpu"]
        # No worker here: the run says why it waits, in the API and on its page.
        assert task["waiting_reason"].startswith("no node takes runs")
        assert "waiting: no node takes runs" in client.get(f"/runs/{run_id}").text
