"""Validation and safe extraction of uploaded spider packages (.zip, .tar.gz or a single .py)."""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import os
import pathlib
import shutil
import stat
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass
from enum import StrEnum
from typing import IO

from crawlhub.config import Settings
from crawlhub.errors import InvalidArchive, TooLarge

# What the stdlib readers raise on corrupt or truncated input.
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, gzip.BadGzipFile)
_READ_ERRORS = (*_CORRUPT, zlib.error, EOFError, ValueError, NotImplementedError)
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_TAR_SPECIAL = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link"}
_TAR_SPECIAL |= {tarfile.CHRTYPE: "a device file", tarfile.BLKTYPE: "a device file"}
_TAR_SPECIAL |= {tarfile.FIFOTYPE: "a FIFO"}
# Decompressed tar stream allowed beyond the declared file sizes (headers, padding, junk).
_TAR_SLACK_BASE, _TAR_SLACK_PER_FILE = 1 << 20, 16 << 10
# Zip members are checked by reading them through in pieces this big, never whole.
_CHECK_CHUNK = 1 << 16


# An egg (what scrapyd-deploy uploads) names its Scrapy settings module here.
EGG_ENTRY_POINTS = "EGG-INFO/entry_points.txt"


class ArchiveFormat(StrEnum):
    """The upload formats CrawlHub accepts."""

    ZIP = "zip"
    TAR_GZ = "tar.gz"
    PY = "py"


@dataclass(frozen=True)
class ArchiveInfo:
    """What inspect_archive learned about a valid package."""

    format: ArchiveFormat
    root: str
    files: tuple[str, ...]
    unpacked_size: int


@dataclass(frozen=True)
class Limits:
    """Size and count limits for one upload."""

    max_bytes: int
    max_files: int
    max_unpacked_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits the settings configure."""
        return cls(settings.max_upload_bytes, settings.max_archive_files,
                   settings.max_unpacked_bytes)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    parts: tuple[str, ...]
    is_dir: bool
    size: int
    executable: bool
    open: Callable[[], IO[bytes]]


_Entries = Generator[_Entry, None, None]


def _too_large(limit: int) -> TooLarge:
    message = f"the archive unpacks to more than {limit} bytes, which is over the limit"
    return TooLarge(message, code="archive_too_large")


def _corrupt(fmt: ArchiveFormat, exc: Exception) -> InvalidArchive:
    message = f"the upload is not a readable {fmt} file (corrupt or truncated)"
    return InvalidArchive(message, details={"error": str(exc)})


class _CappedReader:
    """A read-only file over a gzip stream that refuses to decompress past `cap` bytes."""

    def __init__(self, raw: gzip.GzipFile, cap: int, limit: int) -> None:
        self.raw, self.cap, self.limit = raw, cap, limit

    def read(self, size: int = -1, /) -> bytes:
        room = self.cap - self.raw.tell()
        data = self.raw.read(room + 1 if size < 0 or size > room else size)
        if len(data) > room:
            raise _too_large(self.limit)
        return data

    def seek(self, pos: int, whence: int = 0, /) -> int:
        if (pos if whence == io.SEEK_SET else self.raw.tell() + pos) > self.cap:
            raise _too_large(self.limit)
        return self.raw.seek(pos, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def write(self, b: bytes, /) -> int:
        raise io.UnsupportedOperation("write")

    def close(self) -> None:
        self.raw.close()


def detect_format(filename: str, data: bytes) -> ArchiveFormat:
    """Return the upload's format from its magic bytes, else from a .py filename."""
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return ArchiveFormat.ZIP
    if data.startswith(b"\x1f\x8b"):
        return ArchiveFormat.TAR_GZ
    name = filename.lower()
    if name.endswith(".py"):
        return ArchiveFormat.PY
    if name.endswith((".zip", ".egg")):
        why = "a damaged download, or another kind of file named .zip"
        raise InvalidArchive(
            f"{filename} is not a zip archive: its content is something else ({why})"
        )
    if name.endswith((".tar.gz", ".tgz")):
        raise InvalidArchive(f"{filename} is not a gzip-compressed tar archive: its content is "
                             "something else")  # fmt: skip
    raise InvalidArchive("unsupported upload: expected a .zip, a .tar.gz or a .py file")


