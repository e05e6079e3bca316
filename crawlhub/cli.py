"""The `crawlhub` command: process entry points and client commands."""

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from crawlhub import __version__, processes
from crawlhub.client import Client, build_package
from crawlhub.config import Settings, load_settings
from crawlhub.errors import CrawlhubError
from crawlhub.logs import setup_logging

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
    deploy = sub.add_parser("deploy", help="upload a spider directory, archive or .py file")
    deploy.add_argument("path", type=Path, help="a project directory, a .zip/.tar.gz or a .py file")
    deploy.add_argument("--name", required=True, help="spider name (a slug); created if missing")
    deploy.add_argument("--kind", choices=["scrapy", "python"], help="default: guessed")
    deploy.add_argument("--entry", help="Scrapy spider name or module:function (on creation)")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status."""
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.log_level)
        if args.command in PROCESSES:
            PROCESSES[args.command](settings)
            return 0
        return deploy(settings, args)
    except CrawlhubError as exc:
        print(f"crawlhub: {exc.message}", file=sys.stderr)
        return 2 if exc.code == "config_error" else 1
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C after its clean shutdown; a process stopped that way succeeded.
        return 0 if args.command in PROCESSES else 130


def deploy(settings: Settings, args: argparse.Namespace) -> int:
    """`crawlhub deploy`: create the spider if needed and upload a new version."""
    package = build_package(args.path, args.kind)
    client = Client.from_env(settings.data_dir, settings.port)
    spider, version, created = client.deploy(package, args.name, entry=args.entry)
    action = "created spider" if created else "spider"
    print(
        f"{action} {spider['name']} ({spider['kind']}, entry {spider['entry']}): "
        f"version {version['number']}, {version['size']} bytes, {version['files']} files, "
        f"sha256 {version['sha256'][:12]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
