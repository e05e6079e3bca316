"""Who may do what: one table gives every route of the app (API, dashboard, Scrapyd API, log
streams, exports) the action it takes, and a role or a token's scopes the actions it allows.
`crawlhub.web.access` applies it to every request; a test walks the app's route table, so
no route can be added without a line here.
"""

import uuid
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from starlette.requests import HTTPConnection

from crawlhub.errors import BadRequest
from crawlhub.repo.reach import Reach
from crawlhub.services.accounts import Identity


class Action(StrEnum):
    OPEN = "open"  # no sign-in: health checks, the sign-in page, static files, the demo shop
    READ = "read"  # runs, logs, items, exports, spiders, projects, schedules, alerts
    RUN = "run"  # run, cancel, requeue, schedules, alerts read
    DEPLOY = "deploy"  # deploy, edit spiders (settings, env), create spiders and projects
    MANAGE = "manage"  # delete spiders, projects, items
    INSTANCE = "instance"  # users, notification channels, queues' purges


_LADDER = (Action.READ, Action.RUN, Action.DEPLOY, Action.MANAGE)
ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    "none": frozenset(),
    "viewer": frozenset(_LADDER[:1]),
    "operator": frozenset(_LADDER[:2]),
    "developer": frozenset(_LADDER[:3]),
    "admin": frozenset((*_LADDER, Action.INSTANCE)),
}
# A member's role on one project: its admin deletes and manages members, not the instance.
MEMBER_ACTIONS = {role: actions - {Action.INSTANCE} for role, actions in ROLE_ACTIONS.items()}
SCOPE_ACTIONS: dict[str, frozenset[Action]] = {
    "read": ROLE_ACTIONS["viewer"],
    "run": ROLE_ACTIONS["operator"],
    "deploy": ROLE_ACTIONS["developer"],
    "admin": ROLE_ACTIONS["admin"],
}


STATE_KEY = "identity"  # where the access check keeps the caller in a request's state


def identity_of(conn: HTTPConnection) -> Identity | None:
    """Who a request comes from (set by the access check; None: no valid credentials)."""
    found: Identity | None = conn.scope.get("state", {}).get(STATE_KEY)
    return found


def user_id_of(conn: HTTPConnection) -> uuid.UUID:
    """The user behind the caller; BadRequest for a configured token, which has none."""
    identity = identity_of(conn)
    if identity is None or identity.user_id is None:
        raise BadRequest("a configured API token has no user, password or tokens of its own: "
                         "sign in as a user (crawlhub login URL --username NAME)")  # fmt: skip
    return identity.user_id


def _scoped(identity: Identity, actions: frozenset[Action]) -> frozenset[Action]:
    """Actions narrowed to a token's scopes (a session's and a configured token's are not)."""
    if identity.scopes is None:
        return actions
    granted: frozenset[Action] = frozenset()
    for scope in identity.scopes:
        granted |= SCOPE_ACTIONS.get(scope, frozenset())
    return actions & granted


def everywhere(identity: Identity) -> frozenset[Action]:
    """What a caller may do on every project (and, for an instance admin, the instance)."""
    if identity.limit is not None:
        return frozenset()
    return _scoped(identity, ROLE_ACTIONS.get(identity.role, frozenset()))


def on_project(identity: Identity, project_id: uuid.UUID) -> frozenset[Action]:
    """What a caller may do on one project: its role everywhere and its membership there,
    within a token's projects and scopes."""
    if identity.limit is not None and project_id not in identity.limit:
        return frozenset()
    actions = MEMBER_ACTIONS.get(identity.role, frozenset())
    if project_id in identity.projects:
        actions |= MEMBER_ACTIONS.get(identity.projects[project_id], frozenset())
    return _scoped(identity, actions)


def anywhere(identity: Identity) -> frozenset[Action]:
    """What a caller may do somewhere: on every project or one of them. Reading is
    everyone's who signs in (lists show what they may see, perhaps nothing)."""
    actions = everywhere(identity) | {Action.READ}
    for project_id in {*identity.projects, *(identity.limit or ())}:
        actions |= on_project(identity, project_id)
    return actions


def may(identity: Identity | None, action: Action, project_id: uuid.UUID | None = None) -> bool:
    """Whether a caller may take an action, on a project or somewhere (the dashboard hides
    the controls they may not use)."""
    if action is Action.OPEN:
        return True
    if identity is None:
        return False
    if project_id is not None:
        return action in on_project(identity, project_id)
    return action in anywhere(identity)


def reach_of(identity: Identity, action: Action) -> Reach | None:
    """The projects a request of this caller may read and act on (None: every project)."""
    every = everywhere(identity)
    if action is Action.OPEN or (Action.READ in every and action in every):
        return None
    projects = {*identity.projects, *(identity.limit or ())}
    readable = (
        None
        if Action.READ in every
        else frozenset(p for p in projects if Action.READ in on_project(identity, p))
    )
    acting = None if action in every else frozenset(
        p for p in projects if action in on_project(identity, p))  # fmt: skip
    return Reach(readable, acting, action.value, identity.name)


