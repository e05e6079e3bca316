"""The item reader's batched line splitting gives exactly the lines (and the bytes cut off
over-long ones) that the line-at-a-time reader gives, whatever the read boundaries."""

import io
import random

import pytest

from crawlhub.worker.capture import read_batches, read_lines


def both(
    data: bytes, buffer: int, cap: int
) -> tuple[list[tuple[bytes, int]], list[tuple[bytes, int]]]:
    lines = list(read_lines(io.BufferedReader(io.BytesIO(data), buffer), cap))
    batches = read_batches(io.BufferedReader(io.BytesIO(data), buffer), cap)
    return lines, [line for batch in batches for line in batch]


@pytest.mark.parametrize("seed", range(40))
def test_batches_hold_the_same_lines_as_line_by_line_reading(seed: int) -> None:
    rng = random.Random(seed)
    pieces = [
        rng.choice([b"", b"{}", b"\r", b"x" * rng.randint(1, 40), b"y" * rng.randint(30, 200)])
        + rng.choice([b"\n", b"\n", b"\r\n", b""])
        for _ in range(rng.randint(0, 60))
    ]
    data = b"".join(pieces)
    lines, batched = both(data, rng.choice([1, 2, 7, 16, 64, 4096]), rng.choice([5, 32, 1000]))
    assert batched == lines


def test_an_over_long_line_is_cut_across_reads_with_its_dropped_bytes_counted() -> None:
    data = b"a" * 100 + b"\n" + b'{"n": 1}\n' + b"b" * 50
    lines, batched = both(data, 8, 20)
    assert batched == lines == [(b"a" * 20, 80), (b'{"n": 1}', 0), (b"b" * 20, 30)]
