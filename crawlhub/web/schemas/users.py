"""Models of users, personal API tokens, sign-in and the audit log."""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from crawlhub.web.schemas.common import Out, Strict

# A user's role on every project: none (only the projects it is a member of), ..., admin
# (an instance admin).
Role = Literal["none", "viewer", "operator", "developer", "admin"]
# A member's role on one project (admin: deletes, manages members).
MemberRole = Literal["viewer", "operator", "developer", "admin"]
Scope = Literal["read", "run", "deploy", "admin"]


class UserCreate(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str | None = Field(
        None, max_length=1024, description="null: signs in through single sign-on only"
    )
    role: Role = "viewer"


class UserPatch(Strict):
    role: Role | None = None
    disabled: bool | None = Field(
        None, description="true: their sessions and tokens stop working on their next request"
    )
    password: str | None = Field(
        None, max_length=1024, description="a new password (their sessions end)"
    )


class UserOut(Out):
    id: uuid.UUID
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    last_sign_in_at: datetime | None


class PasswordChange(Strict):
    current: str = Field(max_length=1024)
    new: str = Field(max_length=1024)


class TokenCreate(Strict):
    name: str = Field(min_length=1, max_length=64)
    scopes: list[Scope] = Field(min_length=1, max_length=4)
    projects: list[str] | None = Field(
        None, max_length=100, description="names or ids of the only projects it may reach; "
        "null: every project its owner may"
    )  # fmt: skip
    expires_at: datetime | None = None


class TokenOut(Out):
    id: uuid.UUID
    name: str
    hint: str = Field(description="its first characters, to tell it apart")
    scopes: list[Scope]
    project_ids: list[uuid.UUID] | None = Field(description="null: every project")
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself: shown this once, stored only hashed")


class TokenPage(BaseModel):
    items: list[TokenOut]


class UserPage(BaseModel):
    items: list[UserOut]


class Login(Strict):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(max_length=1024)
    token_name: str = Field(
        "cli",
        min_length=1,
        max_length=64,
        description="the name of the personal token made for this sign-in",
    )
    scopes: list[Scope] | None = Field(None, description="default: as wide as the user's role")
    expires_at: datetime | None = None


class Me(BaseModel):
    name: str
    kind: Literal["user", "token", "config"]
    role: Role = Field(description="the role on every project")
    scopes: list[Scope] | None
    projects: dict[uuid.UUID, MemberRole] = Field(
        description="roles on single projects (memberships), by project id"
    )
    project_ids: list[uuid.UUID] | None = Field(
        description="a token's projects (null: not limited)"
    )
    user: UserOut | None


class MemberSet(Strict):
    role: MemberRole


class MemberOut(BaseModel):
    username: str
    user_id: uuid.UUID
    role: MemberRole
    role_everywhere: Role = Field(description="the user's role on every project")
    created_at: datetime


class MemberPage(BaseModel):
    items: list[MemberOut]


class AuditQuery(Strict):
    actor: str | None = Field(None, max_length=200)
    action: str | None = Field(None, max_length=64)
    resource: str | None = Field(None, max_length=300)
    before_id: int | None = Field(
        None, ge=1, le=2**62, description="the last id seen: older events come next"
    )
    limit: int = Field(50, ge=1, le=500)


class AuditOut(Out):
    id: int
    at: datetime
    actor: str
    user_id: uuid.UUID | None
    action: str
    resource: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    address: str | None


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_before_id: int | None = Field(description="pass as before_id for older events; null: none")
