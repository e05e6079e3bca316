"""The `crawlhub` command: process entry points and client commands."""

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crawlhub import __version__
from crawlhub.alerting import targets
from crawlhub.cli import processes
from crawlhub.cli.client import Client, build_package
from crawlhub.cli.logging_setup import setup_logging
from crawlhub.config import load_settings
from crawlhub.errors import CrawlhubError
from crawlhub.execution import sandbox

logger = logging.getLogger(__name__)

PROCESSES = {
    "up": processes.up,
    "web": processes.web,
    "worker": processes.worker,
    "ticker": processes.ticker,
    "migrate": processes.migrate,
}


def parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    root = argparse.ArgumentParser(prog="crawlhub", description="CrawlHub: run and watch crawlers.")
    root.add_argument("--version", action="version", version=f"crawlhub {__version__}")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("up", help="run everything in one process (SQLite, in-process broker)")
    sub.add_parser("web", help="serve the HTTP API on $PORT")
    sub.add_parser("worker", help="run the dramatiq worker for the run and alert queues")
    sub.add_parser("ticker", help="run the scheduler loop")
    sub.add_parser("migrate", help="apply database migrations")
    deploy = sub.add_parser(
        "deploy", help="upload a project (all of its Scrapy spiders), or one spider's code"
    )
    deploy.add_argument("path", type=Path, help="a project directory, a .zip/.tar.gz or a .py file")
    deploy.add_argument("--project", help="project name; default: the directory or file name")
    deploy.add_argument("--name", help="deploy as this one spider (a python package's default)")
    deploy.add_argument("--kind", choices=["scrapy", "python"], help="default: guessed")
    deploy.add_argument("--entry", help="the spider's Scrapy spider name or module:function")
    deploy.add_argument("--no-wait", action="store_true",
                        help="do not wait for the environment and the spider list")  # fmt: skip
    deploy.add_argument("--timeout", type=float, default=1800, help="seconds to wait for a build")
    projects = sub.add_parser("projects", help="list projects, or show one and its versions")
    projects.add_argument("project", nargs="?", help="project name or id")
    projects.add_argument("--log", action="store_true", help="print a version's build log")
    projects.add_argument("--version", type=int, dest="number", help="default: the current one")
    run = sub.add_parser("run", help="start a run of a spider")
    run.add_argument("name", help="spider name or id")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="a run parameter (VALUE parsed as JSON when it is JSON)")  # fmt: skip
    run.add_argument("--follow", "-f", action="store_true",
                     help="follow its log; exit 0 only if it completes")  # fmt: skip
    logs = sub.add_parser("logs", help="print a run's log")
    logs.add_argument("task", help="task id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    listing = sub.add_parser("tasks", help="list recent runs")
    listing.add_argument("--spider", help="spider name or id")
    listing.add_argument("--status", help="pending, running, completed, failed, …")
    listing.add_argument("--limit", type=int, default=20, help="how many (at most 100)")
    exporting = sub.add_parser("export", help="download a spider's items with a progress bar")
    exporting.add_argument("name", help="spider name or id")
    exporting.add_argument(
        "--format", "-F", default="csv", choices=["csv", "json", "jsonl", "xlsx"]
    )
    exporting.add_argument("-o", "--output", type=Path, help="default: the server's file name")
    exporting.add_argument("--task", help="only this run's items")
    exporting.add_argument("--fields", help="CSV/XLSX columns, e.g. url,title")
    exporting.add_argument("--excel", action="store_true", help="CSV for Excel (BOM, safe cells)")
    queues = sub.add_parser("queues", help="queue depths, live workers and dead letters")
    queues.add_argument("action", nargs="?", default="show",
                        choices=["show", "dead-letters", "requeue", "purge"])  # fmt: skip
    queues.add_argument("queue", nargs="?", default="crawlhub.runs", help="default crawlhub.runs")
    queues.add_argument("message_id", nargs="?", help="the dead letter to requeue")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status."""
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.log_level)
        sandbox.harden_process(server=args.command in PROCESSES)
        if args.command in PROCESSES:
            targets.check_allow_list(settings.channel_allow_hosts)
            PROCESSES[args.command](settings)
            return 0
        client = Client.from_env(settings.data_dir, settings.port)
        return int(CLIENT[args.command](client, args))
    except CrawlhubError as exc:
        print(f"crawlhub: {exc.message}", file=sys.stderr)
        return 2 if exc.code == "config_error" else 1
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C after its clean shutdown; a process stopped that way succeeded.
        return 0 if args.command in PROCESSES else 130


def deploy(client: Client, args: argparse.Namespace) -> int:
    """`crawlhub deploy`: upload a project (created if missing) as its next version and wait
    until a worker has built its environment and listed its spiders. With --name or
    --entry (and for a python package), deploy it as that one spider instead."""
    package = build_package(args.path, args.kind)
    name = args.project or slug_of(args.path)
    if args.name or args.entry or package.kind == "python":
        spider, version, created = client.deploy(
            package, args.name or name, entry=args.entry, kind=args.kind
        )
        print(
            f"{'created spider' if created else 'spider'} {spider['name']} ({spider['kind']}, "
            f"entry {spider['entry']}) in project {spider['project']}: {_version(version)}"
        )
        name = spider["project"]
    else:
        project, version, created = client.deploy_project(package, name)
        print(f"{'created project' if created else 'project'} {project['name']} "
              f"({project['kind']}): {_version(version)}")  # fmt: skip
    if args.no_wait or version["environment"]["status"] != "building":
        return _report(name, version)
    print("waiting for a worker to prepare it", end="", file=sys.stderr, flush=True)
    version = client.settled_version(
        name, version["number"], args.timeout,
        lambda: print(".", end="", file=sys.stderr, flush=True),
    )  # fmt: skip
    print(file=sys.stderr)
    return _report(name, version)


def _version(version: dict[str, Any]) -> str:
    return (f"version {version['number']}, {version['size']} bytes, {version['files']} files, "
            f"sha256 {version['sha256'][:12]}")  # fmt: skip


def _report(project: str, version: dict[str, Any]) -> int:
    """What a deploy ends with: the environment and the spiders; 1 when it cannot run."""
    env = version["environment"]
    where = f"environment {env['key']}" if env["key"] else "the platform's environment"
    if env["requirements"]:
        where += f" ({len(env['requirements'])} requirement(s))"
    if env["status"] == "failed":
        print(f"crawlhub: version {version['number']} cannot run: {env['error']}\n"
              f"  build log: crawlhub projects {project} --log --version {version['number']}",
              file=sys.stderr)  # fmt: skip
        return 1
    if env["status"] == "building":
        print(f"{where}: still building (see: crawlhub projects {project})")
        return 0
    print(f"{where}: ready")
    if version["spiders"] is not None:
        print(f"spiders: {', '.join(version['spiders']) or '(none)'}")
    return 0


def projects(client: Client, args: argparse.Namespace) -> int:
    """`crawlhub projects`: a table of projects; one project's spiders and versions; or a
    version's build log."""
    if args.project is None:
        page = client.request("GET", "/api/projects", params={"page_size": 100})
        print(f"{'PROJECT':24} {'KIND':7} {'VERSION':>7}  SPIDERS")
        for p in page["items"]:
            version = p["current_version"] if p["current_version"] is not None else "-"
            print(f"{p['name']:24} {p['kind']:7} {version:>7}  {', '.join(p['spiders'])}")
        return 0
    project = client.request("GET", f"/api/projects/{args.project}")
    if args.log:
        number = args.number or project["current_version"]
        if number is None:
            raise CrawlhubError(f"project {project['name']} has no version yet")
        env = client.request("GET", f"/api/projects/{project['id']}/versions/{number}/environment")
        print(env["log"] or "(no build log: nothing to build)")
        return 0 if env["status"] != "failed" else 1
    spiders = ", ".join(project["spiders"]) or "-"
    print(f"project {project['name']} ({project['kind']}), current version "
          f"{project['current_version']}; spiders: {spiders}")  # fmt: skip
    versions = client.request("GET", f"/api/projects/{project['id']}/versions",
                              params={"page_size": 20})  # fmt: skip
    print(f"{'VERSION':>7}  {'ENVIRONMENT':11}  {'CREATED':19}  SPIDERS / ERROR")
    for v in versions["items"]:
        env = v["environment"]
        detail = env["error"] if env["status"] == "failed" else ", ".join(v["spiders"] or [])
        print(f"{v['number']:>7}  {env['status']:11}  {v['created_at'][:19]}  {detail}")
    return 0


def slug_of(path: Path) -> str:
    """A project name from a directory or file name."""
    stem = path.resolve().name
    if path.is_file():
        stem = stem.removesuffix(".tar.gz").rsplit(".", 1)[0]
    slug = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_")[:64]
    return slug or "project"


def run(client: Client, args: argparse.Namespace) -> int:
    """`crawlhub run`: start a run; with --follow, stream its log and exit with its outcome."""
    params = dict(parse_param(p) for p in args.param)
    task = client.request("POST", f"/api/spiders/{args.name}/run", json={"params": params})
    print(f"task {task['id']} {task['status']}", file=sys.stderr if args.follow else sys.stdout)
    if not args.follow:
        return 0
    return follow(client, task["id"])


def logs(client: Client, args: argparse.Namespace) -> int:
    """`crawlhub logs`: print a run's persisted log, or follow it to the end."""
    if args.follow:
        return follow(client, args.task)
    after = 0
    while True:
        page = client.request("GET", f"/api/tasks/{args.task}/logs",
                              params={"after_seq": after, "limit": 1000})  # fmt: skip
        for line in page["items"]:
            print_line(line["stream"], line["text"])
        if not page["items"]:
            return 0
        after = page["next_after_seq"]


def follow(client: Client, task_id: str) -> int:
    """Print log events until the status event; 0 when the run completed."""
    for kind, data in client.events(f"/api/tasks/{task_id}/logs/stream"):
        if kind == "log":
            print_line(data["stream"], data["line"])
        elif kind == "status":
            reason = f" ({data['reason']})" if data.get("reason") else ""
            print(f"task {task_id} {data['status']}{reason}: {data['items_count']} items",
                  file=sys.stderr)  # fmt: skip
            return 0 if data["status"] == "completed" else 1
    return 1


def tasks(client: Client, args: argparse.Namespace) -> int:
    """`crawlhub tasks`: a table of recent runs."""
    params = {"page_size": max(1, min(args.limit, 100))}
    params.update({k: v for k, v in (("spider_id", args.spider), ("status", args.status)) if v})
    page = client.request("GET", "/api/tasks", params=params)
    print(f"{'TASK':36}  {'STATUS':9}  {'TRIGGER':8}  {'ITEMS':>7}  CREATED")
    for t in page["items"]:
        print(f"{t['id']:36}  {t['status']:9}  {t['trigger']:8}  {t['items_count']:>7}  "
              f"{t['created_at'][:19]}")  # fmt: skip
    return 0


def queues(client: Client, args: argparse.Namespace) -> int:
    """`crawlhub queues`: depths and workers, or inspect, requeue, purge dead letters."""
    base = f"/api/queues/{args.queue}/dead-letters"
    if args.action == "show":
        data = client.request("GET", "/api/queues")
        print(f"{'QUEUE':18} {'READY':>7} {'DELAYED':>8} {'IN FLIGHT':>10} {'DEAD':>6}")
        for q in data["queues"]:
            print(f"{q['name']:18} {q['ready']:>7} {q['delayed']:>8} {q['in_flight']:>10} "
                  f"{q['dead_lettered']:>6}")  # fmt: skip
        print(f"workers: {len(data['workers'])}")
        for w in data["workers"]:
            print(f"  {w['id']}  last heartbeat {w['last_heartbeat'][:19]}")
    elif args.action == "dead-letters":
        data = client.request("GET", base)
        print(f"{data['total']} dead letter(s) in {args.queue}")
        for m in data["items"]:
            print(f"{m['message_id']}  {m['actor']:6} task {m['task_id']}  "
                  f"{m['dead_at'][:19]}  {m['error'] or ''}")  # fmt: skip
    elif args.action == "requeue":
        if not args.message_id:
            raise CrawlhubError("requeue needs QUEUE and MESSAGE_ID")
        done = client.request("POST", f"{base}/{args.message_id}/requeue")
        print(f"requeued {done['requeued']} (task {done['task_id']})")
    else:
        print(f"purged {client.request('DELETE', base)['count']} dead letter(s)")
    return 0


def export(client: Client, args: argparse.Namespace) -> int:
    """`crawlhub export`: stream a selection of items to a file, showing progress."""
    filters = {"spider_id": args.name, **({"task_id": args.task} if args.task else {})}
    total = client.request("GET", "/api/data", params={**filters, "page_size": 1})["total"]
    params: dict[str, Any] = dict(filters)
    if args.fields:
        params["fields"] = args.fields
    if args.excel:
        params["excel"] = "true"
    partial = Path(f".crawlhub-export-{os.getpid()}.part")
    bar = Progress(total, counts_lines=args.format in ("csv", "jsonl"))
    try:
        size, served_name = client.download(
            f"/api/data/export/{args.format}", params, partial, bar.update
        )
        target = args.output or Path(served_name or f"{args.name}.{args.format}")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    bar.done()
    print(f"wrote {total} items, {size:,} bytes to {target}")
    return 0


class Progress:
    """A one-line progress bar on stderr: items when lines can be counted, else bytes."""

    WIDTH = 30

    def __init__(self, total: int, *, counts_lines: bool) -> None:
        self.total = total
        self.counts_lines = counts_lines
        self.lines = 0
        self.bytes = 0
        self.shown = 0.0

    def update(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        self.lines += chunk.count(b"\n")
        now = time.monotonic()
        if now - self.shown >= 0.2:
            self.shown = now
            self._draw()

    def _draw(self) -> None:
        if self.counts_lines and self.total:
            done = min(self.lines / self.total, 1.0)
            filled = int(done * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            text = f"[{bar}] {done:4.0%} {min(self.lines, self.total):,}/{self.total:,} items"
        else:
            text = f"{self.bytes / 1e6:8.1f} MB of {self.total:,} items"
        sys.stderr.write("\r" + text)
        sys.stderr.flush()

    def done(self) -> None:
        self.lines = max(self.lines, self.total)
        self._draw()
        sys.stderr.write("\n")


def print_line(stream: str, text: str) -> None:
    """A log line on our stdout or stderr like the spider printed it; system lines marked."""
    if stream == "system":
        print(f"[crawlhub] {text}", file=sys.stderr)
    else:
        print(text, file=sys.stderr if stream == "stderr" else sys.stdout, flush=True)


def parse_param(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE read as JSON when it parses, else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CrawlhubError(f"parameter {text!r} is not KEY=VALUE")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


CLIENT = {"deploy": deploy, "projects": projects, "run": run, "logs": logs, "tasks": tasks,
          "queues": queues, "export": export}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
