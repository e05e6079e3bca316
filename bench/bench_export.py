"""SPEC §9 / §11, issue 30: data export. CSV ≥ 150 000 rows/s, JSONL ≥ 300 000 rows/s, each ≥ 0.7x
of COPY of the same rows, first byte ≤ 20 ms (baselines in the
same run: `COPY (SELECT data FROM item WHERE spider_id = …) TO STDOUT`), and constant memory
("a million items must not grow the web process by more than tens of MB").

Set-up: a fresh database `crawlhub_bench_export` (dropped and recreated), the migrations, one
spider and one task, then N items (default 1 000 000) COPYed straight into `item` (data like
{"n", "title", "price", "url", "tags"}, created_at 1 ms apart; foreign-key triggers skipped
for the fill, indexes maintained), then VACUUM ANALYZE. No Redis.

The web process is a child process (`python -c`: load_settings, Context.build, create_app,
the collector tuned,
uvicorn with its defaults, as `crawlhub web` serves it) on a free loopback port; a fresh one
per format, so its memory starts from the same point each time. Before measuring, each child
answers /healthz, one `GET /api/data` and one small export of the same format (the newest
1000 items, via `since`), then its resident set is sampled as the baseline and its VmHWM is
reset (/proc/<pid>/clear_refs). During each full export (httpx, streaming, over real HTTP,
to /dev/null) the parent samples the child's VmRSS every 50 ms; peak = max(sampled, VmHWM).
Growth = peak - baseline. CPU seconds of the web process, of the database backends and of
this client are read from /proc around each export.

Throughput = N / wall time of the whole request (request sent → last byte read, which
includes the key scan CSV and XLSX do before the first byte: time to first byte is printed).
Figures are the best of `--repeat` (3) exports (CSV, JSONL; JSON and XLSX once); the baseline
is the best of `--repeat` COPYs (after one warm-up COPY). The rows are counted in what arrived
(lines for CSV/JSON/JSONL, `<row` elements of the sheet for XLSX).

References that say where the time goes, in this process without HTTP: the CSV column
query (`first_seen_keys`), the export's keyset queries alone (`crawlhub.data.items._batches`),
`export.csv_rows` / `export.jsonl` over 200 000 rows held in memory (formatting without the
database), and the whole `data.export_stream` of `--reference-formats` (default jsonl; the
best of 3, with the CPU it took in this process and in PostgreSQL).
`--profile DIR` attaches `py-spy record` to the web child for one extra (unmeasured) export
per format and prints the hottest frames.

Paging: `GET /api/data?spider_id=…&after_id=<id>&page_size=100` at `--pages` after_ids spread
uniformly over the whole id range (sequential requests, keep-alive; 10 warm-ups), and for
contrast offset paging (`page=<p>`) at a few depths, 3 requests each; then keyset pages
again, back to back, while one full CSV export streams (from its first byte to its end).

Takes ≈ 3 minutes with the defaults on 2 cores (≈ 5 with --profile).

    .venv/bin/python bench/bench_export.py [--items 1000000] [--repeat 2] [--pages 300]
        [--formats csv,jsonl,json,xlsx] [--skip-reference] [--reference-formats jsonl]
        [--profile DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from common import (
    PG_ADMIN_URL,
    PG_HOST_URL,
    PYTHON,
    ROOT,
    TOKEN,
    Row,
    free_port,
    percentile,
    recreate_database,
    report,
)
from psycopg import sql

DB_NAME = "crawlhub_bench_export"
BENCH_URL = f"{PG_HOST_URL}/{DB_NAME}"
SA_URL = BENCH_URL.replace("postgresql://", "postgresql+psycopg://", 1)
SPIDER = "shop"
CSV_TARGET = 150_000
JSONL_TARGET = 300_000
RSS_LIMIT_MB = 100.0  # "tens of MB"
RATIO_TARGET = 0.7  # issue 30: of COPY … TO STDOUT of the same rows
TTFB_TARGET_S = 0.020  # issue 30
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
FILL_BLOCK = 50_000
WARM_ITEMS = 1000
SAMPLE_S = 0.05
HELD_ROWS = 200_000  # rows held in memory to time the formatting alone
PROBE_MAX = 5000  # keyset requests at most while one export streams
CHILD_START_S = 60.0
HTTP_TIMEOUT = httpx.Timeout(900.0, connect=10.0)
# Plus the last page, added at run time; at 100 per page, page 1000 is the deepest the API
# serves by number (MAX_OFFSET_ROWS): deeper pages answer 422 and point to after_id.
OFFSET_PAGES = (1, 10, 100, 1000)
DEEPEST_PAGE = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")

SERVE = """\
import logging, sys
import uvicorn
from crawlhub.api import create_app
from crawlhub.cli.processes import tune_collector
from crawlhub.config import load_settings
from crawlhub.context import Context
port, data_dir, url, token = sys.argv[1:5]
logging.basicConfig(level=logging.WARNING)
settings = load_settings(database_url=url, api_tokens=token, data_dir=data_dir)
context = Context.build(settings)
config = uvicorn.Config(create_app(context), host="127.0.0.1", port=int(port),
                        log_level="warning", proxy_headers=True)
