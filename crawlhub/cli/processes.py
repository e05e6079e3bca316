"""Process entry points: web, worker, ticker, migrate and the embedded `up`."""

import gc
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn
from dramatiq import Worker

from crawlhub import metrics
from crawlhub.actors.registry import declare_actors
from crawlhub.config import Settings, ensure_token_file, token_path
from crawlhub.context import SESSIONS_PER_RUN, Context, sessions_needed
from crawlhub.errors import ConfigError
from crawlhub.housekeeping import steps as housekeeping
from crawlhub.messaging.broker import build_worker, open_without_password
from crawlhub.messaging.keys import QUEUES
from crawlhub.repo import migrate as migrations
from crawlhub.repo import tasks as task_repo
from crawlhub.repo.db import accepts_any_password
from crawlhub.services import accounts
from crawlhub.ticker import Ticker
from crawlhub.worker import launchers, preparation, sandboxes, supervisor

logger = logging.getLogger(__name__)

WORKER_POLL_MS = 100  # longest idle wait of a worker for a new message
GC_THRESHOLDS = (50_000, 20, 20)  # see tune_collector


def migrate(settings: Settings) -> None:
    """Bring the database schema to the newest migration (and create the first user, admin,
    with CRAWLHUB_ADMIN_PASSWORD when it is set and there is no user yet)."""
    context = Context.build(settings)
    try:
        migrations.upgrade(context.db.engine)
        logger.info("database migrated to %s", migrations.head_revision())
        if settings.admin_password is not None:  # the production set-up's first admin
            accounts.ensure_first_admin(context, settings.admin_password.get_secret_value())
    finally:
        context.close()


def web(settings: Settings) -> None:
    """Serve the API with uvicorn on $PORT until SIGTERM/SIGINT."""
    _require_redis(settings, "web")
    context = Context.build(settings)
    if not context.tokens:
        raise ConfigError("CRAWLHUB_API_TOKENS: set at least one token for `crawlhub web`")
    try:
        _serve(context, settings.host or "0.0.0.0")  # noqa: S104 - a PaaS routes to any interface
    finally:
        context.close()


def worker(settings: Settings) -> None:
    """Run Dramatiq worker threads for the run and alert queues until SIGTERM/SIGINT."""
    _require_redis(settings, "worker")
    context = Context.build(settings, runs_here=True)
    stop = threading.Event()
    _on_stop_signals("worker", "finishing current messages", stop.set)
    _serve_metrics(settings)
    consumer = _start_worker(context)
    logger.info("worker ready: %d thread(s) on %s", settings.worker_concurrency, ", ".join(QUEUES))
    try:
        while not stop.wait(1.0):
            pass
    finally:
        _stop_worker(consumer, context)
        context.close()
        logger.info("worker stopped")


def _stop_worker(consumer: Worker, context: Context) -> None:
    """Take no new messages, give running spiders the shutdown grace, then hand them back
    (`presence.WorkerLife` tells them, as Dramatiq begins its shutdown)."""
    grace = context.settings.shutdown_grace_s + supervisor.SHUTDOWN_KILL_GRACE_S + 5
    consumer.stop(timeout=int(grace * 1000))
    launchers.POOL.stop()


def _start_worker(context: Context) -> Worker:
    _check_connection_room(context)
    sandboxes.prepare_worker(context.settings)
    _warn_of_open_services(context.settings)
    preparation.collect_environments(context)  # and after each new version is prepared
    declare_actors(context)
    # Dramatiq's Redis consumer polls with a backoff up to worker_timeout; its default (1 s)
    # would add up to a second between "run" and the spider starting.
    consumer = build_worker(context.broker, context.settings.worker_concurrency, WORKER_POLL_MS)
    tune_collector()
    consumer.start()
    return consumer


