"""Project environments: one virtual environment per distinct requirement set, built with
uv under $CRAWLHUB_DATA_DIR/envs/<key> and shared by every version that needs the same.

The key hashes the normalised requirements (with the platform's Scrapy added for a Scrapy
project that does not pin one), the Python version and the platform. A build happens once
per key and machine: under a file lock, into a staging directory renamed into place when
complete, so a directory named by its key is always whole. A build runs packages' build
scripts, code from the registry: each step runs in the sandbox of a slot, as a spider does
(sandbox/), seeing the interpreter, uv, its staging directory and its own download cache
(one per key: no later build of other requirements trusts what it downloaded), within the
build timeout and the default limits, every process killed when the step ends. The result
is then given to the worker's user, read-only to spiders.

CrawlHub's in-spider runtime (the bootstrap, the SDK, the Scrapy extension: standard library
and Scrapy only) is copied once per CrawlHub release into $CRAWLHUB_DATA_DIR/runtime/<hash>
and put on every spider's PYTHONPATH, so nothing of the server is installed into
environments and no spider needs the worker's own installation of CrawlHub.
"""

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import crawlhub
from crawlhub.config import Settings
from crawlhub.registry import requirements as reqs
from crawlhub.sandbox import spawn
from crawlhub.sandbox.isolation import Isolation
from crawlhub.sandbox.limits import Limits
from crawlhub.sandbox.slots import Slot
from crawlhub.sandbox.views import View

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
    " getattr(sys, '_base_executable', sys.executable), scrapy, sys.prefix, sys.base_prefix]))"
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
    prefixes: tuple[str, ...]  # its installation and virtual environment, shown to spiders

    def paths(self) -> list[Path]:
        """What a process must see to run this interpreter: its installations, and the
        directory of the interpreter the virtual environment links to."""
        return [Path(p) for p in (*self.prefixes, os.path.dirname(self.base))]


@functools.cache
def interpreter(python: str) -> Interpreter:
    """Ask the spider interpreter what it is (once per process). The worker runs it
    itself: it is the operator's, chosen by CRAWLHUB_SPIDER_PYTHON, never uploaded."""
    out = subprocess.run([python, "-I", "-c", _PROBE], capture_output=True, text=True,
                         check=True, timeout=60).stdout  # fmt: skip
    version, platform, base, scrapy, prefix, base_prefix = json.loads(out)
    return Interpreter(version, platform, base, scrapy, tuple(dict.fromkeys([prefix, base_prefix])))


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
    runtime: Path  # CrawlHub's in-spider runtime
    paths: tuple[Path, ...]  # what the spider reads: interpreter, environment, runtime

    def variables(self) -> dict[str, str]:
        """Environment variables of the spider process."""
        return {"PYTHONPATH": str(self.runtime)}


def spider_python(settings: Settings) -> str:
    """The interpreter that starts spiders (and builds their environments)."""
    return str(settings.spider_python or sys.executable)


def platform_runtime(settings: Settings) -> Runtime:
    """The platform's own environment: the spider interpreter with its packages."""
    python = spider_python(settings)
    runtime = runtime_dir(settings)
    return Runtime(python, runtime, (*interpreter(python).paths(), runtime))


def _place(settings: Settings, requirements: str, kind: str) -> tuple[Interpreter, str, Path]:
    """The interpreter, the requirements a build installs, and where the environment lives."""
    python = interpreter(spider_python(settings))
    wanted = with_defaults(requirements, kind, python)
    return python, wanted, envs_root(settings) / key_of(wanted, python)


def _runtime(settings: Settings, python: Interpreter, target: Path) -> Runtime:
    _touch(target / LAST_USED)
    runtime = runtime_dir(settings)
    return Runtime(str(target / "bin" / "python"), runtime, (*python.paths(), target, runtime))


def built(settings: Settings, requirements: str, kind: str) -> Runtime | None:
    """The environment for these requirements when this machine has it (no waiting)."""
    python, _, target = _place(settings, requirements, kind)
    return _runtime(settings, python, target) if target.is_dir() else None


def ensure(
    settings: Settings,
    requirements: str,
    kind: str,
    log: Callable[[str], None],
    sandbox: "Builder",
) -> tuple[str, Runtime]:
    """The environment for these requirements, built now in `sandbox` (logging each line)
    unless it is there already; returns its key and how to run in it. BuildFailed when it
    cannot be."""
    python, wanted, target = _place(settings, requirements, kind)
    root, key = target.parent, target.name
    if not target.is_dir():
        with _locked(root / f".{key}.lock"):
            if target.is_dir():
                log(f"environment {key} was built meanwhile by another run")
            else:
                try:
                    _build(settings, python, wanted, key, log, sandbox)
                except BuildFailed as exc:
                    exc.key = key
                    raise
    return key, _runtime(settings, python, target)


