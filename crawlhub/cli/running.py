"""`crawlhub run`, `cancel`, `runs` and `logs`."""

from typing import Any

import click

from crawlhub.cli import output
from crawlhub.cli.client import Client
from crawlhub.cli.output import field, moment
from crawlhub.cli.session import JSON_OPTION, pairs, pass_api
from crawlhub.repo.statuses import STATUSES

STREAMS = click.Choice(["stdout", "stderr", "system"])
RUN_COLUMNS = [
    ("RUN", field("id")), ("SPIDER", lambda t: t.get("spider")), ("STATUS", field("status")),
    ("REASON", field("reason")), ("VERDICT", field("verdict")),
    ("TRIGGER", lambda t: t["trigger"] + (f" by {t['actor']}" if t.get("actor") else "")),
    ("ITEMS", field("items_count")),
    ("CREATED (UTC)", moment("created_at")),
]  # fmt: skip


@click.command()
@click.argument("spider")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A param of this run (repeat; VALUE read as JSON when it parses).")  # fmt: skip
@click.option("-s", "--setting", "settings", multiple=True, metavar="NAME=VALUE",
              help="A Scrapy setting of this run (repeat).")  # fmt: skip
@click.option("--requires", "--label", "labels", multiple=True, metavar="LABEL",
              help="A label its node must have (repeat; default: the spider's).")  # fmt: skip
@click.option("--priority", type=int, default=None,
              help="Higher first among waiting runs (default 10; scheduled: 0).")  # fmt: skip
@click.option("-f", "--follow", is_flag=True,
              help="Print its log live; exit 0 only if it completes.")  # fmt: skip
@JSON_OPTION
@pass_api
def run(api: Client, spider: str, params: tuple[str, ...], settings: tuple[str, ...],
        labels: tuple[str, ...], priority: int | None, follow: bool,
        as_json: bool) -> None:  # fmt: skip
    """Start a run of a spider."""
    body: dict[str, Any] = {"params": pairs(params, "--param"),
                            "settings": pairs(settings, "--setting")}  # fmt: skip
    if labels:
        body["requires"] = list(labels)
    if priority is not None:
        body["priority"] = priority
    task = api.request("POST", f"/api/spiders/{spider}/run", json=body)
    if as_json and not follow:
        output.emit_json(task)
        return
    waiting = f" (waiting: {task['waiting_reason']})" if task.get("waiting_reason") else ""
    if not follow:
        print(task["id"])
        output.note(f"run {task['id']} of {spider} is {task['status']}{waiting}")
        return
    output.note(f"run {task['id']} of {spider} is {task['status']}")
    _follow(api, task["id"], None)


@click.command()
@click.argument("run_id", metavar="RUN")
@JSON_OPTION
@pass_api
def cancel(api: Client, run_id: str, as_json: bool) -> None:
    """Cancel a run: at once when it has not started, within 3 s when it runs."""
    task = api.request("POST", f"/api/tasks/{run_id}/cancel")
    if as_json:
        output.emit_json(task)
    else:
        output.note(f"run {task['id']} {task['status']}")


@click.command()
@click.option("--spider", help="Only this spider's (name or id).")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--trigger", type=click.Choice(["manual", "schedule", "test", "scrapyd", "retry"]))
@click.option("--verdict", type=click.Choice(["pass", "warn", "fail"]),
              help="Only runs with this data quality verdict.")  # fmt: skip
@click.option("-n", "--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@JSON_OPTION
@pass_api
def runs(api: Client, spider: str | None, status: str | None, trigger: str | None,
         verdict: str | None, limit: int, as_json: bool) -> None:  # fmt: skip
    """List recent runs, newest first."""
    params = {"page_size": limit, "spider_id": spider, "status": status, "trigger": trigger,
              "verdict": verdict}  # fmt: skip
    page = api.request("GET", "/api/tasks", params=params)
    rows = page["items"]
    if not as_json and rows:
        names = _spider_names(api, {t["spider_id"] for t in rows})
        rows = [{**t, "spider": names.get(t["spider_id"], t["spider_id"])} for t in rows]
    # A Scrapyd client knows its runs by the job id it gave (usable as the run's id).
    columns = RUN_COLUMNS + ([("JOB", field("job_id"))] if any(t.get("job_id") for t in rows)
                             else [])  # fmt: skip
    output.listing(page, rows, columns, as_json=as_json, empty="no runs")


def _spider_names(api: Client, ids: set[str]) -> dict[str, str]:
    """The names of a page's spiders (a page of runs names a few of them)."""
    return {spider_id: api.request("GET", f"/api/spiders/{spider_id}")["name"]
            for spider_id in ids}  # fmt: skip


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the run ends.")
@click.option("--stream", type=STREAMS, help="Only the lines of this stream.")
@click.option("--attempt", type=int, help="Only the lines of this attempt.")
@pass_api
def logs(api: Client, run_id: str, follow: bool, stream: str | None, attempt: int | None) -> None:
    """Print a run's log on stdout (CrawlHub's own lines marked [crawlhub])."""
    if follow:
        _follow(api, run_id, stream)
        return
    after = 0
    while True:
        page = api.request("GET", f"/api/tasks/{run_id}/logs", params={
            "after_seq": after, "limit": 1000, "stream": stream, "attempt": attempt})  # fmt: skip
        for line in page["items"]:
            print_line(line["stream"], line["text"])
        if not page["items"]:
            return
        after = page["next_after_seq"]


def _follow(api: Client, run_id: str, stream: str | None) -> None:
    """Print log events until the run ends; exit 1 unless it completed."""
    for kind, data in api.events(f"/api/tasks/{run_id}/logs/stream"):
        if kind == "log" and (stream is None or data["stream"] == stream):
            print_line(data["stream"], data["line"])
        elif kind == "status":
            reason = f" ({data['reason']})" if data.get("reason") else ""
            verdict = f", data quality {data['verdict']}" if data.get("verdict") else ""
            output.note(f"run {run_id} {data['status']}{reason}: {data['items_count']} items"
                        f"{verdict}")  # fmt: skip
            if data["status"] != "completed":
                raise click.exceptions.Exit(1)
            return
    raise click.exceptions.Exit(1)


def print_line(stream: str, text: str) -> None:
    """A log line on stdout; CrawlHub's own lines marked."""
    print(f"[crawlhub] {text}" if stream == "system" else text, flush=True)


tasks = click.Command("tasks", callback=runs.callback, params=runs.params,
                      help="Same as `runs` (its old name).", hidden=True)  # fmt: skip

COMMANDS = [run, cancel, runs, tasks, logs]
