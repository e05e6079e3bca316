"""Users and who a request is: passwords (Argon2), sign-in with throttling and lock-out,
personal API tokens, and the tokens of CRAWLHUB_API_TOKENS (instance-admin tokens).

Sign-in failures are counted per account name (whether or not the account exists) and per
address: from the 3rd failure in a row an account name waits 2^(n-3) s between tries (at
most a minute), the 10th locks it for 15 minutes, and 50 from one address lock that address
as long. An unknown name costs the same password check as a wrong password and gets the same
answers, so nothing tells one from the other.
"""

import hashlib
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from crawlhub.context import Context
from crawlhub.errors import BadRequest, Conflict, NotFound, Unauthorized
from crawlhub.repo import projects as project_repo
from crawlhub.repo import users as repo
from crawlhub.repo.db import db_now
from crawlhub.repo.models import ApiToken, ProjectMember, User
from crawlhub.repo.users import Actor

ROLES = ("viewer", "operator", "developer", "admin")  # on a project, lowest first
# A user's role on every project: `none` (only the projects it is a member of), or one of
# ROLES, where admin is an instance admin (users, channels, queues, every project).
USER_ROLES = ("none", *ROLES)
SCOPES = ("read", "run", "deploy", "admin")  # a scope is as wide as the role of its rank
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD, MAX_PASSWORD = 10, 1024
# A personal token: chp_ and 43 URL-safe characters (a prefix, not a secret).
TOKEN_PREFIX = "chp_"  # noqa: S105
FIRST_ADMIN = "admin"

BACKOFF_FROM = 3  # failures in a row before an account name waits between tries
BACKOFF_MAX = timedelta(seconds=60)
ACCOUNT_LOCK_AFTER, ADDRESS_LOCK_AFTER = 10, 50
LOCK_FOR = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=1)  # failures older than this (and no lock) are forgotten
TOKEN_TOUCH_EVERY = timedelta(seconds=60)
WRONG = "wrong user name or password"


class SignInRefused(Unauthorized):
    """A sign-in that failed: a wrong name or password, or too many failures."""


@dataclass(frozen=True)
class Identity:
    """Who a request comes from, as a credential proves it."""

    name: str  # "alice", "ci (alice)" for alice's token named ci, "config token"
    kind: str  # "user" (a dashboard session), "token" (a personal token), "config"
    role: str
    user_id: uuid.UUID | None = None
    scopes: tuple[str, ...] | None = None  # a token's; None: a session or a config token
    # Its roles on single projects (memberships), above `role`, which is on every project.
    projects: Mapping[uuid.UUID, str] = field(default_factory=dict)
    limit: frozenset[uuid.UUID] | None = None  # a token limited to these projects

    def actor(self, address: str | None) -> Actor:
        return Actor(self.name, self.user_id, address)


CONFIG = Identity("config token", "config", "admin")


@lru_cache(maxsize=1)
def hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _decoy() -> str:
    """A hash to check an unknown account's password against: the same work as a real one."""
    return hasher().hash(secrets.token_urlsafe(16))


