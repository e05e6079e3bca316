"""CrawlHub's own services are not the spiders': connections from the slot users to the
PostgreSQL and Redis of `DATABASE_URL` and `REDIS_URL` are refused by the kernel.

An nftables table `inet crawlhub` (made once per machine, shared by its workers) rejects TCP
from the slot users' uids to those ports on any address of this machine, and to the
addresses the services' host names resolve to elsewhere. Only a root worker can add it;
other set-ups must keep the services behind passwords and a firewall (docs/guide/
security.md). The spiders' network is otherwise the machine's: crawling needs it.

Each service's entry lives PROTECT_TTL_S and every live worker renews its own
(`refresh`, from its heartbeat thread, every RENEW_S): a port stops being refused once no
worker protects it (a service moved, a worker gone), instead of for the machine's uptime.
"""

import contextlib
import ipaddress
import logging
import shutil
import socket
import subprocess
from collections.abc import Iterable
from urllib.parse import urlsplit

from crawlhub.sandbox.isolation import Isolation

logger = logging.getLogger(__name__)

TABLE = "inet crawlhub"
NFT_TIMEOUT_S = 10
PROTECT_TTL_S = 900  # an entry no worker renews is dropped after this
RENEW_S = 120  # how often a live worker renews its entries
_renewal: list[str] = []  # this process's renewal script (nft commands), once protected
DEFAULT_PORTS = {"postgresql": 5432, "redis": 6379, "rediss": 6379}


def endpoints(urls: Iterable[str]) -> list[tuple[str, int]]:
    """(host, port) of each TCP service URL (unix sockets and SQLite have none)."""
    found = []
    for url in urls:
        parts = urlsplit(url)
        scheme = parts.scheme.split("+")[0]
        if scheme in DEFAULT_PORTS and parts.hostname:
            found.append((parts.hostname, parts.port or DEFAULT_PORTS[scheme]))
    return found


def protect(isolation: Isolation, urls: Iterable[str]) -> str:
    """Refuse the slot users' connections to these services; what was done, or why not."""
    services = endpoints(urls)
    if not services:
        return "no service of CrawlHub's is on the network"
    if not isolation.switch_user or isolation.uids is None:
        return ("not enforced: spiders run as the worker's user (a root worker refuses their "
                "connections with nftables)")  # fmt: skip
    nft = shutil.which("nft")
    if nft is None:
        return "not enforced: nft is not installed (Debian and Ubuntu: apt install nftables)"
    local_ports: set[int] = set()
    remote4: set[str] = set()
    remote6: set[str] = set()
    for host, port in services:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = {info[4][0] for info in found}
        except OSError as exc:
            return f"not enforced: cannot resolve {host}: {exc}"
        for address in addresses:
            ip = ipaddress.ip_address(str(address).split("%")[0])
            if ip.is_loopback or _is_local(str(ip)):
                local_ports.add(port)
            (remote4 if ip.version == 4 else remote6).add(f"{ip} . {port}")
    uids = f"{isolation.uids.start}-{isolation.uids.stop - 1}"
    script = [
        f"add table {TABLE}",
        f"add chain {TABLE} output {{ type filter hook output priority 0; policy accept; }}",
        f"add set {TABLE} uids {{ type uid; flags interval; }}",
        f"add set {TABLE} local_ports {{ type inet_service; flags timeout; }}",
        f"add set {TABLE} remote4 {{ type ipv4_addr . inet_service; flags timeout; }}",
        f"add set {TABLE} remote6 {{ type ipv6_addr . inet_service; flags timeout; }}",
        f"add element {TABLE} uids {{ {uids} }}",
    ]
    for name, elements in (("local_ports", local_ports), ("remote4", remote4),
                           ("remote6", remote6)):  # fmt: skip
        for element in sorted(map(str, elements)):
            # Added if missing, then replaced: its time to live starts again.
            entry = f"{TABLE} {name} {{ {element} timeout {PROTECT_TTL_S}s }}"
            script += [f"add element {entry}", f"delete element {TABLE} {name} {{ {element} }}",
                       f"add element {entry}"]  # fmt: skip
    # The chain's rules, made anew in the same transaction: never a moment without them.
    script.append(f"flush chain {TABLE} output")
    script += [
        f"add rule {TABLE} output meta skuid @uids {match} reject with tcp reset"
        for match in (
            "fib daddr type local tcp dport @local_ports",
            "ip daddr . tcp dport @remote4",
            "ip6 daddr . tcp dport @remote6",
        )
    ]
    try:
        if _without_timeouts(nft):  # an earlier version's (entries that never expire): made
            # anew in the same transaction; other live workers add theirs at their renewal
            _nft(nft, "\n".join([f"delete table {TABLE}", *script]))
        else:
            _nft(nft, "\n".join(script))
        _renewal[:] = [nft, *script]  # the whole of it: a flushed ruleset comes back too
    except (OSError, subprocess.SubprocessError) as exc:
        return f"not enforced: nft failed: {exc}"
    where = ", ".join(f"{host}:{port}" for host, port in services)
    return f"refused to the slot users by nftables ({where})"


def refresh() -> None:
    """Renew this process's entries, and make its table, sets and rules again where they
    went (a live worker's heartbeat thread calls it every RENEW_S); a failure is logged and
    tried again at the next call."""
    if not _renewal:
        return
    nft, *renewal = _renewal
    try:
        _nft(nft, "\n".join(renewal))
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("could not renew the nftables entries keeping spiders off CrawlHub's "
                       "services: %s", exc)  # fmt: skip


def _without_timeouts(nft: str) -> bool:
    """Whether the table exists with sets whose entries never expire."""
    try:
        listed = _nft(nft, f"list set {TABLE} local_ports")
    except (OSError, subprocess.SubprocessError):
        return False  # no table yet
    return "timeout" not in listed


def _nft(nft: str, script: str) -> str:
    command = [nft, *script.split()] if script.startswith("list") else [nft, "-f", "-"]
    done = subprocess.run(command, input=script, capture_output=True, text=True,
                          timeout=NFT_TIMEOUT_S, check=False)  # fmt: skip
    if done.returncode != 0:
        raise subprocess.SubprocessError(done.stderr.strip() or f"exit {done.returncode}")
    return done.stdout


def _is_local(address: str) -> bool:
    """Whether an address is one of this machine's (it can be bound to)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return True
    return False
