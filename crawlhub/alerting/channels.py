"""Notification channels: their targets, changes, and a test delivery."""

import re
from typing import Any

from crawlhub.alerting import senders
from crawlhub.context import Context
from crawlhub.errors import InvalidInput
from crawlhub.repo import alerts as repo
from crawlhub.repo import spiders as spider_repo
from crawlhub.repo.db import Session
from crawlhub.repo.models import Channel
from crawlhub.repo.types import utcnow

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_target(kind: str, target: str) -> None:
    """An e-mail channel needs an address; the others an http(s) URL (ValueError otherwise)."""
    if kind == "email":
        if not EMAIL.match(target):
            raise ValueError(f"target '{target[:80]}' is not an e-mail address")
    elif not target.startswith(("https://", "http://")):
        raise ValueError("target must be an http:// or https:// URL")


def list_channels(context: Context, *, page: int, page_size: int) -> tuple[list[Channel], int]:
    """A page of channels."""
    with context.db.read() as session:
        rows, total = repo.list_channels(session, page=page, page_size=page_size)
        return list(rows), total


def create_channel(context: Context, fields: dict[str, Any]) -> Channel:
    """Add a notification channel."""
    with context.db.session() as session:
        fields = _resolve_spider(session, fields)
        return repo.create_channel(session, fields)


def update_channel(context: Context, ref: str, changes: dict[str, Any]) -> Channel:
    """Change a channel; kind and target are checked together."""
    with context.db.session() as session:
        channel = repo.get_channel(session, ref)
        changes = _resolve_spider(session, changes)
        try:
            check_target(changes.get("kind", channel.kind), changes.get("target", channel.target))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
        return repo.update_channel(session, channel, changes)


def delete_channel(context: Context, ref: str) -> None:
    """Delete a channel and its delivery records."""
    with context.db.session() as session:
        repo.delete_channel(session, ref)


def test_channel(context: Context, ref: str) -> tuple[bool, str | None]:
    """Send a test notification now; (delivered, error)."""
    with context.db.session() as session:
        channel = repo.get_channel(session, ref)
        kind, target, secret = channel.kind, channel.target, channel.secret
    now = utcnow().isoformat()
    payload = {"id": None, "type": "test", "level": "info", "spider_id": None, "spider": None,
               "message": "test notification from CrawlHub", "task_id": None, "count": 1,
               "created_at": now, "last_seen_at": now}  # fmt: skip
    try:
        senders.send(kind, target, secret, payload, context.settings)
    except senders.DeliveryFailed as exc:
        return False, exc.message
    return True, None


def _resolve_spider(session: Session, fields: dict[str, Any]) -> dict[str, Any]:
    if fields.get("spider_id") is not None:
        fields = {**fields, "spider_id": spider_repo.get_spider(session, fields["spider_id"]).id}
    return fields
