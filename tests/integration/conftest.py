"""Fixtures shared by the integration tests."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Hub, running_hub


@pytest.fixture
def pg_hub(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Hub]:
    """CrawlHub on PostgreSQL and Redis with worker threads, driven through a TestClient."""
    with running_hub(pg_url, tmp_path, redis_url) as running:
        yield running
