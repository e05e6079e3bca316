"""`crawlhub deploy`, `crawlhub projects …` and `crawlhub spiders …`."""

import re
from pathlib import Path
from typing import Any

import click

from crawlhub.cli import output
from crawlhub.cli.client import Client, build_package, every
from crawlhub.cli.output import field, moment
from crawlhub.cli.session import JSON_OPTION, pairs, pass_api
from crawlhub.errors import CrawlhubError


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--project", help="Project name (default: the directory or file name).")
@click.option("--name", help="Deploy as this one spider (a python package's default).")
@click.option("--kind", type=click.Choice(["scrapy", "python"]), help="Default: guessed.")
@click.option("--entry", help="The spider's Scrapy spider name or module:function.")
@click.option("--no-wait", is_flag=True, help="Do not wait for its environment and spiders.")
@click.option("--timeout", type=float, default=1800, show_default=True,
              help="Seconds to wait for a worker to build it.")  # fmt: skip
@pass_api
def deploy(api: Client, path: Path, project: str | None, name: str | None, kind: str | None,
           entry: str | None, no_wait: bool, timeout: float) -> None:  # fmt: skip
    """Upload a project (a directory, .zip, .tar.gz or .py) as its next version.

    The project is created when it does not exist; a worker then builds its environment and
    lists its Scrapy spiders, each a spider of its own. With --name or --entry (and for a
    python package), the upload is one spider's code instead. A refused upload leaves
    nothing behind."""
    package = build_package(path, kind)
    given, project = project, project or slug_of(path)
    if name or entry or package.kind == "python":
        spider, version, created = api.deploy(package, name or project, entry=entry, kind=kind,
                                              project=given)  # fmt: skip
        what = "created spider" if created else "spider"
        print(f"{what} {spider['name']} ({spider['kind']}, entry {spider['entry']}) "
              f"in project {spider['project']}: {_version(version)}")  # fmt: skip
        project = spider["project"]
    else:
        made, version, created = api.deploy_project(package, project)
        print(f"{'created project' if created else 'project'} {made['name']} ({made['kind']}): "
              f"{_version(version)}")  # fmt: skip
    if not no_wait and version["environment"]["status"] == "building":
        output.note("waiting for a worker to prepare it …")
        version = api.settled_version(project, version["number"], timeout)
    _report(project, version)


def _version(version: dict[str, Any]) -> str:
    return (f"version {version['number']}, {version['size']} bytes, {version['files']} files, "
            f"sha256 {version['sha256'][:12]}")  # fmt: skip


def _report(project: str, version: dict[str, Any]) -> None:
    """What a deploy ends with: the environment and the spiders; exit 1 when it cannot run."""
    env = version["environment"]
    where = f"environment {env['key']}" if env["key"] else "the platform's environment"
    if env["requirements"]:
        where += f" ({len(env['requirements'])} requirement(s))"
    if env["status"] == "failed":
        number = version["number"]
        where_log = f"crawlhub projects log {project} --version {number}"
        output.error(f"version {number} cannot run: {env['error']}", {"build log": where_log})
        raise click.exceptions.Exit(1)
    if env["status"] == "building":
        print(f"{where}: still building (see: crawlhub projects show {project})")
        return
    print(f"{where}: ready")
    if version["spiders"] is not None:
        print(f"spiders: {', '.join(version['spiders']) or '(none)'}")


def slug_of(path: Path) -> str:
    """A project name from a directory or file name."""
    stem = path.resolve().name
    if path.is_file():
        stem = stem.removesuffix(".tar.gz").rsplit(".", 1)[0]
    slug = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")[:64]
    return slug or "project"


@click.group()
def projects() -> None:
    """Projects: what is deployed, with its versions and their environments."""


@projects.command("list")
@JSON_OPTION
@click.option("--search", help="Names containing this.")
@pass_api
def projects_list(api: Client, as_json: bool, search: str | None) -> None:
    """List projects with their current version and spiders."""
    rows = every(api, "/api/projects", {"search": search})
    output.listing({"items": rows, "total": len(rows)}, rows, [
        ("PROJECT", field("name")), ("KIND", field("kind")),
        ("VERSION", field("current_version")), ("SPIDERS", field("spiders")),
    ], as_json=as_json, empty="no projects")  # fmt: skip