tune_collector()  # as crawlhub web does
uvicorn.Server(config).run()
"""


# --- database set-up --------------------------------------------------------------------------


def create_schema(data_dir: Path) -> tuple[uuid.UUID, uuid.UUID]:
    """Migrate, then one spider and one task; returns their ids."""
    from crawlhub.config import load_settings
    from crawlhub.context import Context
    from crawlhub.repo import migrate
    from crawlhub.repo.models import Spider, Task

    settings = load_settings(database_url=SA_URL, api_tokens=TOKEN, data_dir=data_dir)
    context = Context.build(settings)
    try:
        migrate.upgrade(context.db.engine)
        with context.db.session() as session:
            spider = Spider.standalone(name=SPIDER, kind="python", entry="main:run")
            session.add(spider)
            session.flush()
            task = Task(spider_id=spider.id, trigger="manual", status="completed")
            session.add(task)
            session.flush()
            return spider.id, task.id
    finally:
        context.close()


def fill(spider: uuid.UUID, task: uuid.UUID, count: int) -> float:
    """COPY `count` items into `item`; returns the seconds it took (VACUUM ANALYZE excluded).

    The rows reference the one spider and task, so the foreign-key triggers are skipped
    (session_replication_role = replica) to fill faster; the indexes are maintained.
    """
    prefix = f"{spider}\t{task}\t0\t"
    start = time.perf_counter()
    with psycopg.connect(BENCH_URL) as conn:
        conn.execute("SET session_replication_role = replica")
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY item (spider_id, task_id, attempt, data, created_at) FROM STDIN"
            ) as copy,
        ):
            for first in range(0, count, FILL_BLOCK):
                lines = []
                for i in range(first, min(count, first + FILL_BLOCK)):
                    data = json.dumps(
                        {"n": i, "title": f"item {i}", "price": i / 7,
                         "url": f"https://shop/{i}", "tags": ["a", "b"]},
                        separators=(",", ":"),
                    )  # fmt: skip
                    created = (BASE_TIME + timedelta(milliseconds=i)).isoformat()
                    lines.append(f"{prefix}{data}\t{created}\n")
                copy.write("".join(lines))
        # What ingest records with the items (crawlhub.worker.capture.ItemSink): their
        # count and top-level keys, which exports take their columns from.
        conn.execute(
            "UPDATE task SET items_count = %s, item_keys = %s WHERE id = %s",
            (count, json.dumps(["n", "title", "price", "url", "tags"]), task),
        )
        conn.commit()
    elapsed = time.perf_counter() - start
    with psycopg.connect(BENCH_URL, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) item")
        conn.execute("CHECKPOINT")
    return elapsed


FIELDS = ["n", "title", "price", "url", "tags"]  # the items' keys: the CSV export's columns


def copy_out(spider: uuid.UUID, csv: bool = False) -> tuple[int, int, float]:
    """The baseline: COPY (SELECT data …) TO STDOUT, or with `csv` COPY of the CSV export's
    cells (each key's text, "" when missing) in CSV; every byte read; (rows, bytes, seconds)."""
    if csv:
        cells = sql.SQL(", ").join(
            sql.SQL("coalesce(data->>{}, '')").format(sql.Literal(k)) for k in FIELDS
        )
        query = sql.SQL("COPY (SELECT {} FROM item WHERE spider_id = {}) TO STDOUT (FORMAT csv)")
        query = query.format(cells, sql.Literal(spider))
    else:
        query = sql.SQL("COPY (SELECT data FROM item WHERE spider_id = {}) TO STDOUT").format(
            sql.Literal(spider)
        )
    with psycopg.connect(BENCH_URL) as conn:
        rows = nbytes = 0
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(query) as copy:
            for block in copy:
                nbytes += len(block)
                rows += bytes(block).count(b"\n")
        return rows, nbytes, time.perf_counter() - start


# --- /proc readings ---------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM to the current RSS (needs the right to write /proc/<pid>/clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def backend_pids(admin: psycopg.Connection[Any]) -> list[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
        (DB_NAME,),
    ).fetchall()
    return [int(r[0]) for r in rows]


