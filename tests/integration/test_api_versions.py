"""Uploading spider packages: numbered immutable versions, and every rejection of SPEC §4."""

import hashlib
import io
import stat
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.cli.client import zip_directory
from crawlhub.context import Context
from tests.conftest import TOKEN, make_settings
from tests.unit.test_archive import forge

FIXTURES = Path(__file__).parent.parent / "fixtures" / "spiders"
SCRIPT = b"def run(params):\n    yield {'a': 1}\n"


def make_zip(*entries: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def upload(client: TestClient, data: bytes, filename: str = "pkg.zip", spider: str = "books"):  # type: ignore[no-untyped-def]
    return client.post(f"/api/spiders/{spider}/versions", files={"file": (filename, data)})


@pytest.fixture
def python_spider(client: TestClient) -> None:
    assert client.post("/api/spiders", json={"name": "books"}).status_code == 201


@pytest.fixture
def scrapy_spider(client: TestClient) -> None:
    body = {"name": "pages", "kind": "scrapy"}
    assert client.post("/api/spiders", json=body).status_code == 201


@pytest.mark.usefixtures("python_spider")
def test_uploads_become_numbered_versions_with_their_sha256(client: TestClient) -> None:
    first = upload(client, SCRIPT, "whatever.py")
    assert first.status_code == 201, first.text
    assert first.json()["number"] == 1
    assert first.json()["sha256"] == hashlib.sha256(SCRIPT).hexdigest()
    assert first.json()["format"] == "py" and first.json()["size"] == len(SCRIPT)
    package = make_zip(("main.py", SCRIPT), ("helpers/util.py", b"X = 1\n"))
    second = upload(client, package)
    assert second.status_code == 201, second.text
    assert second.json()["number"] == 2 and second.json()["files"] == 2
    assert client.get("/api/spiders/books").json()["current_version"] == 2
    listed = client.get("/api/spiders/books/versions").json()
    assert [v["number"] for v in listed["items"]] == [2, 1]
    assert listed["items"][0]["sha256"] == hashlib.sha256(package).hexdigest()


@pytest.mark.usefixtures("scrapy_spider")
def test_scrapy_project_directory_and_tarball_are_accepted(client: TestClient) -> None:
    zipped = upload(client, zip_directory(FIXTURES / "pages_scrapy"), spider="pages")
    assert zipped.status_code == 201, zipped.text
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(FIXTURES / "pages_scrapy", arcname="pages_scrapy")  # one top folder: stripped
    tarred = upload(client, buffer.getvalue(), "pages.tar.gz", spider="pages")
    assert tarred.status_code == 201, tarred.text
    assert tarred.json()["number"] == 2 and tarred.json()["format"] == "tar.gz"


@pytest.mark.usefixtures("scrapy_spider")
def test_scrapy_archive_without_scrapy_cfg_is_rejected(client: TestClient) -> None:
    response = upload(client, make_zip(("pages/settings.py", b"")), spider="pages")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_archive"
    assert "scrapy.cfg" in response.json()["error"]["message"]


@pytest.mark.usefixtures("scrapy_spider")
def test_single_py_file_cannot_be_a_scrapy_spider(client: TestClient) -> None:
    assert upload(client, SCRIPT, "s.py", spider="pages").status_code == 422


@pytest.mark.usefixtures("python_spider")
def test_python_archive_without_its_entry_module_is_rejected(client: TestClient) -> None:
    response = upload(client, make_zip(("other.py", SCRIPT)))
    assert response.status_code == 422
    assert "main" in response.json()["error"]["message"]
    assert client.get("/api/spiders/books").json()["current_version"] is None


@pytest.mark.usefixtures("python_spider")
@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../evil.py", "../evil.py"),
        ("/etc/cron.d/x", "/etc/cron.d/x"),
        ("a/../../b.py", "a/../../b.py"),
    ],
)
def test_zip_slip_entries_are_rejected(client: TestClient, name: str, fragment: str) -> None:
    response = upload(client, make_zip(("main.py", SCRIPT), (name, b"x")))
    assert response.status_code == 422
    assert fragment in response.json()["error"]["message"]


@pytest.mark.usefixtures("python_spider")
def test_symlink_entries_are_rejected(client: TestClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("main.py", SCRIPT)
        link = zipfile.ZipInfo("secrets")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    response = upload(client, buffer.getvalue())
    assert response.status_code == 422
    assert "secrets" in response.json()["error"]["message"]


@pytest.mark.usefixtures("python_spider")
def test_too_many_files_are_rejected(database_url: str, tmp_path: Path) -> None:
    context = Context.build(make_settings(tmp_path, database_url=database_url, max_archive_files=5))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(context), headers=headers) as small:
        many = make_zip(("main.py", SCRIPT), *((f"f{n}.py", b"") for n in range(5)))
        response = upload(small, many)
    context.close()
    assert response.status_code == 422
    assert "files" in response.json()["error"]["message"]


