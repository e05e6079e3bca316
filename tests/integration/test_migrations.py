"""Migrations run from empty, round-trip, and match the models on both dialects."""

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from crawlhub.repo import migrate
from crawlhub.repo.db import make_engine
from crawlhub.repo.models import Base
from tests.conftest import service_missing

TABLES = {"spider", "spider_version", "schedule", "task", "log_line", "item", "alert",
          "channel", "delivery"}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('mig') / 'm.db'}")
    else:
        import psycopg

        from tests.conftest import PG_ADMIN

        name = "crawlhub_mig_test"
        try:
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as exc:
            service_missing("PostgreSQL", exc)
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        engine = make_engine(f"{base}/{name}")
    yield engine
    engine.dispose()


def test_upgrade_from_empty_creates_every_table_at_head(empty_engine: Engine) -> None:
    assert migrate.current_revision(empty_engine) is None
    migrate.upgrade(empty_engine)
    assert set(inspect(empty_engine).get_table_names()) >= TABLES
    assert migrate.is_at_head(empty_engine)


def test_migrated_schema_matches_the_models(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_and_upgrade_again_round_trips(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.downgrade(empty_engine, "base")
    assert migrate.current_revision(empty_engine) is None
    assert not TABLES & set(inspect(empty_engine).get_table_names())
    migrate.upgrade(empty_engine)
    assert migrate.is_at_head(empty_engine)


def test_unique_keys_and_indexes_named_in_the_spec_exist(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    inspector = inspect(empty_engine)
    task_uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("task")}
    assert ("schedule_id", "scheduled_for") in task_uniques
    item_uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("item")}
    assert ("spider_id", "dedup_hash") in item_uniques
    schedule_indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("schedule")}
    assert ("next_fire_at",) in schedule_indexes
    version_uniques = {
        tuple(u["column_names"]) for u in inspector.get_unique_constraints("spider_version")
    }
    assert ("spider_id", "number") in version_uniques
