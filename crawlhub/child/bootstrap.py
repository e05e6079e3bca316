"""The child side of a spider run: run a python entry or a Scrapy crawl.

Started by the worker in the run's work dir, inside the run's sandbox (already unprivileged:
the worker's side of the boundary is crawlhub/sandbox/), never by hand::

    python -m crawlhub.child.bootstrap python module.sub:function
    python -m crawlhub.child.bootstrap scrapy <spider> [scrapy crawl arguments ...]
    python -m crawlhub.child.bootstrap list      (a Scrapy project's spiders, as `scrapy list`)

Exit statuses: 0 done, 1 the spider raised, 2 bad invocation or entry, 70 the worker
was gone before the run started, 141 CrawlHub stopped reading items, 143 SIGTERM
(python mode; Scrapy shuts down gracefully and exits 0). Every run starts this
module, so it imports nothing heavy and no CrawlHub module but the SDK.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import select
import signal
import sys
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Mapping

from crawlhub import sdk

# Not `from typing import TYPE_CHECKING`: importing typing costs every run ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType, TracebackType
    from typing import Any, NoReturn

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARENT_GONE = 70  # EX_SOFTWARE: the worker died before the start
EXIT_TERMINATED = 128 + signal.SIGTERM

ITEMS_FD_ENV = sdk.ITEMS_FD_ENV  # required: write end of the item pipe
PARAMS_ENV = "CRAWLHUB_PARAMS"  # python mode: JSON object passed to the entry

EGG_ENTRY_POINTS = "EGG-INFO/entry_points.txt"  # of a project deployed as an egg
STATS_EXTENSION = "crawlhub.child.scrapy_extension.StatsFileWriter"
# After Scrapy's own extensions (all at 0), so that its spider_closed handler runs
# after CoreStats has set finish_reason and finish_time.
STATS_EXTENSION_ORDER = 1000
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_USAGE = (
    "usage: python -m crawlhub.child.bootstrap python module:function\n"
    "       python -m crawlhub.child.bootstrap scrapy SPIDER [scrapy crawl arguments ...]"
)


def main(argv: list[str] | None = None) -> int:
    """Run the spider named by ``argv`` and return the process exit status."""
    args = sys.argv[1:] if argv is None else argv
    die_with_parent()
    _configure_output()
    items_fd = _items_fd()
    # Checked after prctl: a worker that died before prctl took effect is caught here.
    if reader_gone(items_fd):
        print("crawlhub: the worker is gone; not starting", file=sys.stderr)
        raise SystemExit(EXIT_PARENT_GONE)
    try:
        if len(args) == 2 and args[0] == "python":
            return run_python(args[1], _params())
        if len(args) >= 2 and args[0] == "scrapy":
            return run_scrapy(args[1], args[2:], items_fd)
        if args == ["list"]:
            return list_scrapy(items_fd)
        _fail(f"bad arguments {args!r}\n{_USAGE}")
    finally:
        sdk.flush()


def die_with_parent() -> None:
    """Have Linux SIGKILL this process when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)


def reader_gone(fd: int) -> bool:
    """Whether the pipe that ``fd`` writes to has no reader left (the worker died)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(event & select.POLLERR for _, event in poller.poll(0))


def run_python(entry: str, params: dict[str, Any]) -> int:
    """Call the ``module:function`` entry with ``params`` and save what it returns or yields."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        function = _load_entry(entry)
        _save_result(function(params))
    except Exception as exc:
        _print_user_traceback(exc)
        return EXIT_FAILED
    return EXIT_OK


def run_scrapy(spider: str, crawl_args: list[str], items_fd: int) -> int:
    """Run ``scrapy crawl`` in this process with CrawlHub's item feed and stats extension."""
    from scrapy.cmdline import execute
    from scrapy.utils.project import get_project_settings, inside_project

    _egg_settings()
    if not inside_project():
        _fail(f"no scrapy.cfg in {os.getcwd()}: not a Scrapy project")
    bridge_start_requests()
    settings = get_project_settings()
    # Set on the settings object rather than with -s, which would replace the
    # project's FEEDS; at cmdline priority so a spider's custom_settings keep ours.
    feeds = settings.getdict("FEEDS")
    feeds[f"file:///dev/fd/{items_fd}"] = {"format": "jsonlines", "encoding": "utf-8"}
    settings.set("FEEDS", feeds, priority="cmdline")
    # EXTENSIONS_BASE, not EXTENSIONS: Scrapy merges the two, and a project or
    # spider that sets EXTENSIONS (at any priority) replaces only the latter.
    extensions = settings.getdict("EXTENSIONS_BASE")
    extensions[STATS_EXTENSION] = STATS_EXTENSION_ORDER
    settings.set("EXTENSIONS_BASE", extensions, priority="cmdline")
    # Scrapy's telnet console listens on a port with a password in the log: off unless the
    # project turns it on (its settings outrank the defaults).
    settings.set("TELNETCONSOLE_ENABLED", False, priority="default")
    try:
        execute(["scrapy", "crawl", spider, *crawl_args], settings=settings)
    except KeyError as exc:  # the project has no such spider: another try cannot help
        if "not found" not in str(exc):
            raise
        _fail(f"{exc.args[0] if exc.args else exc} in this Scrapy project")
    return EXIT_OK  # not reached: execute() always exits


