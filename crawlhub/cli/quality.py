"""`crawlhub quality`: a spider's data quality rules, learnt from a run or set from a file,
and its runs' verdicts."""

import json
import sys
from typing import Any

import click

from crawlhub.cli import output
from crawlhub.cli.client import Client
from crawlhub.cli.output import field, moment
from crawlhub.cli.session import JSON_OPTION, pass_api

VERDICT_COLUMNS = [
    ("RUN", field("id")), ("STATUS", field("status")), ("VERDICT", field("verdict")),
    ("ITEMS", field("items_count")),
    ("REASONS", lambda t: "; ".join(f"{r['rule']} {r['observed']} (expected {r['expected']})"
                                    for r in (t.get("quality") or {}).get("reasons", []))),
    ("CREATED (UTC)", moment("created_at")),
]  # fmt: skip


@click.group()
def quality() -> None:
    """A spider's data quality rules and its runs' verdicts (docs/guide/quality.md)."""


@quality.command("show")
@click.argument("spider")
@click.option("-n", "--limit", type=click.IntRange(1, 100), default=10, show_default=True)
@JSON_OPTION
@pass_api
def show(api: Client, spider: str, limit: int, as_json: bool) -> None:
    """The rules in force (and where they come from) and the last runs' verdicts."""
    found = api.request("GET", f"/api/spiders/{spider}/quality")
    page = api.request("GET", "/api/tasks", params={"spider_id": spider, "page_size": limit})
    if as_json:
        output.emit_json({**found, "runs": page["items"]})
        return
    source = found["source"] or "none"
    output.note(f"{found['spider']}: rules from {source}")
    print(json.dumps(found["rules"], indent=2, ensure_ascii=False) if found["rules"] else "{}")
    output.table(page["items"], VERDICT_COLUMNS, title="Recent runs")


@quality.command("set")
@click.argument("spider")
@click.argument("rules_file", metavar="FILE", type=click.File("r"))
@pass_api
def set_rules(api: Client, spider: str, rules_file: Any) -> None:
    """Set the spider's own rules from a JSON file (`-`: stdin; `null` clears them)."""
    try:
        rules = json.load(rules_file)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="FILE") from None
    found = api.request("PUT", f"/api/spiders/{spider}/quality", json={"rules": rules})
    output.note(f"{found['spider']}: rules from {found['source'] or 'none'}")


@quality.command("learn")
@click.argument("spider")
@click.argument("run_id", metavar="RUN")
@click.option("--save", is_flag=True, help="Set them as the spider's rules at once.")
@pass_api
def learn(api: Client, spider: str, run_id: str, save: bool) -> None:
    """Print rules a good run suggests (JSON, to edit and `set`), or --save them."""
    rules = api.request("POST", f"/api/spiders/{spider}/quality/learn",
                        json={"task_id": run_id})["rules"]  # fmt: skip
    if save:
        api.request("PUT", f"/api/spiders/{spider}/quality", json={"rules": rules})
        output.note(f"{spider}: rules learnt from run {run_id} saved")
        return
    json.dump(rules, sys.stdout, indent=2, ensure_ascii=False)
    print()


COMMANDS = [quality]