@projects.command("show")
@click.argument("project")
@JSON_OPTION
@pass_api
def projects_show(api: Client, project: str, as_json: bool) -> None:
    """A project, its spiders and its versions with their environments."""
    found = api.request("GET", f"/api/projects/{project}")
    versions = api.request("GET", f"/api/projects/{found['id']}/versions",
                           params={"page_size": 20})  # fmt: skip
    if as_json:
        output.emit_json({**found, "versions": versions["items"]})
        return
    output.facts(found, ["name", "kind", "current_version", "spiders", "created_at"])
    output.table(versions["items"], [
        ("VERSION", field("number")), ("LABEL", lambda v: v.get("label")),
        ("ENVIRONMENT", lambda v: v["environment"]["status"]),
        ("CREATED (UTC)", moment("created_at")),
        ("SPIDERS / ERROR", lambda v: v["environment"]["error"]
         if v["environment"]["status"] == "failed" else v["spiders"]),
    ], title="versions")  # fmt: skip


@projects.command("log")
@click.argument("project")
@click.option("--version", "number", type=int, help="Default: the current one.")
@pass_api
def projects_log(api: Client, project: str, number: int | None) -> None:
    """Print a version's environment build log (exit 1 when the build failed)."""
    found = api.request("GET", f"/api/projects/{project}")
    number = number or found["current_version"]
    if number is None:
        raise CrawlhubError(f"project {found['name']} has no version yet")
    env = api.request("GET", f"/api/projects/{found['id']}/versions/{number}/environment")
    print(env["log"] or "(no build log: nothing to build)")
    if env["status"] == "failed":
        raise click.exceptions.Exit(1)


MAX_RUNS_OPTION = click.option(
    "--max-concurrent-runs", type=click.IntRange(min=0),
    help="How many of its runs may run at once; 0: no limit.",
)  # fmt: skip


def _max_runs(given: int | None) -> dict[str, Any]:
    """The PATCH field of --max-concurrent-runs (0: no limit)."""
    return {} if given is None else {"max_concurrent_runs": given or None}


@projects.command("set")
@click.argument("project")
@click.option("--name", help="Its new name (its spiders keep theirs).")
@MAX_RUNS_OPTION
@JSON_OPTION
@pass_api
def projects_set(api: Client, project: str, name: str | None, max_concurrent_runs: int | None,
                 as_json: bool) -> None:  # fmt: skip
    """Rename a project or limit how many of its runs run at once."""
    body = {**({"name": name} if name else {}), **_max_runs(max_concurrent_runs)}
    if not body:
        raise click.UsageError("nothing to change: give --name or --max-concurrent-runs")
    changed = api.request("PATCH", f"/api/projects/{project}", json=body)
    output.emit_json(changed) if as_json else output.facts(changed, ["name", *body])


@projects.command("rm")
@click.argument("project")
@click.option("--yes", is_flag=True, help="Do not ask.")
@pass_api
def projects_rm(api: Client, project: str, yes: bool) -> None:
    """Delete a project with its versions, spiders, runs and items."""
    if not yes:
        click.confirm(f"delete project {project} with its spiders, runs and items?", abort=True)
    api.request("DELETE", f"/api/projects/{project}")
    output.note(f"project {project} deleted")


SPIDER_COLUMNS = [
    ("SPIDER", field("name")), ("PROJECT", field("project")), ("KIND", field("kind")),
    ("ENTRY", field("entry")), ("VERSION", field("current_version")),
    ("ENABLED", field("enabled")),
]  # fmt: skip


@click.group()
def spiders() -> None:
    """Spiders: the runnable entries of projects, with their own settings."""


