"""Channel targets under the SSRF rules, on PostgreSQL and Redis: refused on create and
PATCH unless CRAWLHUB_CHANNEL_ALLOW_HOSTS allows them, checked again after DNS at delivery,
tests that report a status and never a reply body, and chat URLs (their credential) kept
out of logs and delivery records (named regression cases of the containment issue)."""

import logging
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crawlhub.alerting import alerts
from crawlhub.repo.models import Channel, Delivery
from tests.integration.harness import Hub, running_hub
from tests.integration.test_processes import free_port

SECRET = "SECRETtoken-5f1c9a7e2b"
PUBLIC_IP = "93.184.216.34"  # never connected to: only ever a DNS answer or a stored target
REBINDING = "hooks.rebind.example"


class Target:
    """A local HTTP receiver answering every POST with the status, reason phrase, headers
    and body it was given, and recording the path and Host header of each request."""

    def __init__(self, status: int = 200, body: bytes = b"ok", phrase: str | None = None,
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.requests: list[tuple[str, str]] = []
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                served.requests.append((self.path, self.headers["Host"]))
                self.send_response(status, phrase)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served() -> Iterator[list[Target]]:
    """Targets a test starts, closed after it."""
    started: list[Target] = []
    yield started
    for target in started:
        target.close()


def serve(started: list[Target], **answer: Any) -> Target:
    target = Target(**answer)
    started.append(target)
    return target


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the test answers for itself (a DNS server that changes its mind); every other
    name goes to the real resolver."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or ""


def create(hub: Hub, kind: str, target: str) -> dict[str, Any]:
    response = hub.client.post("/api/channels", json={"kind": kind, "target": target})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_refused(response: Any, reason: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert ["target"] in [d["loc"] for d in error["details"]]
    assert reason in error["message"] and "CRAWLHUB_CHANNEL_ALLOW_HOSTS" in error["message"]


def alert_now(hub: Hub) -> uuid.UUID:
    """Raise a new alert (its deliveries queued with it) and send them now."""
    with hub.context.db.session() as session:
        alert_id = alerts.raise_alert(
            session, hub.context, f"test_{uuid.uuid4().hex[:6]}", "error", "the site changed"
        )
    assert alert_id is not None
    alerts.deliver(hub.context, alert_id)
    return alert_id


def deliveries(hub: Hub, alert_id: uuid.UUID) -> list[Delivery]:
    with hub.context.db.read() as session:
        return list(session.scalars(select(Delivery).where(Delivery.alert_id == alert_id)))


def test_local_network_and_service_targets_are_a_422_unless_allowed(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    redis_by_name = redis_url.replace("//127.0.0.1:", "//localhost:")
    pg_host, redis_host = host_of(pg_url), host_of(redis_by_name)
    refused = [
        ("http://127.0.0.2:8080/hook", "a loopback address"),
        ("http://[::1]:8080/hook", "a loopback address"),
        ("http://10.0.0.5/hook", "a private address"),
        ("http://192.168.1.10/hook", "a private address"),
        ("http://[fd12:3456::1]/hook", "a unique-local address"),
        ("http://169.254.169.254/latest/meta-data", "a link-local address"),
        ("http://[fe80::1]/hook", "a link-local address"),
        ("http://0.0.0.0:8080/hook", "an unspecified address"),
        (f"http://{pg_host}:5432/", "the database host"),
        (f"http://{redis_host}:6379/",
         "the Redis host" if redis_host != pg_host else "the database host"),
    ]  # fmt: skip
    with running_hub(pg_url, tmp_path, redis_by_name, threads=0, channel_allow_hosts="") as hub:
        public = create(hub, "webhook", f"https://{PUBLIC_IP}/hook")
        for target, reason in refused:
            created = hub.client.post("/api/channels", json={"kind": "slack", "target": target})
            assert_refused(created, reason)
            patched = hub.client.patch(f"/api/channels/{public['id']}", json={"target": target})
            assert_refused(patched, reason)
        assert [c["target"] for c in hub.client.get("/api/channels").json()["items"]] == [
            f"https://{PUBLIC_IP}/hook"
        ]
        # A channel the rules now refuse (stored before them) can still be disabled.
        with hub.context.db.session() as session:
            stale = Channel(kind="webhook", target="http://127.0.0.1:9/hook", min_level="info")
            session.add(stale)
            session.flush()
            stale_id = stale.id
        disabled = hub.client.patch(f"/api/channels/{stale_id}", json={"enabled": False})
        assert disabled.status_code == 200, disabled.text

    allow = f"127.0.0.0/8, ::1/128, 10.0.0.0/8, 192.168.0.0/16, fc00::/7, 169.254.0.0/16, fe80::/10, 0.0.0.0/32, {redis_host}"
    with running_hub(pg_url, tmp_path, redis_by_name, threads=0,
                     channel_allow_hosts=allow) as hub:  # fmt: skip
        for target, _ in refused:
            created = hub.client.post("/api/channels", json={"kind": "slack", "target": target})
            assert created.status_code == 201, (target, created.text)


def test_dns_rebinding_a_name_resolving_to_loopback_at_delivery_is_refused_and_not_retried(
    pg_url: str, redis_url: str, tmp_path: Path, dns: dict[str, list[str]], served: list[Target]
) -> None:
    receiver = serve(served)
    with running_hub(pg_url, tmp_path, redis_url, threads=0, channel_allow_hosts="") as hub:
        dns[REBINDING] = [PUBLIC_IP]  # a public answer when the channel is created
        channel = create(hub, "webhook", f"http://{REBINDING}:{receiver.port}/hook")
        dns[REBINDING] = ["127.0.0.1"]  # and loopback when the alert goes out
        alert_id = alert_now(hub)
        [record] = deliveries(hub, alert_id)
        assert (record.status, record.attempts, record.next_attempt_at) == ("failed", 1, None)
        assert record.last_error is not None
        assert f"{REBINDING} resolves to 127.0.0.1, which is a loopback address" in (
            record.last_error
        )
        assert alerts.deliver_due(hub.context) is False  # nothing left to retry
        tested = hub.client.post(f"/api/channels/{channel['id']}/test").json()
        assert tested["delivered"] is False and tested["status_code"] is None
        assert "loopback" in tested["error"]
    assert receiver.requests == []  # no request ever reached the loopback address


def test_an_allowed_name_is_reached_at_its_checked_address_with_its_own_host_header(
    pg_url: str, redis_url: str, tmp_path: Path, served: list[Target]
) -> None:
    receiver = serve(served)
    with running_hub(pg_url, tmp_path, redis_url, threads=0,
                     channel_allow_hosts="localhost") as hub:  # fmt: skip
        channel = create(hub, "webhook", f"http://localhost:{receiver.port}/hook?x=1")
        tested = hub.client.post(f"/api/channels/{channel['id']}/test").json()
    assert tested == {"delivered": True, "status_code": 200, "error": None}
    assert receiver.requests == [("/hook?x=1", f"localhost:{receiver.port}")]


def test_channel_test_reports_the_status_and_a_short_reason_never_the_body(
    pg_url: str, redis_url: str, tmp_path: Path, served: list[Target]
) -> None:
    leaky = serve(served, status=500, phrase=f"phrase {SECRET}",
                  body=f"<h1>stack trace</h1> DATABASE_URL=postgres://{SECRET}".encode())  # fmt: skip
    followed = serve(served)
    redirect = serve(served, status=302, headers={"Location": f"{followed.url}/elsewhere"})
    chat = serve(served, body=b'{"errcode": 310000, "errmsg": "keywords not in content"}')
    with running_hub(pg_url, tmp_path, redis_url, threads=0,
                     channel_allow_hosts="127.0.0.1") as hub:  # fmt: skip
        answers = {}
        for name, kind, url in [("leaky", "webhook", leaky.url), ("redirect", "slack", redirect.url),
                                ("chat", "dingtalk", chat.url), ("ok", "wecom", followed.url)]:  # fmt: skip
            channel = create(hub, kind, f"{url}/send?access_token={SECRET}")
            response = hub.client.post(f"/api/channels/{channel['id']}/test")
            assert response.status_code == 200 and SECRET not in response.text, response.text
            answers[name] = response.json()
    assert answers["leaky"] == {
        "delivered": False, "status_code": 500, "error": "HTTP 500 Internal Server Error"
    }  # fmt: skip
    assert answers["redirect"] == {"delivered": False, "status_code": 302,
                                   "error": "HTTP 302 Found (redirects are not followed)"}  # fmt: skip
    assert answers["chat"] == {"delivered": False, "status_code": 200,
                               "error": "dingtalk refused the message: 310000 keywords not in content"}  # fmt: skip
    assert answers["ok"] == {"delivered": True, "status_code": 200, "error": None}
    assert [path for path, _ in followed.requests] == [
        f"/send?access_token={SECRET}"
    ]  # not /elsewhere


def test_failing_chat_deliveries_leave_their_token_in_no_log_line_and_no_record(
    pg_url: str, redis_url: str, tmp_path: Path, served: list[Target],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    failing = serve(served, status=500, body=b"no")
    closed = free_port()  # nothing listens there: the connection is refused
    urls = {
        "dingtalk": f"{failing.url}/robot/send?access_token={SECRET}",
        "slack": f"http://127.0.0.1:{closed}/services/T0001/B0001/{SECRET}",
        "wecom": f"{failing.url}/cgi-bin/webhook/send?key={SECRET}",
        "feishu": f"http://127.0.0.1:{closed}/open-apis/bot/v2/hook/{SECRET}",
    }
    with running_hub(pg_url, tmp_path, redis_url, threads=0,
                     channel_allow_hosts="127.0.0.1") as hub:  # fmt: skip
        channel_ids = [create(hub, kind, url)["id"] for kind, url in urls.items()]
        alert_id = alert_now(hub)
        records = deliveries(hub, alert_id)
        api = hub.client.get(f"/api/alerts/{alert_id}/deliveries")
        tests = [hub.client.post(f"/api/channels/{c}/test").text for c in channel_ids]
    assert len(records) == 4 and all(r.status == "pending" for r in records)  # retried later
    errors = sorted(r.last_error or "" for r in records)
    assert all(errors), errors
    assert any(e.startswith("HTTP 500") for e in errors) and any(
        "ConnectError" in e for e in errors
    )
    assert f"http://127.0.0.1:{failing.port}/…" in caplog.text  # httpx's own request log line
    for text in [caplog.text, api.text, *errors, *tests]:
        assert SECRET not in text
    assert failing.requests  # the failures were real ones