def _name_problem(name: str) -> str | None:
    drive = name[1:2] == ":" and name[:1].isascii() and name[:1].isalpha()
    if "\x00" in name:
        return "contains a NUL byte"
    if drive or name.startswith(("/", "\\")):
        return "is an absolute path"
    if "\\" in name:
        return "contains a backslash"
    if ".." in name.split("/"):
        return "escapes the package directory"
    return None


def _parts(name: str) -> tuple[str, ...]:
    """Split an entry name into path components, rejecting names that could escape."""
    if problem := _name_problem(name):
        raise InvalidArchive(f"archive entry {name!r} {problem}")
    return tuple(p for p in name.split("/") if p not in ("", "."))


def _is_junk(parts: tuple[str, ...]) -> bool:
    return parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] == ".DS_Store"


def _zip_problem(zi: zipfile.ZipInfo, mode: int, is_dir: bool, data_size: int) -> str | None:
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_IFMT(mode) and not (is_dir or stat.S_ISREG(mode)):
        return "is not a regular file or directory"
    if is_dir:
        return None
    if zi.flag_bits & 0x1:
        return "is encrypted"
    if zi.compress_type not in _ZIP_METHODS:
        return "uses an unsupported compression method"
    if zi.header_offset + zi.compress_size > data_size:
        return "is truncated"
    return None


def _zip_entries(data: bytes) -> _Entries:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for zi in zf.infolist():
            name, mode = zi.orig_filename, zi.external_attr >> 16
            parts = _parts(name)
            if not parts or _is_junk(parts):
                continue
            is_dir = zi.is_dir() or stat.S_ISDIR(mode)
            if problem := _zip_problem(zi, mode, is_dir, len(data)):
                raise InvalidArchive(f"archive entry {name!r} {problem}")
            opener = functools.partial(zf.open, zi)
            yield _Entry(name, parts, is_dir, zi.file_size, bool(mode & 0o111), opener)


def _check_zip_members(data: bytes) -> None:
    """Read every member of a zip through (a piece at a time), so that one whose headers
    forge its CRC-32 or size is refused now rather than when a run extracts it.

    Called once the headers passed, so the declared sizes are within the unpacked limit;
    zipfile inflates no member past its declared size, so a bomb stops early too.
    """
    with contextlib.closing(_zip_entries(data)) as it:
        for e in (e for e in it if not e.is_dir):
            held, problem = 0, None
            try:
                with e.open() as src:  # zipfile checks the CRC-32 when it reaches the end
                    while held <= e.size and (chunk := src.read(_CHECK_CHUNK)):
                        held += len(chunk)
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                problem = f"is corrupt ({exc})"
            if problem is None and held != e.size:
                problem = f"declares {e.size} bytes but holds {held}"
            if problem:
                raise InvalidArchive(f"archive entry {e.name!r} {problem}: the archive was "
                                     "damaged or altered after it was made")  # fmt: skip


def _tar_member(tf: tarfile.TarFile, ti: tarfile.TarInfo) -> IO[bytes]:
    src = tf.extractfile(ti)
    if src is None:
        raise InvalidArchive(f"archive entry {ti.name!r} is not a regular file")
    return src


def _tar_entries(data: bytes, max_unpacked: int) -> _Entries:
    raw = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
    reader = _CappedReader(raw, max_unpacked + _TAR_SLACK_BASE, max_unpacked)
    with tarfile.TarFile(fileobj=reader) as tf:
        for ti in tf:
            name, parts = ti.name, _parts(ti.name)
            if not parts or _is_junk(parts):
                continue
            if ti.type in _TAR_SPECIAL:
                raise InvalidArchive(f"archive entry {name!r} is {_TAR_SPECIAL[ti.type]}")
            if not (ti.isreg() or ti.isdir()):
                raise InvalidArchive(f"archive entry {name!r} is not a regular file or directory")
            reader.cap += _TAR_SLACK_PER_FILE if ti.isreg() else 0
            opener = functools.partial(_tar_member, tf, ti)
            yield _Entry(name, parts, ti.isdir(), ti.size, bool(ti.mode & 0o111), opener)
        while reader.read(1 << 16):  # drain, so that the gzip CRC and length get verified
            pass


