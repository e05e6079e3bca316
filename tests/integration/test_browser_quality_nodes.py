"""The Quality page and the Nodes page in a real Chromium against a real `crawlhub up`,
used as a person would (by role and label): learn rules from a good run, edit and save them,
see the next run fail them with its reasons, the field's coverage chart with the rule's
thresholds and the schema drift; the worker as a node, drained and resumed. Screenshots:
docs/screenshots/quality.png and nodes.png."""

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.integration.test_dashboard import TOKEN, browser, new_page, shot
from tests.integration.test_dashboard_roles import PASSWORD, sign_in
from tests.integration.test_processes import embedded_hub

__all__ = ["browser"]  # the Chromium fixture of test_dashboard, shared

SHOP = """
def run(params):
    for n in range(int(params.get("n", 20))):
        item = {"name": f"Product {n}", "url": f"http://shop.test/p/{n}"}
        if not params.get("no_price"):
            item["price"] = round(n * 1.5, 2)
        yield item
"""


def finished(api: httpx.Client, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        task = api.get(f"/api/tasks/{task_id}").json()
        if task["status"] in ("completed", "failed", "cancelled"):
            return task  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"run {task_id} did not finish")


def deploy(api: httpx.Client, name: str, source: str) -> None:
    """A python spider of one module, through the API."""
    assert api.post("/api/spiders", json={"name": name}).status_code == 201
    sent = api.post(f"/api/spiders/{name}/versions", files={"file": ("main.py", source.encode())})
    assert sent.status_code == 201, sent.text


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_hub(
        tmp_path_factory.mktemp("hub"), TOKEN, CRAWLHUB_ADMIN_PASSWORD=PASSWORD
    ) as base:
        yield base


def test_rules_learnt_on_the_quality_page_catch_a_run_that_breaks_them(
    browser: Browser, hub: str
) -> None:
    with httpx.Client(base_url=hub, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        deploy(api, "shop", SHOP)
        for _ in range(3):
            good = finished(api, api.post("/api/spiders/shop/run", json={}).json()["id"])
            assert good["status"] == "completed" and good["verdict"] is None
        page = new_page(browser, hub)
        sign_in(page, "admin")
        page.goto("/spiders/shop")
        page.get_by_role("link", name="Quality: rules, verdicts, field statistics").click()
        expect(page.get_by_role("heading", name="Quality of shop")).to_be_visible()
        expect(page.get_by_text("no rules: runs get statistics, no verdict")).to_be_visible()
        fields = page.get_by_role("region", name="Fields")
        expect(fields.get_by_role("row", name=re.compile(r"^price 100\.0%"))).to_be_visible()
        # Learn from the last good run, make coverage strict, save.
        page.get_by_label("Learn from a good run").select_option(index=0)
        page.get_by_role("button", name="Learn rules").click()
        expect(page.get_by_role("status")).to_contain_text("Learnt from run")
        editor = page.get_by_label("Rules (JSON; empty: none of its own)")
        expect(editor).to_have_value(re.compile(r'"price": 0\.95'))
        editor.fill(editor.input_value().replace('"price": 0.95', '"price": 0.99'))
        page.get_by_role("button", name="Save rules").click()
        expect(page.get_by_role("status")).to_have_text(
            "Rules saved: they apply from the next run.")  # fmt: skip
        expect(page.get_by_text("rules set for this spider")).to_be_visible()
        # A run without prices fails them.
        broken = finished(api, api.post("/api/spiders/shop/run",
                                        json={"params": {"no_price": True}}).json()["id"])  # fmt: skip
        assert broken["verdict"] == "fail", broken["quality"]
    page.reload()
    runs = page.get_by_role("region", name="Runs")
    expect(runs.get_by_role("row").nth(1)).to_contain_text("fail")
    expect(runs.get_by_role("row").nth(1)).to_contain_text("coverage.price 0.0 (expected ≥ 0.99)")
    expect(page.get_by_role("img", name=re.compile(r"^price: coverage: 4 bars"))).to_be_visible()
    drift = page.get_by_role("region", name="Schema drift")
    expect(drift.get_by_role("listitem")).to_contain_text("disappeared price")
    shot(page, "quality", keep=True)
    # The run's page says why; the runs list filters by verdict.
    runs.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name="Data quality: fail")).to_be_visible()
    expect(page.get_by_role("cell", name="coverage.price")).to_be_visible()
    expect(page.locator("#run-verdict")).to_contain_text("fail")
    page.goto("/runs")
    page.get_by_label("Verdict").select_option("fail")
    page.get_by_role("button", name="Filter").click()
    rows = page.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(2)  # the header and the failing run
    assert page.errors == []  # type: ignore[attr-defined]


def test_the_nodes_page_shows_the_worker_and_drains_and_resumes_it(
    browser: Browser, hub: str
) -> None:
    page = new_page(browser, hub)
    sign_in(page, "admin")
    page.get_by_role("link", name="Nodes", exact=True).click()
    expect(page.get_by_role("heading", name="Nodes")).to_be_visible()
    row = page.get_by_role("row").nth(1)
    expect(row).to_contain_text("online")
    expect(row).to_contain_text(" / 4")  # its runs and its slots
    page.get_by_role("button", name=re.compile(r"^Drain ")).click()
    expect(page.get_by_role("status")).to_contain_text("is draining")
    expect(page.get_by_role("row").nth(1)).to_contain_text("draining")
    shot(page, "nodes", keep=True)
    page.get_by_role("button", name=re.compile(r"^Resume ")).click()
    expect(page.get_by_role("status")).to_contain_text("takes runs again")
    expect(page.get_by_role("row").nth(1)).to_contain_text("online")
    assert page.errors == []  # type: ignore[attr-defined]


NAP = """
import time


def run(params):
    time.sleep(float(params.get("sleep", 0)))
"""


def test_a_spider_limited_from_its_page_makes_a_second_run_wait_and_say_why(
    browser: Browser, hub: str
) -> None:
    with httpx.Client(base_url=hub, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        deploy(api, "nap", NAP)
        page = new_page(browser, hub)
        sign_in(page, "admin")
        page.goto(f"{hub}/spiders/nap")
        page.get_by_label("Max concurrent runs").fill("1")
        page.get_by_role("button", name="Save settings").click()
        expect(page.get_by_role("status")).to_contain_text("Settings saved")
        assert api.get("/api/spiders/nap").json()["max_concurrent_runs"] == 1

        page.get_by_label("Params (JSON)", exact=True).fill('{"sleep": 4}')
        page.get_by_label("Priority", exact=True).fill("20")
        page.get_by_role("button", name="Run now").click()
        expect(page.locator("#run-status")).to_contain_text("running", timeout=15_000)
        first = page.url.rsplit("/", 1)[1]
        facts = page.locator("dl.facts")
        expect(facts).to_contain_text("Priority20")
        expect(facts).to_contain_text("Node")
        page.goto(f"{hub}/spiders/nap")
        page.get_by_role("button", name="Run now").click()
        expect(page.locator("#run-waiting")).to_have_text("waiting: spider limit 1")
        shot(page, "run-waiting", keep=True)
        second = page.url.rsplit("/", 1)[1]
        assert finished(api, first)["status"] == "completed"
        assert finished(api, second)["status"] == "completed"  # it started once a slot freed
        assert page.errors == []  # type: ignore[attr-defined]
