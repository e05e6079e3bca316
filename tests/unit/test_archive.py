"""Unit tests for crawlhub.registry.archives: validating and extracting uploaded spider packages."""

from __future__ import annotations

import gzip
import io
import stat
import struct
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from crawlhub.errors import InvalidArchive, TooLarge
from crawlhub.registry.archives import (
    ArchiveFormat,
    ArchiveInfo,
    Limits,
    check_runnable,
    detect_format,
    extract,
    inspect_archive,
    module_path,
)

LIMITS = Limits(max_bytes=1_000_000, max_files=50, max_unpacked_bytes=100_000)


def make_zip(*entries: tuple[str | zipfile.ZipInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries:
            zf.writestr(name, content)
    return buf.getvalue()


def zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


def tar_info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, mode: int = 0o644, linkname: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.linkname = kind, size, mode, linkname
    return info


def make_tgz(*entries: tuple[str | tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, content in entries:
            info = name if isinstance(name, tarfile.TarInfo) else tar_info(name)
            if info.isreg():
                info.size = len(content)
            tf.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return buf.getvalue()


def invalid(data: bytes, filename: str = "pkg.zip", limits: Limits = LIMITS) -> str:
    with pytest.raises(InvalidArchive) as caught:
        inspect_archive(data, filename, limits)
    return caught.value.message


def set_zip_flag(data: bytes, bit: int) -> bytes:
    """Set a general-purpose flag bit in every local and central header of a zip."""
    out = bytearray(data)
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = out.find(sig)
        while pos >= 0:
            (flags,) = struct.unpack_from("<H", out, pos + offset)
            struct.pack_into("<H", out, pos + offset, flags | bit)
            pos = out.find(sig, pos + 4)
    return bytes(out)


# detect_format


def test_detect_format_recognises_zip_by_magic_bytes_whatever_the_name() -> None:
    assert detect_format("spider.py", make_zip(("a.py", b""))) is ArchiveFormat.ZIP


def test_detect_format_recognises_an_empty_zip() -> None:
    assert detect_format("x.zip", make_zip()) is ArchiveFormat.ZIP


def test_detect_format_recognises_gzip_by_magic_bytes() -> None:
    assert detect_format("upload.bin", make_tgz(("a.py", b""))) is ArchiveFormat.TAR_GZ


def test_detect_format_falls_back_to_a_py_filename() -> None:
    assert detect_format("spider.py", b"print('hi')\n") is ArchiveFormat.PY


def test_detect_format_rejects_anything_else() -> None:
    with pytest.raises(InvalidArchive) as caught:
        detect_format("notes.txt", b"hello")
    assert caught.value.message == "unsupported upload: expected a .zip, a .tar.gz or a .py file"


@pytest.mark.parametrize(("name", "says"), [
    ("fake.zip", "fake.zip is not a zip archive"),
    ("project.egg", "project.egg is not a zip archive"),
    ("site.tar.gz", "site.tar.gz is not a gzip-compressed tar archive"),
])  # fmt: skip
def test_a_file_named_as_an_archive_that_is_not_one_is_named_as_such(name: str, says: str) -> None:
    with pytest.raises(InvalidArchive) as caught:
        detect_format(name, b"plain text, not an archive")
    assert caught.value.message.startswith(says)


def test_a_syntax_error_names_the_uploaded_file() -> None:
    with pytest.raises(InvalidArchive) as caught:
        inspect_archive(b"def run(:\n", "broken.py", LIMITS, py_module_path="main.py")
    assert caught.value.message.startswith("broken.py has a syntax error on line 1")


# accepted uploads


def test_flat_zip_is_accepted_with_sorted_files_and_their_size() -> None:
    info = inspect_archive(make_zip(("z.py", b"12345"), ("a/b.py", b"123")), "p.zip", LIMITS)
    assert info == ArchiveInfo(ArchiveFormat.ZIP, "", ("a/b.py", "z.py"), 8)


def test_zip_with_one_top_folder_has_that_folder_stripped() -> None:
    data = make_zip(("proj/", b""), ("proj/scrapy.cfg", b"x"), ("proj/spiders/s.py", b"yy"))
    info = inspect_archive(data, "p.zip", LIMITS)
    assert info.root == "proj/"
    assert info.files == ("scrapy.cfg", "spiders/s.py")
    assert info.unpacked_size == 3


def test_zip_with_two_top_folders_is_not_stripped() -> None:
    info = inspect_archive(make_zip(("a/x.py", b""), ("b/y.py", b"")), "p.zip", LIMITS)
    assert (info.root, info.files) == ("", ("a/x.py", "b/y.py"))


def test_single_file_inside_one_folder_is_stripped_to_the_file() -> None:
    info = inspect_archive(make_zip(("proj/main.py", b"")), "p.zip", LIMITS)
    assert (info.root, info.files) == ("proj/", ("main.py",))


def test_directory_entries_are_allowed_but_not_listed() -> None:
    info = inspect_archive(make_zip(("docs/", b""), ("a.py", b""), ("empty/", b"")), "p", LIMITS)
    assert info.files == ("a.py",)


def test_tar_gz_is_accepted_and_its_dot_slash_prefix_and_root_are_stripped() -> None:
    data = make_tgz(
        (tar_info("./proj", tarfile.DIRTYPE, mode=0o755), b""),
        ("./proj/scrapy.cfg", b"[settings]\n"),
        ("./proj/pkg/__init__.py", b""),
    )
    info = inspect_archive(data, "p.tar.gz", LIMITS)
    assert info == ArchiveInfo(ArchiveFormat.TAR_GZ, "proj/", ("pkg/__init__.py", "scrapy.cfg"), 11)


def test_py_file_becomes_the_single_file_at_the_module_path() -> None:
    source = b"def run():\n    return 1\n"
    info = inspect_archive(source, "spider.py", LIMITS, py_module_path="pkg/mod.py")
    assert info == ArchiveInfo(ArchiveFormat.PY, "", ("pkg/mod.py",), len(source))


def test_py_file_defaults_to_main_py() -> None:
    assert inspect_archive(b"x = 1\n", "s.py", LIMITS).files == ("main.py",)


@pytest.mark.filterwarnings("error")
def test_py_file_that_only_triggers_compiler_warnings_is_accepted() -> None:
    assert inspect_archive(b"x = '\\d'\n", "s.py", LIMITS).files == ("main.py",)


def test_macos_junk_is_ignored_and_does_not_prevent_root_stripping() -> None:
    data = make_zip(
        ("proj/main.py", b"x"),
        ("__MACOSX/", b""),
        ("__MACOSX/proj/._main.py", b"j"),
        ("proj/._main.py", b"junk"),
        ("proj/.DS_Store", b"junk"),
        (".DS_Store", b""),
    )
    info = inspect_archive(data, "p.zip", LIMITS)
    assert (info.root, info.files, info.unpacked_size) == ("proj/", ("main.py",), 1)


def test_junk_entries_do_not_count_towards_the_file_limit() -> None:
    data = make_zip(("a.py", b""), ("._a.py", b""), ("__MACOSX/._a.py", b""))
    info = inspect_archive(data, "p.zip", Limits(1_000_000, 1, 100))
    assert info.files == ("a.py",)


# unsafe names

UNSAFE_NAMES = [
    ("../evil.py", "escapes the package directory"),
    ("a/../../b.py", "escapes the package directory"),
    ("a/../b.py", "escapes the package directory"),
    ("/etc/passwd", "is an absolute path"),
    ("C:/x.py", "is an absolute path"),
    ("c:x.py", "is an absolute path"),
    ("\\x.py", "is an absolute path"),
    ("a\\b.py", "contains a backslash"),
]


@pytest.mark.parametrize(("name", "reason"), UNSAFE_NAMES)
def test_zip_entry_with_unsafe_name_is_rejected(name: str, reason: str) -> None:
    message = invalid(make_zip(("ok.py", b""), (name, b"x")))
    assert message == f"archive entry {name!r} {reason}"


@pytest.mark.parametrize(("name", "reason"), UNSAFE_NAMES)
def test_tar_entry_with_unsafe_name_is_rejected(name: str, reason: str) -> None:
    message = invalid(make_tgz(("ok.py", b""), (name, b"x")), "p.tar.gz")
    assert message == f"archive entry {name!r} {reason}"


def test_zip_entry_with_nul_in_its_name_is_rejected() -> None:
    # zipfile truncates names at NUL when writing, so patch the stored name afterwards.
    data = make_zip(("evil.py#.txt", b"x")).replace(b"evil.py#.txt", b"evil.py\x00.txt")
    message = invalid(data)
    assert "contains a NUL byte" in message
    assert "evil.py\\x00.txt" in message


def test_unsafe_name_is_rejected_even_inside_the_macos_junk_tree() -> None:
    assert "escapes" in invalid(make_zip(("a.py", b""), ("__MACOSX/../../x", b"")))


# unsafe entry types


def test_zip_symlink_is_rejected() -> None:
    link = zip_info("proj/link.py", stat.S_IFLNK | 0o777)
    message = invalid(make_zip(("proj/a.py", b""), (link, b"/etc/passwd")))
    assert message == "archive entry 'proj/link.py' is a symbolic link"


def test_zip_device_entry_is_rejected() -> None:
    device = zip_info("dev", stat.S_IFCHR | 0o600)
    message = invalid(make_zip(("a.py", b""), (device, b"")))
    assert message == "archive entry 'dev' is not a regular file or directory"


def test_zip_regular_file_mode_bits_are_accepted() -> None:
    data = make_zip((zip_info("run.py", stat.S_IFREG | 0o755), b""))
    assert inspect_archive(data, "p.zip", LIMITS).files == ("run.py",)


@pytest.mark.parametrize(
    ("member", "what"),
    [
        (tar_info("link.py", tarfile.SYMTYPE, linkname="/etc/passwd"), "a symbolic link"),
        (tar_info("hard.py", tarfile.LNKTYPE, linkname="a.py"), "a hard link"),
        (tar_info("tty", tarfile.CHRTYPE), "a device file"),
        (tar_info("disk", tarfile.BLKTYPE), "a device file"),
        (tar_info("pipe", tarfile.FIFOTYPE), "a FIFO"),
    ],
)
def test_tar_special_entry_is_rejected(member: tarfile.TarInfo, what: str) -> None:
    message = invalid(make_tgz(("a.py", b""), (member, b"")), "p.tar.gz")
    assert message == f"archive entry {member.name!r} is {what}"


def test_encrypted_zip_member_is_rejected() -> None:
    data = set_zip_flag(make_zip(("secret.py", b"x = 1\n")), 0x1)
    assert invalid(data) == "archive entry 'secret.py' is encrypted"


# structural problems


def test_duplicate_file_names_are_rejected() -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = make_zip(("a.py", b"1"), ("a.py", b"2"))
    assert invalid(data) == "archive entry 'a.py' appears more than once"


def test_names_that_normalise_to_the_same_file_are_duplicates() -> None:
    assert "appears more than once" in invalid(make_zip(("a/b.py", b""), ("a//./b.py", b"")))


def test_a_path_that_is_both_file_and_directory_is_rejected() -> None:
    message = invalid(make_zip(("a", b""), ("a/b.py", b"")))
    assert message == "archive entry 'a' is both a file and a directory"


def test_too_many_files_is_rejected() -> None:
    data = make_zip(*((f"f{i}.py", b"") for i in range(4)))
    assert invalid(data, limits=Limits(1_000_000, 3, 1_000)) == "the archive has more than 3 files"


def test_exactly_max_files_is_accepted() -> None:
    data = make_zip(*((f"f{i}.py", b"") for i in range(3)))
    assert len(inspect_archive(data, "p.zip", Limits(1_000_000, 3, 1_000)).files) == 3


def test_upload_over_max_bytes_is_too_large() -> None:
    data = make_zip(("a.py", b"x" * 100))
    with pytest.raises(TooLarge) as caught:
        inspect_archive(data, "p.zip", Limits(len(data) - 1, 10, 10_000))
    assert caught.value.code == "archive_too_large"
    assert str(len(data)) in caught.value.message


def test_declared_unpacked_size_over_the_limit_is_too_large() -> None:
    data = make_zip(("a.py", b"\n" * 600), ("b.py", b"\n" * 600))
    with pytest.raises(TooLarge) as caught:
        inspect_archive(data, "p.zip", Limits(1_000_000, 10, 1_000))
    assert caught.value.code == "archive_too_large"


def test_tar_declared_unpacked_size_over_the_limit_is_too_large() -> None:
    data = make_tgz(("a.py", b"\n" * 2_000))
    with pytest.raises(TooLarge):
        inspect_archive(data, "p.tar.gz", Limits(1_000_000, 10, 1_000))


def test_tar_that_decompresses_far_beyond_the_limit_in_junk_is_too_large() -> None:
    data = make_tgz(("a.py", b""), ("._bomb", b"\0" * (3 << 20)))
    with pytest.raises(TooLarge):
        inspect_archive(data, "p.tar.gz", Limits(1_000_000, 10, 1_000))


def test_tar_with_a_huge_long_name_header_is_too_large() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(tar_info("a" * (3 << 20)), io.BytesIO(b""))
    with pytest.raises(TooLarge):
        inspect_archive(buf.getvalue(), "p.tar.gz", Limits(1_000_000, 10, 1_000))


@pytest.mark.parametrize(
    "data",
    [make_zip(), make_zip(("dir/", b"")), make_zip(("__MACOSX/._a", b""), (".DS_Store", b""))],
)
def test_archive_without_regular_files_is_empty(data: bytes) -> None:
    assert invalid(data) == "the archive is empty"


def test_corrupt_zip_is_invalid() -> None:
    assert "corrupt" in invalid(b"PK\x03\x04" + b"garbage" * 20)


def test_truncated_zip_is_invalid() -> None:
    data = make_zip(("a.py", b"x" * 500))
    assert "corrupt" in invalid(data[: len(data) // 2])


def test_zip_whose_member_data_lies_past_the_end_is_invalid() -> None:
    data = bytearray(make_zip(("a.py", b"x" * 50)))
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 20, 10_000)  # compressed size in the central directory
    assert invalid(bytes(data)) == "archive entry 'a.py' is truncated"


def forge(data: bytes, *, crc: int | None = None, size: int | None = None) -> bytes:
    """A one-member zip with its CRC-32 or uncompressed size rewritten in both headers."""
    out = bytearray(data)
    local, central = out.find(b"PK\x03\x04"), out.find(b"PK\x01\x02")
    if crc is not None:
        struct.pack_into("<I", out, local + 14, crc)
        struct.pack_into("<I", out, central + 16, crc)
    if size is not None:
        struct.pack_into("<I", out, local + 22, size)
        struct.pack_into("<I", out, central + 24, size)
    return bytes(out)


def crc_of(data: bytes, name: str) -> int:
    return zipfile.ZipFile(io.BytesIO(data)).getinfo(name).CRC


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_member_with_a_flipped_crc_is_invalid(method: int) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("a.py", b"x = 1\n" * 50)
    data = buf.getvalue()
    message = invalid(forge(data, crc=crc_of(data, "a.py") ^ 0x80000000))
    assert message.startswith("archive entry 'a.py' is corrupt (Bad CRC-32")
    assert message.endswith("the archive was damaged or altered after it was made")


def test_zip_member_that_holds_less_than_its_declared_size_is_invalid() -> None:
    data = forge(make_zip(("a.py", b"x" * 500)), size=900)
    assert invalid(data).startswith("archive entry 'a.py' declares 900 bytes but holds 500")


def test_zip_member_that_holds_more_than_its_declared_size_is_invalid() -> None:
    assert "'a.py' is corrupt" in invalid(forge(make_zip(("a.py", b"x" * 500)), size=100))


def test_zip_members_are_read_only_once_every_header_passed() -> None:
    both = make_zip(("a.py", b"x" * 50), ("../evil.py", b""))
    forged = forge(both, crc=crc_of(both, "a.py") ^ 1)  # the first member's CRC
    assert invalid(forged) == "archive entry '../evil.py' escapes the package directory"
    assert "CRC" in invalid(forge(make_zip(("a.py", b"x" * 50)), crc=1))


def test_zip_bomb_with_honest_sizes_is_too_large_before_a_member_is_inflated() -> None:
    data = make_zip(("a.py", b"x = 1\n"), ("bomb.txt", b"\0" * (20 << 20)))
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            inspect_archive(data, "p.zip", Limits(1_000_000, 10, 1_000_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20  # nothing near the 20 MiB the member inflates to


def test_zip_bomb_that_understates_its_size_is_refused_after_its_declared_size() -> None:
    data = forge(make_zip(("bomb.py", b"\0" * (50 << 20))), size=1_000)
    tracemalloc.start()
    try:
        message = invalid(data, limits=Limits(1_000_000, 10, 100_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "'bomb.py' is corrupt" in message
    assert peak < 2 << 20  # read a piece at a time, never 50 MiB at once


def test_truncated_gzip_is_invalid() -> None:
    data = make_tgz(("a.py", b"import os\n" * 200))
    message = invalid(data[: len(data) - 20], "p.tar.gz")
    assert message == "the upload is not a readable tar.gz file (corrupt or truncated)"


def test_gzip_with_a_bad_checksum_is_invalid() -> None:
    data = bytearray(make_tgz(("a.py", b"x = 1\n")))
    data[-8] ^= 0xFF  # first byte of the gzip CRC32 trailer
    assert "corrupt" in invalid(bytes(data), "p.tar.gz")


def test_gzip_that_is_not_a_tar_is_invalid() -> None:
    assert "corrupt" in invalid(gzip.compress(b"just some text" * 100), "p.tar.gz")


def test_py_with_a_syntax_error_names_the_line() -> None:
    message = invalid(b"x = 1\ndef broken(:\n    pass\n", "s.py")
    assert message.startswith("s.py has a syntax error on line 2")  # the uploaded file


def test_py_that_is_not_utf8_is_rejected() -> None:
    assert invalid(b"x = '\xff\xfe'\n", "s.py") == "s.py is not valid UTF-8 text"


def test_py_with_nul_bytes_is_rejected() -> None:
    assert "syntax error" in invalid(b"x = 1\x00\n", "s.py")


# check_runnable and module_path


def info_with(*files: str) -> ArchiveInfo:
    return ArchiveInfo(ArchiveFormat.ZIP, "", tuple(sorted(files)), 0)


def test_scrapy_package_with_scrapy_cfg_is_runnable() -> None:
    check_runnable(info_with("scrapy.cfg", "proj/settings.py"), "scrapy", "")


def test_scrapy_package_without_top_level_scrapy_cfg_is_rejected() -> None:
    with pytest.raises(InvalidArchive) as caught:
        check_runnable(info_with("sub/scrapy.cfg"), "scrapy", "")
    assert caught.value.message.startswith("a scrapy package needs scrapy.cfg at its top level")


@pytest.mark.parametrize("path", ["pkg/mod.py", "pkg/mod/__init__.py"])
def test_python_entry_module_or_package_is_runnable(path: str) -> None:
    check_runnable(info_with(path), "python", "pkg.mod:run")


def test_python_entry_module_that_is_missing_is_rejected() -> None:
    with pytest.raises(InvalidArchive) as caught:
        check_runnable(info_with("pkg/other.py", "mod.py"), "python", "pkg.mod:run")
    assert caught.value.message == (
        "entry module 'pkg.mod' not found in the package "
        "(looked for pkg/mod.py and pkg/mod/__init__.py)"
    )


def test_module_path_maps_an_entry_to_its_file() -> None:
    assert module_path("pkg.mod:run") == "pkg/mod.py"
    assert module_path("main:main") == "main.py"


# extract


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_extract_writes_the_stripped_tree_with_modes(tmp_path: Path) -> None:
    data = make_zip(
        ("proj/", b""),
        ("proj/scrapy.cfg", b"cfg"),
        ("proj/__MACOSX", b"real file"),
        (zip_info("proj/bin/run.sh", stat.S_IFREG | 0o755), b"#!/bin/sh\n"),
        ("__MACOSX/proj/._scrapy.cfg", b"junk"),
    )
    info = inspect_archive(data, "p.zip", LIMITS)
    extract(data, info, tmp_path, max_unpacked_bytes=LIMITS.max_unpacked_bytes)
    assert tree(tmp_path) == {
        "scrapy.cfg": b"cfg",
        "__MACOSX": b"real file",
        "bin/run.sh": b"#!/bin/sh\n",
    }
    assert stat.S_IMODE((tmp_path / "scrapy.cfg").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "bin/run.sh").stat().st_mode) == 0o755


def test_extract_writes_a_tar_gz(tmp_path: Path) -> None:
    data = make_tgz(("a/x.py", b"x"), (tar_info("b/run", mode=0o750), b"#!"), ("a/._x.py", b"j"))
    extract(data, inspect_archive(data, "p.tgz", LIMITS), tmp_path, max_unpacked_bytes=100)
    assert tree(tmp_path) == {"a/x.py": b"x", "b/run": b"#!"}
    assert stat.S_IMODE((tmp_path / "b/run").stat().st_mode) == 0o755


def test_extract_writes_a_single_py_file(tmp_path: Path) -> None:
    info = inspect_archive(b"x = 1\n", "s.py", LIMITS, py_module_path="pkg/mod.py")
    extract(b"x = 1\n", info, tmp_path, max_unpacked_bytes=100)
    assert tree(tmp_path) == {"pkg/mod.py": b"x = 1\n"}


def test_extract_over_the_limit_is_too_large_and_writes_nothing_outside_dest(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    data = make_zip(("a.py", b"a" * 100), ("b.py", b"b" * 100))
    with pytest.raises(TooLarge):
        extract(data, inspect_archive(data, "p.zip", LIMITS), dest, max_unpacked_bytes=150)
    assert [p.name for p in tmp_path.iterdir()] == ["dest"]
    assert list(dest.iterdir()) == []


def test_extract_counts_actual_bytes_when_the_declared_sizes_lie(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    data = make_zip(("a.py", b"a" * 100), ("b.py", b"b" * 100))
    lying = ArchiveInfo(ArchiveFormat.ZIP, "", ("a.py", "b.py"), unpacked_size=1)
    with pytest.raises(TooLarge):
        extract(data, lying, dest, max_unpacked_bytes=150)
    assert [p.name for p in tmp_path.iterdir()] == ["dest"]
    assert list(dest.iterdir()) == []


def test_extract_refuses_a_zip_whose_headers_understate_the_size(tmp_path: Path) -> None:
    data = forge(make_zip(("a.py", b"a" * 5_000)), size=10)
    assert "'a.py' is corrupt" in invalid(data)  # inspect_archive refuses it at upload
    info = ArchiveInfo(ArchiveFormat.ZIP, "", ("a.py",), unpacked_size=10)
    with pytest.raises((InvalidArchive, TooLarge)):
        extract(data, info, tmp_path, max_unpacked_bytes=100)
    assert list(tmp_path.iterdir()) == []


def test_extract_rejects_an_archive_that_does_not_match_its_info(tmp_path: Path) -> None:
    data = make_zip(("a.py", b""), ("evil.py", b""))
    with pytest.raises(InvalidArchive, match=r"'evil\.py'"):
        extract(data, info_with("a.py"), tmp_path, max_unpacked_bytes=100)
    assert list(tmp_path.iterdir()) == []


def test_extract_requires_an_empty_destination(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    data = make_zip(("a.py", b""))
    with pytest.raises(ValueError, match="empty"):
        extract(data, inspect_archive(data, "p.zip", LIMITS), tmp_path, max_unpacked_bytes=100)
    assert tree(tmp_path) == {"keep.txt": b"mine"}


def test_zipped_python_package_folder_keeps_its_name_so_its_entry_is_found() -> None:
    data = make_zip(
        ("mypkg/__init__.py", b""), ("mypkg/spider.py", b"def run(p):\n    return []\n")
    )
    info = inspect_archive(data, "mypkg.zip", LIMITS)
    assert info.root == ""
    assert "mypkg/spider.py" in info.files
    check_runnable(info, "python", "mypkg.spider:run")