class RssSampler:
    """VmRSS of a process every 50 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.samples.append(proc_status(self.pid)["VmRSS"])
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# --- the web process --------------------------------------------------------------------------


class Web:
    """The CrawlHub web app in a child process, on a free loopback port."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [PYTHON, "-c", SERVE, str(self.port), str(data_dir), SA_URL, TOKEN], cwd=ROOT
        )
        self.pid = self.proc.pid
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=HTTP_TIMEOUT,
        )
        deadline = time.monotonic() + CHILD_START_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"web child exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if self.client.get("/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("web child did not answer /healthz")
            time.sleep(0.1)

    def close(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Web:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@dataclass
class Export:
    """One export over HTTP."""

    fmt: str
    status: int
    wall_s: float
    ttfb_s: float
    nbytes: int
    rows: int
    head: bytes
    tail: bytes
    disposition: str
    web_cpu_s: float
    pg_cpu_s: float
    client_cpu_s: float
    peak_kb: int = 0
    end_kb: int = 0
    samples: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.rows / self.wall_s


def count_xlsx_rows(path: Path) -> int:
    """`<row` elements in the first worksheet, header included."""
    count, carry = 0, b""
    with zipfile.ZipFile(path) as book, book.open("xl/worksheets/sheet1.xml") as sheet:
        while block := sheet.read(1 << 20):
            data = carry + block
            count += data.count(b"<row ")
            carry = data[-4:]  # a split "<row " is counted in the next round, never twice
    return count


def http_export(
    web: Web, admin: psycopg.Connection[Any], fmt: str, params: dict[str, str], sample: bool
) -> Export:
    """Stream one export to /dev/null (XLSX: to a temp file, to count its rows afterwards)."""
    pgs = backend_pids(admin)
    pg0 = {pid: proc_cpu(pid) for pid in pgs}
    web0, client0 = proc_cpu(web.pid), time.process_time()
    head, tail, nbytes, newlines, ttfb = b"", b"", 0, 0, 0.0
    xlsx_path = None
    if fmt == "xlsx":
        handle, name = tempfile.mkstemp(suffix=".xlsx")
        os.close(handle)
        xlsx_path = Path(name)
    sampler = RssSampler(web.pid)
    try:
        with (
            open(xlsx_path or os.devnull, "wb") as sink,
            sampler if sample else contextlib.nullcontext(),
        ):
            start = time.perf_counter()
            with web.client.stream("GET", f"/api/data/export/{fmt}", params=params) as response:
                status = response.status_code
                disposition = response.headers.get("content-disposition", "")
                for chunk in response.iter_raw():
                    if not nbytes:
                        ttfb = time.perf_counter() - start
                    if len(head) < 4096:
                        head += chunk[: 4096 - len(head)]
                    tail = (tail + chunk)[-64:]
                    nbytes += len(chunk)
                    newlines += chunk.count(b"\n")
                    sink.write(chunk)
            wall = time.perf_counter() - start
        web_cpu, client_cpu = proc_cpu(web.pid) - web0, time.process_time() - client0
        pg_cpu = sum(proc_cpu(pid) - pg0.get(pid, 0.0) for pid in backend_pids(admin))
        if status != 200:
            raise RuntimeError(f"export {fmt} → {status}: {head[:500]!r}")
        if xlsx_path is not None:
            rows = count_xlsx_rows(xlsx_path) - 1
        elif fmt == "csv":
            rows = newlines - 1  # the header line (no value here contains a line break)
        else:
            rows = newlines  # JSONL: one per line; JSON: ",\n" between items, "]\n" at the end
    finally:
        if xlsx_path is not None:
            xlsx_path.unlink()
    result = Export(fmt, status, wall, ttfb, nbytes, rows, head, tail, disposition,
                    web_cpu, pg_cpu, client_cpu)  # fmt: skip
    if sample:
        status_now = proc_status(web.pid)
        result.samples = sampler.samples
        result.peak_kb = max([*sampler.samples, status_now["VmHWM"]])
        result.end_kb = status_now["VmRSS"]
    return result


def settle_rss(pid: int) -> int:
    """Median VmRSS (kB) over 0.5 s."""
    values = []
    for _ in range(10):
        values.append(proc_status(pid)["VmRSS"])
        time.sleep(SAMPLE_S)
    return int(statistics.median(values))


@contextlib.contextmanager
def py_spy(pid: int, out: Path) -> Iterator[None]:
    """py-spy record (collapsed stacks, 100 Hz) attached to a process while the block runs."""
    exe = Path(PYTHON).with_name("py-spy")
    proc = subprocess.Popen(
        [str(exe), "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
         "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1.0)  # let it attach
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def summarise_profile(path: Path, top: int = 12) -> list[str]:
    """Self and inclusive shares of the hottest frames of a collapsed-stack file."""
    if not path.exists():
        return [f"(no profile written to {path})"]
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(f) for f in stack.split(";")]
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return ["(empty profile)"]
    lines = [f"{total} samples (100 Hz, non-idle threads)", "self:"]
    lines += [f"  {100 * c / total:5.1f} %  {name}" for name, c in own.most_common(top)]
    lines.append("inclusive (crawlhub, csv, json, zipfile, sqlalchemy, psycopg):")
    keep = ("crawlhub/", "csv", "json", "zipfile", "sqlalchemy/engine", "psycopg/")
    picked = [(n, c) for n, c in inclusive.most_common() if any(k in n for k in keep)]
    lines += [f"  {100 * c / total:5.1f} %  {name}" for name, c in picked[: top + 6]]
    return lines


def _frame_name(frame: str) -> str:
    """'func (path/to/file.py:123)' → 'func (to/file.py)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = where.split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if where else name


# --- in-process references --------------------------------------------------------------------


def in_process(
    data_dir: Path, formats: list[str]
) -> tuple[dict[str, tuple[int, float]], dict[str, tuple[float, float]]]:
    """(rows, seconds) of the export's pieces, called directly in this process; and of each
    whole export, the CPU seconds of this process and of PostgreSQL's backends."""
    from crawlhub.config import load_settings
    from crawlhub.context import Context
    from crawlhub.data import formats as export
    from crawlhub.data import items as data
    from crawlhub.repo import items as item_repo

    settings = load_settings(database_url=SA_URL, api_tokens=TOKEN, data_dir=data_dir)
    context = Context.build(settings)
    out: dict[str, tuple[int, float]] = {}
    cpu: dict[str, tuple[float, float]] = {}
    try:
        db = context.db
        selection = data.select(db, spider=SPIDER)
        start = time.perf_counter()
        with db.session() as session:
            keys = item_repo.first_seen_keys(session, selection.where, 1 << 62)
        out["first_seen_keys"] = (len(keys or []), time.perf_counter() - start)
        start = time.perf_counter()
        rows = sum(len(batch) for batch in data._batches(db, selection.where, 1 << 62))
        out["keyset"] = (rows, time.perf_counter() - start)
        held, count = [], 0  # the first HELD_ROWS rows, to time the formatting without the DB
        for batch in data._batches(db, selection.where, 1 << 62):
            held.append(batch)
            count += len(batch)
            if count >= HELD_ROWS:
                break
        start = time.perf_counter()
        for _chunk in export.csv_rows(iter(held), keys or [], excel=False):
            pass
        out["csv formatting"] = (count, time.perf_counter() - start)
        start = time.perf_counter()
        for _chunk in export.jsonl(iter(held)):
            pass
        out["jsonl formatting"] = (count, time.perf_counter() - start)
        with psycopg.connect(BENCH_URL, autocommit=True) as admin:
            for fmt in formats:  # the best of 3 by wall time, with its CPU (ours, PostgreSQL's)
                for _ in range(3):
                    pg0 = {pid: proc_cpu(pid) for pid in backend_pids(admin)}
                    start, cpu0 = time.perf_counter(), time.process_time()
                    newlines = 0
                    for chunk in data.export_stream(db, selection, fmt, fields=None, excel=False):
                        newlines += chunk.count(b"\n")
                    seconds, python_s = time.perf_counter() - start, time.process_time() - cpu0
                    pg_s = sum(proc_cpu(pid) - pg0.get(pid, 0.0) for pid in backend_pids(admin))
                    if fmt not in out or seconds < out[fmt][1]:
                        out[fmt] = (newlines - (1 if fmt == "csv" else 0), seconds)
                        cpu[fmt] = (python_s, pg_s)
    finally:
        context.close()
    return out, cpu


# --- paging -----------------------------------------------------------------------------------


def page_latency(web: Web, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    response = web.client.get("/api/data", params=params)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(
            f"GET /api/data {params} → {response.status_code}: {response.text[:300]}"
        )
    return elapsed, response.json()


def probe_during_export(
    web: Web, fmt: str, rng: random.Random, low: int, high: int
) -> tuple[list[float], float]:
    """Keyset page latencies while one full export streams (from its first byte to its end)."""
    first_byte, done = threading.Event(), threading.Event()
    outcome: dict[str, float] = {}

    def stream() -> None:
        try:
            with httpx.Client(
                base_url=str(web.client.base_url), headers=dict(web.client.headers),
                timeout=HTTP_TIMEOUT,
            ) as client:  # fmt: skip
                start = time.perf_counter()
                lines = 0
                with client.stream(
                    "GET", f"/api/data/export/{fmt}", params={"spider_id": SPIDER}
                ) as response:
                    for chunk in response.iter_raw():
                        first_byte.set()
                        lines += chunk.count(b"\n")
                outcome["rows"] = lines
                outcome["wall"] = time.perf_counter() - start
        finally:
            first_byte.set()
            done.set()

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    first_byte.wait(HTTP_TIMEOUT.read or 900)
    latencies: list[float] = []
    while not done.is_set() and len(latencies) < PROBE_MAX:
        after = rng.randint(low - 1, high - 100)
        seconds, _ = page_latency(web, {"spider_id": SPIDER, "after_id": after, "page_size": 100})
        latencies.append(seconds)
    thread.join(HTTP_TIMEOUT.read or 900)
    if "wall" not in outcome or not latencies:
        raise RuntimeError(f"the {fmt} export under probe failed or was too short")
    return latencies, outcome["rows"] / outcome["wall"]


def count_seconds(spider: uuid.UUID) -> float:
    """What the total of an offset page costs PostgreSQL: the count query alone (median of 3)."""
    times = []
    with psycopg.connect(BENCH_URL) as conn:
        for _ in range(3):
            start = time.perf_counter()
            conn.execute("SELECT count(*) FROM item WHERE spider_id = %s", (spider,)).fetchone()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- main -------------------------------------------------------------------------------------


def fmt_rate(value: float) -> str:
    return f"{value:,.0f} rows/s".replace(",", " ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="CSV/JSONL exports and COPYs")
    parser.add_argument("--pages", type=int, default=300, help="keyset page requests (≥ 1)")
    parser.add_argument("--formats", default="csv,jsonl,json,xlsx")
    parser.add_argument("--skip-reference", action="store_true", help="no in-process pieces")
    parser.add_argument(
        "--reference-formats", default="jsonl", help="formats also exported in-process"
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output directory")
    args = parser.parse_args()
    if args.pages < 1:
        parser.error("--pages must be at least 1 (the paging figures need a request)")
    formats = [f for f in args.formats.split(",") if f]
    n = args.items
    rng = random.Random(20261130)

    with tempfile.TemporaryDirectory(prefix="crawlhub-bench-export-") as tmp:
        data_dir = Path(tmp)
        recreate_database(DB_NAME)
        spider, task = create_schema(data_dir)
        fill_s = fill(spider, task, n)
        print(f"filled {n} items by COPY in {fill_s:.1f} s ({fmt_rate(n / fill_s)})", flush=True)
        with psycopg.connect(BENCH_URL) as conn:
            low, high = conn.execute("SELECT min(id), max(id) FROM item").fetchone() or (0, 0)
            size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('item'))").fetchone()
        print(f"item ids {low}..{high}, table with indexes {size[0] if size else '?'}")

        # Baselines: COPY (SELECT data …) TO STDOUT, and COPY of the CSV's cells in CSV; one
        # warm-up, then --repeat of each.
        copy_out(spider)
        copies, csv_copies = [], []
        for _ in range(args.repeat):
            for csv, into in ((False, copies), (True, csv_copies)):
                rows, nbytes, seconds = copy_out(spider, csv)
                assert rows == n, f"COPY gave {rows} rows"
                into.append(rows / seconds)
                print(f"baseline COPY{' csv' if csv else ''}: {rows} rows, {nbytes / 1e6:.1f} MB"
                      f" in {seconds:.2f} s ({fmt_rate(rows / seconds)})", flush=True)  # fmt: skip
        # The best of each, exports too: on this noisy 2-core VM a run's rate swings by ±30 %
        # from one to the next, and the best is the one the machine let alone.
        baseline = max(copies)
        baselines = {"csv": max(csv_copies)}
        by_run: dict[str, Export] = {}

        warm_since = (BASE_TIME + timedelta(milliseconds=n - WARM_ITEMS)).isoformat()
        exports: dict[str, list[Export]] = {}
        memory: dict[str, tuple[int, int, bool]] = {}  # fmt → (baseline kB, peak kB, hwm reset)
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
        for fmt in formats:
            reps = args.repeat if fmt in ("csv", "jsonl") else 1
            with Web(data_dir) as web:
                page_latency(web, {"spider_id": SPIDER, "page_size": 1})
                warm = http_export(
                    web, admin, fmt, {"spider_id": SPIDER, "since": warm_since}, False
                )
                assert warm.rows == WARM_ITEMS, f"warm-up {fmt} export gave {warm.rows} rows"
                base_kb = settle_rss(web.pid)
                hwm_reset = reset_hwm(web.pid)
                runs = []
                for rep in range(reps):
                    hwm_reset = reset_hwm(web.pid) and hwm_reset
                    run = http_export(web, admin, fmt, {"spider_id": SPIDER}, True)
                    assert run.rows == n, f"{fmt} export gave {run.rows} rows, expected {n}"
                    runs.append(run)
                    print(
                        f"{fmt} #{rep + 1}: {run.rows} rows, {run.nbytes / 1e6:.1f} MB in "
                        f"{run.wall_s:.2f} s ({fmt_rate(run.rate)}); first byte after "
                        f"{run.ttfb_s:.2f} s; CPU s: web {run.web_cpu_s:.1f}, PostgreSQL "
                        f"{run.pg_cpu_s:.1f}, client {run.client_cpu_s:.1f}; web RSS "
                        f"{base_kb / 1024:.1f} (after warm-up) → peak {run.peak_kb / 1024:.1f}"
                        f" → end {run.end_kb / 1024:.1f} MB ({len(run.samples)} samples)",
                        flush=True,
                    )
                if fmt in ("csv", "jsonl"):  # the same items, selected by their run (task_id)
                    by_task = max((http_export(web, admin, fmt, {"task_id": str(task)}, False)
                                   for _ in range(reps)), key=lambda e: e.rate)  # fmt: skip
                    assert by_task.rows == n, f"{fmt} by task gave {by_task.rows} rows"
                    by_run[fmt] = by_task
                    print(f"{fmt} by task_id: {by_task.rows} rows in {by_task.wall_s:.2f} s "
                          f"({fmt_rate(by_task.rate)}); first byte after "
                          f"{by_task.ttfb_s:.3f} s", flush=True)  # fmt: skip
                exports[fmt] = runs
                memory[fmt] = (base_kb, max(r.peak_kb for r in runs), hwm_reset)
                first = runs[0]
                print(f"   Content-Disposition: {first.disposition}")
                print(f"   first bytes: {first.head[:160]!r}")
                print(f"   last bytes: {first.tail[-40:]!r}", flush=True)
                if args.profile is not None:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    out = args.profile / f"export-{fmt}.txt"
                    with py_spy(web.pid, out):
                        prof = http_export(web, admin, fmt, {"spider_id": SPIDER}, False)
                    print(f"   profiled export (py-spy attached): {fmt_rate(prof.rate)}; {out}")
                    for line in summarise_profile(out):
                        print(f"   {line}")

        # Paging, with a fresh web process.
        with Web(data_dir) as web:
            probe_fmt = "csv" if "csv" in formats else formats[0]
            for _ in range(10):
                page_latency(web, {"spider_id": SPIDER, "after_id": rng.randint(low, high)})
            keyset = []
            for _ in range(args.pages):
                after = rng.randint(low - 1, high - 100)
                seconds, body = page_latency(
                    web, {"spider_id": SPIDER, "after_id": after, "page_size": 100}
                )
                items = body["items"]
                assert len(items) == 100 and items[0]["id"] > after, "bad keyset page"
                keyset.append(seconds)
            last_page = (n + 99) // 100
            offset: dict[int, list[float]] = {}
            for depth in sorted({*OFFSET_PAGES, min(last_page, DEEPEST_PAGE)}):
                if depth > last_page:
                    continue
                times = []
                for _ in range(3):
                    seconds, body = page_latency(
                        web, {"spider_id": SPIDER, "page": depth, "page_size": 100}
                    )
                    assert body["total"] == n and body["items"], "bad offset page"
                    times.append(seconds)
                offset[depth] = times
                shown = ", ".join(f"{t * 1000:.1f}" for t in times)
                print(f"offset page {depth} (offset {(depth - 1) * 100}): {shown} ms", flush=True)
            busy, busy_rate = probe_during_export(web, probe_fmt, rng, low, high)
            print(
                f"keyset pages while a {probe_fmt} export streams: {len(busy)} requests, p50 "
                f"{percentile(busy, 50) * 1000:.1f} ms, p99 {percentile(busy, 99) * 1000:.1f} ms;"
                f" the export ran at {fmt_rate(busy_rate)}",
                flush=True,
            )
        count_s = count_seconds(spider)
        admin.close()

        reference: dict[str, tuple[int, float]] = {}
        reference_cpu: dict[str, tuple[float, float]] = {}
        if not args.skip_reference:
            reference, reference_cpu = in_process(
                data_dir, [f for f in args.reference_formats.split(",") if f]
            )

    # --- report ---------------------------------------------------------------------------------
    rows_out: list[Row] = []
    targets = {"csv": CSV_TARGET, "jsonl": JSONL_TARGET}
    for fmt in formats:
        rate = max(r.rate for r in exports[fmt])
        target = targets.get(fmt)
        base = baselines.get(fmt, baseline)
        both = fmt in ("csv", "jsonl")  # issue 30: ≥ 0.7x COPY of the same rows
        rows_out.append(Row(
            f"{fmt.upper()} export over HTTP, spider's history, {n} items (best of "
            f"{len(exports[fmt])})", fmt_rate(rate),
            f"COPY{' csv' if fmt == 'csv' else ''} {fmt_rate(base)}", f"{rate / base:.2f}x",
            f"≥ {fmt_rate(target)}" + (" and ≥ 0.7x" if both else "") if target else "—",
            (rate >= target and (not both or rate / base >= RATIO_TARGET)) if target else None,
        ))  # fmt: skip
        if fmt in by_run:
            run_rate = by_run[fmt].rate
            rows_out.append(Row(
                f"{fmt.upper()} export over HTTP, one run (task_id), {n} items "
                f"(best of {args.repeat})",
                fmt_rate(run_rate),
                f"COPY{' csv' if fmt == 'csv' else ''} {fmt_rate(base)}",
                f"{run_rate / base:.2f}x", "≥ 0.7x", run_rate / base >= RATIO_TARGET,
            ))  # fmt: skip
    ttfb = [r.ttfb_s for f in formats for r in exports[f]] + [r.ttfb_s for r in by_run.values()]
    rows_out.append(Row(
        "time to first byte, " + " / ".join(f.upper() for f in formats) + " (median; worst)",
        " / ".join(f"{statistics.median(r.ttfb_s for r in exports[f]) * 1000:.0f}"
                   for f in formats) + f" ms; {max(ttfb) * 1000:.0f} ms", "—", "—",
        f"≤ {TTFB_TARGET_S * 1000:.0f} ms", max(ttfb) <= TTFB_TARGET_S,
    ))  # fmt: skip
    for fmt in formats:
        base_kb, peak_kb, _ = memory[fmt]
        growth = (peak_kb - base_kb) / 1024
        rows_out.append(Row(
            f"web RSS growth, {fmt.upper()} export of {n}", f"{growth:+.1f} MB (peak "
            f"{peak_kb / 1024:.1f} MB)", f"RSS {base_kb / 1024:.1f} MB after warm-up", "—",
            f"tens of MB (< {RSS_LIMIT_MB:.0f} MB)", growth < RSS_LIMIT_MB,
        ))  # fmt: skip
    rows_out.append(Row(
        f"GET /api/data after_id, page_size 100, {len(keyset)} deep pages",
        f"p50 {percentile(keyset, 50) * 1000:.1f} ms, p99 {percentile(keyset, 99) * 1000:.1f} ms",
        "—", "—", "— (none in §11)", None,
    ))  # fmt: skip
    rows_out.append(Row(
        f"  the same while a {probe_fmt.upper()} export streams ({len(busy)} requests)",
        f"p50 {percentile(busy, 50) * 1000:.1f} ms, p99 {percentile(busy, 99) * 1000:.1f} ms",
        f"idle p99 {percentile(keyset, 99) * 1000:.1f} ms",
        f"{percentile(busy, 99) / percentile(keyset, 99):.1f}x", "—", None,
    ))  # fmt: skip
    for depth, times in offset.items():
        rows_out.append(Row(
            f"GET /api/data page={depth} (offset {(depth - 1) * 100}), median of 3",
            f"{statistics.median(times) * 1000:.1f} ms",
            f"keyset p50 {percentile(keyset, 50) * 1000:.1f} ms",
            f"{statistics.median(times) / percentile(keyset, 50):.1f}x", "—", None,
        ))  # fmt: skip
    notes = [
        f"fill: {n} items by COPY in {fill_s:.1f} s; baseline COPY runs: "
        + ", ".join(fmt_rate(c) for c in copies),
        f"count(*) of the spider's items alone (every offset page runs it for `total`): "
        f"{count_s * 1000:.1f} ms",
        f"the {probe_fmt} export under the page probe ran at {fmt_rate(busy_rate)}",
    ]
    for fmt in formats:
        runs = exports[fmt]
        notes.append(
            f"{fmt}: "
            + "; ".join(
                f"{fmt_rate(r.rate)}, first byte {r.ttfb_s:.2f} s, {r.nbytes / 1e6:.0f} MB, CPU s "
                f"web/PG/client {r.web_cpu_s:.1f}/{r.pg_cpu_s:.1f}/{r.client_cpu_s:.1f} "
                f"in {r.wall_s:.1f} s"
                for r in runs
            )
        )
        if not memory[fmt][2]:
            notes.append(f"{fmt}: VmHWM could not be reset; peak is the 50 ms samples'")
    if reference:
        keys, keys_s = reference.pop("first_seen_keys")
        notes.append(f"in-process: CSV column query (first_seen_keys, {keys} keys) "
                     f"{keys_s:.2f} s")  # fmt: skip
        for name, (count, seconds) in reference.items():
            what = {
                "keyset": "keyset queries alone (data._batches)",
                "csv formatting": "export.csv_rows over rows held in memory (no database)",
                "jsonl formatting": "export.jsonl over rows held in memory (no database)",
            }.get(name, f"data.export_stream({name})")
            spent = ""
            if name in reference_cpu:
                python_s, pg_s = reference_cpu[name]
                spent = f"; CPU: Python {python_s * 1000:.0f} ms, PostgreSQL {pg_s * 1000:.0f} ms"
            notes.append(f"in-process: {what}: {count} rows in {seconds:.2f} s "
                         f"({fmt_rate(count / seconds)}){spent}")  # fmt: skip
    report(f"Data export ({n} items)", rows_out, notes)


if __name__ == "__main__":
    main()
