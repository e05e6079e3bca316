"""Live log events of running tasks: a Redis stream per task, or an in-process equivalent.

Writers (the run actor, on worker threads) publish batches of lines and a final end
marker; readers (the SSE endpoints, async) read from a cursor with a blocking wait.
Lines are also persisted in the database; these streams only carry them live.
"""

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

from crawlhub.messaging.keys import TASK_LOG_STREAM

STREAM_MAXLEN = 10_000  # recent lines kept per task stream (approximate trim)
STREAM_TTL_S = 3600  # a finished task's stream expires after this
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

    def publish(self, task_id: str, events: Sequence[LogEvent]) -> None:
        if not events:
            return
        key = TASK_LOG_STREAM.format(task_id=task_id)
        with self.sync.pipeline(transaction=False) as pipe:
            for e in events:
                fields = {"q": e.seq, "a": e.attempt, "s": e.stream, "t": e.ts, "x": e.text}
                pipe.xadd(key, fields, maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]
            pipe.expire(key, STREAM_TTL_S * 24)  # a safety net should the finish never come
            pipe.execute()

    def finish(self, task_id: str) -> None:
        key = TASK_LOG_STREAM.format(task_id=task_id)
        with self.sync.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"end": 1}, maxlen=STREAM_MAXLEN, approximate=True)
            pipe.expire(key, STREAM_TTL_S)
            pipe.execute()

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
        self.events: deque[LogEvent] = deque(maxlen=STREAM_MAXLEN)
        self.offset = 0  # how many events were trimmed off the front
        self.ended_at: float | None = None


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
                if len(stream.events) == STREAM_MAXLEN:
                    stream.offset += 1
                stream.events.append(event)

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
