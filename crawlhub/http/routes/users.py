"""Handlers of users, personal API tokens, sign-in for the CLI and the audit log."""

import uuid
from typing import Any

from spectree import Response as Resp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crawlhub.errors import BadRequest
from crawlhub.services import accounts
from crawlhub.web.permissions import Action, identity_of, may, user_id_of
from crawlhub.web.responses import ModelResponse
from crawlhub.web.schemas.users import (
    AuditOut,
    AuditPage,
    AuditQuery,
    Login,
    Me,
    MemberOut,
    MemberPage,
    MemberSet,
    PasswordChange,
    TokenCreate,
    TokenCreated,
    TokenOut,
    TokenPage,
    UserCreate,
    UserOut,
    UserPage,
    UserPatch,
)
from crawlhub.web.validation import body_of, ctx, errors, query_of, spec


def _created(token: object, plain: str) -> Response:
    """A new token's answer: its record and, this once, the token itself."""
    return ModelResponse(TokenCreated(token=plain, **TokenOut.model_validate(token).model_dump()),
                         201)  # fmt: skip


@spec.validate(json=Login, resp=Resp(HTTP_201=TokenCreated, **errors(400, 401)), tags=["users"])
def login(request: Request) -> Response:
    """Exchange a user name and password for a personal token (what `crawlhub login` does);
    failures are throttled and lock the account as the dashboard's sign-in does."""
    body = body_of(request, Login)
    context, address = ctx(request), request.client.host if request.client else None
    scopes: list[str] | None = list(body.scopes) if body.scopes else None
    made = accounts.sign_in_for_token(context, body.username, body.password, address,
                                      body.token_name, scopes, body.expires_at)  # fmt: skip
    return _created(*made)


@spec.validate(resp=Resp(HTTP_200=Me), tags=["users"])
def me(request: Request) -> Response:
    """Who the caller is: their name, role and (for a token) scopes."""
    identity = identity_of(request)
    assert identity is not None  # the access check let only the signed in through
    user = accounts.get_user(ctx(request), str(identity.user_id)) if identity.user_id else None
    return ModelResponse(Me(name=identity.name, kind=identity.kind, role=identity.role,
                            scopes=list(identity.scopes) if identity.scopes is not None else None,
                            projects=dict(identity.projects),
                            project_ids=sorted(identity.limit) if identity.limit is not None
                            else None,
                            user=UserOut.model_validate(user) if user else None))  # fmt: skip


@spec.validate(json=PasswordChange, resp=Resp(HTTP_204=None, **errors(400)), tags=["users"])
def change_password(request: Request) -> Response:
    """Change your own password (the current one first); your other sessions end."""
    body = body_of(request, PasswordChange)
    accounts.change_password(ctx(request), user_id_of(request), body.current, body.new)
    return Response(status_code=204)


@spec.validate(resp=Resp(HTTP_200=TokenPage), tags=["users"])
def list_tokens(request: Request) -> Response:
    """Your personal tokens, with when each was last used (never the tokens themselves)."""
    found = accounts.list_tokens(ctx(request), user_id_of(request))
    return ModelResponse(TokenPage(items=[TokenOut.model_validate(t) for t in found]))


@spec.validate(json=TokenCreate, resp=Resp(HTTP_201=TokenCreated, **errors(400, 409)),
               tags=["users"])  # fmt: skip
def create_token(request: Request) -> Response:
    """A personal token with scopes no wider than your role, optionally expiring; the token
    is in this answer only."""
    body = body_of(request, TokenCreate)
    return _created(*accounts.create_token(ctx(request), user_id_of(request), body.name,
                                           list(body.scopes), body.expires_at,
                                           projects=body.projects))  # fmt: skip


@spec.validate(resp=Resp(HTTP_200=TokenOut, **errors(404)), tags=["users"])
def revoke_token(request: Request) -> Response:
    """Revoke one of your tokens (an admin: anyone's); it stops working at once."""
    identity = identity_of(request)
    try:
        token_id = uuid.UUID(request.path_params["id"])
    except ValueError:
        raise BadRequest("a token id is a UUID") from None
    owner = None if may(identity, Action.INSTANCE) else user_id_of(request)
    return ModelResponse(TokenOut.model_validate(accounts.revoke_token(ctx(request), owner,
                                                                       token_id)))  # fmt: skip


