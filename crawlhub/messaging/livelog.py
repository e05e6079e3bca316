"""Live log events of running tasks: a Redis stream per task, or an in-process equivalent.

Writers (the run actor, on worker threads) publish batches of lines and a final end
marker; readers (the SSE endpoints, async) read from a cursor with a blocking wait.
Lines are also persisted in the database; these streams only carry them live.
"""

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

from crawlhub.messaging.keys import TASK_LOG_STREAM

logger = logging.getLogger(__name__)

STREAM_MAXLEN = 10_000  # recent lines kept per task stream (approximate trim)
# A stream holds about this many bytes of lines at most, however long they are: it is trimmed
# by the size of the lines just published (readers that fall behind read the database).
STREAM_BYTES = 4 * 1024 * 1024
FINISHED_KEEP = 200  # lines a finished run's stream keeps for the readers still following it
STREAM_TTL_S = 3600  # a finished task's stream expires after this
# Live lines stop being published (the database still stores every one) while Redis is above
# this share of its maxmemory: the queues in the same Redis keep working whatever runs print.
MEMORY_GUARD = 0.8
MEMORY_CHECK_S = 2.0  # how often a process reads Redis's memory figures
MEMORY_POLL_S = 0.02  # in-process readers look for new lines this often


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One live log line."""

    seq: int
    attempt: int
    stream: str
    ts: float
    text: str


@dataclass(frozen=True, slots=True)
class LiveRead:
    """What a read returned: new events, the cursor after them, and whether the run ended."""

    events: list[LogEvent]
    cursor: str
    ended: bool


class LiveLog(Protocol):
    """Publishes and reads the live log events of tasks."""

    def publish(self, task_id: str, events: Sequence[LogEvent]) -> None: ...

    def finish(self, task_id: str) -> None: ...

    async def read(self, task_id: str, cursor: str, block_ms: int) -> LiveRead: ...

    async def aclose(self) -> None: ...

    def close(self) -> None: ...


START = "0"  # the cursor of a stream's beginning


class RedisLiveLog:
    """Live logs in Redis streams (`crawlhub:task:<id>:log`), capped and expiring."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sync = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._async: aioredis.Redis | None = None
        self._lock = threading.Lock()
        self._full_until = 0.0  # Redis was found near its maxmemory: no live lines till then
        self._checked_at = 0.0

    def publish(self, task_id: str, events: Sequence[LogEvent]) -> None:
        if not events or self._near_full():
            return
        key = TASK_LOG_STREAM.format(task_id=task_id)
        size = sum(len(e.text) for e in events) + 64 * len(events)
        keep = max(1, min(STREAM_MAXLEN, STREAM_BYTES * len(events) // size))
        with self.sync.pipeline(transaction=False) as pipe:
            for e in events:
                fields = {"q": e.seq, "a": e.attempt, "s": e.stream, "t": e.ts, "x": e.text}
                pipe.xadd(key, fields, maxlen=keep, approximate=True)  # type: ignore[arg-type]
            pipe.expire(key, STREAM_TTL_S * 24)  # a safety net should the finish never come
            pipe.execute()

    def finish(self, task_id: str) -> None:
        key = TASK_LOG_STREAM.format(task_id=task_id)
        with self.sync.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"end": 1}, maxlen=FINISHED_KEEP, approximate=False)
            pipe.expire(key, STREAM_TTL_S)
            pipe.execute()

    def _near_full(self) -> bool:
        """Whether Redis is above MEMORY_GUARD of its maxmemory (read every MEMORY_CHECK_S;
        a Redis without maxmemory is never full for this)."""
        now = time.monotonic()
        if now - self._checked_at >= MEMORY_CHECK_S:
            self._checked_at = now
            info: Any = self.sync.info("memory")
            most = int(info.get("maxmemory") or 0)
            full = bool(most) and int(info["used_memory"]) >= MEMORY_GUARD * most
            if full and self._full_until <= now:
                logger.warning("Redis is above %d%% of its maxmemory: live log lines are not "
                               "published (the database keeps them) until it is below",
                               MEMORY_GUARD * 100)  # fmt: skip
            self._full_until = now + MEMORY_CHECK_S if full else 0.0
        return self._full_until > now

    def _client(self) -> aioredis.Redis:
        # One async client per event loop would be ideal; the web process has one loop.
        with self._lock:
            if self._async is None:
                self._async = aioredis.Redis.from_url(self.url, socket_connect_timeout=5)
            return self._async

    async def read(self, task_id: str, cursor: str, block_ms: int) -> LiveRead:
        key = TASK_LOG_STREAM.format(task_id=task_id)
        reply: Any = await self._client().xread({key: cursor}, count=1000, block=block_ms)
        events: list[LogEvent] = []
        ended = False
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                cursor = entry_id.decode()
                if b"end" in fields:
                    ended = True
                    continue
                events.append(
                    LogEvent(
                        seq=int(fields[b"q"]),
                        attempt=int(fields[b"a"]),
                        stream=fields[b"s"].decode(),
                        ts=float(fields[b"t"]),
                        text=fields[b"x"].decode("utf-8", "replace"),
                    )
                )
        return LiveRead(events, cursor, ended)

    async def aclose(self) -> None:
        """Close the readers' async client (on the web app's shutdown, in its event loop)."""
        with self._lock:
            client, self._async = self._async, None
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        self.sync.close()


class _MemoryStream:
    def __init__(self) -> None:
        self.events: deque[LogEvent] = deque()
        self.bytes = 0
        self.offset = 0  # how many events were trimmed off the front
        self.ended_at: float | None = None

    def add(self, event: LogEvent) -> None:
        self.events.append(event)
        self.bytes += len(event.text) + 64
        while len(self.events) > STREAM_MAXLEN or (self.bytes > STREAM_BYTES
                                                    and len(self.events) > 1):  # fmt: skip
            self.bytes -= len(self.events.popleft().text) + 64
            self.offset += 1


class MemoryLiveLog:
    """The in-process equivalent for embedded mode: same semantics, no Redis."""

    def __init__(self) -> None:
        self._streams: dict[str, _MemoryStream] = {}
        self._lock = threading.Lock()

    def publish(self, task_id: str, events: Sequence[LogEvent]) -> None:
        with self._lock:
            stream = self._streams.setdefault(task_id, _MemoryStream())
            stream.ended_at = None  # a new attempt publishes after an earlier one ended
            for event in events:
                stream.add(event)

    def finish(self, task_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._streams.setdefault(task_id, _MemoryStream()).ended_at = now
            expired = [
                key
                for key, stream in self._streams.items()
                if stream.ended_at is not None and now - stream.ended_at > STREAM_TTL_S
            ]
            for key in expired:
                del self._streams[key]

    async def read(self, task_id: str, cursor: str, block_ms: int) -> LiveRead:
        # The cursor is "<position>" or "<position>e" once the reader has seen the end.
        seen_end = cursor.endswith("e")
        position = int(cursor.rstrip("e"))
        deadline = time.monotonic() + block_ms / 1000
        while True:
            with self._lock:
                stream = self._streams.get(task_id)
                if stream is not None:
                    start = max(position - stream.offset, 0)
                    events = list(itertools.islice(stream.events, start, None))
                    end = stream.offset + len(stream.events)
                    ended = stream.ended_at is not None
                    if events or (ended and not seen_end):
                        return LiveRead(events, f"{end}e" if ended else str(end), ended)
            if time.monotonic() >= deadline:
                return LiveRead([], cursor, False)
            await asyncio.sleep(MEMORY_POLL_S)

    async def aclose(self) -> None:
        pass

    def close(self) -> None:
        self._streams.clear()
