"""`crawlhub nodes`: the fleet's worker processes; drain one for a rolling upgrade."""

import click

from crawlhub.cli import output
from crawlhub.cli.client import Client
from crawlhub.cli.output import field, moment
from crawlhub.cli.session import JSON_OPTION, pass_api

NODE_COLUMNS = [
    ("NODE", field("id")), ("STATE", field("state")), ("LABELS", field("labels")),
    ("RUNS", lambda n: f"{n['running']}/{n['slots']}"),
    ("LOAD", lambda n: n["machine"].get("load")),
    ("MEM FREE MB", lambda n: n["machine"].get("memory_free_mb")),
    ("DISK FREE MB", lambda n: n["machine"].get("disk_free_mb")),
    ("VERSION", field("version")), ("LAST SEEN (UTC)", moment("last_seen_at")),
]  # fmt: skip


@click.group(invoke_without_command=True)
@JSON_OPTION
@click.pass_context
def nodes(ctx: click.Context, as_json: bool) -> None:
    """The fleet's nodes (worker processes); `drain` and `resume` one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_nodes, as_json=as_json)


@nodes.command("list")
@JSON_OPTION
@pass_api
def list_nodes(api: Client, as_json: bool) -> None:
    """Every node with its state, labels, runs and slots, and its machine."""
    page = api.request("GET", "/api/nodes")
    output.listing(page, page["items"], NODE_COLUMNS, as_json=as_json, empty="no nodes")


@nodes.command("drain")
@click.argument("node")
@pass_api
def drain(api: Client, node: str) -> None:
    """Drain a node: it finishes its runs and takes no new ones (instance admins)."""
    found = api.request("POST", f"/api/nodes/{node}/drain")
    output.note(f"{found['id']} is draining: {found['running']} run(s) left on it")


@nodes.command("resume")
@click.argument("node")
@pass_api
def resume(api: Client, node: str) -> None:
    """Resume a drained node: it takes runs again."""
    found = api.request("POST", f"/api/nodes/{node}/resume")
    output.note(f"{found['id']} takes runs again")


COMMANDS = [nodes]
