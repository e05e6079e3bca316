"""`crawlhub users`: manage users on the server's own database (the first admin of a
production set-up, a locked-out admin), like `crawlhub migrate`. The API and the dashboard's
Users page do the same for a signed-in admin."""

import sys
from typing import TYPE_CHECKING

import click

from crawlhub.cli import output

if TYPE_CHECKING:
    from crawlhub.context import Context

ROLES = click.Choice(["none", "viewer", "operator", "developer", "admin"])


def _context() -> "Context":
    """The server's context (its code is imported only when a command runs)."""
    from crawlhub.config import load_settings
    from crawlhub.context import Context

    return Context.build(load_settings())


def _password(given_on_stdin: bool) -> str:
    if given_on_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.group(epilog="Settings: every CRAWLHUB_* variable (docs/guide/configuration.md).")
def users() -> None:
    """Manage users on this server's database (run where the server's settings are)."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=ROLES, default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def add(username: str, role: str, password_stdin: bool) -> None:
    """Add a user with a password and a role."""
    from crawlhub.services import accounts

    context = _context()
    try:
        accounts.create_user(context, username, _password(password_stdin), role)
    finally:
        context.close()
    output.note(f"user {username} added ({role})")


@users.command("set")
@click.argument("username")
@click.option("--role", type=ROLES, help="A new role.")
@click.option("--disable/--enable", "disabled", default=None,
              help="Disable (their sessions and tokens stop) or enable the user.")  # fmt: skip
@click.option("--password", "new_password", is_flag=True, help="Set a new password (asked).")
@click.option("--password-stdin", is_flag=True, help="Read the new password from stdin.")
def set_user(username: str, role: str | None, disabled: bool | None, new_password: bool,
             password_stdin: bool) -> None:  # fmt: skip
    """Change a user's role, disable or enable them, or set their password."""
    from crawlhub.services import accounts

    password = _password(password_stdin) if new_password or password_stdin else None
    context = _context()
    try:
        user = accounts.update_user(context, username, role=role, disabled=disabled,
                                    password=password)  # fmt: skip
    finally:
        context.close()
    state = "disabled" if user.disabled else "enabled"
    output.note(f"user {user.username}: {user.role}, {state}")


@users.command("member")
@click.argument("username")
@click.argument("project")
@click.option("--role", type=click.Choice(["viewer", "operator", "developer", "admin"]),
              help="Its role on this project (above its role on every project).")  # fmt: skip
@click.option("--remove", is_flag=True, help="Take its membership of the project away.")
def member(username: str, project: str, role: str | None, remove: bool) -> None:
    """Make a user a member of a project with a role there, or remove it."""
    from crawlhub.services import accounts

    if remove == (role is not None):
        raise click.UsageError("give --role ROLE or --remove")
    context = _context()
    try:
        if role is not None:
            accounts.set_member(context, project, username, role)
        else:
            accounts.remove_member(context, project, username)
    finally:
        context.close()
    output.note(f"{username}: {role} of {project}" if role else f"{username}: not a member "
                f"of {project}")  # fmt: skip


@users.command("list")
def list_users() -> None:
    """Every user, their role and state."""
    from crawlhub.services import accounts

    context = _context()
    try:
        found = accounts.list_users(context)
    finally:
        context.close()
    output.table([{"username": u.username, "role": u.role,
                   "state": "disabled" if u.disabled else "enabled"} for u in found],
                 [("USER", lambda u: u["username"]), ("ROLE", lambda u: u["role"]),
                  ("STATE", lambda u: u["state"])])  # fmt: skip


COMMANDS = [users]
