"""Roles in the dashboard, in a real Chromium against a real `crawlhub up`: a viewer sees no
Run, Cancel or Deploy; an operator runs but cannot deploy; a disabled user is signed out on
their next click; the run says who started it. Used as a person would: by role and label."""

import io
import re
import zipfile
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.integration.test_dashboard import TOKEN, browser, new_page, shot
from tests.integration.test_processes import embedded_hub

PASSWORD = "correct horse battery"

__all__ = ["browser"]  # the Chromium fixture of test_dashboard, shared


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `crawlhub up` with a spider, and a viewer, an operator and carol (operator)."""
    with embedded_hub(
        tmp_path_factory.mktemp("hub"), TOKEN, CRAWLHUB_ADMIN_PASSWORD=PASSWORD
    ) as base:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            for name, role in (("vera", "viewer"), ("otto", "operator"), ("carol", "operator")):
                made = api.post("/api/users", json={"username": name, "password": PASSWORD,
                                                    "role": role})  # fmt: skip
                assert made.status_code == 201, made.text
            assert api.post("/api/spiders", json={"name": "slow", "kind": "python"}
                            ).status_code == 201  # fmt: skip
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as archive:
                archive.writestr("main.py", "import time\n\ndef run(params):\n"
                                            "    time.sleep(float(params.get('s', 0)))\n"
                                            "    return [{'ok': True}]\n")  # fmt: skip
            uploaded = api.post("/api/spiders/slow/versions",
                                files={"file": ("slow.zip", buffer.getvalue())})  # fmt: skip
            assert uploaded.status_code == 201, uploaded.text
        yield base


def sign_in(page: Page, username: str) -> None:
    page.goto("/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("link", name=re.compile(rf"^{username} \("))).to_be_visible()


def test_a_viewer_sees_no_run_cancel_or_deploy(browser: Browser, hub: str) -> None:
    page = new_page(browser, hub)
    sign_in(page, "vera")
    expect(page.get_by_role("link", name="vera (viewer)")).to_be_visible()
    page.get_by_role("link", name="Spiders", exact=True).click()
    expect(page.get_by_role("link", name="slow")).to_be_visible()
    expect(page.get_by_role("heading", name="New spider")).to_have_count(0)
    page.get_by_role("link", name="slow").click()
    expect(page.get_by_role("heading", name="Recent runs")).to_be_visible()
    expect(page.get_by_role("button", name="Run now")).to_have_count(0)
    expect(page.get_by_role("button", name="Upload version")).to_have_count(0)
    expect(page.get_by_role("heading", name="Settings")).to_have_count(0)
    page.get_by_role("link", name="Projects", exact=True).click()
    expect(page.get_by_role("heading", name="Deploy")).to_have_count(0)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    # What the page does not show, the server refuses all the same.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    refused = page.request.post(f"{hub}/spiders/slow/run", form={"params": "{}", "csrf": csrf})
    assert refused.status == 403 and "vera may not run here" in refused.text()


def test_an_operator_runs_and_cancels_but_cannot_deploy(browser: Browser, hub: str) -> None:
    page = new_page(browser, hub)
    sign_in(page, "otto")
    page.get_by_role("link", name="Spiders", exact=True).click()
    page.get_by_role("link", name="slow").click()
    expect(page.get_by_role("button", name="Upload version")).to_have_count(0)
    page.get_by_label("Params (JSON)").fill('{"s": 30}')
    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    expect(page.locator("#facts")).to_contain_text("manual by otto")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#run-status")).to_contain_text("cancelled")
    page.get_by_role("link", name="Projects", exact=True).click()
    expect(page.get_by_role("heading", name="Deploy")).to_have_count(0)


def test_a_disabled_user_is_signed_out_on_their_next_click(browser: Browser, hub: str) -> None:
    page = new_page(browser, hub)
    sign_in(page, "carol")
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    disabled = httpx.patch(f"{hub}/api/users/carol", json={"disabled": True},
                           headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert disabled.status_code == 200, disabled.text
    page.get_by_role("link", name="Spiders", exact=True).click()
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fspiders$"))
    page.get_by_label("User name").fill("carol")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("wrong user name or password")


def test_a_project_admin_manages_its_members_and_sees_no_other_project(
    browser: Browser, hub: str
) -> None:
    with httpx.Client(base_url=hub, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        for name in ("pam", "nina"):
            made = api.post("/api/users", json={"username": name, "password": PASSWORD,
                                                "role": "none"})  # fmt: skip
            assert made.status_code == 201, made.text
        assert api.put("/api/projects/slow/members/pam", json={"role": "admin"}).status_code == 200
        assert api.post("/api/spiders", json={"name": "hidden"}).status_code == 201
    page = new_page(browser, hub)
    sign_in(page, "pam")
    page.get_by_role("link", name="Spiders", exact=True).click()
    expect(page.get_by_role("link", name="slow")).to_be_visible()
    expect(page.get_by_role("link", name="hidden")).to_have_count(0)
    page.get_by_role("link", name="Projects", exact=True).click()
    expect(page.get_by_role("link", name="hidden")).to_have_count(0)
    page.get_by_role("link", name="slow").first.click()
    members = page.get_by_role("region", name="Members")
    expect(members.get_by_role("cell", name="pam", exact=True)).to_be_visible()
    members.get_by_label("User name").fill("nina")
    members.get_by_label("Role here").select_option("operator")
    members.get_by_role("button", name="Add or change member").click()
    expect(page.get_by_role("status")).to_have_text("nina is operator of this project.")
    expect(members.get_by_role("row", name=re.compile("nina operator none"))).to_be_visible()
    expect(page.get_by_role("button", name="Delete project")).to_be_visible()
    shot(page, "project-members", keep=True)
    members.get_by_role("button", name="Remove nina").click()
    expect(page.get_by_role("status")).to_have_text("nina is no longer a member of this project.")
    # Another project's page is not found, as if it did not exist.
    answer = page.goto(f"{hub}/projects/hidden")
    assert answer is not None and answer.status == 404
