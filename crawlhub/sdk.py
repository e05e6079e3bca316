"""Save items from a spider into CrawlHub's item channel, or to stdout when run by hand.

Each item becomes one line of compact UTF-8 JSON on the file descriptor named by
``CRAWLHUB_ITEMS_FD``: sets are written as lists, enum members as their value, other
values JSON has no form for as their ``str()``, NaN and infinities as ``null``. Items are
encoded by orjson where the spider's environment has it (about five times faster), by
json otherwise, with the same result. Writes are buffered, thread-safe
and flushed at exit (by CrawlHub's bootstrap, and by ``atexit`` for scripts run on
their own). A non-dict item is stored by CrawlHub as ``{"value": item}``.
"""

from __future__ import annotations

import atexit
import enum
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping

# Not `from typing import TYPE_CHECKING`: importing typing costs every run ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

__all__ = ["dumps", "flush", "save_item", "save_items"]

ITEMS_FD_ENV = "CRAWLHUB_ITEMS_FD"
# Large enough that a busy spider makes few syscalls, small enough to stream.
BUFFER_SIZE = 64 * 1024
# While items keep coming, CrawlHub sees them at least this often (checked on each write).
FLUSH_INTERVAL = 1.0
# Exit status when CrawlHub stopped reading the item channel (128 + SIGPIPE).
EXIT_CHANNEL_CLOSED = 141

_JSON_KEY_TYPES = (str, int, bool, type(None))

_lock = threading.Lock()
_channel: IO[bytes] | None = None
_channel_closed = False
_last_flush = 0.0
# orjson's encoder once the first item asked for it, False where orjson is not installed.
_fast: Callable[[Any], bytes] | bool | None = None


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """Return ``value`` as one line of compact JSON that any strict parser accepts.

    ``default`` turns a value JSON has no form for into one it has; by default sets
    become lists and everything else its ``str()``.
    """
    encode = _encode if default is None else _make_encoder(default)
    try:
        return encode(value)
    except (ValueError, TypeError):
        # NaN / infinity (rejected by allow_nan=False) or a dict key JSON has no form for.
        return encode(_sanitise(value, set()))


def save_item(item: Any) -> None:
    """Write one item to the item channel."""
    if type(item) is not dict and isinstance(item, Mapping):
        item = dict(item)
    line = _line(item)
    with _lock:
        _write(line)


def save_items(items: Iterable[Any]) -> int:
    """Write every item of ``items`` to the item channel and return how many there were."""
    count = 0
    for item in items:
        save_item(item)
        count += 1
    return count


def flush() -> None:
    """Push buffered items to CrawlHub now."""
    with _lock:
        if _channel is not None and not _channel_closed:
            _flush_channel(_channel, exiting=False)


def _write(line: bytes) -> None:
    global _last_flush
    channel = _channel if _channel is not None else _open_channel()
    if channel is None:
        sys.stdout.write(line.decode("utf-8"))
        return
    if _channel_closed:
        raise SystemExit(EXIT_CHANNEL_CLOSED)
    try:
        channel.write(line)
    except BrokenPipeError:
        _close_quietly()
        raise SystemExit(EXIT_CHANNEL_CLOSED) from None
    now = time.monotonic()
    if now - _last_flush >= FLUSH_INTERVAL:
        _last_flush = now
        _flush_channel(channel, exiting=False)


def _line(item: Any) -> bytes:
    """One item as a line of JSON, by orjson when it can, by ``dumps`` when it cannot."""
    global _fast
    if _fast is None:  # on the first item: a run that saves none does not import orjson
        _fast = _orjson_encoder()
    if _fast:
        try:
            return _fast(item)  # type: ignore[operator]
        except TypeError:  # orjson.JSONEncodeError: a key that is not a str, an integer
            pass  # beyond 64 bits, a lone surrogate, nesting past 254: dumps takes those
    # Lone surrogates (from surrogateescape'd bytes) cannot be UTF-8: they become "?".
    return (dumps(item) + "\n").encode("utf-8", "replace")


def _orjson_encoder() -> Callable[[Any], bytes] | bool:
    try:
        import orjson
    except ImportError:
        return False
    # Datetimes and dataclasses reach the default (their str()), as with json.
    options = (
        orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_DATACLASS
    )  # fmt: skip
    return functools.partial(orjson.dumps, default=_orjson_default, option=options)


def _orjson_default(value: Any) -> Any:
    # json writes float subclasses (numpy.float64) as numbers; orjson hands them here.
    return float(value) if isinstance(value, float) else _default(value)


def _open_channel() -> IO[bytes] | None:
    """Open the item channel on first use; None means write to stdout instead."""
    global _channel, _last_flush
    fd_text = os.environ.get(ITEMS_FD_ENV)
    if not fd_text:
        return None
    # closefd=False: the descriptor belongs to the process, not to this file object.
    _channel = open(int(fd_text), "wb", buffering=BUFFER_SIZE, closefd=False)  # noqa: SIM115
    _last_flush = time.monotonic()
    atexit.register(_flush_at_exit)
    return _channel


def _flush_channel(channel: IO[bytes], *, exiting: bool) -> None:
    try:
        channel.flush()
    except BrokenPipeError:
        _close_quietly()
        if not exiting:
            raise SystemExit(EXIT_CHANNEL_CLOSED) from None


def _flush_at_exit() -> None:
    with _lock:
        if _channel is not None and not _channel_closed:
            _flush_channel(_channel, exiting=True)


def _close_quietly() -> None:
    """CrawlHub stopped reading: send what is still buffered to /dev/null, not to stderr."""
    global _channel_closed
    _channel_closed = True
    if _channel is None:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, _channel.fileno())
    finally:
        os.close(devnull)


def _make_encoder(default: Callable[[Any], Any]) -> Callable[[Any], str]:
    """Build ``json.dumps(..., ensure_ascii=False, allow_nan=False, separators=(",", ":"))``."""
    encoder = json.JSONEncoder(
        ensure_ascii=False, allow_nan=False, default=default, separators=(",", ":")
    )
    # json.dumps builds json's C encoder anew for every call, half of its cost; reuse
    # one. Without circular-reference markers: shared between threads they would
    # misfire; a cycle still fails, with RecursionError.
    try:
        chunks = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
            None, default, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )
    except (AttributeError, TypeError):  # no C accelerator, or its signature changed
        return encoder.encode

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    probe = {"k": [1.5, "é\n", None, True], 2: {}}
    return encode if encode(probe) == encoder.encode(probe) else encoder.encode


def _default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, enum.Enum):  # as orjson writes them
        return value.value
    return str(value)


_encode = _make_encoder(_default)


def _sanitise(value: Any, path: set[int]) -> Any:
    """Replace NaN / infinity with None and odd dict keys with their str(), recursively."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict | list | tuple):
        if id(value) in path:
            raise ValueError("Circular reference detected")
        path.add(id(value))
        try:
            if isinstance(value, dict):
                return {_key(k): _sanitise(v, path) for k, v in value.items()}
            return [_sanitise(v, path) for v in value]
        finally:
            path.discard(id(value))
    return value


def _key(key: Any) -> Any:
    import math

    if isinstance(key, float):
        return repr(key) if math.isfinite(key) else str(key)
    return key if isinstance(key, _JSON_KEY_TYPES) else str(key)