@pytest.mark.usefixtures("python_spider")
def test_upload_over_the_size_limit_is_413(database_url: str, tmp_path: Path) -> None:
    context = Context.build(
        make_settings(tmp_path, database_url=database_url, max_upload_bytes=4096)
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(context), headers=headers) as small:
        big = make_zip(("main.py", SCRIPT + b"#" + bytes(range(256)) * 64))
        just_over = upload(small, big)
        way_over = upload(small, b"x" * (200 * 1024), "main.py")
    context.close()
    assert just_over.status_code == 413, just_over.text
    assert just_over.json()["error"]["code"] in ("too_large", "archive_too_large")
    assert way_over.status_code == 413


@pytest.mark.usefixtures("python_spider")
def test_corrupt_or_unsupported_uploads_are_rejected(client: TestClient) -> None:
    assert upload(client, b"PK\x03\x04garbage").status_code == 422
    assert upload(client, b"\x1f\x8b\x08garbage", "x.tar.gz").status_code == 422
    assert upload(client, b"just text", "notes.txt").status_code == 422
    assert upload(client, b"def run(:\n", "main.py").status_code == 422
    assert client.get("/api/spiders/books/versions").json()["total"] == 0


@pytest.mark.usefixtures("python_spider")
def test_zips_with_a_forged_crc_or_size_are_refused_at_upload(client: TestClient) -> None:
    good = make_zip(("main.py", SCRIPT))
    crc = zipfile.ZipFile(io.BytesIO(good)).getinfo("main.py").CRC
    cases = {
        "flipped crc": (forge(good, crc=crc ^ 0x1), "CRC-32"),
        "larger size": (forge(good, size=len(SCRIPT) + 100), f"holds {len(SCRIPT)}"),
        "smaller size": (forge(good, size=len(SCRIPT) - 10), "CRC-32"),
    }
    for case, (data, reason) in cases.items():
        response = upload(client, data)
        assert response.status_code == 422, (case, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_archive", case
        assert "'main.py'" in error["message"] and reason in error["message"], case
        assert "damaged or altered" in error["message"], case
    assert client.get("/api/spiders/books/versions").json()["total"] == 0
    assert upload(client, good).status_code == 201


@pytest.mark.usefixtures("python_spider")
def test_upload_must_be_multipart_with_a_file_field(client: TestClient) -> None:
    wrong_field = client.post("/api/spiders/books/versions", files={"package": ("a.py", SCRIPT)})
    assert wrong_field.status_code == 400
    as_json = client.post("/api/spiders/books/versions", json={"file": "x"})
    assert as_json.status_code == 400
    assert as_json.json()["error"]["code"] == "bad_request"


def test_upload_to_unknown_spider_is_404(client: TestClient) -> None:
    assert upload(client, SCRIPT, "main.py", spider="ghost").status_code == 404


@pytest.mark.usefixtures("python_spider")
def test_hostile_file_names_are_stored_as_a_plain_base_name(client: TestClient) -> None:
    for hostile in ("../../etc/main.py", "..\\..\\main.py", "/abs/main.py"):
        response = upload(client, SCRIPT, hostile)
        assert response.status_code == 201, response.text
        assert response.json()["filename"] == "main.py"


@pytest.mark.usefixtures("python_spider")
def test_concurrent_uploads_get_distinct_numbers(client: TestClient) -> None:
    results: list[int] = []

    def send() -> None:
        response = upload(client, SCRIPT, "main.py")
        assert response.status_code == 201, response.text
        results.append(response.json()["number"])

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    assert client.get("/api/spiders/books").json()["current_version"] == 6


@pytest.mark.usefixtures("python_spider")
def test_changing_entry_is_checked_against_the_current_version(client: TestClient) -> None:
    assert upload(client, make_zip(("main.py", SCRIPT), ("other.py", SCRIPT))).status_code == 201
    assert client.patch("/api/spiders/books", json={"entry": "other:run"}).status_code == 200
    missing = client.patch("/api/spiders/books", json={"entry": "absent:run"})
    assert missing.status_code == 422
    assert client.patch("/api/spiders/books", json={"entry": "not an entry"}).status_code == 422
    assert client.patch("/api/spiders/books", json={"kind": "scrapy"}).status_code == 422
    assert client.get("/api/spiders/books").json()["entry"] == "other:run"
