"""Requirements are read from a package, checked, and normalised so equal needs share one
environment key; unused environments are cleaned up (SPEC §14)."""

import io
import os
import time
import zipfile
from pathlib import Path

import pytest

from crawlhub.config import load_settings
from crawlhub.errors import InvalidArchive
from crawlhub.registry import archives, requirements
from crawlhub.worker.environments import (
    LAST_USED,
    Interpreter,
    collect,
    envs_root,
    key_of,
    with_defaults,
)

LIMITS = archives.Limits(1 << 20, 100, 1 << 22)
PYTHON = Interpreter("3.11.2", "linux-x86_64", "/usr/bin/python3.11", "2.19.0", ("/usr",))


def needs(files: dict[str, str | bytes]) -> str | None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(f"project/{path}", text)
    data = buffer.getvalue()
    return requirements.of_package(data, archives.inspect_archive(data, "p.zip", LIMITS))


def test_requirements_txt_is_normalised_comments_and_continuations_handled() -> None:
    text = "# scraping\nRequests >= 2.0  # http\n\nparsel==1.9.1 \\\n  ; python_version >= '3.8'\n"
    assert needs({"main.py": "", "requirements.txt": text}) == (
        'parsel==1.9.1; python_version >= "3.8"\nrequests>=2.0'
    )


def test_pyproject_dependencies_are_read_when_there_is_no_requirements_txt() -> None:
    pyproject = '[project]\nname = "x"\ndependencies = ["Parsel==1.9.1", "requests>=2"]\n'
    assert needs({"main.py": "", "pyproject.toml": pyproject}) == "parsel==1.9.1\nrequests>=2"
    assert needs({"main.py": "", "pyproject.toml": "[tool.x]\ny = 1\n"}) is None
    assert needs({"main.py": ""}) is None
    assert needs({"main.py": "", "requirements.txt": "# nothing\n\n"}) is None


@pytest.mark.parametrize(("files", "message"), [
    ({"requirements.txt": "ok==1\n-r other.txt\n"}, "line 2: options such as '-r'"),
    ({"requirements.txt": "not a requirement!\n"}, "requirements.txt line 1"),
    ({"requirements.txt": b"caf\xe9==1\n"}, "requirements.txt is not UTF-8 text"),
    ({"pyproject.toml": "[project\n"}, "pyproject.toml is not valid TOML"),
    ({"pyproject.toml": "[project]\ndependencies = 3\n"}, "must be a list of strings"),
])  # fmt: skip
def test_unusable_requirements_are_refused_with_the_line(
    files: dict[str, str | bytes], message: str
) -> None:
    with pytest.raises(InvalidArchive, match=message):
        needs({"main.py": "", **files})


def test_equal_needs_share_a_key_and_scrapy_projects_get_the_platform_scrapy() -> None:
    one = requirements.normalise([(1, "Text_Unidecode==1.3"), (2, "parsel")], "r")
    two = requirements.normalise([(1, "parsel"), (2, "text-unidecode == 1.3")], "r")
    assert one == two and one is not None
    assert key_of(one, PYTHON) == key_of(two, PYTHON)
    other = Interpreter("3.12.1", PYTHON.platform, PYTHON.base, PYTHON.scrapy, PYTHON.prefixes)
    assert key_of(one, PYTHON) != key_of(one, other)
    assert with_defaults(one, "scrapy", PYTHON).splitlines() == [
        "parsel",
        "scrapy==2.19.0",
        "text-unidecode==1.3",
    ]
    assert with_defaults(one, "python", PYTHON) == one
    pinned = requirements.normalise([(1, "Scrapy==2.11.2")], "r")
    assert pinned is not None and with_defaults(pinned, "scrapy", PYTHON) == "scrapy==2.11.2"


def test_unused_environments_are_deleted_after_the_ttl_and_no_other(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, env_ttl_days=14)
    root = envs_root(settings)
    old = time.time() - 15 * 86_400
    for key, used in (("current", old), ("stale", old), ("recent", time.time())):
        (root / key / "bin").mkdir(parents=True)
        (root / key / LAST_USED).touch()
        os.utime(root / key / LAST_USED, (used, used))
        (root / f".{key}.log").write_text("built\n")
    (root / ".cache").mkdir()
    assert collect(settings, keep={"current"}) == ["stale"]
    assert sorted(p.name for p in root.iterdir()) == [
        ".cache",
        ".current.log",
        ".recent.log",
        "current",
        "recent",
    ]