Rule = Action | Callable[[Mapping[str, Any]], Action]

SCRAPYD_ACTIONS = {
    "daemonstatus": Action.READ, "listprojects": Action.READ, "listversions": Action.READ,
    "listspiders": Action.READ, "listjobs": Action.READ, "status": Action.READ,
    "schedule": Action.RUN, "cancel": Action.RUN, "addversion": Action.DEPLOY,
    "delversion": Action.MANAGE, "delproject": Action.MANAGE,
}  # fmt: skip


def _scrapyd(params: Mapping[str, Any]) -> Action:
    return SCRAPYD_ACTIONS[str(params["name"])]


# Read, eXecute (run), Deploy, Manage, instance Admin, Public.
R, X, D, M = Action.READ, Action.RUN, Action.DEPLOY, Action.MANAGE
A, P = Action.INSTANCE, Action.OPEN

# (method, path as the route declares it) → the action it takes. HEAD is GET's.
TABLE: dict[tuple[str, str], Rule] = {
    # Health, metrics (guarded by CRAWLHUB_METRICS_TOKEN when set), the tour's demo shop.
    ("GET", "/healthz"): P, ("GET", "/readyz"): P, ("GET", "/metrics"): P,
    ("GET", "/demo/books/"): P, ("GET", "/demo/books/book/{number:int}.html"): P,
    ("GET", "/api/openapi.json"): R,
    # Projects and their versions.
    ("GET", "/api/projects"): R, ("POST", "/api/projects"): D,
    ("GET", "/api/projects/{ref}"): R, ("PATCH", "/api/projects/{ref}"): D,
    ("DELETE", "/api/projects/{ref}"): M,
    ("GET", "/api/projects/{ref}/versions"): R, ("POST", "/api/projects/{ref}/versions"): D,
    ("GET", "/api/projects/{ref}/versions/{number}"): R,
    ("GET", "/api/projects/{ref}/versions/{number}/environment"): R,
    # Spiders.
    ("GET", "/api/spiders"): R, ("POST", "/api/spiders"): D,
    ("GET", "/api/spiders/{ref}"): R, ("PATCH", "/api/spiders/{ref}"): D,
    ("DELETE", "/api/spiders/{ref}"): M,
    ("GET", "/api/spiders/{ref}/versions"): R, ("POST", "/api/spiders/{ref}/versions"): D,
    ("POST", "/api/spiders/{ref}/run"): X, ("POST", "/api/spiders/{ref}/test-run"): X,
    ("GET", "/api/spiders/{ref}/quality"): R, ("PUT", "/api/spiders/{ref}/quality"): D,
    ("POST", "/api/spiders/{ref}/quality/learn"): R,
    # Runs and their logs.
    ("GET", "/api/tasks"): R, ("GET", "/api/tasks/{id}"): R,
    ("POST", "/api/tasks/{id}/cancel"): X, ("GET", "/api/tasks/{id}/logs"): R,
    ("GET", "/api/tasks/{id}/logs/stream"): R,
    # Schedules.
    ("GET", "/api/spiders/{ref}/schedules"): R, ("POST", "/api/spiders/{ref}/schedules"): X,
    ("GET", "/api/schedules/{id}"): R, ("PATCH", "/api/schedules/{id}"): X,
    ("DELETE", "/api/schedules/{id}"): X, ("GET", "/api/schedules/{id}/preview"): R,
    # Alerts and channels.
    ("GET", "/api/alerts"): R, ("GET", "/api/alerts/unread-count"): R,
    ("POST", "/api/alerts/read-all"): X, ("POST", "/api/alerts/{id}/read"): X,
    ("GET", "/api/alerts/{id}/deliveries"): R,
    ("GET", "/api/channels"): A, ("POST", "/api/channels"): A,
    ("PATCH", "/api/channels/{id}"): A, ("DELETE", "/api/channels/{id}"): A,
    ("POST", "/api/channels/{id}/test"): A,
    # Queues and dead letters.
    ("GET", "/api/queues"): R, ("GET", "/api/queues/{name}/dead-letters"): R,
    ("DELETE", "/api/queues/{name}/dead-letters"): A,
    ("POST", "/api/queues/{name}/dead-letters/{message_id}/requeue"): X,
    # Nodes (worker processes): read by all, drained by instance admins.
    ("GET", "/api/nodes"): R, ("POST", "/api/nodes/{id}/drain"): A,
    ("POST", "/api/nodes/{id}/resume"): A,
    ("GET", "/nodes"): R, ("POST", "/nodes/{id}/drain"): A, ("POST", "/nodes/{id}/resume"): A,
    # Items and exports.
    ("GET", "/api/data"): R, ("DELETE", "/api/data"): M, ("GET", "/api/data/export/{fmt}"): R,
    # The Scrapyd API (by endpoint) and its pages, under /scrapyd/ and at the root.
    **{(method, path): _scrapyd
       for path in ("/scrapyd/{name:scrapyd_endpoint}.json", "/{name:scrapyd_endpoint}.json")
       for method in ("GET", "POST", "OPTIONS")},
    ("GET", "/scrapyd"): R, ("GET", "/scrapyd/"): R,
    **{("GET", f"{base}{path}"): R for base in ("", "/scrapyd") for path in (
        "/jobs", *(f"/{folder}{rest}" for folder, ext in (("logs", "log"), ("items", "jl"))
                   for rest in ("/", "/{project}/", "/{project}/{spider}/",
                                f"/{{project}}/{{spider}}/{{job}}.{ext}")))},
    # Users, tokens, the audit log: your own account needs only to be signed in.
    ("POST", "/api/login"): P, ("GET", "/api/me"): R, ("POST", "/api/me/password"): R,
    ("GET", "/api/tokens"): R, ("POST", "/api/tokens"): R, ("DELETE", "/api/tokens/{id}"): R,
    ("GET", "/api/projects/{ref}/members"): R, ("PUT", "/api/projects/{ref}/members/{user}"): M,
    ("DELETE", "/api/projects/{ref}/members/{user}"): M,
    ("GET", "/api/users"): A, ("POST", "/api/users"): A, ("GET", "/api/users/{ref}"): A,
    ("PATCH", "/api/users/{ref}"): A, ("GET", "/api/audit"): A,
    ("GET", "/account"): R, ("POST", "/account/password"): R, ("POST", "/account/tokens"): R,
    ("POST", "/account/tokens/{id}/revoke"): R,
    ("GET", "/users"): A, ("POST", "/users"): A, ("POST", "/users/{ref}"): A,
    ("GET", "/audit"): A,
    # The dashboard.
    ("GET", "/login"): P, ("POST", "/login"): P, ("GET", "/login/sso"): P,
    ("GET", "/login/sso/callback"): P, ("POST", "/logout"): R,
    ("GET", "/"): R, ("GET", "/overview/running"): R,
    ("GET", "/spiders"): R, ("POST", "/spiders"): D, ("GET", "/spiders/{ref}"): R,
    ("POST", "/spiders/{ref}/settings"): D, ("POST", "/spiders/{ref}/versions"): D,
    ("POST", "/spiders/{ref}/run"): X, ("GET", "/spiders/{ref}/quality"): R,
    ("POST", "/spiders/{ref}/quality"): D, ("POST", "/spiders/{ref}/quality/learn"): R,
    ("GET", "/projects"): R, ("POST", "/projects"): D, ("GET", "/projects/{ref}"): R,
    ("GET", "/projects/{ref}/state"): R, ("POST", "/projects/{ref}/versions"): D,
    ("POST", "/projects/{ref}/members"): M, ("POST", "/projects/{ref}/members/{user}/remove"): M,
    ("GET", "/projects/{ref}/delete"): M, ("POST", "/projects/{ref}/delete"): M,
    ("GET", "/runs"): R, ("GET", "/runs/{id}"): R, ("GET", "/runs/{id}/facts"): R,
    ("POST", "/runs/{id}/cancel"): X, ("POST", "/runs/{id}/again"): X,
    ("GET", "/runs/{id}/log/stream"): R, ("GET", "/export/{fmt}"): R,
    ("GET", "/schedules"): R, ("POST", "/schedules"): X, ("GET", "/schedules/new"): X,
    ("GET", "/schedules/preview"): R, ("GET", "/schedules/{id}"): R,
    ("POST", "/schedules/{id}"): X, ("POST", "/schedules/{id}/enabled"): X,
    ("GET", "/data"): R, ("GET", "/alerts"): R, ("POST", "/alerts/read-all"): X,
    ("POST", "/alerts/{id}/read"): X,
    ("POST", "/channels"): A, ("POST", "/channels/{id}"): A,
    ("POST", "/channels/{id}/test"): A, ("POST", "/channels/{id}/delete"): A,
    ("GET", "/queues"): R, ("POST", "/queues/{name}/dead-letters/{message_id}/requeue"): X,
    ("GET", "/queues/{name}/purge"): A, ("POST", "/queues/{name}/purge"): A,
    ("GET", "/static"): P,
}  # fmt: skip


def action_of(method: str, path: str, params: Mapping[str, Any]) -> Action | None:
    """The action a matched route takes (None: a route the table does not know, refused)."""
    rule = TABLE.get(("GET" if method == "HEAD" else method, path))
    if rule is None:
        return None
    return rule if isinstance(rule, Action) else rule(params)
