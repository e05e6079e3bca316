"""Writing items as CSV, JSON, JSON lines or XLSX, batch by batch, in constant memory."""

import csv
import io
import json
import re
import zipfile
from collections.abc import Generator, Iterable
from typing import IO, Any

# A file as it is streamed: chunks of bytes, from a generator its reader closes when it stops
# early (a client gone), so that what it holds (a COPY, a pooled connection) goes at once.
Chunks = Generator[bytes, None, None]

FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json",
           "jsonl": "application/x-ndjson",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}  # fmt: skip
BOM = "\ufeff".encode()
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets may run as a formula
XLSX_MAX_CELL = 32_767  # Excel's cell length limit
XLSX_MAX_ROWS = 1_048_576  # rows per worksheet, header included
# A new worksheet past this many characters of XML (4 bytes each at most): every zip entry
# stays under 2 GiB, so none needs ZIP64, which older spreadsheet programs cannot read.
XLSX_MAX_SHEET_CHARS = 500_000_000
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


def jsonl(batches: Iterable[Batch]) -> Chunks:
    """One JSON object per line."""
    for batch in batches:
        yield "".join(text + "\n" for _, text in batch).encode()


def json_array(chunks: Iterable[bytes]) -> Chunks:
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


def csv_rows(batches: Iterable[Batch], columns: list[str], *, excel: bool) -> Chunks:
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


def xlsx(batches: Iterable[Batch], columns: list[str]) -> Chunks:
    """An XLSX workbook, streamed as it is written: a zip whose entries carry their sizes
    after their data (zipfile's way with a stream it cannot seek). The content types come
    first (every `.xml` part but the workbook is a worksheet, so sheets need no listing),
    then a worksheet per million rows, with inline strings, then the workbook naming
    them: the first bytes leave before the first item is read. No styles: Excel's
    defaults."""
    out = _Drain()
    book = zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED)
    book.writestr("[Content_Types].xml", _XLSX_TYPES)
    book.writestr("_rels/.rels", _XLSX_ROOT_RELS)
    yield out.take()
    letters = [_column_letters(n) for n in range(len(columns))]
    header = "".join(_xlsx_cell(f"{letter}1", name)
                     for letter, name in zip(letters, columns, strict=True))  # fmt: skip
    sheets, sheet, row, size = 0, None, 0, 0
    for batch in batches:
        lines: list[str] = []
        for _, text in batch:
            if sheet is None or row >= XLSX_MAX_ROWS or size >= XLSX_MAX_SHEET_CHARS:
                if sheet is not None:
                    sheet.write("".join(lines).encode() + _XLSX_SHEET_END)
                    sheet.close()
                    lines = []
                sheets += 1
                sheet = _xlsx_sheet(book, sheets, header)
                row, size = 1, len(header)
            row += 1
            data = json.loads(text)
            cells = "".join(_xlsx_cell(f"{letter}{row}", data.get(column))
                            for letter, column in zip(letters, columns, strict=True))  # fmt: skip
            lines.append(f'<row r="{row}">{cells}</row>')
            size += len(lines[-1])
        if sheet is not None and lines:
            sheet.write("".join(lines).encode())
        if len(out.data) >= CHUNK:
            yield out.take()
    if sheet is None:
        sheets, sheet = 1, _xlsx_sheet(book, 1, header)
    sheet.write(_XLSX_SHEET_END)
    sheet.close()
    names = range(1, sheets + 1)
    book.writestr("xl/workbook.xml", _XLSX_WORKBOOK.format("".join(
        f'<sheet name="Sheet{n}" sheetId="{n}" r:id="rId{n}"/>' for n in names)))  # fmt: skip
    book.writestr("xl/_rels/workbook.xml.rels", _XLSX_RELS.format("".join(
        f'<Relationship Id="rId{n}" Type="{_XLSX_REL}/worksheet" '
        f'Target="worksheets/sheet{n}.xml"/>' for n in names)))  # fmt: skip
    book.close()
    yield out.take()


class _Drain(io.RawIOBase):
    """Where zipfile writes: bytes waiting to be sent (it cannot seek, so zipfile streams)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.data += data
        return len(data)

    def take(self) -> bytes:
        chunk = bytes(self.data)
        self.data.clear()
        return chunk


def _xlsx_sheet(book: zipfile.ZipFile, number: int, header: str) -> IO[bytes]:
    sheet = book.open(f"xl/worksheets/sheet{number}.xml", "w")
    sheet.write(_XLSX_SHEET_START + f'<row r="1">{header}</row>'.encode())
    return sheet


def _xlsx_cell(ref: str, value: Any) -> str:
    """One cell: booleans and numbers (below 1e15, where Excel keeps every digit) as values,
    anything else as an inline string (Excel's 32 767-character limit); null or "" an empty
    cell (written, so that every row spans every column for readers without a dimension)."""
    if value is None:
        return f'<c r="{ref}"/>'
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float) and abs(value) < 1e15:
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    text = cell(value)[:XLSX_MAX_CELL]
    if not text:
        return f'<c r="{ref}"/>'
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{_xml_text(text)}</t></is></c>'


_EXCEL_ESCAPE = re.compile(r"_x[0-9A-Fa-f]{4}_")  # Excel reads these as escaped characters
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """Text as XML character data, as Excel reads it back: control characters (not allowed
    in XML) as Excel's `_xHHHH_`, and a literal `_xHHHH_` kept literal (`_x005F_` first)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if "_x" in text:
        text = _EXCEL_ESCAPE.sub(lambda found: "_x005F" + found.group(), text)
    if _NOT_XML.search(text):
        text = _NOT_XML.sub(lambda found: f"_x{ord(found.group()):04X}_", text)
    return text


def _column_letters(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA, as Excel names its columns."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


_XLSX_NS = "http://schemas.openxmlformats.org"
_XLSX_REL = f"{_XLSX_NS}/officeDocument/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_XLSX_TYPES = (
    f'{_XML}<Types xmlns="{_XLSX_NS}/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override '
    'PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.spreadsheetml.sheet.main+xml"/></Types>'
)
_XLSX_ROOT_RELS = (
    f'{_XML}<Relationships xmlns="{_XLSX_NS}/package/2006/relationships"><Relationship '
    f'Id="rId1" Type="{_XLSX_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
)
_XLSX_WORKBOOK = (
    f'{_XML}<workbook xmlns="{_XLSX_NS}/spreadsheetml/2006/main" xmlns:r="{_XLSX_REL}">'
    "<sheets>{}</sheets></workbook>"
)
_XLSX_RELS = (
    f'{_XML}<Relationships xmlns="{_XLSX_NS}/package/2006/relationships">{{}}</Relationships>'
)
_XLSX_SHEET_START = (
    f'{_XML}<worksheet xmlns="{_XLSX_NS}/spreadsheetml/2006/main"><sheetData>'
).encode()
_XLSX_SHEET_END = b"</sheetData></worksheet>"


def keys_in_order(batches: Iterable[Batch]) -> list[str]:
    """Top-level keys of every item, in first-seen order (a full pass over the selection)."""
    seen: dict[str, None] = {}
    for batch in batches:
        for _, text in batch:
            for key in json.loads(text):
                seen.setdefault(key, None)
    return list(seen)
