"""Projects in the dashboard, in a real Chromium against a real `crawlhub up`: deploy a Scrapy
project, watch its worker list its spiders, read the build log, follow a spider to its page
and back, upload a refused version, delete the project; a refused first package leaves
nothing behind. Used as a person would: by role and label."""

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from crawlhub.cli.client import zip_directory
from tests.integration.test_dashboard import TOKEN, browser, new_page, sign_in
from tests.integration.test_processes import embedded_hub

FIXTURES = Path(__file__).parent.parent / "fixtures" / "spiders"
READY_TIMEOUT_MS = 60_000  # a worker runs `scrapy list` on the new version
NOT_A_ZIP = (
    "{} is not a zip archive: its content is something else "
    "(a damaged download, or another kind of file named .zip)"
)
NO_SCRAPY_CFG = (
    "a scrapy package needs scrapy.cfg at its top level (or, as an egg, EGG-INFO/entry_points.txt)"
)

__all__ = ["browser"]  # the Chromium fixture of test_dashboard, shared


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `crawlhub up` (SQLite, its own worker) for this module's tests: its address."""
    with embedded_hub(tmp_path_factory.mktemp("hub"), TOKEN) as base:
        yield base


def api(base: str, path: str) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {TOKEN}"})


def zip_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return buffer.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def deploy(page: Page, name: str, kind: str, package: Path) -> None:
    """Fill in and send the deploy form of the Projects page."""
    page.get_by_role("link", name="Projects", exact=True).click()
    page.get_by_label("Project name").fill(name)
    page.get_by_label("Kind").select_option(kind)
    page.get_by_label("Package").set_input_files(str(package))
    page.get_by_role("button", name="Deploy").click()


def test_a_refused_package_shows_its_error_and_creates_no_project(
    browser: Browser, hub: str, tmp_path: Path
) -> None:
    page = new_page(browser, hub)
    sign_in(page)
    cases = [
        (
            "junk",
            write(tmp_path, "junk.zip", b"this is not a zip file"),
            NOT_A_ZIP.format("junk.zip"),
        ),
        ("nocfg", write(tmp_path, "nocfg.zip", zip_of({"news/__init__.py": ""})), NO_SCRAPY_CFG),
    ]
    for name, package, reason in cases:
        deploy(page, name, "scrapy", package)
        expect(page.locator("#error-file")).to_have_text(reason)
        # The form keeps what was typed; the list has no such project; nor has the API.
        expect(page.get_by_label("Project name")).to_have_value(name)
        expect(page.get_by_label("Kind")).to_have_value("scrapy")
        expect(page.locator("main tbody")).not_to_contain_text(name)
        assert api(hub, f"/api/projects/{name}").status_code == 404
    # A name the API refuses is shown beside the name, and nothing is uploaded.
    deploy(page, "Not A Slug", "python", cases[0][1])
    expect(page.locator("#error-name")).to_contain_text("String should match pattern")
    expect(page.get_by_label("Kind")).to_have_value("python")
    expect(page.locator("#error-file")).to_have_count(0)
    assert page.errors == []  # type: ignore[attr-defined]
    page.context.close()


def test_a_scrapy_project_deployed_from_the_dashboard_lists_its_spiders(
    browser: Browser, hub: str, tmp_path: Path
) -> None:
    page = new_page(browser, hub)
    sign_in(page)
    package = write(tmp_path, "news.zip", zip_directory(FIXTURES / "news_scrapy"))
    deploy(page, "news", "scrapy", package)
    expect(page).to_have_url(re.compile(r"/projects/news$"))
    expect(page.get_by_role("heading", name="Project news")).to_be_visible()

    # The page refreshes itself while the version builds: the worker's spiders appear.
    spiders = page.get_by_role("region", name="Spiders").get_by_role("link")
    expect(spiders).to_have_text(["alpha", "beta", "gamma"], timeout=READY_TIMEOUT_MS)
    version = page.get_by_role("row").filter(has_text="news.zip")
    expect(version).to_have_count(1)
    expect(version.get_by_role("cell").nth(0)).to_have_text("1 (current)")
    expect(version.get_by_role("cell").nth(4)).to_have_text("alpha, beta, gamma")
    expect(version.locator(".status")).to_have_text("ready")
    log = version.locator("details pre")
    expect(log).to_be_hidden()
    version.get_by_text("Build log", exact=True).click()
    expect(log).to_be_visible()
    expect(log).to_have_text("scrapy list: alpha, beta, gamma")

    # A refused new version: its error beside the field; the project and version 1 stay.
    page.get_by_label("Package").set_input_files(str(write(tmp_path, "bad.zip", b"nope")))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#error-file")).to_have_text(NOT_A_ZIP.format("bad.zip"))
    expect(page.get_by_role("heading", name="Project news")).to_be_visible()
    expect(page.get_by_role("region", name="Versions").locator("tbody tr")).to_have_count(1)
    assert api(hub, "/api/projects/news").json()["current_version"] == 1

    # The list: the project with its kind, version, environment and number of spiders.
    page.get_by_role("link", name="Projects", exact=True).click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="news", exact=True))
    expect(row.get_by_role("cell")).to_have_text(["news", "scrapy", "1", "ready", "3"])
    # Deploying it again as the other kind is refused beside the kind, and uploads nothing.
    deploy(page, "news", "python", package)
    expect(page.locator("#error-kind")).to_have_text("project 'news' is a scrapy project")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="news", exact=True))
    expect(row.get_by_role("cell").nth(2)).to_have_text("1")

    # From the project to a spider's page, and back by its project link.
    row.get_by_role("link", name="news", exact=True).click()
    page.get_by_role("link", name="beta", exact=True).click()
    expect(page.get_by_role("heading", name="Spider beta")).to_be_visible()
    project = page.get_by_role("link", name="news", exact=True)
    expect(project).to_have_attribute("href", "/projects/news")
    project.click()
    expect(page).to_have_url(re.compile(r"/projects/news$"))

    # Delete, after a confirmation page: the project and its spiders are gone.
    page.get_by_role("button", name="Delete project").click()
    expect(page.get_by_role("heading", name="Delete project news?")).to_be_visible()
    expect(page.get_by_text("its 3 spider(s) (alpha, beta, gamma)")).to_be_visible()
    page.get_by_role("button", name="Delete project").click()
    expect(page).to_have_url(re.compile(r"/projects$"))
    expect(page.locator("main tbody")).to_have_text("No project yet: deploy one below.")
    assert api(hub, "/api/projects/news").status_code == 404
    assert api(hub, "/api/spiders/beta").status_code == 404
    assert page.errors == []  # type: ignore[attr-defined]
    page.context.close()
