"""The streamed XLSX writer: its first bytes before any item, what openpyxl reads back,
hostile cell text, and a new sheet when one is full."""

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import openpyxl
import pytest

from crawlhub.data import formats
from crawlhub.data.formats import Batch


def workbook(items: list[dict[str, Any]], columns: list[str]) -> openpyxl.Workbook:
    batches = [[(n, json.dumps(item)) for n, item in enumerate(items)]]
    return openpyxl.load_workbook(io.BytesIO(b"".join(formats.xlsx(batches, columns))))


def test_the_first_bytes_leave_before_the_first_item_is_read() -> None:
    read: list[int] = []

    def batches() -> Iterator[Batch]:
        for n in range(3):
            read.append(n)
            yield [(n, json.dumps({"n": n}))]

    stream = formats.xlsx(batches(), ["n"])
    first = next(stream)
    assert first.startswith(b"PK\x03\x04") and read == []
    rest = b"".join(stream)
    assert read == [0, 1, 2]
    book = openpyxl.load_workbook(io.BytesIO(first + rest))
    assert [[c.value for c in row] for row in book.active.iter_rows()] == [["n"], [0], [1], [2]]


def test_cells_keep_their_types_and_hostile_text_stays_text() -> None:
    item = {
        "int": 7, "float": 1.5e-05, "bool": True, "big": 10**16, "none": None, "empty": "",
        "list": [1, {"a": "b"}], "xml": "<b>&amp;</b>", "formula": '=HYPERLINK("http://x")',
        "spaces": "  both ", "long": "x" * 40_000, "中文 🦆": "第1条",
    }  # fmt: skip
    sheet = workbook([item], list(item)).active
    header, row = ([c.value for c in r] for r in sheet.iter_rows())
    assert header == list(item)
    got = dict(zip(header, row, strict=True))
    assert got["int"] == 7 and got["float"] == 1.5e-05 and got["bool"] is True
    assert got["big"] == "10000000000000000"  # past Excel's 15 digits: text, every digit kept
    assert got["none"] is None and got["empty"] is None
    assert json.loads(got["list"]) == [1, {"a": "b"}]
    assert got["xml"] == "<b>&amp;</b>"
    assert got["formula"] == '=HYPERLINK("http://x")'
    assert sheet["I2"].data_type == "s"  # a string, never a formula
    assert got["spaces"] == "  both "
    assert got["long"] == "x" * formats.XLSX_MAX_CELL
    assert got["中文 🦆"] == "第1条"


def test_control_characters_and_excel_escapes_are_written_as_excel_reads_them() -> None:
    body = b"".join(formats.xlsx([[(1, json.dumps({"t": "a\x01b _x0041_ \x00"}))]], ["t"]))
    sheet = zipfile.ZipFile(io.BytesIO(body)).read("xl/worksheets/sheet1.xml").decode()
    # Excel shows _x0001_ as the character and _x005F_ as "_": the text comes back as it was
    assert "a_x0001_b _x005F_x0041_ _x0000_" in sheet


def test_a_full_sheet_continues_on_a_new_one_with_the_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(formats, "XLSX_MAX_ROWS", 3)  # a header and two rows a sheet
    book = workbook([{"n": n} for n in range(5)], ["n"])
    assert book.sheetnames == ["Sheet1", "Sheet2", "Sheet3"]
    assert [[[c.value for c in row] for row in sheet.iter_rows()] for sheet in book] == [
        [["n"], [0], [1]], [["n"], [2], [3]], [["n"], [4]]
    ]  # fmt: skip


def test_an_empty_selection_is_a_workbook_with_its_header() -> None:
    book = workbook([], ["a", "b"])
    assert book.sheetnames == ["Sheet1"]
    assert [[c.value for c in row] for row in book.active.iter_rows()] == [["a", "b"]]


def test_column_letters_run_as_excels() -> None:
    assert [formats._column_letters(n) for n in (0, 25, 26, 51, 701, 702)] == [
        "A", "Z", "AA", "AZ", "ZZ", "AAA"
    ]  # fmt: skip
