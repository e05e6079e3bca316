"""Project environments: one virtual environment per distinct requirement set, built with
uv under $CRAWLHUB_DATA_DIR/envs/<key> and shared by every version that needs the same.

The key hashes the normalised requirements (with the platform's Scrapy added for a Scrapy
project that does not pin one), the Python version and the platform. A build happens once
per key and machine: under a file lock, into a staging directory renamed into place when
complete, so a directory named by its key is always whole. Where spiders run as their own
user, builds do too (a package's build scripts are code from the registry), and the result
is then given to the worker's user, read-only to spiders.

CrawlHub's in-spider runtime (the bootstrap, the SDK, the Scrapy extension: standard library
and Scrapy only) is copied once per CrawlHub release into $CRAWLHUB_DATA_DIR/runtime/<hash>
and put on the spider's PYTHONPATH, so nothing of the server is installed into environments.
"""

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import crawlhub
from crawlhub.config import Settings
from crawlhub.execution import sandbox
from crawlhub.packages import requirements as reqs

logger = logging.getLogger(__name__)

LAST_USED = ".crawlhub-last-used"
LOG_TAIL_LINES = 40
# Passed on to builds from the worker's environment: how to reach the registry.
NETWORK_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                     "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")  # fmt: skip
_PROBE = (
    "import json, sys, sysconfig\n"
    "try:\n    from importlib.metadata import version; scrapy = version('scrapy')\n"
    "except Exception:\n    scrapy = None\n"
    "print(json.dumps([sys.version.split()[0], sysconfig.get_platform(),"
    " getattr(sys, '_base_executable', sys.executable), scrapy]))"
)


class BuildFailed(Exception):
    """An environment could not be built; `log` tells why."""

    def __init__(self, message: str, log: str, key: str | None = None) -> None:
        super().__init__(message)
        self.message, self.log, self.key = message, log, key


@dataclass(frozen=True)
class Interpreter:
    """The Python spiders run on, as environments are built for it."""

    version: str
    platform: str
    base: str  # the interpreter itself, not a virtual environment's link to it
    scrapy: str | None  # the platform's Scrapy


@functools.cache
def interpreter(python: str) -> Interpreter:
    """Ask the spider interpreter what it is (once per process)."""
    out = subprocess.run([python, "-I", "-c", _PROBE], capture_output=True, text=True,
                         check=True, timeout=60).stdout  # fmt: skip
    version, platform, base, scrapy = json.loads(out)
    return Interpreter(version, platform, base, scrapy)


def with_defaults(requirements: str, kind: str, python: Interpreter) -> str:
    """The requirements a build installs: a Scrapy project that does not ask for Scrapy gets
    the platform's."""
    if kind == "scrapy" and python.scrapy and "scrapy" not in reqs.names(requirements):
        return "\n".join(sorted([*requirements.splitlines(), f"scrapy=={python.scrapy}"]))
    return requirements


def key_of(requirements: str, python: Interpreter) -> str:
    """The environment's name: equal needs on an equal interpreter share one."""
    text = f"{python.version}\n{python.platform}\n{requirements}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Runtime:
    """What a spider process runs on: an interpreter and what must be importable."""

    python: str
    runtime: Path | None = None  # CrawlHub's in-spider runtime, when not installed
    environment: Path | None = None  # the project environment, when it has one

    def variables(self) -> dict[str, str]:
        """Environment variables of the spider process."""
        return {"PYTHONPATH": str(self.runtime)} if self.runtime else {}

    def shown(self) -> list[Path]:
        """Directories below the data dir the spider must still read."""
        return [p for p in (self.environment, self.runtime) if p is not None]


def platform_runtime(settings: Settings) -> Runtime:
    """The platform's own environment (CrawlHub installed in it)."""
    return Runtime(sandbox.spider_python(settings))


def _place(settings: Settings, requirements: str, kind: str) -> tuple[Interpreter, str, Path]:
    """The interpreter, the requirements a build installs, and where the environment lives."""
    python = interpreter(sandbox.spider_python(settings))
    wanted = with_defaults(requirements, kind, python)
    return python, wanted, envs_root(settings) / key_of(wanted, python)


def _runtime(settings: Settings, target: Path) -> Runtime:
    _touch(target / LAST_USED)
    return Runtime(str(target / "bin" / "python"), runtime_dir(settings), target)


def built(settings: Settings, requirements: str, kind: str) -> Runtime | None:
    """The environment for these requirements when this machine has it (no waiting)."""
    _, _, target = _place(settings, requirements, kind)
    return _runtime(settings, target) if target.is_dir() else None


