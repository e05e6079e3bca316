"""Users, their personal API tokens, failed sign-ins, and the audit log."""

import json
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from crawlhub.errors import NotFound
from crawlhub.repo.db import get_by_ref, now_of
from crawlhub.repo.models import ApiToken, AuditEvent, ProjectMember, SignInFailures, User
from crawlhub.repo.types import utcnow

__all__ = ["AuditEvent", "NotFound", "SignInFailures"]


@dataclass(frozen=True)
class Actor:
    """Who the current request acts as, for the audit log and a run's `actor`."""

    name: str
    user_id: uuid.UUID | None = None
    address: str | None = None


# Set per request by the HTTP layer's access check; read where a change is written.
ACTOR: ContextVar[Actor | None] = ContextVar("crawlhub_actor", default=None)
SYSTEM = Actor("system")


def current_actor() -> Actor:
    return ACTOR.get() or SYSTEM


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def find_sso_user(session: Session, subject: str) -> User | None:
    """The user single sign-on made for a provider's subject (`<issuer> <sub>`)."""
    return session.scalar(select(User).where(User.sso_subject == subject))


def get_user(session: Session, ref: str, *, for_update: bool = False) -> User:
    """A user by name or id (or its first characters); NotFound otherwise."""
    return get_by_ref(session, User, ref, "user", for_update=for_update)


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.username)).all()


def other_admins(session: Session, user_id: uuid.UUID) -> int:
    """How many enabled admins there are besides this user."""
    return int(session.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.disabled.is_(False), User.id != user_id)) or 0)  # fmt: skip


def memberships_of(session: Session, user_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """A user's roles on single projects, by project id."""
    rows = session.execute(select(ProjectMember.project_id, ProjectMember.role)
                           .where(ProjectMember.user_id == user_id))  # fmt: skip
    return {project_id: role for project_id, role in rows}


def members_of(session: Session, project_id: uuid.UUID) -> list[tuple[ProjectMember, User]]:
    """A project's members with their users, by name."""
    rows = session.execute(
        select(ProjectMember, User).join(User, User.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project_id).order_by(User.username)
    ).all()  # fmt: skip
    return [(member, user) for member, user in rows]


def count_users(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def create_user(session: Session, fields: dict[str, Any]) -> User:
    user = User(**fields)
    session.add(user)
    session.flush()
    return user


@dataclass(frozen=True)
class Credential:
    """What a request's credential proves, read in one query: the user, its memberships,
    the token (if one), and the database's clock."""

    user: User
    memberships: dict[uuid.UUID, str]
    token: ApiToken | None
    now: datetime


def _credential(session: Session, stmt: Any) -> Credential | None:
    """The rows of a user (or token and user) joined with its memberships, one per project."""
    postgres = session.get_bind().dialect.name == "postgresql"
    stmt = stmt.add_columns(ProjectMember.project_id, ProjectMember.role)
    stmt = stmt.outerjoin(ProjectMember, ProjectMember.user_id == User.id)
    if postgres:
        stmt = stmt.add_columns(func.clock_timestamp())
    rows = session.execute(stmt).all()
    if not rows:
        return None
    first = rows[0]
    token = first[0] if isinstance(first[0], ApiToken) else None
    user = first[1] if token is not None else first[0]
    at = 2 if token is not None else 1
    memberships = {row[at]: row[at + 1] for row in rows if row[at] is not None}
    return Credential(user, memberships, token, first[-1] if postgres else utcnow())


def credential_of_token(session: Session, digest: str) -> Credential | None:
    """A personal token by its digest, with its owner and the owner's memberships."""
    return _credential(session, select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                       .where(ApiToken.digest == digest))  # fmt: skip


def credential_of_user(session: Session, user_id: uuid.UUID) -> Credential | None:
    """A user by id with its memberships."""
    return _credential(session, select(User).where(User.id == user_id))


def tokens_of(session: Session, user_id: uuid.UUID) -> Sequence[ApiToken]:
    return session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.created_at)
    ).all()


def get_token(session: Session, token_id: uuid.UUID) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"token '{token_id}' not found")
    return token


def touch_token(session: Session, token_id: uuid.UUID, every: timedelta) -> None:
    """Record a token's use (at most once per `every`, to spare a write per request)."""
    now = now_of(session)
    session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id,
               (ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < now - every))
        .values(last_used_at=now)
    )  # fmt: skip


def failures(session: Session, keys: Sequence[str]) -> dict[str, SignInFailures]:
    rows = session.scalars(select(SignInFailures).where(SignInFailures.key.in_(keys)))
    return {row.key: row for row in rows}


def count_failure(session: Session, key: str, now: datetime, forget_after: timedelta,
                  lock_after: int, lock_for: timedelta) -> SignInFailures:  # fmt: skip
    """Count a failed sign-in under a key; locked for `lock_for` once it reached
    `lock_after` failures (failures older than `forget_after` are forgotten)."""
    row = session.get(SignInFailures, key, with_for_update=True)
    if row is None:
        row = SignInFailures(key=key, failures=0, last_failed_at=now)
        session.add(row)
    elif row.last_failed_at < now - forget_after and (
        row.locked_until is None or row.locked_until < now
    ):
        row.failures, row.locked_until = 0, None
    row.failures += 1
    row.last_failed_at = now
    if row.failures >= lock_after and (row.locked_until is None or row.locked_until < now):
        row.locked_until = now + lock_for
    session.flush()
    return row


def forget_failures(session: Session, key: str) -> None:
    row = session.get(SignInFailures, key)
    if row is not None:
        session.delete(row)


def audit(session: Session, action: str, resource: str, *, before: dict[str, Any] | None = None,
          after: dict[str, Any] | None = None, actor: Actor | None = None) -> None:  # fmt: skip
    """Log a change in the transaction that makes it."""
    who = actor or current_actor()
    session.add(AuditEvent(actor=who.name, user_id=who.user_id, action=action,
                           resource=resource[:300], before=before, after=after,
                           address=who.address, at=now_of(session)))  # fmt: skip


SECRET = "********"  # noqa: S105 (what a hidden value reads as)


def shown(name: str, value: Any) -> Any:
    """A value as the audit log keeps it: secrets and env values hidden, the rest as JSON."""
    if name in ("secret", "password", "archive"):
        return SECRET if value else value
    if name == "env" and isinstance(value, dict):
        return dict.fromkeys(value, SECRET)
    return json.loads(json.dumps(value, default=str))


def audit_change(session: Session, action: str, resource: str, row: Any,
                 changes: dict[str, Any]) -> None:  # fmt: skip
    """Log a change of some fields of a row: each one's value before and after."""
    before = {name: shown(name, getattr(row, name, None)) for name in changes}
    after = {name: shown(name, value) for name, value in changes.items()}
    audit(session, action, resource, before=before, after=after)


def audit_page(session: Session, *, actor: str | None, action: str | None,
               resource: str | None, before_id: int | None, limit: int,
               since: datetime | None = None) -> Sequence[AuditEvent]:  # fmt: skip
    """Audit events newest first, after a cursor (the id of the last one seen)."""
    stmt = select(AuditEvent)
    if actor is not None:
        stmt = stmt.where(AuditEvent.actor == actor)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if resource is not None:
        stmt = stmt.where(AuditEvent.resource == resource)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if before_id is not None:
        stmt = stmt.where(AuditEvent.id < before_id)
    return session.scalars(stmt.order_by(AuditEvent.id.desc()).limit(limit)).all()
