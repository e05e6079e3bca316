"""The HTTP client behind CrawlHub's command-line client commands."""

import contextlib
import http.client
import io
import itertools
import json as _json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crawlhub.errors import CrawlhubError

# Directories a project tree carries that a spider never needs.
SKIP_DIRS = {
    ".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "node_modules",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".idea", ".vscode",
}  # fmt: skip
SKIP_SUFFIXES = (".pyc", ".pyo")
STREAM_RECONNECTS = 5  # a followed log survives this many dropped connections


class ApiError(CrawlhubError):
    """The server answered with an error envelope (or not at all)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message, details=details, code=code)
        self.http_status = status


@dataclass
class Package:
    """What `deploy` uploads: a file name, its bytes and the spider kind it looks like."""

    filename: str
    data: bytes
    kind: str


class Client:
    """A thin client of the /api routes on the standard library (a command starts in tens of
    milliseconds: no HTTP library to import)."""

    def __init__(self, url: str, token: str | None, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise CrawlhubError(f"the CrawlHub URL must start with http:// or https://: {url!r}")
        self.base_url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout

    def _open(
        self, method: str, path: str, *, params: dict[str, Any] | None = None,
        body: bytes | None = None, headers: dict[str, str] | None = None,
        timeout: float | None = -1.0,
    ) -> Any:  # fmt: skip
        """The open response of a request; an error envelope becomes an ApiError."""
        query = urllib.parse.urlencode(
            [(k, v) for k, v in (params or {}).items() if v is not None], doseq=True
        )
        # Names and ids given on the command line go into the path: each part is quoted (a
        # Scrapyd job id may hold any character but `/`).
        path = "/".join(urllib.parse.quote(part, safe="") for part in path.split("/"))
        url = f"{self.base_url}{path}{'?' + query if query else ''}"
        # An http(s) URL: checked in __init__.
        request = urllib.request.Request(url, data=body, method=method,  # noqa: S310
                                         headers={**self.headers, **(headers or {})})  # fmt: skip
        try:
            return urllib.request.urlopen(  # noqa: S310
                request, timeout=self.timeout if timeout == -1.0 else timeout
            )
        except urllib.error.HTTPError as exc:
            with exc:
                error = _api_error(exc.code, exc.read())
            if exc.code == 401:
                error.message += self._login_hint()
            raise error from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(0, "unreachable", f"cannot reach {self.base_url}: {reason}") from None

    def _login_hint(self) -> str:
        if not self.headers:
            return (
                f" — no token for {self.base_url} here: run `crawlhub login "
                f"{self.base_url}` once (it stores the server and its token), pass --token or "
                "CRAWLHUB_TOKEN, or run from the folder holding crawlhub-data/api-token"
            )
        return (f" — {self.base_url} refused the token: `crawlhub login {self.base_url}` "
                "stores another")  # fmt: skip

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None,
        json: Any = None, files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> Any:  # fmt: skip
        """Send a request and return its JSON answer (None when empty)."""
        body, headers = None, {}
        if files is not None:
            body, kind = _multipart(files)
            headers["Content-Type"] = kind
        elif json is not None:
            body = _json.dumps(json).encode()
            headers["Content-Type"] = "application/json"
        with self._open(method, path, params=params, body=body, headers=headers) as response:
            content = response.read()
        return _json.loads(content) if content else None

    def download(
        self, path: str, params: dict[str, Any], dest: Path, progress: "Callable[[bytes], None]"
    ) -> tuple[int, str | None]:
        """Stream a response body into dest; returns its size and the server's file name."""
        with self._open("GET", path, params=params, timeout=None) as response:
            disposition = response.headers.get("content-disposition", "")
            name = disposition.split('filename="')[-1].rstrip('"') if "filename=" in disposition \
                else None  # fmt: skip
            size = 0
            try:
                with dest.open("wb") as out:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        size += len(chunk)
                        progress(chunk)
            except OSError as exc:
                raise ApiError(0, "unreachable", f"download broke: {exc}") from exc
            return size, name

    def events(self, path: str, method: str = "GET", **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """Server-sent events of a stream as (event, data); resumes with Last-Event-ID on drops."""
        last_id: str | None = None
        for attempt in range(STREAM_RECONNECTS + 1):
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with self._open(method, path, headers=headers, timeout=None, **kwargs) as r:
                    lines = (raw.decode("utf-8", "replace").rstrip("\r\n") for raw in r)
                    for event_id, kind, data in parse_sse(lines):
                        if event_id is not None:
                            last_id = event_id
                        yield kind, data
                        if kind == "status":
                            return
                return
            except (OSError, http.client.HTTPException, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.http_status != 0:
                    raise
                if attempt == STREAM_RECONNECTS or method != "GET":
                    raise ApiError(0, "unreachable", f"stream broke: {exc}") from exc
                time.sleep(1)

    def deploy(
        self, package: Package, name: str, *, entry: str | None = None, kind: str | None = None,
        project: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], bool]:  # fmt: skip
        """Create the spider if needed (in `project`, made if missing, else in a project of
        its own name), upload the package as the next version of its project, then apply the
        entry and kind given. A refused upload leaves things as they were: a spider or a
        project created for it is deleted again, a changed kind changed back."""
        created, undo, made_project = False, {}, None
        try:
            spider = self._named("spiders", name)
        except ApiError as exc:
            if exc.http_status != 404:
                raise
            body: dict[str, Any] = {"name": name, "kind": kind or package.kind}
            if entry:
                body["entry"] = entry
            if project is not None:
                made_project = self._project_for(project, body["kind"])
                body["project"] = project
            try:
                spider = self.request("POST", "/api/spiders", json=body)
            except ApiError:
                self._forget_project(made_project)
                raise
            created = True
        else:
            if project is not None and project != spider["project"]:
                raise CrawlhubError(f"spider {name} is in project {spider['project']}, not "
                                    f"{project}: deploy it without --project, or under another "
                                    "--name")  # fmt: skip
            if kind is not None and kind != spider["kind"]:
                undo = {"kind": spider["kind"], "entry": spider["entry"]}
                change = {"kind": kind, "entry": entry or spider["entry"]}
                spider = self.request("PATCH", f"/api/spiders/{spider['id']}", json=change)
        files = {"file": (package.filename, package.data, "application/octet-stream")}
        try:
            version = self.request("POST", f"/api/spiders/{spider['id']}/versions", files=files)
        except ApiError:
            with contextlib.suppress(ApiError):
                if created:
                    self.request("DELETE", f"/api/spiders/{spider['id']}")
                elif undo:
                    self.request("PATCH", f"/api/spiders/{spider['id']}", json=undo)
            self._forget_project(made_project)
            raise
        if entry and entry != spider["entry"]:  # checked against the version just uploaded
            spider = self.request("PATCH", f"/api/spiders/{spider['id']}", json={"entry": entry})
        return spider, version, created

    def _project_for(self, name: str, kind: str) -> str | None:
        """Make sure a project of this name exists; its id when it was made here."""
        try:
            self._named("projects", name)
            return None
        except ApiError as exc:
            if exc.http_status != 404:
                raise
        return str(self.request("POST", "/api/projects", json={"name": name, "kind": kind})["id"])

    def _named(self, kind: str, name: str) -> Any:
        """The spider or project of this name (a 404 when none is: the API would also take
        a name that looks like an id's first characters for that id)."""
        found = self.request("GET", f"/api/{kind}/{name}")
        if found["name"] != name:
            raise ApiError(404, "not_found", f"{kind[:-1]} '{name}' not found")
        return found

    def _forget_project(self, project_id: str | None) -> None:
        if project_id is not None:
            with contextlib.suppress(ApiError):
                self.request("DELETE", f"/api/projects/{project_id}")

    def deploy_project(
        self, package: Package, name: str
    ) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """Create the project if needed and upload the package as its next version; a
        project created for a refused upload is deleted again."""
        created = False
        try:
            project = self._named("projects", name)
        except ApiError as exc:
            if exc.http_status != 404:
                raise
            body = {"name": name, "kind": package.kind}
            project = self.request("POST", "/api/projects", json=body)
            created = True
        files = {"file": (package.filename, package.data, "application/octet-stream")}
        try:
            version = self.request("POST", f"/api/projects/{project['id']}/versions", files=files)
        except ApiError:
            if created:
                with contextlib.suppress(ApiError):
                    self.request("DELETE", f"/api/projects/{project['id']}")
            raise
        return project, version, created

    def settled_version(self, project: str, number: int, timeout_s: float) -> dict[str, Any]:
        """A version once its environment is no longer building (or as it is at timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            version: dict[str, Any] = self.request(
                "GET", f"/api/projects/{project}/versions/{number}"
            )
            if version["environment"]["status"] != "building" or time.monotonic() > deadline:
                return version
            time.sleep(0.5)


def _api_error(status: int, content: bytes) -> ApiError:
    try:
        error = _json.loads(content)["error"]
        return ApiError(status, error["code"], error["message"], error.get("details"))
    except (ValueError, KeyError, TypeError):
        text = content.decode("utf-8", "replace")[:500]
        return ApiError(status, "http_error", text or f"HTTP {status}")


def _multipart(files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for field, (filename, data, kind) in files.items():
        quoted = filename.replace("\\", "_").replace('"', "_")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{quoted}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str | None, str, Any]]:
    """(id, event, JSON data) of each frame in an event stream."""
    event_id: str | None = None
    kind = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event_id, kind, _json.loads("\n".join(data))
            event_id, kind, data = None, "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event_id = value
            elif name == "event":
                kind = value
            elif name == "data":
                data.append(value)


def build_package(path: Path, kind: str | None = None) -> Package:
    """Zip a project directory, or take a .py / .zip / .tar.gz file as it is."""
    if path.is_dir():
        data = zip_directory(path)
        guessed = "scrapy" if (path / "scrapy.cfg").is_file() else "python"
        return Package(f"{path.resolve().name or 'package'}.zip", data, kind or guessed)
    if not path.is_file():
        raise CrawlhubError(f"{path}: no such file or directory")
    data = path.read_bytes()
    if path.suffix == ".py":
        return Package(path.name, data, kind or "python")
    guessed = "python"
    if path.suffix == ".zip":
        # Not a zip: the server says what is wrong with it.
        with contextlib.suppress(zipfile.BadZipFile), zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = {name.split("/", 1)[-1] for name in archive.namelist()} | set(
                archive.namelist()
            )
            guessed = "scrapy" if "scrapy.cfg" in names else "python"
    return Package(path.name, data, kind or guessed)


def zip_directory(root: Path) -> bytes:
    """The files under root as a zip, paths relative to root; links and caches left out."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for filename in sorted(filenames):
                file = Path(dirpath, filename)
                if file.is_symlink() or not file.is_file() or filename.endswith(SKIP_SUFFIXES):
                    continue
                archive.write(file, file.relative_to(root).as_posix())
    return buffer.getvalue()


def every(api: Client, path: str, params: dict[str, Any] | None = None,
          page_size: int = 100) -> list[Any]:  # fmt: skip
    """Every item of a paged API list, page after page."""
    found: list[Any] = []
    for number in itertools.count(1):
        page = api.request("GET", path, params={**(params or {}), "page": number,
                                                "page_size": page_size})  # fmt: skip
        found += page["items"]
        total = page.get("total")
        if len(page["items"]) < page_size or (total is not None and len(found) >= total):
            return found
    return found
