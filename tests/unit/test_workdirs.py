"""A worker's extracted versions: used ones are kept, ones no run used for the TTL go."""

import os
import time
from pathlib import Path

from crawlhub.registry.archives import Limits
from crawlhub.worker import workdirs


def test_extracted_versions_unused_for_the_ttl_are_collected_and_used_ones_kept(
    tmp_path: Path,
) -> None:
    loads: list[int] = []

    def load() -> bytes:
        loads.append(1)
        return b"def run(p):\n    return []\n"

    limits = Limits(max_bytes=1 << 20, max_files=10, max_unpacked_bytes=1 << 20)
    used = workdirs.extracted_version(tmp_path, "a" * 64, load, "main.py", "main.py", limits)
    again = workdirs.extracted_version(tmp_path, "a" * 64, load, "main.py", "main.py", limits)
    assert used == again and loads == [1]  # the package is read once, to extract it
    stale = tmp_path / "versions" / ("b" * 64)
    stale.mkdir()
    (stale / "main.py").write_text("x")
    partial = tmp_path / "versions" / ".extract-123"
    partial.mkdir()
    month_ago = time.time() - 30 * 86400
    for path in (used, stale, partial):
        os.utime(path, (month_ago, month_ago))
    workdirs.extracted_version(tmp_path, "a" * 64, load, "main.py", "main.py", limits)  # a run
    assert workdirs.collect(tmp_path, ttl_days=14) == 1
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == sorted(
        [used.name, partial.name])  # fmt: skip