def _py_entries(data: bytes, name: str) -> _Entries:
    if not _parts(name):
        raise InvalidArchive(f"module path {name!r} is not a file name")
    yield _Entry(name, _parts(name), False, len(data), False, lambda: io.BytesIO(data))


def _entries(data: bytes, fmt: ArchiveFormat, py_name: str, max_unpacked: int) -> _Entries:
    if fmt is ArchiveFormat.ZIP:
        return _zip_entries(data)
    if fmt is ArchiveFormat.TAR_GZ:
        return _tar_entries(data, max_unpacked)
    return _py_entries(data, py_name)


def _check_python(data: bytes, path: str) -> None:
    try:
        source = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArchive(
            f"{path} is not valid UTF-8 text", details={"error": str(exc)}
        ) from None
    try:
        with warnings.catch_warnings():  # warnings (even if made errors) must not reject code
            warnings.simplefilter("ignore")
            compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        line = getattr(exc, "lineno", None)
        where = f" on line {line}" if line else ""
        reason = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        message = f"{path} has a syntax error{where}: {reason}"
        raise InvalidArchive(message, details={"line": line}) from None


def inspect_archive(
    data: bytes, filename: str, limits: Limits, *, py_module_path: str = "main.py"
) -> ArchiveInfo:
    """Validate an upload without extracting it, and list its files.

    The headers are checked first (names, kinds, counts, declared sizes against the
    limits); then a zip's members are read through, in memory a piece at a time, so that
    a forged CRC-32 or size is refused at upload (a tar.gz is read through by its gzip
    check).
    """
    if len(data) > limits.max_bytes:
        message = f"the upload is {len(data)} bytes, over the {limits.max_bytes}-byte limit"
        raise TooLarge(message, code="archive_too_large")
    fmt = detect_format(filename, data)
    if fmt is ArchiveFormat.PY:
        _check_python(data, filename if filename.lower().endswith(".py") else py_module_path)
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    tops: set[str] = set()
    total = 0
    try:
        with contextlib.closing(
            _entries(data, fmt, py_module_path, limits.max_unpacked_bytes)
        ) as it:
            for e in it:
                tops.add(e.parts[0])
                if e.is_dir:
                    dirs.add(e.parts)
                    continue
                if e.parts in files:
                    raise InvalidArchive(f"archive entry {e.name!r} appears more than once")
                files.add(e.parts)
                if len(files) > limits.max_files:
                    raise InvalidArchive(f"the archive has more than {limits.max_files} files")
                total += e.size
                if total > limits.max_unpacked_bytes:
                    raise _too_large(limits.max_unpacked_bytes)
    except (*_READ_ERRORS, OSError) as exc:
        raise _corrupt(fmt, exc) from None
    prefixes = {p[:i] for p in files for i in range(1, len(p))}
    clash = min(files & (dirs | prefixes), default=None)
    if clash:
        raise InvalidArchive(f"archive entry {'/'.join(clash)!r} is both a file and a directory")
    if not files:
        raise InvalidArchive("the archive is empty")
    if fmt is ArchiveFormat.ZIP:
        try:
            _check_zip_members(data)
        except (*_READ_ERRORS, OSError) as exc:
            raise _corrupt(fmt, exc) from None
    flat = any(len(p) == 1 for p in files)
    # A lone top folder is the project's own folder, unless it is itself a Python package
    # (`mypkg/__init__.py`): then `mypkg.module:run` must keep finding it.
    package = len(tops) == 1 and (min(tops), "__init__.py") in files
    strip = 1 if fmt is not ArchiveFormat.PY and len(tops) == 1 and not flat and not package else 0
    root = f"{min(tops)}/" if strip else ""
    listed = tuple(sorted("/".join(p[strip:]) for p in files))
    return ArchiveInfo(format=fmt, root=root, files=listed, unpacked_size=total)


