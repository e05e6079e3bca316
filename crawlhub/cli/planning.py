"""`crawlhub schedules …`."""

from typing import Any

import click

from crawlhub.cli import output
from crawlhub.cli.client import Client, every
from crawlhub.cli.output import field, moment
from crawlhub.cli.session import JSON_OPTION, pairs, pass_api

SCHEDULE_COLUMNS = [
    ("SCHEDULE", field("id")), ("SPIDER", lambda s: s.get("spider")), ("CRON", field("cron")),
    ("TIMEZONE", field("timezone")), ("ENABLED", field("enabled")),
    ("NEXT FIRE (UTC)", moment("next_fire_at")), ("OVERLAP", field("overlap")),
]  # fmt: skip


@click.group()
def schedules() -> None:
    """Schedules: cron expressions in a time zone that start runs of a spider."""


@schedules.command("add")
@click.argument("spider")
@click.argument("cron")
@click.option("--tz", "timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE")
@click.option("-s", "--setting", "settings", multiple=True, metavar="NAME=VALUE",
              help="A Scrapy setting of its runs (repeat).")  # fmt: skip
@click.option("--overlap", type=click.Choice(["forbid", "allow", "replace"]))
@click.option("--catchup", type=click.Choice(["latest", "all", "none"]))
@click.option("--jitter", "jitter_s", type=int, help="Delay each fire by up to this many s.")
@click.option("--paused", is_flag=True, help="Create it paused.")
@JSON_OPTION
@pass_api
def add(api: Client, spider: str, cron: str, params: tuple[str, ...], settings: tuple[str, ...],
        paused: bool, as_json: bool, **fields: Any) -> None:  # fmt: skip
    """Add a schedule: SPIDER runs at CRON (5 fields, quoted) in --tz."""
    body = {"cron": cron, **{k: v for k, v in fields.items() if v is not None}}
    if params:
        body["params"] = pairs(params, "--param")
    if settings:
        body["settings"] = pairs(settings, "--setting")
    if paused:
        body["enabled"] = False
    made = api.request("POST", f"/api/spiders/{spider}/schedules", json=body)
    if as_json:
        output.emit_json(made)
        return
    print(made["id"])
    output.note(f"schedule {made['id']}: {spider} at '{made['cron']}' ({made['timezone']}), "
                f"next fire {output.when(made['next_fire_at'], made['timezone'])}")  # fmt: skip


@schedules.command("list")
@click.argument("spider", required=False)
@JSON_OPTION
@pass_api
def list_(api: Client, spider: str | None, as_json: bool) -> None:
    """List the schedules of a spider, or of every spider."""
    spiders = (
        [api.request("GET", f"/api/spiders/{spider}")] if spider else every(api, "/api/spiders")
    )
    rows = []
    for one in spiders:
        found = every(api, f"/api/spiders/{one['id']}/schedules")
        rows += [{**s, "spider": one["name"]} for s in found]
    output.listing({"items": rows, "total": len(rows)}, rows, SCHEDULE_COLUMNS,
                   as_json=as_json, empty="no schedules")  # fmt: skip


@schedules.command("preview")
@click.argument("schedule")
@click.option("-n", "count", type=click.IntRange(1, 1000), default=5, show_default=True)
@JSON_OPTION
@pass_api
def preview(api: Client, schedule: str, count: int, as_json: bool) -> None:
    """The next fires of a schedule, in UTC and in its own zone."""
    fires = api.request("GET", f"/api/schedules/{schedule}/preview", params={"n": count})
    output.listing(fires, fires["items"], [("UTC", field("utc")), ("LOCAL", field("local"))],
                   as_json=as_json, empty="no fires")  # fmt: skip


def _switch(name: str, enabled: bool) -> click.Command:
    @click.command(name, help=f"{name.capitalize()} a schedule.")
    @click.argument("schedule")
    @pass_api
    def switch(api: Client, schedule: str) -> None:
        made = api.request("PATCH", f"/api/schedules/{schedule}", json={"enabled": enabled})
        output.note(f"schedule {made['id']} {name}d; next fire "
                    f"{output.when(made['next_fire_at'], made['timezone'])}")  # fmt: skip

    return switch


schedules.add_command(_switch("pause", False))
schedules.add_command(_switch("resume", True))


@schedules.command("rm")
@click.argument("schedule")
@pass_api
def rm(api: Client, schedule: str) -> None:
    """Delete a schedule (its past runs stay)."""
    api.request("DELETE", f"/api/schedules/{schedule}")
    output.note(f"schedule {schedule} deleted")


COMMANDS = [schedules]