def ensure(
    settings: Settings, requirements: str, kind: str, log: Callable[[str], None]
) -> tuple[str, Runtime]:
    """The environment for these requirements, built now (logging each line) unless it is
    there already; returns its key and how to run in it. BuildFailed when it cannot be."""
    python, wanted, target = _place(settings, requirements, kind)
    root, key = target.parent, target.name
    if not target.is_dir():
        with _locked(root / f".{key}.lock"):
            if target.is_dir():
                log(f"environment {key} was built meanwhile by another run")
            else:
                try:
                    _build(settings, python, wanted, key, log)
                except BuildFailed as exc:
                    exc.key = key
                    raise
    return key, _runtime(settings, target)


def envs_root(settings: Settings) -> Path:
    """Where environments live; every user may traverse it, only the worker writes."""
    return _shared_dir(settings.data_dir / "envs")


def _shared_dir(path: Path) -> Path:
    """A directory every user may read and traverse (whatever the worker's umask)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() in (0, path.stat().st_uid):
        path.chmod(0o755)
    return path


def build_log(settings: Settings, key: str) -> str | None:
    """The log of this machine's last build of an environment."""
    path = envs_root(settings) / f".{key}.log"
    return path.read_text(errors="replace") if path.exists() else None


def _build(
    settings: Settings, python: Interpreter, requirements: str, key: str,
    log: Callable[[str], None],
) -> None:  # fmt: skip
    root = envs_root(settings)
    identity = sandbox.spider_identity(settings.spider_user)
    staging = Path(tempfile.mkdtemp(prefix=f".build-{key[:8]}-", dir=root))
    lines: list[str] = []

    def note(line: str) -> None:
        lines.append(line)
        log(line)

    started = time.monotonic()
    note(f"building environment {key} on Python {python.version} ({python.platform}) for:")
    for line in requirements.splitlines():
        note(f"  {line}")
    try:
        uv = _uv_for(root, identity)
        cache = root / ".cache"
        cache.mkdir(mode=0o700, exist_ok=True)
        (staging / "requirements.txt").write_text(requirements + "\n")
        if identity is not None:  # the build runs as the spider user, in its own places
            for path in (staging, staging / "requirements.txt", cache):
                os.chown(path, identity.uid, identity.gid)
        venv = staging / "venv"
        env = _build_env(settings, staging, cache)
        steps = [
            [uv, "venv", "--quiet", "--relocatable", "--python", python.base, str(venv)],
            [uv, "pip", "install", "--python", str(venv / "bin" / "python"), "--compile-bytecode",
             "-r", str(staging / "requirements.txt")],
        ]  # fmt: skip
        for step in steps:
            _run(step, env, identity, settings.env_build_timeout_s - (time.monotonic() - started),
                 note)  # fmt: skip
        _seal(venv)
        venv.rename(root / key)
        note(f"environment {key} ready in {time.monotonic() - started:.1f} s")
    except BuildFailed as exc:
        note(exc.message)
        raise BuildFailed(exc.message, "\n".join(lines)) from None
    except (OSError, subprocess.SubprocessError) as exc:
        note(f"building the environment failed: {exc}")
        raise BuildFailed(f"building the environment failed: {exc}", "\n".join(lines)) from None
    finally:
        _write_log(root / f".{key}.log", "\n".join(lines))
        shutil.rmtree(staging, ignore_errors=True)


