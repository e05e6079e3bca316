"""Single sign-on end to end against a real OpenID Connect provider process
(oidc-provider-mock from the registry, in an environment of its own): the authorization
code flow with PKCE, a user made on the first sign-in with the default role, the same user
on the next, a disabled one refused, a forged or stale callback refused."""

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.services import accounts
from tests.conftest import make_settings
from tests.integration.test_scrapyd import BIN
from tests.integration.test_scrapyd_tools import free_port

PROVIDER = "oidc-provider-mock==0.3.4"  # the last release for Python 3.11


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = tmp_path_factory.mktemp("oidc") / "env"
    uv = shutil.which("uv", path=str(BIN)) or "uv"
    for command in ([uv, "venv", "-q", "--python", sys.executable, str(env)],
                    [uv, "pip", "install", "-q", "--python", str(env / "bin" / "python"),
                     PROVIDER]):  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    port = free_port()
    claims = json.dumps({"sub": "u-1", "preferred_username": "alice",
                         "email": "alice@example.com"})  # fmt: skip
    proc = subprocess.Popen([str(env / "bin" / "oidc-provider-mock"), "--port", str(port),
                             "--user-claims", claims], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "no provider"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def sso_context(pg_url: str, tmp_path: Path, issuer: str) -> Iterator[Context]:
    ctx = Context.build(make_settings(tmp_path, database_url=pg_url, oidc_issuer=issuer,
                                      oidc_client_id="crawlhub", oidc_client_secret="s3cret",
                                      oidc_default_role="operator"))  # fmt: skip
    yield ctx
    ctx.close()


def sign_in(browser: TestClient, subject: str) -> httpx.Response:
    """Start at CrawlHub, authorize at the provider as `subject`, come back; the answer."""
    start = browser.get("/login/sso?next=/runs", follow_redirects=False)
    assert start.status_code == 302, start.text
    at_provider = start.headers["location"]
    form = httpx.get(at_provider)
    assert form.status_code == 200 and "Authorize" in form.text
    authorized = httpx.post(at_provider, data={"sub": subject}, follow_redirects=False)
    assert authorized.status_code == 302, authorized.text
    back = urllib.parse.urlsplit(authorized.headers["location"])
    assert back.path == "/login/sso/callback"
    return browser.get(f"{back.path}?{back.query}", follow_redirects=False)


def test_a_user_signs_in_through_the_provider_and_is_made_on_the_first_time(
    sso_context: Context,
) -> None:
    with TestClient(create_app(sso_context)) as browser:
        assert "Sign in with single sign-on" in browser.get("/login").text
        back = sign_in(browser, "u-1")
        assert back.status_code == 200 and 'content="0;url=/runs"' in back.text
        page = browser.get("/runs")
        assert page.status_code == 200 and "alice (operator)" in page.text
    with TestClient(create_app(sso_context)) as again:  # the same user, not a second one
        assert sign_in(again, "u-1").status_code == 200
        assert "alice (operator)" in again.get("/runs").text
    made = [u for u in accounts.list_users(sso_context)]
    assert [(u.username, u.role, u.password_hash) for u in made] == [("alice", "operator", None)]
    with TestClient(create_app(sso_context)) as other:  # claims with no name: its e-mail's
        assert sign_in(other, "bob@example.com").status_code == 200
        assert "bob (operator)" in other.get("/runs").text
    events = accounts.audit_events(sso_context, actor="alice", action="sign_in", resource=None,
                                   before_id=None, limit=10)  # fmt: skip
    assert len(events) == 2 and events[0].after == {"sso": sso_context.settings.oidc_issuer}


def test_a_disabled_user_and_a_forged_or_stale_callback_are_refused(
    sso_context: Context,
) -> None:
    with TestClient(create_app(sso_context)) as browser:
        assert sign_in(browser, "u-1").status_code == 200
    accounts.update_user(sso_context, "alice", disabled=True)
    with TestClient(create_app(sso_context)) as browser:
        refused = sign_in(browser, "u-1")
        assert refused.status_code == 401 and "alice is disabled" in refused.text
        assert browser.get("/runs", follow_redirects=False).status_code == 303
    with TestClient(create_app(sso_context)) as stranger:  # a callback this browser never began
        forged = stranger.get("/login/sso/callback?code=x&state=y", follow_redirects=False)
        assert forged.status_code == 401 and "did not start here" in forged.text
        start = stranger.get("/login/sso", follow_redirects=False)
        state = urllib.parse.parse_qs(urllib.parse.urlsplit(start.headers["location"]).query)
        wrong = stranger.get(f"/login/sso/callback?code=x&state={state['state'][0]}x",
                             follow_redirects=False)  # fmt: skip
        assert wrong.status_code == 401 and "provider refused" in wrong.text
