"""Projects: the list with the deploy form, a project's page (its spiders, its versions with
their environments and build logs, a new version), and deleting a project."""

from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from crawlhub.errors import Conflict, InvalidInput, TooLarge
from crawlhub.registry import projects
from crawlhub.services import accounts
from crawlhub.ui.forms import field, page_number, parse_form
from crawlhub.ui.rendering import action, back, page, render
from crawlhub.web.schemas.projects import ProjectCreate
from crawlhub.web.sessions import Session
from crawlhub.web.validation import ctx

PAGE_SIZE = 20
VERSIONS_SHOWN = 10


def list_page(
    request: Request,
    session: Session,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    """The projects, newest first, each with its current version's environment, and the
    deploy form."""
    context = ctx(request)
    number = page_number(request)
    rows, total = projects.list_projects(context.db, page=number, page_size=PAGE_SIZE)
    current = projects.current_versions(context.db, rows)
    return render(
        request,
        session,
        "projects.html",
        status,
        projects=[(p, current.get(p.project.id)) for p in rows],
        total=total,
        page=number,
        pages=-(-total // PAGE_SIZE),
        errors=errors or {},
        values=values or {},
    )


@page
def list_projects(request: Request, session: Session) -> Response:
    """The projects page."""
    return list_page(request, session)


@action
def deploy(request: Request, session: Session, form: FormData) -> Response:
    """Upload a package as the next version of a project, created first when it does not
    exist; a refused package leaves nothing behind (a project created for it is deleted)."""
    values = {name: field(form, name) for name in ("name", "kind") if field(form, name)}
    body, errors = parse_form(ProjectCreate, dict(values))
    upload = chosen(form)
    if upload is None:
        errors["file"] = "choose the package to upload (.zip, .tar.gz or .py)"
    if errors or upload is None:
        return list_page(request, session, 422, errors, values)
    context = ctx(request)
    data = upload.file.read(context.settings.max_upload_bytes + 1)
    try:
        projects.deploy(context, body.name, body.kind, str(upload.filename), data)
    except (InvalidInput, TooLarge, Conflict) as exc:  # Conflict: the name, taken meanwhile
        details = exc.details if isinstance(exc.details, dict) else {}
        where = "name" if isinstance(exc, Conflict) else details.get("field", "file")
        return list_page(request, session, 422, {where: exc.message}, values)
    return back(
        f"/projects/{body.name}",
        f"Project {body.name} deployed: a worker now lists its spiders and builds its environment.",
    )


def chosen(form: FormData) -> UploadFile | None:
    """The form's `file` field, when a file was chosen."""
    upload = form.get("file")
    return upload if isinstance(upload, UploadFile) and upload.filename else None


def project_values(request: Request, ref: str) -> dict[str, Any]:
    """What a project's page and its refreshed part show."""
    context = ctx(request)
    project = projects.get_project(context.db, ref)
    number = page_number(request)
    versions, total = projects.list_versions(
        context.db, str(project.id), page=number, page_size=VERSIONS_SHOWN
    )
    return {
        "project": project,
        "members": accounts.list_members(context, str(project.id)),
        "member_roles": accounts.ROLES,
        "versions": versions,
        "page": number,
        "pages": -(-total // VERSIONS_SHOWN),
        "building": any(v.env_status == "building" for v in versions),
    }


def project_page(
    request: Request,
    session: Session,
    ref: str,
    status: int = 200,
    errors: dict[str, str] | None = None,
) -> Response:
    """A project's page: its spiders, its versions, a new version, "Delete project"."""
    values = project_values(request, ref)
    return render(request, session, "project.html", status, errors=errors or {}, **values)


@page
def show_project(request: Request, session: Session) -> Response:
    """A project's page."""
    return project_page(request, session, request.path_params["ref"])


@page
def project_state(request: Request, session: Session) -> Response:
    """A project's spiders and versions alone, which its page refreshes while one builds."""
    values = project_values(request, request.path_params["ref"])
    return render(request, session, "_project_state.html", **values)


@action
def upload_version(request: Request, session: Session, form: FormData) -> Response:
    """Upload a new version of a project's package."""
    ref = request.path_params["ref"]
    upload = chosen(form)
    if upload is None:
        return project_page(request, session, ref, 422, {"file": "choose a package to upload"})
    context = ctx(request)
    data = upload.file.read(context.settings.max_upload_bytes + 1)
    try:
        projects.upload_version(context, ref, str(upload.filename), data)
    except (InvalidInput, TooLarge) as exc:
        return project_page(request, session, ref, 422, {"file": exc.message})
    return back(f"/projects/{ref}", "New version uploaded: a worker now prepares it.")


@action
def set_member(request: Request, session: Session, form: FormData) -> Response:
    """Give a user a role on this project (its admins and instance admins)."""
    ref = request.path_params["ref"]
    username, role = field(form, "username").strip(), field(form, "role")
    member, user = accounts.set_member(ctx(request), ref, username, role)
    return back(f"/projects/{ref}", f"{user.username} is {member.role} of this project.")


@action
def remove_member(request: Request, session: Session, form: FormData) -> Response:
    """Take a user's role on this project away."""
    ref, username = request.path_params["ref"], request.path_params["user"]
    accounts.remove_member(ctx(request), ref, username)
    return back(f"/projects/{ref}", f"{username} is no longer a member of this project.")


def delete_page(
    request: Request, session: Session, status: int = 200, error: str | None = None
) -> Response:
    """Ask before deleting a project with its versions and spiders."""
    context = ctx(request)
    project = projects.get_project(context.db, request.path_params["ref"])
    _, versions = projects.list_versions(context.db, str(project.id), page=1, page_size=1)
    return render(
        request,
        session,
        "project_delete.html",
        status,
        project=project,
        versions=versions,
        error=error,
    )


@page
def confirm_delete(request: Request, session: Session) -> Response:
    """The confirmation page of "Delete project"."""
    return delete_page(request, session)


@action
def delete_project(request: Request, session: Session, form: FormData) -> Response:
    """Delete a project with its versions and spiders (refused while any of them runs)."""
    try:
        projects.delete_project(ctx(request).db, request.path_params["ref"])
    except Conflict as exc:
        return delete_page(request, session, 409, exc.message)
    return back("/projects", "Project deleted.")
