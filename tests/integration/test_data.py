"""Scraped data: query, export round trips in every format, dedup, delete, retention (SPEC §9)."""

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import func, select, text, update
from starlette.testclient import TestClient

from crawlhub.context import Context
from crawlhub.data import items as data
from crawlhub.data.formats import cell
from crawlhub.housekeeping import retention
from crawlhub.repo import bulk
from crawlhub.repo.db import make_engine
from crawlhub.repo.items import insert_items
from crawlhub.repo.models import Item, LogLine, Spider, Task
from tests.conftest import TOKEN, make_settings
from tests.integration.harness import Hub, running_hub, served

ITEMS: list[dict[str, Any]] = [
    {
        "title": "北京烤鸭 🦆",
        "price": 12.75,
        "tags": ["food", "中文"],
        "meta": {"stars": 4.5, "ok": True},
    },
    {"title": '=HYPERLINK("http://evil")', "price": -3, "extra": None},
    {"url": "https://example.com/a?b=1", "price": 0.1, "title": "+plus @at -minus"},
    {"title": 'line\nbreak, "quoted"', "nested": {"a": [1, {"b": None}]}},
    {"path": "C:\\new\\table\t\\\\x", "\\key": "\\"},  # backslashes, as COPY escapes them
]


def same_cell(text: Any, value: Any) -> bool:
    """A CSV/XLSX text cell holds this value (nested values as JSON, in any key order)."""
    if isinstance(value, dict | list | float):
        return bool(json.loads(text) == value)
    return bool(text == cell(value))


def seed(
    context: Context, items: list[dict[str, Any]], name: str = "shop"
) -> tuple[uuid.UUID, uuid.UUID]:
    with context.db.session() as session:
        spider = Spider.standalone(name=name, kind="python", entry="main:run")
        session.add(spider)
        session.flush()
        task = Task(spider_id=spider.id, trigger="manual", status="completed")
        session.add(task)
        session.flush()
        insert_items(session, spider.id, task.id, 1,
                     [(json.dumps(i, ensure_ascii=False), i, None) for i in items])  # fmt: skip
        return spider.id, task.id


def export(client: TestClient, fmt: str, **params: Any) -> tuple[bytes, Any]:
    response = client.get(f"/api/data/export/{fmt}", params=params)
    assert response.status_code == 200, response.text
    return response.content, response


def test_jsonl_and_json_exports_parse_back_to_the_same_items(
    client: TestClient, context: Context
) -> None:
    seed(context, ITEMS)
    body, response = export(client, "jsonl", spider_id="shop")
    assert [json.loads(line) for line in body.decode().splitlines()] == ITEMS
    assert response.headers["content-type"].startswith("application/x-ndjson")
    body, response = export(client, "json", spider_id="shop")
    assert json.loads(body) == ITEMS
    assert response.headers["content-disposition"].startswith('attachment; filename="shop-')


def test_csv_export_has_every_key_as_a_column_and_round_trips(
    client: TestClient, context: Context
) -> None:
    seed(context, ITEMS)
    body, response = export(client, "csv", spider_id="shop")
    assert response.headers["content-type"].startswith("text/csv")
    assert not body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    columns = set().union(*ITEMS)
    assert set(rows[0]) == columns
    # First-seen order across items (within one item PostgreSQL's jsonb keeps its own key order).
    header = list(rows[0])
    assert set(header[: len(ITEMS[0])]) == set(ITEMS[0])
    assert header.index("extra") < header.index("url") < header.index("nested")
    for row, item in zip(rows, ITEMS, strict=True):
        for column in columns:
            assert same_cell(row[column], item.get(column)), column
    assert rows[1]["title"].startswith("=HYPERLINK")  # plain CSV keeps data as it is


def test_csv_for_excel_has_a_bom_and_defuses_formulas(client: TestClient, context: Context) -> None:
    seed(context, ITEMS)
    body, _ = export(client, "csv", spider_id="shop", excel="true", fields="title,price")
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == ["title", "price"]
    assert rows[1] == ["北京烤鸭 🦆", "12.75"]
    assert rows[2] == ['\'=HYPERLINK("http://evil")', "-3"]  # text defused, numbers untouched
    assert rows[3][0] == "'+plus @at -minus"


