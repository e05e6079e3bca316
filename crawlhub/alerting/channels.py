"""Notification channels: their targets, changes, and a test delivery."""

import contextlib
from dataclasses import dataclass
from typing import Any

from crawlhub.alerting import senders, targets
from crawlhub.config import Settings
from crawlhub.context import Context
from crawlhub.errors import InvalidInput
from crawlhub.repo import alerts as repo
from crawlhub.repo import spiders as spider_repo
from crawlhub.repo.db import Session
from crawlhub.repo.models import Channel
from crawlhub.repo.types import utcnow
from crawlhub.repo.users import audit, audit_change, shown


@dataclass(frozen=True)
class ChannelTestOutcome:
    """What a test notification did: the target's HTTP status (None for e-mail or when none
    came) and, when it failed, a short reason (never the target's reply body)."""

    delivered: bool
    status_code: int | None
    error: str | None


def check_target(kind: str, target: str) -> None:
    """The form of a target: an e-mail channel needs a plain address, the others an http(s)
    URL with a host; no whitespace or control character in either (ValueError otherwise)."""
    if kind == "email":
        targets.check_email(target)
    else:
        targets.parse_url(target)


def check_destination(kind: str, target: str, settings: Settings) -> None:
    """A target's form and the SSRF rules: no loopback, link-local, private or unique-local
    address, no local name, not the database or Redis host, unless CRAWLHUB_CHANNEL_ALLOW_HOSTS
    allows it. A name is resolved too; if DNS fails now, delivery checks it again anyway.
    InvalidInput naming the `target` field otherwise."""
    try:
        check_target(kind, target)
        if kind == "email":  # the address is a recipient; the SMTP server is the operator's
            return
        # A name that does not resolve now (no DNS, not yet published) is no refusal.
        with contextlib.suppress(OSError):
            targets.reachable_addresses(targets.parse_url(target), targets.Rules.of(settings))
    except ValueError as exc:
        message = targets.scrub(str(exc), target)
        raise InvalidInput(
            message, details=[{"type": "value_error", "loc": ["target"], "msg": message}]
        ) from None


def list_channels(context: Context, *, page: int, page_size: int) -> tuple[list[Channel], int]:
    """A page of channels."""
    with context.db.read() as session:
        rows, total = repo.list_channels(session, page=page, page_size=page_size)
        return list(rows), total


def create_channel(context: Context, fields: dict[str, Any]) -> Channel:
    """Add a notification channel."""
    check_destination(fields["kind"], fields["target"], context.settings)
    with context.db.session() as session:
        fields = _resolve_spider(session, fields)
        channel = repo.create_channel(session, fields)
        audit(session, "channel.create", f"channel:{channel.id}",
              after={name: shown(name, value) for name, value in fields.items()})  # fmt: skip
        return channel


def update_channel(context: Context, ref: str, changes: dict[str, Any]) -> Channel:
    """Change a channel; a new kind or target is checked with the other (a channel whose
    target the rules now refuse can still be disabled or deleted)."""
    with context.db.session() as session:
        channel = repo.get_channel(session, ref)
        changes = _resolve_spider(session, changes)
        if "kind" in changes or "target" in changes:
            kind = changes.get("kind", channel.kind)
            check_destination(kind, changes.get("target", channel.target), context.settings)
        audit_change(session, "channel.update", f"channel:{channel.id}", channel, changes)
        return repo.update_channel(session, channel, changes)


def delete_channel(context: Context, ref: str) -> None:
    """Delete a channel and its delivery records."""
    with context.db.session() as session:
        repo.delete_channel(session, ref)
        audit(session, "channel.delete", f"channel:{ref}")


def test_channel(context: Context, ref: str) -> ChannelTestOutcome:
    """Send a test notification now, under the same rules as every delivery."""
    with context.db.session() as session:
        channel = repo.get_channel(session, ref)
        kind, target, secret = channel.kind, channel.target, channel.secret
    now = utcnow().isoformat()
    payload = {"id": None, "type": "test", "level": "info", "spider_id": None, "spider": None,
               "message": "test notification from CrawlHub", "task_id": None, "count": 1,
               "created_at": now, "last_seen_at": now}  # fmt: skip
    try:
        status = senders.send(kind, target, secret, payload, context.settings)
    except senders.DeliveryFailed as exc:
        return ChannelTestOutcome(False, exc.status_code, targets.scrub(exc.message, target))
    return ChannelTestOutcome(True, status, None)


def _resolve_spider(session: Session, fields: dict[str, Any]) -> dict[str, Any]:
    if fields.get("spider_id") is not None:
        fields = {**fields, "spider_id": spider_repo.get_spider(session, fields["spider_id"]).id}
    return fields