def check_runnable(info: ArchiveInfo, kind: str, entry: str) -> None:
    """Raise InvalidArchive unless the package has what a `kind` spider needs to start."""
    if kind == "scrapy":
        if "scrapy.cfg" not in info.files and EGG_ENTRY_POINTS not in info.files:
            raise InvalidArchive("a scrapy package needs scrapy.cfg at its top level "
                                 "(or, as an egg, EGG-INFO/entry_points.txt)")  # fmt: skip
    elif kind == "python":
        module = entry.split(":", 1)[0]
        file, package = module_path(entry), module.replace(".", "/") + "/__init__.py"
        if file not in info.files and package not in info.files:
            raise InvalidArchive(
                f"entry module {module!r} not found in the package "
                f"(looked for {file} and {package})"
            )
    else:
        raise ValueError(f"unknown spider kind {kind!r}")


def read_member(data: bytes, info: ArchiveInfo, path: str, max_bytes: int) -> bytes | None:
    """The bytes of one file of an inspected package (`path` below its root), None when it
    has no such file; InvalidArchive when it is over `max_bytes`."""
    if path not in info.files:
        return None
    strip = 1 if info.root else 0
    py_name = info.files[0] if info.format is ArchiveFormat.PY else ""
    with contextlib.closing(_entries(data, info.format, py_name, info.unpacked_size)) as it:
        for e in it:
            if not e.is_dir and "/".join(e.parts[strip:]) == path:
                with e.open() as src:
                    content = src.read(max_bytes + 1)
                if len(content) > max_bytes:
                    raise InvalidArchive(f"{path} is over {max_bytes} bytes")
                return content
    return None


def module_path(entry: str) -> str:
    """Return the file path of an entry's module, e.g. "pkg.mod:run" -> "pkg/mod.py"."""
    return entry.split(":", 1)[0].replace(".", "/") + ".py"


class _Budget:
    """A write target that forwards to `out` and fails once `limit` bytes have been written."""

    def __init__(self, limit: int) -> None:
        self.limit, self.left = limit, limit
        self.out: IO[bytes] | None = None
        self.dirs: set[pathlib.Path] = set()  # directories already created and checked

    def write(self, b: bytes) -> int:
        if len(b) > self.left:
            raise _too_large(self.limit)
        self.left -= len(b)
        assert self.out is not None
        return self.out.write(b)


def _write(entry: _Entry, target: pathlib.Path, base: pathlib.Path, budget: _Budget) -> None:
    if target.parent not in budget.dirs:
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        parent = target.parent.resolve(strict=True)
        if parent != target.parent or not parent.is_relative_to(base):  # a link slipped in
            raise InvalidArchive(f"archive entry {entry.name!r} escapes the package directory")
        budget.dirs.add(parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(target, flags, 0o600), "wb") as out, entry.open() as src:
        budget.out = out
        shutil.copyfileobj(src, budget)
        os.fchmod(out.fileno(), 0o755 if entry.executable else 0o644)


def _clear(dest: pathlib.Path) -> None:
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def extract(data: bytes, info: ArchiveInfo, dest: pathlib.Path, *, max_unpacked_bytes: int) -> None:
    """Write the package's regular files (root stripped) into the empty directory `dest`."""
    base = dest.resolve(strict=True)
    if any(base.iterdir()):
        raise ValueError(f"extract() needs an empty destination directory, got {dest}")
    if info.unpacked_size > max_unpacked_bytes:
        raise _too_large(max_unpacked_bytes)
    expected, budget = set(info.files), _Budget(max_unpacked_bytes)
    py_name = info.files[0] if info.format is ArchiveFormat.PY else ""
    strip = 1 if info.root else 0
    try:
        with contextlib.closing(_entries(data, info.format, py_name, max_unpacked_bytes)) as it:
            for e in it:
                rel = "/".join(e.parts[strip:])
                if e.is_dir:
                    continue
                if rel not in expected or (strip and e.parts[0] != info.root[:-1]):
                    raise InvalidArchive(f"archive entry {e.name!r} does not match the inspection")
                expected.discard(rel)
                _write(e, base.joinpath(*e.parts[strip:]), base, budget)
        if expected:
            raise InvalidArchive(f"archive entry {min(expected)!r} is missing from the archive")
    except _READ_ERRORS as exc:
        _clear(base)
        raise _corrupt(info.format, exc) from None
    except BaseException:
        _clear(base)
        raise
