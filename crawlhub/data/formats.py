"""Writing items as CSV, JSON, JSON lines or XLSX, batch by batch, in constant memory."""

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import xlsxwriter

FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json",
           "jsonl": "application/x-ndjson",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}  # fmt: skip
BOM = "\ufeff".encode()
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets may run as a formula
XLSX_MAX_CELL = 32_767  # Excel's cell length limit
XLSX_MAX_ROWS = 1_048_576  # rows per worksheet, header included
CHUNK = 256 * 1024

Batch = list[tuple[int, str]]  # (item id, JSON text of its data)


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def cell(value: Any) -> str:
    """A value as CSV text: strings as they are, null empty, everything else as JSON."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return ""
    if kind is int:
        return str(value)
    return _encode(value)


def neutralise(text: str) -> str:
    """Keep a spreadsheet from evaluating a text cell as a formula (OWASP's advice)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def jsonl(batches: Iterable[Batch]) -> Iterator[bytes]:
    """One JSON object per line."""
    for batch in batches:
        yield "".join(text + "\n" for _, text in batch).encode()


def json_array(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """JSON lines (in chunks of whole lines) as one JSON array, streamed."""
    yield b"["
    first = True
    for chunk in chunks:
        if not chunk:
            continue
        body = chunk[:-1].replace(b"\n", b",\n")
        yield body if first else b",\n" + body
        first = False
    yield b"]\n"


def csv_header(columns: list[str], *, excel: bool) -> bytes:
    """The first line of a CSV export; Excel mode starts with a BOM and defuses header cells
    too (a column is an item key, which a spider chose). Lines end in LF, as PostgreSQL's
    COPY writes them (Excel, LibreOffice and every CSV parser read it)."""
    buffer = io.StringIO()
    if columns:  # no columns (an empty selection without `fields`): an empty file
        header = [neutralise(c) for c in columns] if excel else columns
        csv.writer(buffer, lineterminator="\n").writerow(header)
    return (BOM if excel else b"") + buffer.getvalue().encode()


def csv_rows(batches: Iterable[Batch], columns: list[str], *, excel: bool) -> Iterator[bytes]:
    """A header of `columns`, then one row per item; Excel mode adds a BOM and defuses formulas."""
    yield csv_header(columns, excel=excel)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        for _, text in batch:
            data = json.loads(text)
            row = []
            for column in columns:
                value = data.get(column)
                shown = cell(value)
                row.append(neutralise(shown) if excel and isinstance(value, str) else shown)
            writer.writerow(row)
        yield buffer.getvalue().encode()


def xlsx(batches: Iterable[Batch], columns: list[str]) -> Iterator[bytes]:
    """An XLSX workbook written in xlsxwriter's constant-memory mode, then streamed."""
    handle, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(handle)
    try:
        options = {"constant_memory": True, "strings_to_formulas": False,
                   "strings_to_urls": False, "strings_to_numbers": False}  # fmt: skip
        book = xlsxwriter.Workbook(path, options)
        sheet, row = None, XLSX_MAX_ROWS
        for batch in batches:
            for _, text in batch:
                if row >= XLSX_MAX_ROWS:  # a new sheet every million rows
                    sheet = book.add_worksheet()
                    sheet.write_row(0, 0, columns)
                    row = 1
                assert sheet is not None
                data = json.loads(text)
                for col, column in enumerate(columns):
                    _write_cell(sheet, row, col, data.get(column))
                row += 1
        if sheet is None:
            book.add_worksheet().write_row(0, 0, columns)
        book.close()
        with open(path, "rb") as out:
            while chunk := out.read(CHUNK):
                yield chunk
    finally:
        os.unlink(path)


def _write_cell(sheet: Any, row: int, col: int, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        sheet.write_boolean(row, col, value)
    elif isinstance(value, int | float) and abs(value) < 1e15:
        sheet.write_number(row, col, value)
    else:
        sheet.write_string(row, col, cell(value)[:XLSX_MAX_CELL])


def keys_in_order(batches: Iterable[Batch]) -> list[str]:
    """Top-level keys of every item, in first-seen order (a full pass over the selection)."""
    seen: dict[str, None] = {}
    for batch in batches:
        for _, text in batch:
            for key in json.loads(text):
                seen.setdefault(key, None)
    return list(seen)