def test_csv_for_excel_defuses_header_cells_too(client: TestClient, context: Context) -> None:
    seed(context, [{'=HYPERLINK("http://evil","x")': 1, "@sum": 2, "plain": 3}])
    body, _ = export(client, "csv", spider_id="shop", excel="true")
    header = next(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert sorted(header) == sorted(['\'=HYPERLINK("http://evil","x")', "'@sum", "plain"])
    plain, _ = export(client, "csv", spider_id="shop")
    assert '=HYPERLINK("http://evil","x")' in next(csv.reader(io.StringIO(plain.decode())))


def test_xlsx_export_opens_in_openpyxl_with_the_same_values(
    client: TestClient, context: Context
) -> None:
    seed(context, ITEMS)
    body, response = export(client, "xlsx", spider_id="shop")
    assert response.headers["content-disposition"].endswith('.xlsx"')
    sheet = openpyxl.load_workbook(io.BytesIO(body), read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    assert set(header) == set().union(*ITEMS)
    for row, item in zip(rows[1:], ITEMS, strict=True):
        for column, value in zip(header, row, strict=True):
            expected = item.get(column)
            if expected is None:
                assert value is None
            elif isinstance(expected, bool | int | float):
                assert value == expected
            else:
                assert same_cell(value, expected)  # strings as they are, nested values as JSON


def test_exports_of_an_empty_selection_are_valid_empty_files(
    client: TestClient, context: Context
) -> None:
    seed(context, [], name="empty")
    assert export(client, "json", spider_id="empty")[0].strip() == b"[]"
    assert export(client, "jsonl", spider_id="empty")[0] == b""
    assert export(client, "csv", spider_id="empty")[0] == b""
    assert export(client, "csv", spider_id="empty", fields="a,b")[0] == b"a,b\n"
    book = openpyxl.load_workbook(io.BytesIO(export(client, "xlsx", spider_id="empty")[0]))
    assert book.active is not None


def test_exports_in_many_batches_keep_order_filters_and_every_row(
    client: TestClient, context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "COPY_BATCH", 2)
    monkeypatch.setattr(data, "FIRST_COPY_BATCH", 2)
    monkeypatch.setattr(data, "EXPORT_BATCH", 2)
    seed(context, [{"n": n} for n in range(3)], name="other")  # interleaved ids of another spider
    spider_id, task_id = seed(context, ITEMS + [{"n": n} for n in range(5)])
    seed(context, [{"n": n} for n in range(3, 6)], name="third")
    with context.db.session() as session:  # the run's last items after the third spider's
        insert_items(session, spider_id, task_id, 1,
                     [(json.dumps({"n": n}), {"n": n}, None) for n in range(5, 8)])  # fmt: skip
    ours = ITEMS + [{"n": n} for n in range(8)]
    body, _ = export(client, "jsonl", spider_id="shop")
    assert [json.loads(line) for line in body.decode().splitlines()] == ours
    assert json.loads(export(client, "json", task_id=str(task_id))[0]) == ours
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert json.loads(export(client, "json", since=future)[0]) == []
    assert len(export(client, "jsonl", until=future)[0].splitlines()) == len(ours) + 6
    # One column, missing from most items: every item is still a row, none a blank line.
    body, _ = export(client, "csv", spider_id="shop", fields="n")
    expected = [""] * len(ITEMS) + [str(n) for n in range(8)]
    assert [row["n"] for row in csv.DictReader(io.StringIO(body.decode()))] == expected


def test_copy_reader_cancels_a_copy_left_early_and_raises_what_fails_mid_way(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection

            def copy(query: str) -> Iterator[memoryview]:
                return bulk.copy_out(driver, sql.SQL(query))  # type: ignore[arg-type]

            rows = copy("COPY (SELECT g FROM generate_series(1, 1000000) g) TO STDOUT")
            assert bytes(next(rows)) == b"1\n"
            rows.close()  # a client gone mid-export: the COPY is cancelled, not left running
            driver.rollback()
            assert conn.execute(text("SELECT 2")).scalar() == 2
            whole = copy("COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT")
            assert b"".join(whole) == b"1\n2\n3\n"
            with pytest.raises(psycopg.errors.DivisionByZero):
                list(copy("COPY (SELECT 1 / (300 - g) FROM generate_series(1, 500) g) TO STDOUT"))
            driver.rollback()
            assert conn.execute(text("SELECT 3")).scalar() == 3
    finally:
        engine.dispose()


def test_an_export_left_mid_copy_leaves_no_copy_running(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client gone while a batch too large to hold is sent as it is read: the COPY is
    ended on its own connection before that goes back to the pool."""
    monkeypatch.setattr(data, "BATCH_BYTES", 1)  # every chunk sent as it is read
    monkeypatch.setattr(data.formats, "CHUNK", 1)
    ctx = Context.build(make_settings(tmp_path, database_url=pg_url))
    try:
        seed(ctx, [{"n": n, "pad": "x" * 100} for n in range(5000)])
        for _ in range(3):  # more than once: a connection left mid-COPY would be taken again
            stream = data.export_stream(ctx.db, data.select(ctx.db, spider="shop"), "jsonl",
                                        fields=None, excel=False)  # fmt: skip
            assert json.loads(next(iter(stream))) == {"n": 0, "pad": "x" * 100}
            stream.close()  # type: ignore[attr-defined]
            with ctx.db.read() as session:
                copies = session.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%'"
                    " AND state <> 'idle' AND pid <> pg_backend_pid()"
                ))  # fmt: skip
            assert copies == 0
        stream = data.export_stream(ctx.db, data.select(ctx.db, spider="shop"), "jsonl",
                                    fields=None, excel=False)  # fmt: skip
        assert sum(chunk.count(b"\n") for chunk in stream) == 5000
    finally:
        ctx.close()


def test_csv_columns_named_like_sql_are_only_keys(client: TestClient, context: Context) -> None:
    hostile = {"it's": 1, "a%s": "pct", "x'); DROP TABLE item; --": "bobby", '"q"': None}
    seed(context, [hostile])
    fields = ",".join(hostile)
    body, _ = export(client, "csv", spider_id="shop", fields=fields, excel="true")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows == [list(hostile), ["1", "pct", "bobby", ""]]
    assert len(export(client, "jsonl")[0].splitlines()) == 1  # the table is still there


def test_export_rejects_bad_input(client: TestClient, context: Context) -> None:
    seed(context, ITEMS)
    assert client.get("/api/data/export/pdf").status_code == 404
    assert client.get("/api/data/export/csv", params={"fields": " , "}).status_code == 422
    assert client.get("/api/data/export/csv", params={"since": "yesterday"}).status_code == 422
    assert client.get("/api/data/export/csv", params={"spider_id": "ghost"}).status_code == 404
    assert client.get("/api/data/export/csv", params={"bogus": "1"}).status_code == 422


def test_query_pages_by_offset_and_by_keyset(client: TestClient, context: Context) -> None:
    _, task_id = seed(context, [{"n": n} for n in range(25)])
    first = client.get("/api/data", params={"spider_id": "shop", "page_size": 10}).json()
    assert first["total"] == 25 and first["total_pages"] == 3
    assert [i["data"]["n"] for i in first["items"]] == list(range(10))
    assert first["items"][0]["task_id"] == str(task_id)
    after = client.get("/api/data", params={"task_id": str(task_id), "after_id": first["next_after_id"],
                                            "page_size": 10}).json()  # fmt: skip
    assert [i["data"]["n"] for i in after["items"]] == list(range(10, 20))
    assert after["total"] is None and after["next_after_id"] == after["items"][-1]["id"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get("/api/data", params={"since": future}).json()["total"] == 0
    assert client.get("/api/data", params={"until": future}).json()["total"] == 25
    assert client.get("/api/data", params={"page_size": 1001}).status_code == 422
    assert client.get("/api/data", params={"since": "2026-13-45"}).status_code == 422
    assert client.get("/api/data", params={"since": "2026-01-01T00:00:00"}).status_code == 422
    assert client.get("/api/data", params={"after_id": -1}).status_code == 422


def test_delete_needs_a_task_or_spider_and_returns_the_count(
    client: TestClient, context: Context
) -> None:
    _, task_id = seed(context, [{"n": n} for n in range(7)])
    seed(context, [{"n": 1}], name="other")
    response = client.delete("/api/data")
    assert response.status_code == 400
    # A run named with a spider it does not belong to: a clear 404, nothing deleted or sent.
    mismatch = {"spider_id": "other", "task_id": str(task_id)}
    response = client.delete("/api/data", params=mismatch)
    assert response.status_code == 404 and "is not a run of spider 'other'" in response.text
    assert client.get("/api/data/export/jsonl", params=mismatch).status_code == 404
    assert client.get("/api/data", params=mismatch).status_code == 404
    assert (
        client.get("/api/data", params={"spider_id": "shop", "task_id": str(task_id)}).json()[
            "total"
        ]
        == 7
    )
    assert client.delete("/api/data", params={"task_id": str(task_id)}).json() == {"count": 7}
    assert client.delete("/api/data", params={"spider_id": "other"}).json() == {"count": 1}
    assert client.get("/api/data").json()["total"] == 0


def test_deleting_a_spider_deletes_its_items_tasks_and_logs(
    client: TestClient, context: Context
) -> None:
    _, task_id = seed(context, [{"n": n} for n in range(5)])
    seed(context, [{"n": 1}], name="other")
    with context.db.session() as session:
        session.add(LogLine(task_id=task_id, attempt=1, seq=1, stream="stdout",
                            ts=datetime.now(UTC), text="x"))  # fmt: skip
    assert client.delete("/api/spiders/shop").status_code == 204
    with context.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 1  # the other's
        assert session.scalar(select(func.count()).select_from(Task)) == 1
        assert session.scalar(select(func.count()).select_from(LogLine)) == 0


def test_deleting_a_project_deletes_its_spiders_items(client: TestClient, context: Context) -> None:
    seed(context, [{"n": n} for n in range(3)])
    seed(context, [{"n": 1}], name="other")
    assert client.delete("/api/projects/shop").status_code == 204
    with context.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 1  # the other's
        assert session.scalar(select(func.count()).select_from(Task)) == 1


def test_retention_deletes_old_items_and_logs_in_batches(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "RETENTION_BATCH", 10)
    _, task_id = seed(context, [{"n": n} for n in range(35)])
    keep_id, _ = seed(context, [{"n": 0}], name="keeper")
    old = datetime.now(UTC) - timedelta(days=10)
    with context.db.session() as session:
        session.execute(update(Item).values(created_at=old))
        session.add_all(LogLine(task_id=task_id, attempt=1, seq=n, stream="stdout", ts=old, text="x")
                        for n in range(1, 16))  # fmt: skip
        session.execute(update(Spider).where(Spider.id == keep_id).values(retention_days=30))
    gone = retention.expire(context.db, default_days=7, now=datetime.now(UTC))
    assert gone == 35 + 15
    with context.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 1  # the keeper's
        assert session.scalar(select(func.count()).select_from(LogLine)) == 0
    assert retention.expire(context.db, default_days=None, now=datetime.now(UTC)) == 0


DEDUP_SPIDER = """
    def run(params):
        for n in range(int(params["count"])):
            yield {"url": f"https://site/{n}", "seen": params["tag"]}
        yield {"no_url": True}
"""


def test_dedup_stores_each_item_once_across_runs_and_racing_runs(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    with running_hub(pg_url, tmp_path, redis_url) as hub:
        hub.deploy("dedup", {"main.py": DEDUP_SPIDER}, dedup_keys=["url"])
        first = hub.wait(hub.run("dedup", count=300, tag="first")["id"])
        assert (first["items_count"], first["items_duplicate"]) == (301, 0)
        second = hub.wait(hub.run("dedup", count=300, tag="second")["id"])
        assert (second["items_count"], second["items_duplicate"]) == (
            1,
            300,
        )  # only the keyless one
        hub.client.delete("/api/data", params={"spider_id": "dedup"})
        racing = [hub.run("dedup", count=500, tag=f"race{n}")["id"] for n in range(2)]
        done = [hub.wait(t) for t in racing]
        assert sum(t["items_count"] for t in done) == 500 + 2
        assert sum(t["items_duplicate"] for t in done) == 500
        with hub.context.db.session() as session:
            stored = session.scalars(select(Item.data)).all()
        urls = {d["url"] for d in stored if "url" in d}
        total = len(stored)
        assert len(urls) == 500 and total == 502


def _rss_reset() -> int:
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


@pytest.fixture
def big(pg_url: str, tmp_path: Path) -> Iterator[Hub]:
    with running_hub(pg_url, tmp_path, None, threads=0) as hub:
        with hub.context.db.session() as session:
            spider = Spider.standalone(name="big", kind="python", entry="main:run")
            session.add(spider)
            session.flush()
            task = Task(spider_id=spider.id, trigger="manual", status="completed")
            session.add(task)
            session.flush()
            rows = []
            for n in range(200_000):
                item = {"n": n, "title": f"item {n}", "price": n / 7, "tags": ["a", "b"]}
                rows.append((json.dumps(item), item, None))
            insert_items(session, spider.id, task.id, 1, rows)
        yield hub


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "json", "xlsx"])
def test_exporting_200k_items_keeps_memory_bounded(big: Hub, fmt: str) -> None:
    baseline = _rss_reset()
    size = 0
    with big.client.stream(
        "GET", f"/api/data/export/{fmt}", params={"spider_id": "big"}
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            size += len(chunk)
    growth_mb = (_status_kb("VmHWM") - baseline) / 1024
    assert size > 1_000_000
    assert growth_mb < 60, f"{fmt} export grew the process by {growth_mb:.0f} MB"


@pytest.fixture
def heavy(pg_url: str, tmp_path: Path) -> Iterator[Hub]:
    """50 items of 8 MiB each (PostgreSQL writes them itself: no 400 MB in this process)."""
    with running_hub(pg_url, tmp_path, None, threads=0) as hub:
        with hub.context.db.session() as session:
            spider = Spider.standalone(name="heavy", kind="python", entry="main:run")
            session.add(spider)
            session.flush()
            task = Task(spider_id=spider.id, trigger="manual", status="completed",
                        item_keys=["n", "body"])  # fmt: skip
            session.add(task)
            session.flush()
            session.execute(text(
                "INSERT INTO item (spider_id, task_id, attempt, data, created_at) "
                "SELECT :spider, :task, 1, jsonb_build_object('n', g, 'body', "
                "repeat(chr(65 + g % 26), 8 * 1024 * 1024)), now() FROM generate_series(1, 50) g"
            ), {"spider": spider.id, "task": task.id})  # fmt: skip
        yield hub


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_exporting_50_items_of_8_mib_keeps_memory_bounded(heavy: Hub, fmt: str) -> None:
    """Batches are bounded by bytes as well as rows: the export of 400 MB of items grows the
    process by a few batches' worth, not by all of them."""
    baseline = _rss_reset()
    size = lines = 0
    with heavy.client.stream(
        "GET", f"/api/data/export/{fmt}", params={"spider_id": "heavy"}
    ) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    growth_mb = (_status_kb("VmHWM") - baseline) / 1024
    assert size > 50 * 8 * 1024 * 1024
    assert lines >= 50
    assert growth_mb < 150, f"{fmt} export grew the process by {growth_mb:.0f} MB"


def _copies_running(hub: Hub) -> int:
    with hub.context.db.read() as session:
        return int(session.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%'"
            " AND state <> 'idle' AND pid <> pg_backend_pid()"
        )))  # fmt: skip


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_a_download_dropped_mid_way_ends_its_copy(heavy: Hub, fmt: str) -> None:
    """Over real HTTP: a client that reads the first bytes of a large export and goes away
    leaves no COPY running and no pooled connection taken (they stayed until the garbage
    collector came, and a few dropped downloads could take the web's pool)."""
    with served(heavy) as base:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for _ in range(3):
            with (
                httpx.Client(base_url=base, headers=headers, timeout=30) as client,
                client.stream(
                    "GET", f"/api/data/export/{fmt}", params={"spider_id": "heavy"}
                ) as response,
            ):
                assert response.status_code == 200
                assert next(response.iter_raw())
            # The server finds the client gone at its next send, a chunk later at most.
            time.sleep(0.5)
            deadline = time.monotonic() + 10
            while _copies_running(heavy) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _copies_running(heavy) == 0
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            whole = client.get("/api/data/export/jsonl", params={"spider_id": "heavy"})
        assert whole.status_code == 200 and whole.content.count(b"\n") == 50


def test_log_search_ignores_case_and_takes_wildcards_literally(context: Context) -> None:
    from crawlhub.repo.logs import list_lines

    _, task_id = seed(context, [])
    texts = ["Error: disk 100% FULL", "a_b ok", "axb ok", "Ünïcode Straße"]
    with context.db.session() as session:
        session.add_all(LogLine(task_id=task_id, attempt=1, seq=n, stream="stdout",
                                ts=datetime.now(UTC), text=text)
                        for n, text in enumerate(texts, 1))  # fmt: skip
    with context.db.read() as session:

        def found(search: str) -> list[str]:
            return [line.text for line in list_lines(session, task_id, search=search)]

        assert found("DISK 100% full") == [texts[0]]
        assert found("100%") == [texts[0]]
        assert found("a_b") == [texts[1]]  # "_" is no wildcard
        assert found("straße") == [texts[3]]
        assert found("nothing") == []
