"""Work directories of runs: versions extracted once (cached by sha256), a fresh copy per run."""

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from crawlhub.registry import archives
from crawlhub.registry.archives import ArchiveFormat, Limits

logger = logging.getLogger(__name__)


def extracted_version(data_dir: Path, sha256: str, load: Callable[[], bytes], filename: str,
                      module_path: str, limits: Limits) -> Path:  # fmt: skip
    """The directory holding this package extracted, created once per sha256 and module path;
    the package's bytes are loaded (`load`) only when it is not extracted yet."""
    py_key = f"{sha256}-{module_path.replace('/', '.')}"
    for key in (sha256, py_key):
        if (data_dir / "versions" / key).is_dir():
            os.utime(data_dir / "versions" / key)  # used now: `collect` keeps it
            return data_dir / "versions" / key
    data = load()
    fmt = archives.detect_format(filename, data)
    target = data_dir / "versions" / (sha256 if fmt is not ArchiveFormat.PY else py_key)
    target.parent.mkdir(parents=True, exist_ok=True)
    info = archives.inspect_archive(data, filename, limits, py_module_path=module_path)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        archives.extract(data, info, staging, max_unpacked_bytes=limits.max_unpacked_bytes)
        # Another worker may have won the race; both copies are identical, keep theirs.
        with contextlib.suppress(OSError):
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def fresh_workdir(source: Path, work: Path) -> Path:
    """A new private copy of an extracted version for one run attempt, at `work` (in the
    attempt's slot)."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(source, work, symlinks=False)
    os.chmod(work, 0o700)
    return work


def collect(data_dir: Path, ttl_days: int) -> int:
    """Delete the extracted versions no run or listing on this machine used for `ttl_days`
    (a later run extracts its version again); returns how many went."""
    root = data_dir / "versions"
    if not root.is_dir():
        return 0
    cutoff = time.time() - ttl_days * 86400
    gone = 0
    for entry in root.iterdir():
        try:
            if entry.name.startswith(".extract-") or entry.stat().st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        gone += 1
    if gone:
        logger.info("deleted %d extracted version(s) unused for %d days", gone, ttl_days)
    return gone