@dataclass(frozen=True)
class Builder:
    """Where a build's steps run: the sandbox of a slot, with these limits."""

    isolation: Isolation
    slot: Slot
    limits: Limits


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
    log: Callable[[str], None], sandbox: Builder,
) -> None:  # fmt: skip
    root = envs_root(settings)
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
        uv = _uv(root, sandbox)
        # One download cache per key: what a build's scripts could tamper with is trusted by
        # no build of other requirements.
        cache = root / ".cache" / key
        cache.mkdir(parents=True, exist_ok=True)
        (root / ".cache").chmod(0o711)
        (staging / "requirements.txt").write_text(requirements + "\n")
        for path in (staging, cache):  # the slot's user builds there, and nowhere else
            sandbox.slot.hand_over(path)
        venv = staging / "venv"
        env = _build_env(settings, staging, cache)
        steps = [
            [uv, "venv", "--quiet", "--relocatable", "--python", python.base, str(venv)],
            [uv, "pip", "install", "--python", str(venv / "bin" / "python"), "--compile-bytecode",
             "-r", str(staging / "requirements.txt")],
        ]  # fmt: skip
        view = View(read_only=(*python.paths(), Path(uv)), writable=(staging, cache),
                    cwd=staging, tmp_mb=sandbox.limits.disk_mb, home=staging)  # fmt: skip
        for number, step in enumerate(steps):
            left = settings.env_build_timeout_s - (time.monotonic() - started)
            spec = spawn.Spec(step, env, view, sandbox.limits, f"build-{key[:12]}-{number}")
            _run(sandbox, spec, left, note)
        _seal(venv)
        venv.rename(root / key)
        note(f"environment {key} ready in {time.monotonic() - started:.1f} s")
    except BuildFailed as exc:
        note(exc.message)
        raise BuildFailed(exc.message, "\n".join(lines)) from None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        note(f"building the environment failed: {exc}")
        raise BuildFailed(f"building the environment failed: {exc}", "\n".join(lines)) from None
    finally:
        _write_log(root / f".{key}.log", "\n".join(lines))
        shutil.rmtree(staging, ignore_errors=True)


def _run(sandbox: Builder, spec: spawn.Spec, timeout_s: float,
         note: Callable[[str], None]) -> None:  # fmt: skip
    """One build step in the sandbox, its output noted line by line; every process it
    started is killed when it ends. BuildFailed naming the error."""
    read, write = os.pipe()
    try:
        proc = spawn.start(sandbox.isolation, sandbox.slot, spec, stdout=write, stderr=write)
    finally:
        os.close(write)
    deadline = time.monotonic() + max(timeout_s, 1)
    output: list[str] = []
    timed_out = False
    try:
        with os.fdopen(read, "rb") as pipe:
            while True:
                ready, _, _ = select.select([pipe], [], [], max(deadline - time.monotonic(), 0))
                if not ready:
                    timed_out = True
                    break
                line = pipe.readline()
                if not line:
                    break
                text = line.decode("utf-8", "replace").rstrip()
                if text.strip():
                    output.append(text)
                    note(text)
        code = None if timed_out else proc.wait(max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        code = None
    finally:
        proc.close()  # a daemon a build script left behind dies here
    if code is None:
        raise BuildFailed(f"the build took longer than {int(timeout_s)} s "
                          "(CRAWLHUB_ENV_BUILD_TIMEOUT_S)", "")  # fmt: skip
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
    env = base_env(home)
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


def _uv(root: Path, sandbox: Builder) -> str:
    """uv's binary: bound read-only into a build's view; without one (mode `users`), a copy
    the slot's users can run."""
    import uv  # only workers that build need it

    source = Path(uv.find_uv_bin()).resolve()
    if sandbox.isolation.bwrap is not None or not sandbox.isolation.switch_user:
        return str(source)
    tools = _shared_dir(root / ".tools")
    copy = tools / "uv"
    if not copy.exists() or copy.stat().st_size != source.stat().st_size:
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


def held(settings: Settings) -> list[str]:
    """The keys of the environments this machine holds (built ones)."""
    root = settings.data_dir / "envs"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


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
            shutil.rmtree(root / ".cache" / path.name, ignore_errors=True)
        (root / f".{path.name}.lock").unlink(missing_ok=True)
        (root / f".{path.name}.log").unlink(missing_ok=True)
        removed.append(path.name)
        logger.info("environment %s deleted: unused for %d days", path.name, settings.env_ttl_days)
    return removed


RUNTIME_FILES = ("__init__.py", "sdk.py", "child/__init__.py", "child/bootstrap.py",
                 "child/launcher.py", "child/scrapy_extension.py")  # fmt: skip


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
        subprocess.run([spider_python(settings), "-I", "-m", "compileall", "-q",
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


def base_env(home: Path) -> dict[str, str]:
    """What every spider process (and build) starts from: nothing of the worker's own."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return env
