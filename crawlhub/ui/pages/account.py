"""Your account (password, personal tokens) and, for instance admins, the users and the
audit log."""

import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from crawlhub.errors import BadRequest
from crawlhub.services import accounts
from crawlhub.ui.forms import listed
from crawlhub.ui.rendering import action, back, page, render
from crawlhub.web.permissions import identity_of, user_id_of
from crawlhub.web.sessions import Session
from crawlhub.web.validation import ctx


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def account_page(request: Request, session: Session,
                 created: tuple[Any, str] | None = None) -> Response:  # fmt: skip
    """Your roles, a form to change your password, your personal tokens (a new one's text
    this once)."""
    identity, context = identity_of(request), ctx(request)
    tokens = (accounts.list_tokens(context, identity.user_id)
              if identity is not None and identity.user_id else [])  # fmt: skip
    ids = {*(identity.projects if identity else ())}
    ids |= {uuid.UUID(p) for t in tokens for p in t.project_ids or ()}
    by_id = accounts.project_names(context, ids)
    names: dict[object, str] = {}
    for key, name in by_id.items():  # by id (memberships) and by its text (tokens)
        names[key] = names[str(key)] = name
    return render(request, session, "account.html", identity=identity, tokens=tokens,
                  scopes=accounts.SCOPES, created=created, project_names=names)  # fmt: skip


@page
def show_account(request: Request, session: Session) -> Response:
    """Your role, a form to change your password, and your personal tokens."""
    return account_page(request, session)


@action
def change_password(request: Request, session: Session, form: FormData) -> Response:
    """Change your password; your other sessions end (this one is signed again)."""
    if _text(form, "new") != _text(form, "again"):
        raise BadRequest("the two new passwords differ")
    accounts.change_password(ctx(request), user_id_of(request), _text(form, "current"),
                             _text(form, "new"))  # fmt: skip
    return back("/login?next=/account", "Password changed: sign in with the new one.")


@action
def create_token(request: Request, session: Session, form: FormData) -> Response:
    """A new personal token, shown on this page once."""
    days = _text(form, "days").strip()
    expires = None
    if days:
        if not days.isdigit() or not 1 <= int(days) <= 3650:
            raise BadRequest("expires in: a number of days from 1 to 3650, or empty")
        expires = datetime.now(UTC) + timedelta(days=int(days))
    scopes = [scope for scope in accounts.SCOPES if form.get(f"scope-{scope}")]
    me, name = user_id_of(request), _text(form, "name").strip()
    made = accounts.create_token(ctx(request), me, name, scopes, expires,
                                 projects=listed(form, "projects"))  # fmt: skip
    return account_page(request, session, made)


@action
def revoke_token(request: Request, session: Session, form: FormData) -> Response:
    try:
        token_id = uuid.UUID(request.path_params["id"])
    except ValueError:
        raise BadRequest("a token id is a UUID") from None
    token = accounts.revoke_token(ctx(request), user_id_of(request), token_id)
    return back("/account", f"Token {token.name} revoked: it no longer works.")


@page
def list_users(request: Request, session: Session) -> Response:
    """Every user, their role and state (instance admins only)."""
    return render(request, session, "users.html", users=accounts.list_users(ctx(request)),
                  roles=accounts.USER_ROLES)  # fmt: skip


@action
def create_user(request: Request, session: Session, form: FormData) -> Response:
    password = _text(form, "password") or None
    user = accounts.create_user(ctx(request), _text(form, "username").strip(), password,
                                _text(form, "role") or "viewer")  # fmt: skip
    return back("/users", f"User {user.username} added ({user.role}).")


@action
def update_user(request: Request, session: Session, form: FormData) -> Response:
    ref = request.path_params["ref"]
    state = _text(form, "state")
    disabled = {"enabled": False, "disabled": True}.get(state)
    user = accounts.update_user(ctx(request), ref, role=_text(form, "role") or None,
                                disabled=disabled)  # fmt: skip
    said = "disabled: signed out on their next request" if user.disabled else "saved"
    return back("/users", f"User {user.username} {said}.")


AUDIT_PAGE = 50


@page
def list_audit(request: Request, session: Session) -> Response:
    """The audit log, newest first, filtered (instance admins only)."""
    params = request.query_params
    filters = {name: (params.get(name) or "").strip()[:300] or None
               for name in ("actor", "action", "resource")}  # fmt: skip
    before = params.get("before_id", "")
    events = accounts.audit_events(ctx(request), **filters,
                                   before_id=int(before) if before.isdigit() else None,
                                   limit=AUDIT_PAGE)  # fmt: skip
    next_before = events[-1].id if len(events) == AUDIT_PAGE else None
    query = urllib.parse.urlencode({**{k: v for k, v in filters.items() if v},
                                    "before_id": next_before or ""})  # fmt: skip
    return render(request, session, "audit.html", events=events, filters=filters,
                  next_before=next_before, next_query=query)  # fmt: skip