def list_scrapy(items_fd: int) -> int:
    """Write the project's spider names, as `scrapy list` finds them, as one JSON array."""
    from scrapy.utils.misc import load_object
    from scrapy.utils.project import get_project_settings, inside_project

    _egg_settings()
    if not inside_project():
        _fail(f"no scrapy.cfg in {os.getcwd()}: not a Scrapy project")
    settings = get_project_settings()
    loader = load_object(settings["SPIDER_LOADER_CLASS"]).from_settings(settings.frozencopy())
    with os.fdopen(items_fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(sorted(loader.list())) + "\n")
    return EXIT_OK


def _egg_settings() -> None:
    """A project deployed as an egg (scrapyd-deploy) has no scrapy.cfg: its settings module
    is the `[scrapy] settings` entry point of EGG-INFO/entry_points.txt, as Scrapyd's runner
    reads it (here without pkg_resources)."""
    if os.path.exists("scrapy.cfg") or not os.path.exists(EGG_ENTRY_POINTS):
        return
    import configparser

    parser = configparser.ConfigParser()
    parser.read(EGG_ENTRY_POINTS, encoding="utf-8")
    module = parser.get("scrapy", "settings", fallback="").strip()
    if module:
        os.environ.setdefault("SCRAPY_SETTINGS_MODULE", module)


def bridge_start_requests() -> None:
    """Have spiders that define only ``start_requests()`` crawl on a Scrapy that no longer
    calls it (its ``Spider`` has ``start()`` and no ``start_requests``): the default
    ``start()`` yields from ``start_requests()`` when the spider has one."""
    from scrapy import Spider

    if hasattr(Spider, "start_requests") or not hasattr(Spider, "start"):
        return  # this Scrapy calls start_requests() itself
    default_start = Spider.start

    async def start(self: Any) -> Any:
        legacy = getattr(self, "start_requests", None)
        if legacy is None:
            async for request in default_start(self):
                yield request
            return
        requests = legacy()
        if hasattr(requests, "__aiter__"):
            async for request in requests:
                yield request
        else:
            for request in requests or ():
                yield request

    Spider.start = start  # type: ignore[method-assign]


def _load_entry(entry: str) -> Callable[[dict[str, Any]], Any]:
    module_name, _, attr_path = entry.partition(":")
    if not all(part.isidentifier() for part in (*module_name.split("."), *attr_path.split("."))):
        _fail(f"entry {entry!r} is not of the form module.sub:function")
    cwd = os.getcwd()
    if cwd in sys.path:
        sys.path.remove(cwd)
    sys.path.insert(0, cwd)
    try:
        # __import__ rather than importlib: it hides importlib's frames from tracebacks.
        __import__(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and f"{module_name}.".startswith(f"{exc.name}."):
            _fail(f"cannot import {module_name!r}: no module {exc.name!r} in {cwd}")
        raise
    target: Any = sys.modules[module_name]
    for name in attr_path.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            _fail(f"module {module_name!r} has no function {attr_path!r}")
    if not callable(target):
        _fail(f"{entry!r} is a {type(target).__name__}, not a function")
    function: Callable[[dict[str, Any]], Any] = target
    return function


def _save_result(result: Any) -> None:
    """Save a dict or other single value as one item, an iterable as one item each."""
    if isinstance(result, Coroutine):
        import asyncio

        result = asyncio.run(result)
    if isinstance(result, AsyncIterable):
        import asyncio

        asyncio.run(_save_async(result))
    elif result is None:
        return
    elif isinstance(result, Mapping | str | bytes | bytearray) or not isinstance(result, Iterable):
        sdk.save_item(result)
    else:
        sdk.save_items(result)


async def _save_async(items: AsyncIterable[Any]) -> None:
    async for item in items:
        sdk.save_item(item)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn the first SIGTERM into SystemExit so finally blocks run and items get flushed."""
    # Later ones are dropped (not SIG_IGN, which subprocesses would inherit): the
    # worker's SIGKILL after its grace period ends a run that will not stop.
    signal.signal(signal.SIGTERM, _ignore_signal)
    raise SystemExit(EXIT_TERMINATED)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    return


def _print_user_traceback(exc: BaseException) -> None:
    import traceback

    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
    sys.stderr.flush()


def _configure_output() -> None:
    """UTF-8, line-buffered stdout and stderr: each line reaches the run's log as it is printed."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8", errors="backslashreplace", line_buffering=True)


def _items_fd() -> int:
    text = os.environ.get(ITEMS_FD_ENV, "")
    if not text.isdigit():
        _fail(f"{ITEMS_FD_ENV}={text!r} must name the item pipe's file descriptor")
    try:
        os.fstat(int(text))
    except OSError as exc:
        _fail(f"{ITEMS_FD_ENV}={text}: {exc.strerror}")
    return int(text)


def _params() -> dict[str, Any]:
    text = os.environ.get(PARAMS_ENV) or "{}"
    try:
        params = json.loads(text)
    except ValueError as exc:
        _fail(f"{PARAMS_ENV} is not JSON: {exc}")
    if not isinstance(params, dict):
        _fail(f"{PARAMS_ENV} must be a JSON object, not {type(params).__name__}")
    return params


def _fail(message: str) -> NoReturn:
    print(f"crawlhub: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
