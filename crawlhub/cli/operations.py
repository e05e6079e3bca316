"""`crawlhub alerts …`, `channels …`, `queues …` and `login`."""

import click

from crawlhub.cli import output, profile
from crawlhub.cli.client import ApiError, Client, every
from crawlhub.cli.output import field, moment
from crawlhub.cli.session import JSON_OPTION, Api, pass_api

ALERT_COLUMNS = [
    ("ALERT", field("id")), ("LEVEL", field("level")), ("TYPE", field("type")),
    ("COUNT", field("count")), ("READ", field("is_read")),
    ("LAST SEEN (UTC)", moment("last_seen_at")), ("MESSAGE", field("message")),
]  # fmt: skip
CHANNEL_COLUMNS = [
    ("CHANNEL", field("id")), ("KIND", field("kind")), ("TARGET", field("target")),
    ("MIN LEVEL", field("min_level")), ("SPIDER", field("spider_id")),
    ("ENABLED", field("enabled")),
]  # fmt: skip


@click.group()
def alerts() -> None:
    """Alerts: failed runs, runs without items, lost workers."""


@alerts.command("list")
@click.option("--unread", is_flag=True, help="Only unread ones.")
@click.option("--level", type=click.Choice(["info", "warning", "error"]))
@click.option("-n", "--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@JSON_OPTION
@pass_api
def alerts_list(api: Client, unread: bool, level: str | None, limit: int, as_json: bool) -> None:
    """List alerts, newest first."""
    params = {"page_size": limit, "level": level, "is_read": "false" if unread else None}
    page = api.request("GET", "/api/alerts", params=params)
    output.listing(page, page["items"], ALERT_COLUMNS, as_json=as_json, empty="no alerts")


@alerts.command("read")
@click.argument("alert", required=False)
@click.option("--all", "everything", is_flag=True, help="Mark every alert read.")
@pass_api
def alerts_read(api: Client, alert: str | None, everything: bool) -> None:
    """Mark an alert (or --all) read."""
    if everything == (alert is not None):
        raise click.UsageError("give one ALERT or --all")
    if everything:
        done = api.request("POST", "/api/alerts/read-all")
        output.note(f"{done.get('count', 0)} alert(s) marked read")
    else:
        api.request("POST", f"/api/alerts/{alert}/read")
        output.note(f"alert {alert} marked read")


@click.group()
def channels() -> None:
    """Notification channels alerts are delivered to."""


@channels.command("list")
@JSON_OPTION
@pass_api
def channels_list(api: Client, as_json: bool) -> None:
    """List channels (secrets are never shown)."""
    rows = every(api, "/api/channels")
    output.listing({"items": rows, "total": len(rows)}, rows, CHANNEL_COLUMNS, as_json=as_json,
                   empty="no channels")  # fmt: skip


@channels.command("add")
@click.argument("kind", type=click.Choice(["webhook", "slack", "dingtalk", "feishu", "wecom",
                                           "email"]))  # fmt: skip
@click.argument("target")
@click.option("--min-level", type=click.Choice(["info", "warning", "error"]))
@click.option("--spider", "spider_id", help="Only this spider's alerts (name or id).")
@click.option("--secret", help="Signing secret (webhook, DingTalk, Feishu).")
@JSON_OPTION
@pass_api
def channels_add(api: Client, kind: str, target: str, min_level: str | None,
                 spider_id: str | None, secret: str | None, as_json: bool) -> None:  # fmt: skip
    """Add a channel: KIND and its TARGET (a URL, or an e-mail address)."""
    body = {"kind": kind, "target": target, "min_level": min_level, "spider_id": spider_id,
            "secret": secret}  # fmt: skip
    made = api.request("POST", "/api/channels", json={k: v for k, v in body.items() if v})
    if as_json:
        output.emit_json(made)
        return
    print(made["id"])
    output.note(f"channel {made['id']} ({made['kind']}) added")


@channels.command("test")
@click.argument("channel")
@pass_api
def channels_test(api: Client, channel: str) -> None:
    """Send a test message through a channel (exit 1 when it was not delivered)."""
    result = api.request("POST", f"/api/channels/{channel}/test")
    output.facts(result)
    if not result.get("delivered", result.get("ok", False)):
        raise click.exceptions.Exit(1)


@channels.command("rm")
@click.argument("channel")
@pass_api
def channels_rm(api: Client, channel: str) -> None:
    """Delete a channel."""
    api.request("DELETE", f"/api/channels/{channel}")
    output.note(f"channel {channel} deleted")


@click.group(invoke_without_command=True)
@JSON_OPTION
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Queue depths, live workers; dead letters (`queues dead-letters`)."""
    if ctx.invoked_subcommand is not None:
        return
    api = ctx.ensure_object(Api).client
    data = api.request("GET", "/api/queues")
    if as_json:
        output.emit_json(data)
        return
    output.table(data["queues"], [
        ("QUEUE", field("name")), ("READY", field("ready")), ("DELAYED", field("delayed")),
        ("IN FLIGHT", field("in_flight")), ("DEAD", field("dead_lettered")),
    ])  # fmt: skip
    print(f"workers: {len(data['workers'])}")
    for worker in data["workers"]:
        print(f"  {worker['id']}  last heartbeat {worker['last_heartbeat'][:19]}")


QUEUE = click.argument("queue", required=False, default="crawlhub.runs")


@queues.command("dead-letters")
@QUEUE
@JSON_OPTION
@pass_api
def dead_letters(api: Client, queue: str, as_json: bool) -> None:
    """Dead letters of a queue (default crawlhub.runs), with when they died."""
    page = api.request("GET", f"/api/queues/{queue}/dead-letters")
    if not as_json:
        output.note(f"{page['total']} dead letter(s) in {queue}")
    output.listing(page, page["items"], [
        ("MESSAGE", field("message_id")), ("ACTOR", field("actor")), ("RUN", field("task_id")),
        ("SPIDER", field("spider")), ("DIED (UTC)", moment("dead_at")),
        ("ATTEMPTS", field("attempts")), ("ERROR", field("error")),
    ], as_json=as_json, empty="none")  # fmt: skip


@queues.command("requeue")
@click.argument("queue")
@click.argument("message_id")
@pass_api
def requeue(api: Client, queue: str, message_id: str) -> None:
    """Send a dead letter again."""
    done = api.request("POST", f"/api/queues/{queue}/dead-letters/{message_id}/requeue")
    output.note(f"requeued {done['requeued']} (run {done['task_id']})")


@queues.command("purge")
@QUEUE
@pass_api
def purge(api: Client, queue: str) -> None:
    """Delete a queue's dead letters."""
    done = api.request("DELETE", f"/api/queues/{queue}/dead-letters")
    output.note(f"purged {done['count']} dead letter(s)")


@click.command()
@click.argument("url")
@click.option("--username", "-u", help="Sign in as this user (the password is asked) and "
              "store a new personal token named `cli`, replacing the last one.")  # fmt: skip
@click.option("--token", "login_token", envvar="CRAWLHUB_TOKEN",
              help="An API token (asked for when neither it nor --username is given).")  # fmt: skip
def login(url: str, username: str | None, login_token: str | None) -> None:
    """Remember a CrawlHub's URL and token for this user (checked first)."""
    if username is not None:
        password = click.prompt("Password", hide_input=True)
        made = Client(url, "").request("POST", "/api/login", json={
            "username": username, "password": password, "token_name": "cli"})  # fmt: skip
        login_token = made["token"]
    token = login_token or click.prompt("API token", hide_input=True)
    try:
        Client(url, token).request("GET", "/api/spiders", params={"page_size": 1})
    except ApiError as exc:
        raise ApiError(exc.http_status, exc.code, f"not signed in: {exc.message}") from None
    path = profile.save(url, token)
    output.note(f"signed in to {url}; stored in {path}")


COMMANDS = [alerts, channels, queues, login]