@spiders.command("list")
@JSON_OPTION
@click.option("--project", help="Only this project's.")
@click.option("--kind", type=click.Choice(["scrapy", "python"]))
@click.option("--enabled/--disabled", default=None, help="Only enabled or disabled ones.")
@pass_api
def spiders_list(api: Client, as_json: bool, project: str | None, kind: str | None,
                 enabled: bool | None) -> None:  # fmt: skip
    """List spiders, newest first."""
    params = {"project": project, "kind": kind,
              "enabled": None if enabled is None else str(enabled).lower()}  # fmt: skip
    rows = every(api, "/api/spiders", params)
    output.listing({"items": rows, "total": len(rows)}, rows, SPIDER_COLUMNS, as_json=as_json,
                   empty="no spiders")  # fmt: skip


@spiders.command("show")
@click.argument("spider")
@JSON_OPTION
@pass_api
def spiders_show(api: Client, spider: str, as_json: bool) -> None:
    """A spider's settings."""
    found = api.request("GET", f"/api/spiders/{spider}")
    if as_json:
        output.emit_json(found)
    else:
        output.facts(found)


@spiders.command("set")
@click.argument("spider")
@click.option("--entry", help="Scrapy spider name or module:function.")
@click.option("--timeout", "timeout_s", type=int, help="Seconds a run may take.")
@click.option("--retries", "max_retries", type=int, help="Retries of a failed run.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Replace its params (repeat; VALUE read as JSON when it parses).")  # fmt: skip
@click.option("-e", "--env", "env", multiple=True, metavar="NAME=VALUE",
              help="Replace its environment variables (repeat).")  # fmt: skip
@click.option("--dedup-keys", help="Comma-separated item fields that identify an item; '' off.")
@click.option(
    "--requires", "labels", help="Comma-separated labels a node must have to run it; '' any node."
)
@click.option("--alert-on-zero-items/--no-alert-on-zero-items", default=None)
@click.option("--retention-days", type=int)
@click.option("-l", "--limit", "limits", multiple=True, metavar="NAME=VALUE",
              help="Replace its run limits (repeat): memory_mb, processes, open_files, disk_mb, "
              "files; '--limit default' goes back to the defaults.")  # fmt: skip
@MAX_RUNS_OPTION
@click.option("--name", help="A new name.")
@JSON_OPTION
@pass_api
def spiders_set(api: Client, spider: str, as_json: bool, params: tuple[str, ...],
                env: tuple[str, ...], dedup_keys: str | None, labels: str | None,
                limits: tuple[str, ...], max_concurrent_runs: int | None,
                **changes: Any) -> None:  # fmt: skip
    """Change a spider's settings (only those given)."""
    body = {k: v for k, v in changes.items() if v is not None} | _max_runs(max_concurrent_runs)
    if params:
        body["params"] = pairs(params, "--param")
    if env:
        body["env"] = {k: str(v) for k, v in pairs(env, "--env").items()}
    if limits == ("default",):
        body["limits"] = None
    elif limits:
        body["limits"] = pairs(limits, "--limit")
    for name, given in (("dedup_keys", dedup_keys), ("requires", labels)):
        if given is not None:
            body[name] = [k.strip() for k in given.split(",") if k.strip()] or None
    if not body:
        raise click.UsageError("nothing to change: give at least one option")
    changed = api.request("PATCH", f"/api/spiders/{spider}", json=body)
    output.emit_json(changed) if as_json else output.facts(changed, ["name", *body])


def _enable(value: bool) -> click.Command:
    verb = "enable" if value else "disable"

    @click.command(verb, help=f"{verb.capitalize()} a spider (schedules and runs).")
    @click.argument("spider")
    @pass_api
    def toggle(api: Client, spider: str) -> None:
        api.request("PATCH", f"/api/spiders/{spider}", json={"enabled": value})
        output.note(f"spider {spider} {verb}d")

    return toggle


spiders.add_command(_enable(True))
spiders.add_command(_enable(False))


@spiders.command("rm")
@click.argument("spider")
@click.option("--yes", is_flag=True, help="Do not ask.")
@pass_api
def spiders_rm(api: Client, spider: str, yes: bool) -> None:
    """Delete a spider with its schedules, runs and items."""
    if not yes:
        click.confirm(f"delete spider {spider} with its runs and items?", abort=True)
    api.request("DELETE", f"/api/spiders/{spider}")
    output.note(f"spider {spider} deleted")


COMMANDS = [deploy, projects, spiders]
