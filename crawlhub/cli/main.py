"""The `crawlhub` command: the server processes (`up`, `web`, `worker`, `ticker`, `migrate`)
and the client commands that drive a CrawlHub over its API.

Client commands import nothing of the server (a command starts in tens of milliseconds);
the server commands import it when they run.

Exit statuses: 0 done; 1 the API refused or failed the request, or a followed run did not
complete; 2 a usage or configuration error; 3 the server could not be reached; 130 Ctrl-C.
"""

import sys
from collections.abc import Sequence

import click

from crawlhub import __version__
from crawlhub.cli import output
from crawlhub.cli.client import ApiError
from crawlhub.cli.session import Api
from crawlhub.errors import CrawlhubError

ENVIRONMENT = """\b
Environment:
  CRAWLHUB_URL    the CrawlHub to talk to (else `crawlhub login`'s, else
                  http://127.0.0.1:$PORT, PORT default 8000)
  CRAWLHUB_TOKEN  its API token (else `crawlhub login`'s, else the token file
                  of the local data dir, $CRAWLHUB_DATA_DIR/api-token)
Server commands read every CRAWLHUB_* setting (docs/guide/configuration.md).

\b
Exit status: 0 done, 1 refused or failed (or a followed run did not complete),
2 usage or configuration error, 3 server unreachable, 130 interrupted."""

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 1, 2, 3, 130


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=ENVIRONMENT)  # fmt: skip
@click.option("--url", envvar="CRAWLHUB_URL", metavar="URL", help="CrawlHub's address.")
@click.option("--token", envvar="CRAWLHUB_TOKEN", metavar="TOKEN", help="An API token.")
@click.version_option(__version__, prog_name="crawlhub")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None) -> None:
    """CrawlHub: run, schedule and watch web crawlers.

    `crawlhub up` starts everything in one process; the other commands drive a running
    CrawlHub: deploy projects, run spiders, follow logs, schedule, export items."""
    ctx.obj = Api(url, token)


def _server(name: str, help_text: str) -> None:
    """A server process command; the server's code is imported only when it runs."""

    @cli.command(
        name,
        help=help_text,
        epilog="Settings: every CRAWLHUB_* variable (docs/guide/configuration.md).",
    )
    def command() -> None:
        from crawlhub.alerting import targets
        from crawlhub.cli import processes
        from crawlhub.cli.logging_setup import setup_logging
        from crawlhub.config import load_settings
        from crawlhub.sandbox import isolation

        settings = load_settings()
        setup_logging(settings.log_level)
        isolation.harden_process(server=True)
        targets.check_allow_list(settings.channel_allow_hosts)
        getattr(processes, name)(settings)


_server("up", "Run everything in one process (SQLite, in-process broker): web, worker, ticker.")
_server("web", "Serve the HTTP API and the dashboard on $PORT.")
_server("worker", "Run spiders: consume the run, alert and build queues.")
_server("ticker", "Fire schedules, resend lost messages, reap lost runs, deliver alerts.")
_server("migrate", "Apply the database migrations.")


def _register() -> None:
    from crawlhub.cli import (
        catalog,
        nodes,
        operations,
        planning,
        quality,
        running,
        store,
        users,
    )  # fmt: skip

    for module in (catalog, running, planning, store, operations, quality, nodes, users):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = list(argv) if argv is not None else sys.argv[1:]
    server = bool(args) and args[0] in SERVERS
    try:
        # Without standalone mode, click returns the status of click.exceptions.Exit.
        status = cli.main(args=args, prog_name="crawlhub", standalone_mode=False)
    except click.exceptions.Abort:  # Ctrl-C (click turns KeyboardInterrupt into Abort)
        if server:  # uvicorn re-raises Ctrl-C after its clean shutdown: a clean stop
            return 0
        output.error("interrupted")
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except ApiError as exc:
        output.error(exc.message, exc.details)
        return EXIT_UNREACHABLE if exc.http_status == 0 else EXIT_FAILED
    except CrawlhubError as exc:
        output.error(exc.message, exc.details)
        return EXIT_USAGE if exc.code == "config_error" else EXIT_FAILED
    except KeyboardInterrupt:
        return 0 if server else EXIT_INTERRUPTED
    except BrokenPipeError:  # `crawlhub runs | head`
        return 0
    return status if isinstance(status, int) else 0


SERVERS = {"up", "web", "worker", "ticker", "migrate"}


if __name__ == "__main__":
    sys.exit(main())
