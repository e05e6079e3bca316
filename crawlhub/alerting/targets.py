"""Where a channel may send: strict targets, the SSRF rules, checked addresses, redaction."""

import contextlib
import functools
import ipaddress
import logging
import re
import socket
import unicodedata
import urllib.parse
from dataclasses import dataclass

import httpx

from crawlhub.config import Settings
from crawlhub.errors import ConfigError

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_VAR = "CRAWLHUB_CHANNEL_ALLOW_HOSTS"
URL_SCHEMES = {"http": 80, "https": 443}
# Characters a URL cannot carry unencoded (RFC 3986), beside whitespace and control
# characters; a backslash in particular is read as "/" by some parsers and not by others.
URL_FORBIDDEN = set('\\<>"`{}|^')
LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
MAX_HOST = 253
# Names that only ever mean this machine or its private network (RFC 6761, RFC 8375, mDNS).
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
LOCAL_SUFFIXES = (".localhost", ".localdomain", ".local", ".internal", ".home.arpa", ".lan")
UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
SITE_LOCAL = ipaddress.ip_network("fec0::/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
EMAIL = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)",
    re.ASCII,
)
URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
REDACTED = "…"
# Pieces of a URL shorter than this ("/", "x=1") hide no credential and would mangle the text.
MIN_SECRET_PIECE = 4
MIN_TOKEN_SEGMENT = 12


@dataclass(frozen=True)
class UrlTarget:
    """A parsed channel URL: lower-case host without brackets or trailing dot, and its port."""

    scheme: str
    host: str
    port: int
    ip: IPAddress | None  # the host, when it is an IP literal
    netloc: str  # host[:port] as the Host header carries it


@dataclass(frozen=True)
class Rules:
    """The SSRF rules of one process: what CRAWLHUB_CHANNEL_ALLOW_HOSTS lets through, and
    the hosts of DATABASE_URL and REDIS_URL."""

    allowed_names: frozenset[str]
    allowed_networks: tuple[IPNetwork, ...]
    service_hosts: dict[str, str]  # host -> what it is ("the database host")

    @classmethod
    def of(cls, settings: Settings) -> "Rules":
        """The rules the settings ask for; an entry of the allow list that is neither a host
        name nor an address or CIDR is ignored with a warning (the rules only get stricter)."""
        names, networks = _allow_list(settings.channel_allow_hosts)
        services: dict[str, str] = {}
        urls = [("the database host", settings.database_url)]
        if settings.redis_url is not None:
            urls.append(("the Redis host", settings.redis_url))
        for role, secret in urls:
            for host in _hosts_of(secret.get_secret_value()):
                services.setdefault(host, role)
        return cls(names, networks, services)


def check_text(target: str) -> None:
    """No whitespace or control character anywhere (ValueError otherwise): urllib silently
    drops CR, LF and tab, so `…/a\\r\\nX-Injected: 1` would otherwise pass as a path."""
    for char in target:
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise ValueError(f"target contains whitespace or a control character ({char!r})")