@spec.validate(resp=Resp(HTTP_200=UserPage), tags=["users"])
def list_users(request: Request) -> Response:
    """Every user (instance admins only)."""
    found = accounts.list_users(ctx(request))
    return ModelResponse(UserPage(items=[UserOut.model_validate(u) for u in found]))


@spec.validate(json=UserCreate, resp=Resp(HTTP_201=UserOut, **errors(400, 409)), tags=["users"])
def create_user(request: Request) -> Response:
    """Add a user with a role (instance admins only)."""
    body = body_of(request, UserCreate)
    user = accounts.create_user(ctx(request), body.username, body.password, body.role)
    return ModelResponse(UserOut.model_validate(user), 201)


@spec.validate(resp=Resp(HTTP_200=UserOut, **errors(404)), tags=["users"])
def get_user(request: Request) -> Response:
    """A user."""
    user = accounts.get_user(ctx(request), request.path_params["ref"])
    return ModelResponse(UserOut.model_validate(user))


@spec.validate(json=UserPatch, resp=Resp(HTTP_200=UserOut, **errors(400, 404)), tags=["users"])
def patch_user(request: Request) -> Response:
    """Change a user's role, disable or enable them, or set a new password."""
    body = body_of(request, UserPatch)
    user = accounts.update_user(ctx(request), request.path_params["ref"], role=body.role,
                                disabled=body.disabled, password=body.password)  # fmt: skip
    return ModelResponse(UserOut.model_validate(user))


def _member(member: Any, user: Any) -> MemberOut:
    """A membership and its user as the API shows them."""
    return MemberOut(username=user.username, user_id=user.id, role=member.role,
                     role_everywhere=user.role, created_at=member.created_at)  # fmt: skip


@spec.validate(resp=Resp(HTTP_200=MemberPage, **errors(404)), tags=["users"])
def list_members(request: Request) -> Response:
    """A project's members and their roles there."""
    found = accounts.list_members(ctx(request), request.path_params["ref"])
    return ModelResponse(MemberPage(items=[_member(m, u) for m, u in found]))


@spec.validate(json=MemberSet, resp=Resp(HTTP_200=MemberOut, **errors(400, 403, 404)),
               tags=["users"])  # fmt: skip
def set_member(request: Request) -> Response:
    """Give a user a role on this project (its admins and instance admins)."""
    body = body_of(request, MemberSet)
    made = accounts.set_member(ctx(request), request.path_params["ref"],
                               request.path_params["user"], body.role)  # fmt: skip
    return ModelResponse(_member(*made))


@spec.validate(resp=Resp(HTTP_204=None, **errors(403, 404)), tags=["users"])
def remove_member(request: Request) -> Response:
    """Take a user's role on this project away (its role everywhere stays)."""
    accounts.remove_member(ctx(request), request.path_params["ref"], request.path_params["user"])
    return Response(status_code=204)


@spec.validate(query=AuditQuery, resp=Resp(HTTP_200=AuditPage), tags=["users"])
def list_audit(request: Request) -> Response:
    """The audit log, newest first: filter by actor, action or resource; page with
    `before_id`."""
    q = query_of(request, AuditQuery)
    found = accounts.audit_events(ctx(request), actor=q.actor, action=q.action,
                                  resource=q.resource, before_id=q.before_id,
                                  limit=q.limit)  # fmt: skip
    items = [AuditOut.model_validate(e) for e in found]
    more = len(items) == q.limit
    return ModelResponse(AuditPage(items=items, next_before_id=items[-1].id if more else None))


ROUTES = [
    Route("/api/login", login, methods=["POST"]),
    Route("/api/me", me, methods=["GET"]),
    Route("/api/me/password", change_password, methods=["POST"]),
    Route("/api/tokens", list_tokens, methods=["GET"]),
    Route("/api/tokens", create_token, methods=["POST"]),
    Route("/api/tokens/{id}", revoke_token, methods=["DELETE"]),
    Route("/api/users", list_users, methods=["GET"]),
    Route("/api/users", create_user, methods=["POST"]),
    Route("/api/users/{ref}", get_user, methods=["GET"]),
    Route("/api/users/{ref}", patch_user, methods=["PATCH"]),
    Route("/api/audit", list_audit, methods=["GET"]),
    Route("/api/projects/{ref}/members", list_members, methods=["GET"]),
    Route("/api/projects/{ref}/members/{user}", set_member, methods=["PUT"]),
    Route("/api/projects/{ref}/members/{user}", remove_member, methods=["DELETE"]),
]
