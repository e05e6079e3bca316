"""Server-sent events of a task's log: persisted lines first, then live ones, then its status."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from crawlhub.context import Context
from crawlhub.messaging.livelog import START
from crawlhub.services import runs
from crawlhub.web.schemas.tasks import TaskOut

DB_BATCH = 1000
LIVE_BLOCK_MS = 1000  # a reader re-checks the task's status at least this often when idle
KEEPALIVE_S = 15.0  # a comment line keeps proxies from closing an idle stream
GAP_RETRY_S = 0.1
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(kind: str, data: Any, event_id: int | None = None) -> str:
    """One SSE frame."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def log_event(seq: int, attempt: int, stream: str, text: str) -> str:
    """A `log` frame; its id is the seq, so Last-Event-ID resumes after it."""
    return event("log", {"seq": seq, "attempt": attempt, "stream": stream, "line": text}, seq)


async def task_log_events(
    context: Context, task_id: uuid.UUID, after_seq: int
) -> AsyncIterator[str]:
    """Every log line after `after_seq` until the task ends, then one `status` frame."""
    last = after_seq
    cursor = START
    quiet_since = time.monotonic()
    while True:
        rows = await run_in_threadpool(runs.new_lines, context, task_id, last, DB_BATCH)
        for row in rows:
            yield log_event(row.seq, row.attempt, row.stream, row.text)
            last = row.seq
        if rows:
            quiet_since = time.monotonic()
        if len(rows) == DB_BATCH:
            continue
        read = await context.live.read(str(task_id), cursor, LIVE_BLOCK_MS)
        gap = False
        for e in read.events:
            if e.seq <= last:
                continue
            if e.seq != last + 1:  # not persisted yet, or trimmed from the stream
                gap = True
                break
            yield log_event(e.seq, e.attempt, e.stream, e.text)
            last = e.seq
            quiet_since = time.monotonic()
        if gap:
            cursor = START  # the database catches up; then re-read the stream past `last`
            await asyncio.sleep(GAP_RETRY_S)
            continue
        cursor = read.cursor
        if read.ended or not read.events:
            task = await run_in_threadpool(runs.get_task, context, task_id)
            if runs.lines_over(task, read.ended):
                for row in await run_in_threadpool(runs.new_lines, context, task_id, last, None):
                    yield log_event(row.seq, row.attempt, row.stream, row.text)
                yield event("status", json.loads(TaskOut.model_validate(task).model_dump_json()))
                return
        if time.monotonic() - quiet_since >= KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keepalive\n\n"