def _checked(password_hash: str | None, password: str) -> bool:
    try:
        return hasher().verify(password_hash or _decoy(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def check_role(role: str, roles: tuple[str, ...] = USER_ROLES) -> str:
    if role not in roles:
        raise BadRequest(f"role must be one of {', '.join(roles)}")
    return role


def rank(role: str) -> int:
    """A role's rank among ROLES (-1: none)."""
    return ROLES.index(role) if role in ROLES else -1


def create_user(context: Context, username: str, password: str | None, role: str) -> User:
    """A new user (no password: signs in through single sign-on only)."""
    if not USERNAME.match(username):
        raise BadRequest("a user name is 1-64 letters, digits, '_', '.', '@' or '-', starting "
                         "with a letter or digit")  # fmt: skip
    check_role(role)
    digest = hasher().hash(check_password(password)) if password is not None else None
    with context.db.session() as session:
        if repo.find_user(session, username) is not None:
            raise Conflict(f"user '{username}' exists already")
        user = repo.create_user(session, {"username": username, "password_hash": digest,
                                          "role": role, "disabled": False,
                                          "session_version": 0})  # fmt: skip
        repo.audit(session, "user.create", f"user:{username}", after={"role": role})
        return user


def ensure_first_admin(context: Context, password: str | None) -> str | None:
    """At set-up, when there is no user yet: `admin` with the given password or a new one;
    the new one is returned (to be shown once), None when nothing was created."""
    with context.db.read() as session:
        if repo.count_users(session):
            return None
    chosen = password or secrets.token_urlsafe(12)
    try:
        create_user(context, FIRST_ADMIN, chosen, "admin")
    except Conflict:  # another process made it meanwhile
        return None
    return None if password else chosen


def update_user(context: Context, ref: str, *, role: str | None = None,
                disabled: bool | None = None, password: str | None = None) -> User:  # fmt: skip
    """An admin's change to a user: its role, disabled (its sessions and tokens stop working
    on their next request) or a new password (its sessions end)."""
    with context.db.session() as session:
        user = repo.get_user(session, ref, for_update=True)
        before = {"role": user.role, "disabled": user.disabled}
        demoted = (role is not None and role != "admin") or disabled is True
        if user.role == "admin" and demoted and not repo.other_admins(session, user.id):
            raise Conflict(f"{user.username} is the last enabled admin: make another admin "
                           "first")  # fmt: skip
        if role is not None:
            user.role = check_role(role)
        if disabled is not None and disabled != user.disabled:
            user.disabled = disabled
            user.session_version += 1
        if password is not None:
            user.password_hash = hasher().hash(check_password(password))
            user.session_version += 1
        after = {"role": user.role, "disabled": user.disabled}
        if password is not None:
            after["password"] = "changed"  # noqa: S105 (what the log says, not a password)
        repo.audit(session, "user.update", f"user:{user.username}", before=before, after=after)
        session.flush()
        return user


def change_password(context: Context, user_id: uuid.UUID, current: str, new: str) -> User:
    """A user's own change: the current password first. Their other sessions end."""
    check_password(new)
    with context.db.session() as session:
        user = repo.get_user(session, str(user_id), for_update=True)
        if not _checked(user.password_hash, current):
            raise BadRequest("the current password is wrong")
        user.password_hash = hasher().hash(new)
        user.session_version += 1
        repo.audit(session, "user.password", f"user:{user.username}")
        session.flush()
        return user


def list_users(context: Context) -> list[User]:
    with context.db.read() as session:
        return list(repo.list_users(session))


def get_user(context: Context, ref: str) -> User:
    with context.db.read() as session:
        return repo.get_user(session, ref)


def sign_in(context: Context, username: str, password: str, address: str | None) -> User:
    """The user a name and password prove, throttled per account name and per address;
    SignInRefused otherwise, with the same answers whether the account exists or not. A try
    refused for waiting counts as a failure too (it is not checked)."""
    keys = [f"user:{username.lower()[:150]}", f"addr:{address or 'unknown'}"]
    with context.db.session() as session:
        now = db_now(session)
        wait = _wait(repo.failures(session, keys), keys, now)
        if wait is None:
            user = repo.find_user(session, username) if len(username) <= 64 else None
            active = user if user is not None and not user.disabled else None
            if _checked(active.password_hash if active else None, password) and active:
                repo.forget_failures(session, keys[0])
                active.last_sign_in_at = now
                repo.audit(session, "sign_in", f"user:{active.username}",
                           actor=Actor(active.username, active.id, address))  # fmt: skip
                session.flush()
                return active
    with context.db.session() as session:  # counted in a transaction of its own
        now = db_now(session)
        account = repo.count_failure(session, keys[0], now, FORGET_AFTER, ACCOUNT_LOCK_AFTER,
                                     LOCK_FOR)  # fmt: skip
        repo.count_failure(session, keys[1], now, FORGET_AFTER, ADDRESS_LOCK_AFTER, LOCK_FOR)
        who = Actor(username[:150], None, address)
        repo.audit(session, "sign_in.failed" if wait is None else "sign_in.throttled", keys[0],
                   actor=who)  # fmt: skip
        if account.failures == ACCOUNT_LOCK_AFTER and account.locked_until is not None:
            repo.audit(session, "sign_in.locked", keys[0], actor=who,
                       after={"until": account.locked_until.isoformat()})  # fmt: skip
    if wait is None:
        raise SignInRefused(WRONG)
    raise SignInRefused(f"too many failed sign-ins: try again in {wait} s")


def _wait(found: Mapping[str, repo.SignInFailures], keys: list[str],
          now: datetime) -> int | None:  # fmt: skip
    """Seconds before another try is taken, None when it may be tried now."""
    waits = []
    for key in keys:
        row = found.get(key)
        if row is None:
            continue
        if row.locked_until is not None and row.locked_until > now:
            waits.append((row.locked_until - now).total_seconds())
        elif (
            key.startswith("user:")
            and row.failures >= BACKOFF_FROM
            and (row.last_failed_at > now - FORGET_AFTER)
        ):
            pause = min(timedelta(seconds=2 ** (row.failures - BACKOFF_FROM)), BACKOFF_MAX)
            if row.last_failed_at + pause > now:
                waits.append((row.last_failed_at + pause - now).total_seconds())
    return max(1, int(max(waits)) + 1) if waits else None


def session_identity(context: Context, user_id: str, version: int) -> Identity | None:
    """The user a dashboard session was signed for, while it is enabled and the session
    predates no password change or disable."""
    try:
        uid = uuid.UUID(user_id)
    except ValueError:
        return None
    with context.db.lookup() as session:
        found = repo.credential_of_user(session, uid)
    if found is None or found.user.disabled or found.user.session_version != version:
        return None
    user = found.user
    return Identity(user.username, "user", user.role, user.id, projects=found.memberships)


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(context: Context, user_id: uuid.UUID, name: str, scopes: list[str],
                 expires_at: datetime | None, *, projects: list[str] | None = None,
                 replace: bool = False) -> tuple[ApiToken, str]:  # fmt: skip
    """A personal token (and its text, shown this once) with scopes no wider than its
    owner's widest role, limited to some projects (names or ids, among those the owner may
    read) when given; `replace`: one of the same name is deleted (a new `crawlhub login`)."""
    if not 1 <= len(name) <= 64 or "\x00" in name:
        raise BadRequest("a token's name is 1 to 64 characters")
    if not scopes or any(scope not in SCOPES for scope in scopes):
        raise BadRequest(f"scopes are some of {', '.join(SCOPES)}")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with context.db.session() as session:
        user = repo.get_user(session, str(user_id))
        widest = max(SCOPES.index(scope) for scope in scopes)
        if widest > widest_rank(session, user):
            raise BadRequest(f"scope '{SCOPES[widest]}' is wider than {user.username}'s roles")
        project_ids = None
        if projects is not None:
            if not projects:
                raise BadRequest("projects: name one at least, or leave it out for all")
            project_ids = sorted({str(project_repo.get_project(session, ref).id)
                                  for ref in projects})  # fmt: skip
        if expires_at is not None and expires_at <= db_now(session):
            raise BadRequest("expires_at is in the past")
        for existing in repo.tokens_of(session, user.id):
            if existing.name != name:
                continue
            if not replace:
                raise Conflict(f"{user.username} has a token named '{name}' already")
            session.delete(existing)
            session.flush()
            repo.audit(session, "token.revoke", f"token:{user.username}/{name}")
        token = ApiToken(user_id=user.id, name=name, digest=digest_of(plain),
                         hint=plain[: len(TOKEN_PREFIX) + 4], scopes=sorted(set(scopes)),
                         project_ids=project_ids, expires_at=expires_at)  # fmt: skip
        session.add(token)
        session.flush()
        expiry = expires_at.isoformat() if expires_at else None
        repo.audit(session, "token.create", f"token:{user.username}/{name}",
                   after={"scopes": token.scopes, "projects": project_ids,
                          "expires_at": expiry})  # fmt: skip
        return token, plain


def sign_in_for_token(context: Context, username: str, password: str, address: str | None,
                      name: str, scopes: list[str] | None,
                      expires_at: datetime | None) -> tuple[ApiToken, str]:  # fmt: skip
    """A sign-in that yields a personal token (`crawlhub login`): as wide as the user's role
    unless scopes are given; one of the same name is replaced."""
    user = sign_in(context, username, password, address)
    with context.db.read() as session:
        widest = widest_rank(session, user)
    chosen = scopes or [SCOPES[widest]]
    return create_token(context, user.id, name, chosen, expires_at, replace=True)


def widest_rank(session: Session, user: User) -> int:
    """The rank of a user's widest role, on every project or as a member of one (reading
    is everyone's who signs in: a `read` token is open to all)."""
    roles = [user.role, *repo.memberships_of(session, user.id).values()]
    return max(0, *(rank(role) for role in roles))


def list_members(context: Context, project_ref: str) -> list[tuple[ProjectMember, User]]:
    """A project's members, by name."""
    with context.db.read() as session:
        project = project_repo.get_project(session, project_ref)
        return repo.members_of(session, project.id)


def set_member(context: Context, project_ref: str, username: str,
               role: str) -> tuple[ProjectMember, User]:  # fmt: skip
    """Give a user a role on a project (a project admin's or an instance admin's change)."""
    with context.db.session() as session:
        project = project_repo.get_project(session, project_ref, for_update=True)
        check_role(role, ROLES)
        user = repo.get_user(session, username)
        member = session.get(ProjectMember, (project.id, user.id))
        before = {"role": member.role} if member is not None else None
        if member is None:
            member = ProjectMember(project_id=project.id, user_id=user.id, role=role)
            session.add(member)
        member.role = role
        session.flush()
        repo.audit(session, "member.set", f"project:{project.name}/{user.username}",
                   before=before, after={"role": role})  # fmt: skip
        return member, user


def remove_member(context: Context, project_ref: str, username: str) -> None:
    """Take a user's membership of a project away (its role everywhere stays)."""
    with context.db.session() as session:
        project = project_repo.get_project(session, project_ref, for_update=True)
        user = repo.get_user(session, username)
        member = session.get(ProjectMember, (project.id, user.id))
        if member is None:
            raise NotFound(f"{user.username} is not a member of project '{project.name}'")
        repo.audit(session, "member.remove", f"project:{project.name}/{user.username}",
                   before={"role": member.role})  # fmt: skip
        session.delete(member)


def project_names(context: Context, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The names of these projects (those that exist)."""
    with context.db.read() as session:
        return project_repo.names_by_id(session, ids)


def list_tokens(context: Context, user_id: uuid.UUID) -> list[ApiToken]:
    with context.db.read() as session:
        return list(repo.tokens_of(session, user_id))


def revoke_token(context: Context, user_id: uuid.UUID | None, token_id: uuid.UUID) -> ApiToken:
    """Revoke a token (its owner's, or any when `user_id` is None: an admin)."""
    with context.db.session() as session:
        token = repo.get_token(session, token_id)
        if user_id is not None and token.user_id != user_id:
            raise NotFound(f"token '{token_id}' not found")
        if token.revoked_at is None:
            token.revoked_at = db_now(session)
            owner = repo.get_user(session, str(token.user_id))
            repo.audit(session, "token.revoke", f"token:{owner.username}/{token.name}")
        session.flush()
        return token


def token_identity(context: Context, plain: str, username: str | None = None) -> Identity | None:
    """Who a personal token is (when `username` is given, it must be its owner's); None
    for an unknown, revoked or expired token, or a disabled owner."""
    if not plain.startswith(TOKEN_PREFIX) or len(plain) > 100:
        return None
    with context.db.lookup() as session:  # one query, outside a transaction
        found = repo.credential_of_token(session, digest_of(plain))
    if found is None or found.token is None:
        return None
    token, user, now = found.token, found.user, found.now
    if (token.revoked_at is not None or user.disabled
            or (token.expires_at is not None and token.expires_at <= now)
            or (username is not None and username != user.username)):  # fmt: skip
        return None
    if token.last_used_at is None or token.last_used_at < now - TOKEN_TOUCH_EVERY:
        with context.db.session() as session:  # at most once a minute
            repo.touch_token(session, token.id, TOKEN_TOUCH_EVERY)
    limit = (frozenset(uuid.UUID(p) for p in token.project_ids)
             if token.project_ids is not None else None)  # fmt: skip
    return Identity(f"{token.name} ({user.username})", "token", user.role, user.id,
                    tuple(token.scopes), found.memberships, limit)  # fmt: skip


def audit_events(context: Context, *, actor: str | None, action: str | None,
                 resource: str | None, before_id: int | None,
                 limit: int) -> list[repo.AuditEvent]:  # fmt: skip
    """The audit log, newest first, a page after a cursor."""
    with context.db.read() as session:
        return list(repo.audit_page(session, actor=actor, action=action, resource=resource,
                                    before_id=before_id, limit=limit))  # fmt: skip


def sso_user(context: Context, issuer: str, subject: str, name_hint: str) -> User:
    """The user a single sign-on provider vouched for: the one it made before, else a new
    user with CRAWLHUB_OIDC_DEFAULT_ROLE and a name from the provider's (made unique);
    SignInRefused when that user is disabled."""
    key = f"{issuer} {subject}"[:512]
    with context.db.session() as session:
        user = repo.find_sso_user(session, key)
        if user is None:
            base = re.sub(r"[^A-Za-z0-9_.@-]", "-", name_hint)[:56].strip("-._@") or "user"
            name, n = base, 1
            while repo.find_user(session, name) is not None:
                n += 1
                name = f"{base}-{n}"
            role = context.settings.oidc_default_role
            user = repo.create_user(session, {"username": name, "password_hash": None,
                                              "sso_subject": key, "role": role,
                                              "disabled": False, "session_version": 0})  # fmt: skip
            repo.audit(session, "user.create", f"user:{name}", after={"role": role, "sso": key},
                       actor=Actor(name, user.id))  # fmt: skip
        if user.disabled:
            repo.audit(session, "sign_in.failed", f"user:{user.username}",
                       actor=Actor(user.username, user.id), after={"sso": "disabled"})  # fmt: skip
            raise SignInRefused(f"{user.username} is disabled")
        user.last_sign_in_at = db_now(session)
        repo.audit(session, "sign_in", f"user:{user.username}", after={"sso": issuer},
                   actor=Actor(user.username, user.id))  # fmt: skip
        session.flush()
        return user
