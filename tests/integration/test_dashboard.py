"""The dashboard in a real Chromium (Playwright driving Debian's `chromium`), against a real
`crawlhub up` and against web + worker + ticker on PostgreSQL and Redis, used as a person
would: by role and label."""

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import service_missing
from tests.integration.harness import Site
from tests.integration.test_processes import Process, base_env, crawlhub, free_port

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dashboard-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=1">'

SLOW = f"""
import time, urllib.request

def run(params):
    for i in range(1, 9):
        print(f"line {{i}}", flush=True)
        time.sleep(0.7)
    print({XSS_SCRIPT + " " + XSS_IMG!r}, flush=True)
    html = urllib.request.urlopen(params["url"]).read().decode()
    for n in range(3):
        yield {{"page": n, "title": f"page {{n}}", "note": {XSS_IMG!r}, "size": len(html)}}
"""
SLEEPER = """
import time

def run(params):
    print("going to sleep", flush=True)
    time.sleep(300)
"""
BROKEN = """
def run(params):
    raise RuntimeError("boom: the site changed")
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        service_missing("Chromium", FileNotFoundError(f"{CHROMIUM}: apt-get install chromium"))
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
        )  # fmt: skip
        yield launched
        launched.close()


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site(pages=3)
    yield served
    served.close()


def new_page(browser: Browser, base: str) -> Page:
    context = browser.new_context(base_url=base, viewport={"width": 1024, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


def shot(page: Page, name: str, keep: bool) -> None:
    if keep:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page) -> None:
    page.goto("/runs")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fruns$"))
    page.get_by_text("Sign in with an API token").click()
    page.get_by_label("API token").fill("not-the-token")
    page.get_by_role("button", name="Sign in with the token").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid here.")
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in with the token").click()
    expect(page).to_have_url(re.compile(r"/runs$"))
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "crawlhub_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def create_spider(page: Page, tmp_path: Path, name: str, code: str) -> None:
    source = tmp_path / f"{name}.py"
    source.write_text(code)
    page.get_by_role("link", name="Spiders", exact=True).click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Package").set_input_files(str(source))
    page.get_by_role("button", name="Create spider").click()
    expect(page.get_by_role("heading", name=f"Spider {name}")).to_be_visible()


def run_now(page: Page, spider: str, params: str = "{}") -> str:
    page.goto(f"/spiders/{spider}")
    page.get_by_label("Params (JSON)").first.fill(params)
    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def dashboard_flow(browser: Browser, base: str, tmp_path: Path, site: Site, keep: bool) -> None:
    """What an operator does in a first session, step by step, checked as they would see it."""
    page = new_page(browser, base)
    sign_in(page)

    # A spider name that is markup: refused with a reason, shown back as text.
    page.get_by_role("link", name="Spiders", exact=True).click()
    page.get_by_label("Name").fill(XSS_IMG)
    page.get_by_label("Package").set_input_files(str(_write(tmp_path, "x.py", SLOW)))
    page.get_by_role("button", name="Create spider").click()
    expect(page.locator("#error-name")).to_contain_text("String should match pattern")
    expect(page.get_by_label("Name")).to_have_value(XSS_IMG)
    assert page.locator("main img").count() == 0

    create_spider(page, tmp_path, "slow", SLOW)
    task_id = run_now(page, "slow", f'{{"url": "{site.url}"}}')
    # Lines appear while the spider still runs.
    expect(page.locator("#log")).to_contain_text("line 2", timeout=20_000)
    expect(page.locator("#run-status")).to_contain_text("running")
    shot(page, "run-live", keep)
    expect(page.locator("#run-status")).to_contain_text("completed", timeout=30_000)
    expect(page.get_by_text(XSS_SCRIPT + " " + XSS_IMG)).to_be_visible()
    expect(page.locator("table.items")).to_contain_text(XSS_IMG)
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__xss") is None
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV", exact=True).click()
    csv = Path(download.value.path()).read_text()
    assert download.value.suggested_filename == f"slow-{task_id}.csv"
    # Columns in first-seen key order (PostgreSQL's JSONB keeps keys sorted by length, then bytes).
    assert sorted(csv.splitlines()[0].split(",")) == ["note", "page", "size", "title"]
    assert len(csv.splitlines()) == 4
    shot(page, "run", keep)
    log_box = page.locator("#log")  # the newest lines in view once the page turned finished
    assert log_box.evaluate("el => el.scrollTop + el.clientHeight >= el.scrollHeight - 2")
    page.get_by_role("link", name="slow", exact=True).click()
    chart = page.get_by_role("figure").filter(has_text="Items per run")
    expect(chart.get_by_role("img", name=re.compile("^Items per run: 1 bars from"))).to_be_visible()
    expect(chart).to_contain_text("5 items")  # the scale's top: a round number above 3
    expect(chart).to_contain_text(" UTC")  # the time its bar stands for
    # Env values are write-only: the form shows names; a hidden value sent back is kept.
    page.get_by_label("Environment (JSON)").fill('{"API_KEY": "sk-live-never-shown"}')
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_have_text("Settings saved.")
    expect(page.get_by_label("Environment (JSON)")).to_have_value('{"API_KEY": "********"}')
    assert "sk-live-never-shown" not in page.content()
    shot(page, "spider", keep)

    # A schedule: its reading and next fires appear as the expression is typed.
    page.get_by_role("link", name="Schedules", exact=True).click()
    page.get_by_role("link", name="New schedule").click()
    page.get_by_label("Spider").select_option("slow")
    page.get_by_label("Time zone").fill("America/New_York")
    page.get_by_label("Cron expression").fill("30 2 * * 1-5")
    expect(page.locator("#preview")).to_contain_text("At 02:30 AM, Monday through Friday")
    expect(page.locator("#preview li")).to_have_count(5)
    shot(page, "schedule-form", keep)
    page.get_by_label("Cron expression").fill("0 0 30 2 *")
    expect(page.locator("#preview")).to_contain_text("never fires")
    page.get_by_label("Cron expression").fill("30 2 * * 1-5")
    page.get_by_label("Scrapy settings (JSON)").fill('{"DOWNLOAD_DELAY": 1}')
    page.get_by_role("button", name="Save schedule").click()
    expect(page.locator("#error-settings")).to_contain_text("Scrapy spiders only")
    page.get_by_label("Scrapy settings (JSON)").fill("{}")
    page.get_by_role("button", name="Save schedule").click()
    expect(page.locator("main table")).to_contain_text("30 2 * * 1-5")
    page.get_by_role("button", name="Pause schedule 30 2 * * 1-5 of slow").click()
    expect(page.locator("main table")).to_contain_text("paused")
    shot(page, "schedules", keep)

    # Cancel a long run: its status turns, and its process is gone.
    create_spider(page, tmp_path, "sleeper", SLEEPER)
    run_now(page, "sleeper")
    expect(page.locator("#log")).to_contain_text("going to sleep", timeout=20_000)
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("status")).to_contain_text("Cancelled: the spider is being stopped.")
    expect(page.locator("#run-status")).to_contain_text("cancelled", timeout=10_000)
    expect(page.locator("#log")).to_contain_text("cancelled after", timeout=15_000)
    expect(page.get_by_text("No items: the run found none.")).to_be_visible()
    assert "Traceback" not in page.locator("#log").inner_text()

    # A failing spider: settings form with a field error, then an alert and a dead letter.
    create_spider(page, tmp_path, "broken", BROKEN)
    page.get_by_label("Timeout (seconds)").fill("-5")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#error-timeout_s")).to_contain_text("greater than or equal to 1")
    page.get_by_label("Timeout (seconds)").fill("60")
    page.get_by_label("Limits of its runs (JSON)").fill('{"memory_mb": 32}')
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("#error-limits")).to_contain_text("memory_mb must be a whole number")
    page.get_by_label("Max retries").fill("0")
    page.get_by_label("Limits of its runs (JSON)").fill('{"memory_mb": 512}')
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_label("Max retries")).to_have_value("0")
    expect(page.get_by_label("Limits of its runs (JSON)")).to_have_value('{"memory_mb": 512}')
    broken_id = run_now(page, "broken")
    expect(page.locator("#run-status")).to_contain_text("failed", timeout=30_000)
    expect(page.get_by_text("RuntimeError: boom: the site changed").first).to_be_visible()

    page.get_by_role("link", name="Overview", exact=True).click()
    expect(page.get_by_role("heading", name="Needs attention")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Failed run")
    dead_row = page.locator("tr.attention-dead_letter").filter(has_text=broken_id[:8])
    for _ in range(40):  # dead-lettered just after the run failed: the page is read again
        if dead_row.count():
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(dead_row).to_contain_text("broken")
    expect(dead_row).to_contain_text("RuntimeError: boom: the site changed")
    expect(page.get_by_role("figure").first).to_contain_text(" UTC")
    shot(page, "overview", keep)

    page.get_by_role("link", name="Alerts", exact=True).click()
    alert = page.locator("li.alert.unread").filter(has_text="broken")
    expect(alert).to_be_visible()
    shot(page, "alerts", keep)
    alert.get_by_role("button", name=re.compile("^Mark read")).click()
    expect(page.locator("li.alert.unread").filter(has_text="broken")).to_have_count(0)
    page.get_by_role("button", name="Mark all read").click()
    expect(page.get_by_text("0 unread")).to_be_visible()

    # Channels: a bad target is refused beside its field; a good one is added, tested
    # (this receiver answers POST with 501, so the test reports a failure), then deleted.
    page.get_by_label("Target", exact=True).fill("ftp://example.org/hook")
    page.get_by_role("button", name="Add channel").click()
    expect(page.locator("#error-target")).to_contain_text("http:// or https://")
    page.get_by_label("Target", exact=True).fill(f"{site.url}hook")
    page.get_by_label("Secret", exact=True).fill("s3cret-never-shown")
    page.get_by_role("button", name="Add channel").click()
    channel = page.get_by_role("form", name=f"Channel {site.url}hook")
    expect(channel).to_be_visible()
    assert "s3cret-never-shown" not in page.content()
    channel.get_by_role("button", name=re.compile("^Test")).click()
    expect(page.get_by_role("status")).to_contain_text("Test notification failed")
    expect(page).to_have_url(re.compile(r"/alerts$"))
    page.get_by_role("form", name=f"Channel {site.url}hook").get_by_role(
        "button", name=re.compile("^Delete")
    ).click()
    expect(page.get_by_text("No channel: alerts are only listed here.")).to_be_visible()

    page.get_by_role("link", name="Queues", exact=True).click()
    dead = page.locator("tr").filter(has_text=broken_id[:8])
    expect(dead).to_have_count(1, timeout=20_000)
    expect(dead).to_contain_text("broken")  # its spider, its attempts, the run's own error
    expect(dead).to_contain_text("RuntimeError: boom: the site changed")
    assert "RunFailed" not in dead.inner_text()
    expect(dead.get_by_role("cell", name="1", exact=True)).to_have_count(1)
    shot(page, "queues", keep)
    dead.get_by_role("button", name=re.compile("^Requeue")).click()
    expect(page).to_have_url(re.compile(f"/runs/{broken_id}$"))
    expect(page.get_by_role("status")).to_contain_text("Requeued")
    expect(page.locator("#log")).to_contain_text("attempt 2", timeout=20_000)
    expect(page.locator("#run-status")).to_contain_text("failed", timeout=30_000)
    lines = httpx.get(f"{base}/api/tasks/{broken_id}/logs",
                      headers={"Authorization": f"Bearer {TOKEN}"}).json()["items"]  # fmt: skip
    starts = [line["text"].split(":")[0] for line in lines if line["text"].startswith("attempt ")]
    assert starts == ["attempt 1", "attempt 2"]  # numbered on, not a second attempt 1

    # The other pages, as a person browses them.
    page.get_by_role("link", name="Runs", exact=True).click()
    page.get_by_label("Status").select_option("completed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("main tbody tr")).to_have_count(1)
    expect(page.locator("main tbody tr").first.get_by_role("link", name="slow")).to_be_visible()
    shot(page, "runs", keep)
    page.get_by_role("link", name="Data", exact=True).click()
    expect(page.get_by_role("columnheader", name="Spider")).to_be_visible()  # every spider's
    page.get_by_label("Spider").fill("slow")
    page.get_by_role("button", name="Show items").click()
    expect(page.locator("table.items tbody tr")).to_have_count(3)
    shot(page, "data", keep)
    page.get_by_role("link", name="Spiders", exact=True).click()
    page.get_by_label("Search spiders").fill("slo")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("main tbody tr")).to_have_count(1)
    shot(page, "spiders", keep)

    # A form posted without its CSRF token is refused, and changes nothing.
    refused = page.request.post(f"{base}/spiders/slow/run", form={"params": "{}"})
    assert refused.status == 403
    assert "security token" in refused.text()

    assert page.errors == []  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    shot(page, "login", keep)
    page.goto("/queues")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fqueues$"))
    page.context.close()


def _write(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(code)
    return path


def test_dashboard_on_crawlhub_up(browser: Browser, tmp_path: Path, site: Site) -> None:
    port = free_port()
    env = base_env(tmp_path, PORT=str(port), CRAWLHUB_API_TOKENS=TOKEN,
                   DATABASE_URL=f"sqlite:///{tmp_path / 'hub.db'}",
                   CRAWLHUB_CHANNEL_ALLOW_HOSTS="127.0.0.1")  # fmt: skip
    up = Process(["up"], env, tmp_path)
    try:
        up.wait_for(f"http://127.0.0.1:{port}/readyz")
        assert f"Dashboard: http://127.0.0.1:{port}/" in up.output()
        keep = os.environ.get("CRAWLHUB_SCREENSHOTS", "1") == "1"
        dashboard_flow(browser, f"http://127.0.0.1:{port}", tmp_path, site, keep)
    finally:
        assert up.stop() == 0, up.output()


def test_dashboard_on_web_worker_ticker_with_postgres_and_redis(
    browser: Browser, tmp_path: Path, site: Site, postgres_url: str, redis_url: str
) -> None:
    port = free_port()
    env = base_env(tmp_path, PORT=str(port), CRAWLHUB_API_TOKENS=TOKEN,
                   DATABASE_URL=postgres_url.replace("postgresql+psycopg://", "postgres://"),
                   REDIS_URL=redis_url, CRAWLHUB_CHANNEL_ALLOW_HOSTS="127.0.0.1")  # fmt: skip
    migrated = crawlhub("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    processes = [Process([name], env, tmp_path) for name in ("web", "worker", "ticker")]
    try:
        processes[0].wait_for(f"http://127.0.0.1:{port}/readyz")
        processes[1].wait_output("worker ready")
        dashboard_flow(browser, f"http://127.0.0.1:{port}", tmp_path, site, keep=False)
    finally:
        codes = [process.stop() for process in processes]  # every one, whatever happened
    assert codes == [0, 0, 0], [process.output() for process in processes]
    _clean_database(postgres_url)


def _clean_database(url: str) -> None:
    """The session's PostgreSQL database is shared: leave no spider behind."""
    from tests.conftest import empty_tables

    empty_tables(url)