def parse_url(target: str) -> UrlTarget:
    """An http(s) URL with a host, read strictly (ValueError naming what is wrong)."""
    check_text(target)
    if bad := sorted(URL_FORBIDDEN.intersection(target)):
        raise ValueError(f"target contains {' '.join(bad)}, which a URL must percent-encode")
    try:
        parts = urllib.parse.urlsplit(target)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range"
        raise ValueError(f"target is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        raise ValueError("target must be an http:// or https:// URL")
    raw_host = parts.hostname or ""
    host = raw_host.rstrip(".")
    if not host:
        raise ValueError("target URL has no host")
    ip = _ip_literal(host)
    if ip is None and not _is_host_name(host):
        raise ValueError(
            "target host is neither a host name nor an IP address (write an international "
            "name in its xn-- form)"
        )
    try:  # the sender builds its request with httpx: both parsers must see the same host
        seen = httpx.URL(target).host.lower().rstrip(".")
    except httpx.InvalidURL as exc:
        raise ValueError(f"target is not a valid URL: {exc}") from None
    if seen != host:
        raise ValueError("target URL is ambiguous: its host reads differently to different parsers")
    bracketed = f"[{raw_host}]" if ip is not None and ip.version == 6 else raw_host
    netloc = bracketed if port is None else f"{bracketed}:{port}"
    return UrlTarget(scheme, host, port or URL_SCHEMES[scheme], ip, netloc)


def check_email(target: str) -> None:
    """A plain addr-spec `local@domain.tld` in ASCII: no display name, no second address,
    nothing a mail header could be split on (ValueError otherwise)."""
    check_text(target)
    match = EMAIL.fullmatch(target)
    if match is None or len(match["local"]) > 64 or len(target) > 254:
        raise ValueError("target is not an e-mail address (local@domain.tld)")


def check_host(url: UrlTarget, rules: Rules) -> None:
    """The rules that need no DNS: allowed names, the database and Redis hosts, local
    names, and IP literals (ValueError naming the rule broken)."""
    if url.host in rules.allowed_names:
        return
    if url.ip is not None:
        check_address(url.ip, rules)
    elif role := rules.service_hosts.get(url.host):
        raise ValueError(f"target host {url.host} is {role}{_allow_hint()}")
    elif url.host in LOCAL_NAMES or url.host.endswith(LOCAL_SUFFIXES) or "." not in url.host:
        raise ValueError(f"target host {url.host} is a local network name{_allow_hint()}")


def check_address(
    ip: IPAddress, rules: Rules, host: str | None = None,
    services: dict[IPAddress, str] | None = None,
) -> None:  # fmt: skip
    """Refuse an address that is not public or is the database's or Redis's (`services`: their
    resolved addresses), unless CRAWLHUB_CHANNEL_ALLOW_HOSTS allows it (ValueError naming
    what it is)."""
    inner = _embedded_ipv4(ip)
    if any(a in net for net in rules.allowed_networks for a in (ip, inner) if a is not None):
        return
    what = []
    if kind := address_kind(inner or ip):
        what.append(f"{'an' if kind == 'unspecified' else 'a'} {kind} address")
    if role := rules.service_hosts.get(str(ip)) or (services or {}).get(ip):
        what.append(role)
    if not what:
        return
    name = f"target host {host} resolves to {ip}, which" if host else f"target host {ip}"
    raise ValueError(f"{name} is {' and '.join(what)}{_allow_hint()}")


def address_kind(ip: IPAddress) -> str | None:
    """What makes an address off limits (`loopback`, `private`, …), or None when public."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.version == 6 and ip in UNIQUE_LOCAL:
        return "unique-local"
    if ip.is_private:
        return "private"
    if ip.is_multicast:
        return "multicast"
    if ip.version == 6 and ip in SITE_LOCAL:
        return "site-local"
    if ip.is_reserved or not ip.is_global:  # e.g. 100.64.0.0/10, where clouds put metadata
        return "non-public"
    return None


def reachable_addresses(url: UrlTarget, rules: Rules) -> list[IPAddress]:
    """Every address the target's host resolves to, each of them checked: the only addresses
    a sender may connect to. ValueError when a rule is broken, OSError when DNS fails."""
    check_host(url, rules)
    if url.ip is not None:
        return [url.ip]
    addresses = resolve(url.host, url.port)
    if url.host in rules.allowed_names:
        return addresses
    services = _service_addresses(rules)
    for ip in addresses:
        check_address(ip, rules, url.host, services)
    return addresses


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of a host name, in the resolver's order, each once (OSError when none)."""
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = ipaddress.ip_address(str(sockaddr[0]))
        if ip not in found:
            found.append(ip)
    if not found:
        raise OSError(f"{host} has no address")
    return found


def redact(url: str) -> str:
    """A URL fit for a log line or an error: scheme, host and port only. The path and query
    are where Slack, DingTalk, Feishu and WeCom put the channel's credential."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<a URL>"
    if not host:
        return REDACTED
    netloc = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{netloc}{f':{port}' if port else ''}/{REDACTED}"


def scrub(text: str, *urls: str) -> str:
    """Text with every URL in it redacted, and any piece of the given channel URLs (path,
    query, query values, user info) that it quotes without a scheme removed too."""
    text = URL_IN_TEXT.sub(lambda match: redact(match.group()), text)
    pieces: set[str] = set()
    for url in urls:
        pieces.update(_secret_pieces(url))
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, REDACTED)
    return text


def _secret_pieces(url: str) -> set[str]:
    forms = {url, urllib.parse.unquote(url)}
    with contextlib.suppress(httpx.InvalidURL):
        forms.add(str(httpx.URL(url)))
    pieces: set[str] = set()
    for form in forms:
        try:
            parts = urllib.parse.urlsplit(form)
        except ValueError:
            pieces.add(form)
            continue
        pieces.update({form, parts.path, parts.query, f"{parts.path}?{parts.query}"})
        pieces.update(parts.netloc.rpartition("@")[0].split(":"))  # user, password
        pieces.update(v for _, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        # Slack and Feishu put the token in a path segment; short segments ("hook") are words.
        pieces.update(p for p in parts.path.split("/") if len(p) >= MIN_TOKEN_SEGMENT)
    return {p for p in pieces if len(p) >= MIN_SECRET_PIECE}


def check_allow_list(value: str) -> None:
    """At a process's start: every entry of CRAWLHUB_CHANNEL_ALLOW_HOSTS is a host name, an
    address or a CIDR (ConfigError naming the first that is not)."""
    for entry, parsed in _allow_entries(value):
        if parsed is None:
            raise ConfigError(f"{ALLOW_VAR}: {entry[:80]!r} is neither a host name nor an "
                              "address or CIDR")  # fmt: skip


@functools.lru_cache(maxsize=4)  # read once per value: a bad entry is warned about once
def _allow_list(value: str) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry, parsed in _allow_entries(value):
        if isinstance(parsed, str):
            names.add(parsed)
        elif parsed is not None:
            networks.append(parsed)
        else:  # settings made without a process start (tests, scripts)
            logger.warning("%s: ignoring %r, neither a host name nor an address or CIDR",
                           ALLOW_VAR, entry[:80])  # fmt: skip
    return frozenset(names), tuple(networks)


def _allow_entries(value: str) -> list[tuple[str, IPNetwork | str | None]]:
    """Each entry of an allow list with what it is: a network, a host name, or None."""
    found: list[tuple[str, IPNetwork | str | None]] = []
    for raw in value.split(","):
        entry = raw.strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            found.append((entry, ipaddress.ip_network(entry.strip("[]"), strict=False)))
        except ValueError:
            found.append((entry, entry if _is_host_name(entry) else None))
    return found


def _allow_hint() -> str:
    return f" (allow it with {ALLOW_VAR})"


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_host_name(host: str) -> bool:
    """A DNS name in ASCII whose last label is not numeric: `2130706433`, `127.1` and
    `0x7f.1` are read as IPv4 addresses by the resolver, never as names."""
    labels = host.split(".")
    if len(host) > MAX_HOST or not all(LABEL.fullmatch(label) for label in labels):
        return False
    return not re.fullmatch(r"[0-9]+|0x[0-9a-f]*", labels[-1])


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, Teredo, compatible)."""
    if ip.version == 4:
        return None
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64 or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _hosts_of(url: str) -> list[str]:
    """The hosts a database or Redis URL names (libpq allows `h1:5432,h2:5432`)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return []
    hosts = []
    netloc = parts.netloc.rpartition("@")[2]
    query_hosts = urllib.parse.parse_qs(parts.query).get("host", [])
    for item in [*netloc.split(","), *",".join(query_hosts).split(",")]:
        host = item.strip()
        if host.startswith("["):
            host = host[1:].partition("]")[0]
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        host = urllib.parse.unquote(host).lower().rstrip(".")
        if host and not host.startswith("/"):  # a socket path is no network host
            hosts.append(host)
            if (ip := _ip_literal(host)) is not None:
                hosts[-1] = str(ip)
    return hosts


def _service_addresses(rules: Rules) -> dict[IPAddress, str]:
    """The addresses of the database and Redis hosts now; a name that does not resolve
    cannot be reached by a channel either."""
    found: dict[IPAddress, str] = {}
    for host, role in rules.service_hosts.items():
        try:
            addresses = [ip] if (ip := _ip_literal(host)) else resolve(host, 0)
        except OSError:
            continue
        for address in addresses:
            found.setdefault(address, role)
    return found
