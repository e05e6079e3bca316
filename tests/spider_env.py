"""Where spiders run from in tests when they run as another user.

As root, CrawlHub runs every spider as an unprivileged user (`nobody` here). This machine's
Python lives under /root, which other users cannot enter, so for root the tests build a
virtual environment on the system's own interpreter (which every user can run) with
CrawlHub's dependencies, copy the crawlhub package under test into it, and keep data dirs
below a directory every user may traverse (the `tmp_path` fixture). As any other user,
spiders run on the test process's own interpreter in pytest's own tmp_path.
"""

import atexit
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV_ROOT = Path(os.environ.get("CRAWLHUB_TEST_ENV_ROOT", "/tmp/crawlhub-test-env"))
DATA_ROOT = Path("/tmp/crawlhub-test-data")
BASE_PYTHONS = ("/usr/local/bin/python3", "/usr/bin/python3")

AS_ROOT = os.geteuid() == 0


def spider_python() -> Path | None:
    """The interpreter spiders run on (None: the test process's own)."""
    return _shared_env() / "bin" / "python" if AS_ROOT else None


def shared_tmp_path() -> Path:
    """A fresh directory the spider user may enter and write to, removed at exit: spiders
    of tests read and write gate and marker files in their test's tmp_path."""
    DATA_ROOT.mkdir(mode=0o711, exist_ok=True)
    DATA_ROOT.chmod(0o711)
    path = Path(tempfile.mkdtemp(prefix="test-", dir=DATA_ROOT))
    path.chmod(0o777)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def base_python() -> str:
    """A Python >= 3.11 that every user can run."""
    for candidate in BASE_PYTHONS:
        version = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True, text=True, check=False,
        ) if os.access(candidate, os.X_OK) else None  # fmt: skip
        if version is not None and version.stdout.strip() == "True":
            return candidate
    raise RuntimeError(f"no Python >= 3.11 that every user can run among {BASE_PYTHONS}")


@cache
def _shared_env() -> Path:
    """Built once per set of dependencies; the crawlhub package refreshed once per source."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = sorted(project["dependencies"])
    base = base_python()
    key = hashlib.sha256("\n".join([base, *requirements]).encode()).hexdigest()[:16]
    ENV_ROOT.mkdir(mode=0o755, exist_ok=True)
    env = ENV_ROOT / key
    with open(ENV_ROOT / ".lock", "w") as lock:  # pytest-xdist workers build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (env / ".complete").exists():
            shutil.rmtree(env, ignore_errors=True)
            subprocess.run([base, "-m", "venv", "--without-pip", str(env)], check=True)
            subprocess.run(
                [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"),
                 "install", "--quiet", "--disable-pip-version-check", *requirements],
                check=True,
            )  # fmt: skip
            (env / ".complete").touch()
        _copy_package(env)
    return env


def _copy_package(env: Path) -> None:
    source = REPO / "crawlhub"
    digest = hashlib.sha256()
    files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    marker = env / ".crawlhub-source"
    if marker.exists() and marker.read_text() == digest.hexdigest():
        return
    site = next((env / "lib").glob("python3.*/site-packages"))
    shutil.rmtree(site / "crawlhub", ignore_errors=True)
    shutil.copytree(source, site / "crawlhub", ignore=shutil.ignore_patterns("__pycache__"))
    # Byte-compiled as an install would be: spiders run with PYTHONDONTWRITEBYTECODE.
    python = env / "bin" / "python"
    subprocess.run([python, "-m", "compileall", "-q", site / "crawlhub"], check=True)
    for path in (site / "crawlhub").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    marker.write_text(digest.hexdigest())
