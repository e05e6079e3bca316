"""What one run may use: memory, processes, open files, disk and files in its work dir.

Defaults come from the settings; a spider may set any of them for its own runs. Memory and
processes are enforced by the kernel through the run's cgroup (memory used, not address
space, so browsers fit), open files and the size of one file by hard resource limits, the
disk and file count of the work dir (and the run's /tmp) by the supervisor measuring them.
"""

import os
import resource
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

MiB = 1024 * 1024

# name → (least, most) a spider may set
BOUNDS: dict[str, tuple[int, int]] = {
    "memory_mb": (64, 1024 * 1024),
    "processes": (16, 1_000_000),
    "open_files": (64, 1_048_576),
    "disk_mb": (1, 10 * 1024 * 1024),
    "files": (100, 100_000_000),
}

# The reason a run that went over a limit fails with, and the words for it.
REASONS = {
    "memory_mb": ("memory_limit", "memory"),
    "processes": ("process_limit", "processes"),
    "disk_mb": ("disk_limit", "disk"),
    "files": ("file_limit", "files"),
}


@dataclass(frozen=True)
class Limits:
    """The limits of one run (or build, or listing)."""

    memory_mb: int
    processes: int  # tasks: processes and their threads
    open_files: int  # per process
    disk_mb: int  # bytes in the work dir and /tmp
    files: int  # files and directories in the work dir and /tmp

    def merged(self, overrides: Mapping[str, int] | None) -> "Limits":
        """These limits with a spider's own in place of the defaults it sets."""
        if not overrides:
            return self
        return replace(self, **{k: int(v) for k, v in overrides.items() if k in BOUNDS})

    def describe(self) -> str:
        """One line for a run's log."""
        return (
            f"memory {self.memory_mb} MB, {self.processes} processes, {self.open_files} open "
            f"files per process, {self.disk_mb} MB and {self.files} files on disk"
        )

    def rlimits(self) -> dict[int, int]:
        """The hard resource limits of every process of the run (soft = hard)."""
        return {
            resource.RLIMIT_NOFILE: self.open_files,
            resource.RLIMIT_FSIZE: self.disk_mb * MiB,  # one file cannot outgrow the disk limit
            resource.RLIMIT_CORE: 0,  # no core dumps into the work dir
        }


def check(overrides: Mapping[str, object]) -> dict[str, int]:
    """A spider's limits, validated: ValueError naming the first bad one."""
    checked: dict[str, int] = {}
    for name, value in overrides.items():
        if name not in BOUNDS:
            raise ValueError(f"unknown limit {name!r}; limits are {', '.join(BOUNDS)}")
        least, most = BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise ValueError(f"limit {name} must be a whole number from {least} to {most}")
        checked[name] = value
    return checked


@dataclass(frozen=True)
class Usage:
    """What a run holds on disk."""

    size: int  # bytes allocated
    count: int  # files and directories
    largest: int  # bytes of its largest file

    def over(self, limits: Limits) -> tuple[str, str] | None:
        """The limit this usage is over (its name, and what was seen), or None."""
        if self.largest >= limits.disk_mb * MiB:
            return "disk_mb", "it wrote a file as large as that"
        if self.size > limits.disk_mb * MiB:
            return "disk_mb", f"it held {self.size // MiB} MB"
        if self.count > limits.files:
            return "files", f"it held more than {limits.files} files"
        return None


def usage(roots: Iterable[Path], limits: Limits) -> Usage:
    """Bytes (as allocated), entries and the largest file below `roots`, without following
    links; counting stops early once it is over a limit."""
    size, count, largest = 0, 0, 0
    most_bytes = limits.disk_mb * MiB
    todo = [str(root) for root in roots]
    while todo:
        try:
            entries = os.scandir(todo.pop())
        except OSError:  # removed meanwhile, or not ours to read
            continue
        with entries:
            for entry in entries:
                count += 1
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                size += info.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    todo.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    largest = max(largest, info.st_size)
                if size > most_bytes or count > limits.files or largest >= most_bytes:
                    return Usage(size, count, largest)
    return Usage(size, count, largest)
