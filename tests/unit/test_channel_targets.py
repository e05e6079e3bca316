"""Channel targets: strict forms, the SSRF rules (allow list, database and Redis hosts, DNS
answers checked at delivery), and redaction of chat URLs (named regression cases of the
containment issue). No I/O: DNS answers come from a stand-in resolver."""

import ipaddress
import socket
from typing import Any

import pytest

from crawlhub.alerting import channels, targets
from crawlhub.config import Settings, load_settings
from crawlhub.errors import InvalidInput

SECRET = "SECRETtoken0123456789"
DINGTALK = f"https://oapi.dingtalk.com/robot/send?access_token={SECRET}"
SLACK = f"https://hooks.slack.com/services/T0001/B0001/{SECRET}"


def settings(allow: str = "", **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": "postgresql://crawlhub:pw@db.example.com:5432/crawlhub",
        "redis_url": "redis://:pw@cache.example.net:6379/0",
        "channel_allow_hosts": allow,
    }
    return load_settings(**{**values, **overrides})


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A stand-in resolver: names map to the addresses the test gives them, others fail."""
    answers: dict[str, list[str]] = {}

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def refusal(target: str, rules: targets.Rules) -> str:
    with pytest.raises(ValueError, match=r".") as caught:
        targets.reachable_addresses(targets.parse_url(target), rules)
    return str(caught.value)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://[::1", "not a valid URL"),
        ("http://host.example/a\r\nX-Injected: 1", "control character"),
        ("http://host.example/a\tb", "control character"),
        ("http://host.example/a\u2028b", "control character"),
        ("http://host.example /a", "whitespace"),
        ("ftp://host.example/a", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("http:///path", "no host"),
        ("http://host.example:99999/", "not a valid URL"),
        ("http://127.0.0.1\\@evil.example/", "percent-encode"),
        ("http://2130706433/", "neither a host name nor an IP address"),
        ("http://0x7f.1/", "neither a host name nor an IP address"),
        ("http://bücher.example/", "xn--"),
    ],
)
def test_malformed_url_targets_are_refused_with_the_reason(target: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        channels.check_target("webhook", target)


@pytest.mark.parametrize(
    "address",
    [
        "a@b.example,c@d.example",
        "Someone <a@b.example>",
        "a@b.example\r\nBcc: victim@c.example",
        "a@localhost",
        "a..b@c.example",
        "ä@b.example",
        "a@b.example\x00",
    ],
)
def test_malformed_email_targets_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match=r"e-mail address|control character"):
        channels.check_target("email", address)


def test_plain_email_addresses_and_chat_urls_are_accepted() -> None:
    for kind, target in [("email", "ops+alerts@mail.example.com"), ("dingtalk", DINGTALK),
                         ("slack", SLACK), ("webhook", "https://u:p@hooks.example.org:8443/x?a=1")]:  # fmt: skip
        channels.check_target(kind, target)


@pytest.mark.parametrize(
    ("target", "what"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://127.9.9.9/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("http://192.168.1.10/hook", "private"),
        ("http://[fd00::1]/hook", "unique-local"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://[::]/hook", "unspecified"),
        ("http://100.100.100.200/latest", "non-public"),
        ("http://localhost:8080/hook", "local network name"),
        ("http://api.localhost/hook", "local network name"),
        ("http://metadata.google.internal/", "local network name"),
        ("http://redis:6379/", "local network name"),
        ("http://db.example.com/hook", "the database host"),
        ("http://cache.example.net/hook", "the Redis host"),
    ],
)
def test_local_and_service_targets_are_refused_unless_allowed(
    dns: dict[str, list[str]], target: str, what: str
) -> None:
    assert what in refusal(target, targets.Rules.of(settings()))
    assert "CRAWLHUB_CHANNEL_ALLOW_HOSTS" in refusal(target, targets.Rules.of(settings()))
    host = targets.parse_url(target).host
    dns[host] = ["93.184.216.34"]  # a name on the allow list may resolve
    allow = f"{host},127.0.0.0/8,::/0,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,169.254.0.0/16"
    allow += ",0.0.0.0/32,100.64.0.0/10"
    assert targets.reachable_addresses(targets.parse_url(target), targets.Rules.of(settings(allow)))


def test_a_cidr_on_the_allow_list_lets_its_addresses_through_and_no_others() -> None:
    rules = targets.Rules.of(settings("127.0.0.1, 10.1.0.0/16"))
    assert targets.reachable_addresses(targets.parse_url("http://127.0.0.1:9/x"), rules)
    assert targets.reachable_addresses(targets.parse_url("http://10.1.2.3/x"), rules)
    assert "private" in refusal("http://10.2.0.1/x", rules)
    assert "loopback" in refusal("http://127.0.0.2/x", rules)


def test_a_name_on_the_allow_list_lets_that_name_through_and_no_other(
    dns: dict[str, list[str]],
) -> None:
    dns["hooks.corp.example"] = ["10.20.30.40"]
    dns["other.corp.example"] = ["10.20.30.40"]
    rules = targets.Rules.of(settings("hooks.corp.example"))
    url = targets.parse_url("https://hooks.corp.example/alerts")
    assert targets.reachable_addresses(url, rules) == [ipaddress.ip_address("10.20.30.40")]
    assert "resolves to 10.20.30.40, which is a private address" in refusal(
        "https://other.corp.example/alerts", rules
    )


def test_an_other_name_of_the_database_host_is_refused_by_its_address(
    dns: dict[str, list[str]],
) -> None:
    dns["db.example.com"] = ["93.184.216.34"]
    dns["alias.example.org"] = ["93.184.216.34"]
    assert "the database host" in refusal("http://alias.example.org/", targets.Rules.of(settings()))
    literal = targets.Rules.of(settings(redis_url="redis://93.184.216.35:6379/0"))
    assert "the Redis host" in refusal("http://93.184.216.35/", literal)


def test_dns_rebinding_a_name_that_resolves_to_loopback_at_delivery_is_refused(
    dns: dict[str, list[str]],
) -> None:
    rules = targets.Rules.of(settings())
    url = targets.parse_url("https://hooks.rebind.example/alert")
    dns["hooks.rebind.example"] = ["93.184.216.34"]
    assert targets.reachable_addresses(url, rules) == [ipaddress.ip_address("93.184.216.34")]
    dns["hooks.rebind.example"] = ["127.0.0.1"]
    with pytest.raises(ValueError, match=r"resolves to 127\.0\.0\.1, which is a loopback address"):
        targets.reachable_addresses(url, rules)
    dns["hooks.rebind.example"] = ["93.184.216.34", "::ffff:10.0.0.1"]  # one bad address is enough
    with pytest.raises(ValueError, match="private address"):
        targets.reachable_addresses(url, rules)


def test_creating_a_channel_is_not_blocked_by_dns_failing_for_a_public_name(
    dns: dict[str, list[str]],
) -> None:
    channels.check_destination("slack", SLACK, settings())  # no DNS answer at all
    dns["hooks.slack.com"] = ["192.168.0.7"]
    with pytest.raises(InvalidInput) as caught:
        channels.check_destination("slack", SLACK, settings())
    assert caught.value.details == [
        {"type": "value_error", "loc": ["target"], "msg": caught.value.message}
    ]
    assert "private address" in caught.value.message and SECRET not in caught.value.message


def test_chat_urls_are_redacted_to_scheme_and_host() -> None:
    assert targets.redact(DINGTALK) == "https://oapi.dingtalk.com/…"
    assert targets.redact("http://[::1]:8080/x?y=z") == "http://[::1]:8080/…"
    message = (
        f"UnsupportedProtocol: Request URL {DINGTALK!r} failed; token {SECRET}; "
        f"path /services/T0001/B0001/{SECRET}"
    )
    for url in (DINGTALK, SLACK):
        scrubbed = targets.scrub(message, url)
        assert SECRET not in scrubbed and "https://oapi.dingtalk.com/…" in scrubbed
    assert SECRET not in targets.scrub(f"see http://10.0.0.1:81/hook?access_token={SECRET}")