def tune_collector() -> None:
    """What start-up made (modules, the app, the ORM's mappers) is frozen out of the cyclic
    collector's walks, and it runs less often: at Python's default thresholds (700 new
    objects, then every 10th and 100th pass) a worker's item reader, which makes tens of
    thousands of short-lived dicts a second, spent half its time in it walking each batch
    still held, and a web request now and then paid a full pass over every object (the
    dashboard's slowest requests). Memory stays bounded: the reader holds at most
    ITEMS_BUFFERED items, and 50 000 new objects are a few MB."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _check_connection_room(context: Context) -> None:
    """Refuse a concurrency the database cannot serve: every run holds up to three sessions."""
    needed = sessions_needed(context.settings)
    room = context.db.connection_room()
    if room is not None and needed > room:
        raise ConfigError(
            f"CRAWLHUB_WORKER_CONCURRENCY={context.settings.worker_concurrency}: a worker needs "
            f"up to {needed} database connections ({SESSIONS_PER_RUN} per run), and PostgreSQL "
            f"lets ordinary users hold {room} (max_connections): lower the concurrency or raise "
            "max_connections"
        )


def _warn_of_open_services(settings: Settings) -> None:
    """One line each for a database or Redis that lets in anyone who reaches it."""
    url = settings.database_url.get_secret_value()
    if accepts_any_password(url):
        logger.warning("PostgreSQL lets CrawlHub in with a wrong password (trust authentication): "
                       "anyone who reaches it is in; give its user a password "
                       "(docs/guide/security.md)")  # fmt: skip
    if settings.redis_url is not None and open_without_password(
        settings.redis_url.get_secret_value()
    ):
        logger.warning("Redis answers clients without a password: set `requirepass` and put the "
                       "password in REDIS_URL (docs/guide/security.md)")  # fmt: skip


def ticker(settings: Settings) -> None:
    """Run the scheduler loop until SIGTERM/SIGINT."""
    _require_redis(settings, "ticker")
    context = Context.build(settings)
    loop = Ticker(context)
    _on_stop_signals("ticker", "stopping after this round", loop.stop)
    _serve_metrics(settings)
    try:
        loop.run()
    finally:
        context.close()


def up(settings: Settings) -> None:
    """Embedded mode: migrate, then web, worker threads and ticker in this one process."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.tokens:
        created = ensure_token_file(settings.data_dir)
        if created is not None:
            print(
                f"API token (stored in {token_path(settings.data_dir)}; shown only now):\n"
                f"  {created}",
                flush=True,
            )
    context = Context.build(settings, runs_here=True)
    migrations.upgrade(context.db.engine)
    given = settings.admin_password.get_secret_value() if settings.admin_password else None
    made = accounts.ensure_first_admin(context, given)
    if made is not None:
        print(f"User '{accounts.FIRST_ADMIN}' created, password (shown only now; change it "
              f"under Account):\n  {made}", flush=True)  # fmt: skip
    worker = _start_worker(context)
    if settings.redis_url is None:
        # This process is the only worker: what still runs was cut short when it last stopped.
        housekeeping.hand_back_interrupted(context)
        # The in-process broker's queue died with the last process: send pending runs again.
        resent = housekeeping.resend_pending(context)
        if resent:
            logger.info("re-sent %d pending run(s) from before the restart", resent)
    loop = Ticker(context)
    ticker_thread = threading.Thread(target=loop.run, name="crawlhub-ticker", daemon=True)
    ticker_thread.start()
    host = settings.host or "127.0.0.1"
    logger.info("embedded CrawlHub on http://%s:%d (database %s)", host, settings.port,
                "sqlite" if settings.is_sqlite else "postgresql")  # fmt: skip
    where = "CRAWLHUB_API_TOKENS" if settings.tokens else token_path(settings.data_dir)
    print(f"Dashboard: http://{host}:{settings.port}/ (sign in as {accounts.FIRST_ADMIN}, or "
          f"with the API token in {where})", flush=True)  # fmt: skip
    try:
        _serve(context, host)
    finally:
        _stop_embedded(context, loop, ticker_thread, worker)


def _stop_embedded(context: Context, loop: Ticker, ticker: threading.Thread,
                   worker: Worker) -> None:  # fmt: skip
    """Stop, saying what is waited for; a second Ctrl-C stops at once (the runs cut short
    are handed back when CrawlHub starts again)."""
    with context.db.read() as session:
        running = task_repo.running_on(session, f"{socket.gethostname()}:{os.getpid()}:")
    grace = context.settings.shutdown_grace_s
    if running:
        print(f"stopping: {running} run(s) still running get up to {grace:g} s to finish, then "
              "go back to the queue; press Ctrl-C again to stop them now", flush=True)  # fmt: skip
    logger.info("stopping ticker and worker")
    try:
        loop.stop()
        ticker.join(timeout=5)
        _stop_worker(worker, context)
        context.close()
    except KeyboardInterrupt:
        print("stopped at once: runs cut short go back to the queue when CrawlHub starts again",
              flush=True)  # fmt: skip
        logging.shutdown()
        os._exit(130)  # worker threads may be mid-wait; the spiders die with us (PDEATHSIG)
    logger.info("stopped")


def _serve(context: Context, host: str) -> None:
    # Imported here: a worker or a ticker starts without the HTTP app (its routes' schemas
    # took a second and more of every process's start).
    from crawlhub.api import create_app

    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal; ours turns it into a
    # normal exit so the caller's clean-up (worker, ticker, connections) still runs.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    config = uvicorn.Config(
        create_app(context),
        host=host,
        port=context.settings.port,
        log_config=None,  # our logging set-up already owns stdout
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )
    tune_collector()
    uvicorn.Server(config).run()


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _on_stop_signals(process: str, next_step: str, stop: Callable[[], None]) -> None:
    """Call `stop` on SIGTERM or SIGINT, saying in the log what happens next."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("%s: %s received, %s", process, signal.Signals(signum).name, next_step)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _serve_metrics(settings: Settings) -> None:
    """Expose this process's Prometheus counters on CRAWLHUB_METRICS_PORT, when it is set."""
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port, settings.metrics_token)
        logger.info("metrics on :%d/metrics", settings.metrics_port)


def _require_redis(settings: Settings, process: str) -> None:
    if settings.redis_url is None:
        raise ConfigError(
            f"REDIS_URL: required for `crawlhub {process}` (or run everything with `crawlhub up`)"
        )