def _run(command: list[str], env: dict[str, str], identity: sandbox.SpiderIdentity | None,
         timeout_s: float, note: Callable[[str], None]) -> None:  # fmt: skip
    """One build step, its output noted line by line; BuildFailed naming the error."""
    as_user = {"user": identity.uid, "group": identity.gid, "extra_groups": []} if identity else {}
    proc = subprocess.Popen(command, env=env, cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", umask=0o022, start_new_session=True,
                            **as_user)  # type: ignore[call-overload]  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + max(timeout_s, 1)
    output: list[str] = []
    with proc.stdout:
        for line in proc.stdout:
            if line.strip():
                output.append(line.rstrip())
                note(output[-1])
            if time.monotonic() > deadline:
                break
    try:
        code = proc.wait(max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()
        raise BuildFailed(f"the build took longer than {int(timeout_s)} s "
                          "(CRAWLHUB_ENV_BUILD_TIMEOUT_S)", "") from None  # fmt: skip
    if code != 0:
        raise BuildFailed(f"installing the requirements failed: {_error_of(output, code)}", "")


def _error_of(output: list[str], code: int) -> str:
    """uv's error, on one line: from its first error line (`error:` or the cross uv marks
    failures with) to the end, without its tree drawing."""
    marks = ("\u00d7", "error:")
    start = next((i for i, line in enumerate(output) if line.lstrip().startswith(marks)),
                 max(len(output) - 1, 0))  # fmt: skip
    words = " ".join(line.strip(" \u2502\u251c\u2570\u2500\u25b6\u00d7") for line in output[start:])
    return " ".join(words.split())[:1000] or f"exit {code}"


def _build_env(settings: Settings, home: Path, cache: Path) -> dict[str, str]:
    """uv's environment: the operator's index settings, nothing else of the worker's."""
    env = sandbox.base_env(home)
    # UV_NATIVE_TLS: the system's trust store, as pip uses (a TLS-inspecting proxy's CA).
    env.update({"UV_CACHE_DIR": str(cache), "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never",
                "UV_NO_PROGRESS": "1", "UV_LINK_MODE": "copy", "UV_NATIVE_TLS": "1"})  # fmt: skip
    if settings.package_index_url:
        env["UV_DEFAULT_INDEX"] = settings.package_index_url
    if settings.extra_index_url:
        env["UV_INDEX"] = settings.extra_index_url
    if settings.trusted_hosts:
        env["UV_INSECURE_HOST"] = settings.trusted_hosts
    env.update({name: os.environ[name] for name in NETWORK_VARIABLES if name in os.environ})
    return env


def _uv_for(root: Path, identity: sandbox.SpiderIdentity | None) -> str:
    """uv's binary, copied where the spider user can run it when builds run as that user."""
    import uv  # only workers that build need it

    source = Path(uv.find_uv_bin())
    if identity is None:
        return str(source)
    tools = _shared_dir(root / ".tools")
    copy = tools / "uv"
    stat = source.stat()
    if not copy.exists() or copy.stat().st_size != stat.st_size:
        partial = tools / f".uv-{os.getpid()}"
        shutil.copyfile(source, partial)
        partial.chmod(0o755)
        partial.rename(copy)
    return str(copy)


def _seal(venv: Path) -> None:
    """The built environment becomes the worker's, readable and not writable by spiders."""
    uid, gid = os.geteuid(), os.getegid()
    for directory, dirs, files in os.walk(venv):
        for name in [*dirs, *files]:
            path = os.path.join(directory, name)
            os.lchown(path, uid, gid)
            if not os.path.islink(path):
                os.chmod(path, (os.lstat(path).st_mode & 0o755) | 0o444)
        os.lchown(directory, uid, gid)
        os.chmod(directory, 0o755)  # noqa: S103  (spiders read it; only the worker writes)


def _write_log(path: Path, text: str) -> None:
    with contextlib.suppress(OSError):
        path.write_text(text + "\n")


@contextlib.contextmanager
def _locked(path: Path):  # type: ignore[no-untyped-def]
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.touch()


def collect(settings: Settings, keep: set[str]) -> list[str]:
    """Delete environments not in `keep` that no run used for CRAWLHUB_ENV_TTL_DAYS; their
    keys. Taken under each one's lock, so a build or start in progress is never cut."""
    root = envs_root(settings)
    horizon = time.time() - settings.env_ttl_days * 86_400
    removed = []
    for path in root.iterdir():
        if path.name.startswith(".") or path.name in keep or not path.is_dir():
            continue
        used = path / LAST_USED
        last = used.stat().st_mtime if used.exists() else path.stat().st_mtime
        if last >= horizon:
            continue
        with _locked(root / f".{path.name}.lock"):
            shutil.rmtree(path, ignore_errors=True)
        (root / f".{path.name}.lock").unlink(missing_ok=True)
        (root / f".{path.name}.log").unlink(missing_ok=True)
        removed.append(path.name)
        logger.info("environment %s deleted: unused for %d days", path.name, settings.env_ttl_days)
    return removed


RUNTIME_FILES = ("__init__.py", "sdk.py", "child/__init__.py", "child/bootstrap.py",
                 "child/jail.py", "child/launcher.py", "child/scrapy_extension.py")  # fmt: skip


@functools.cache
def _runtime_sources() -> tuple[str, dict[str, bytes]]:
    package = Path(crawlhub.__file__).parent
    files = {name: (package / name).read_bytes() for name in RUNTIME_FILES}
    digest = hashlib.sha256(b"".join(name.encode() + data for name, data in files.items()))
    return digest.hexdigest()[:16], files


def runtime_dir(settings: Settings) -> Path:
    """CrawlHub's in-spider runtime for project environments, made once per release."""
    digest, files = _runtime_sources()
    target = settings.data_dir / "runtime" / digest
    if target.is_dir():
        return target
    root = _shared_dir(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=".runtime-", dir=root))
    try:
        for name, data in files.items():
            path = staging / "crawlhub" / name
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            path.write_bytes(data)
        subprocess.run([sandbox.spider_python(settings), "-I", "-m", "compileall", "-q",
                        str(staging)], check=False, capture_output=True, timeout=120)  # fmt: skip
        _seal(staging)
        with contextlib.suppress(OSError):  # another worker's identical copy won
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def tail(log: str) -> str:
    """The last lines of a build log, for a run's log or a version's summary."""
    return "\n".join(log.splitlines()[-LOG_TAIL_LINES:])
