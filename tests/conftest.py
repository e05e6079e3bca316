"""Shared fixtures: real PostgreSQL and Redis (skipped locally when down, failing in CI)."""

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.config import Settings, load_settings
from crawlhub.context import Context
from crawlhub.repo import migrate
from crawlhub.repo.db import make_engine
from crawlhub.repo.models import Base

PG_ADMIN = os.environ.get("CRAWLHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CRAWLHUB_TEST_REDIS", "redis://127.0.0.1:6379/15")
TOKEN = "test-token-0123456789"
IN_CI = bool(os.environ.get("CI"))


@pytest.fixture
def tmp_path(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A test's own directory, which the spiders of its CrawlHub may write too (make_settings
    binds it into their sandbox as CRAWLHUB_SANDBOX_WRITABLE): gate and marker files. The
    data dir and database of that CrawlHub are beside it, out of the spiders' sight."""
    base = tmp_path_factory.mktemp(re.sub(r"\W", "_", request.node.name)[:30], numbered=True)
    shared = base / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # spiders run as slot users
    return shared


def service_missing(name: str, exc: Exception) -> None:
    """Skip a test whose service is down, except in CI where that is a failure."""
    message = f"{name} is not reachable: {exc}"
    if IN_CI:
        pytest.fail(f"{message} (CI must run every service test)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    name = f"crawlhub_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL", exc)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> str:
    """A Redis database reserved for tests, emptied before use."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        service_missing("Redis", exc)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'crawlhub.db'}"
    migrate_once(url)
    return url


@pytest.fixture(scope="session")
def migrated_postgres(postgres_url: str) -> str:
    migrate_once(postgres_url)
    return postgres_url


def migrate_once(url: str) -> None:
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database of each dialect, emptied after the test."""
    url: str = request.getfixturevalue(
        f"migrated_{'postgres' if request.param == 'postgresql' else request.param}"
    )
    yield url
    empty_tables(url)


@pytest.fixture
def pg_url(migrated_postgres: str) -> Iterator[str]:
    """The migrated PostgreSQL database, emptied after the test."""
    yield migrated_postgres
    empty_tables(migrated_postgres)


def empty_tables(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test, isolated from the developer's environment: its spiders may write
    to `tmp_path`, beside the data dir (tmp_path fixture)."""
    values: dict[str, Any] = {
        "database_url": "sqlite:///" + str(tmp_path.parent / "unused.db"),
        "api_tokens": TOKEN,
        "data_dir": tmp_path.parent / "data",
        "redis_url": None,
        "sandbox_writable": str(tmp_path),
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def context(database_url: str, tmp_path: Path) -> Iterator[Context]:
    """A process context on each database dialect, with the in-process broker."""
    ctx = Context.build(make_settings(tmp_path, database_url=database_url))
    yield ctx
    ctx.close()


@pytest.fixture
def client(context: Context) -> Iterator[TestClient]:
    """An API client carrying a valid token."""
    with TestClient(
        create_app(context), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as test_client:
        yield test_client


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Kill any crawlhub process a failed test left running: a stray worker on the shared
    Redis database would take the next tests' messages."""
    yield
    from tests.integration.test_processes import Process

    for process in Process.started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a skipped test is a failed one: every service must be there."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI: {report.longrepr}"
