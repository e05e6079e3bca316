"""Migrations run from empty, round-trip, and match the models on both dialects."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from crawlhub.repo import migrate
from crawlhub.repo.db import make_engine
from crawlhub.repo.models import Base, Item, ProjectVersion, Schedule, Spider, Task
from tests.conftest import service_missing

TABLES = {"project", "spider", "project_version", "schedule", "task", "log_line", "item", "alert",
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
    # Unique per spider among items with a hash: a partial unique index (0019).
    item_uniques = {tuple(i["column_names"]) for i in inspector.get_indexes("item") if i["unique"]}
    assert ("spider_id", "dedup_hash") in item_uniques
    schedule_indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("schedule")}
    assert ("next_fire_at",) in schedule_indexes
    version_uniques = {
        tuple(u["column_names"]) for u in inspector.get_unique_constraints("project_version")
    }
    assert ("project_id", "number") in version_uniques


def test_spiders_become_projects_with_their_versions_runs_schedules_and_items(
    empty_engine: Engine,
) -> None:
    """Data written by the schema before projects (0006) survives the migration: each spider
    is a project of its name holding it, with its versions; runs, schedules, items stay."""
    migrate.upgrade(empty_engine, "0006")
    spider, other = uuid.uuid4(), uuid.uuid4()
    task, schedule = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    with empty_engine.begin() as conn:
        for sid, name, kind, current in ((spider, "books", "scrapy", 2),
                                         (other, "quotes", "python", None)):  # fmt: skip
            conn.execute(text(
                "INSERT INTO spider (id, name, kind, entry, params, env, timeout_s, max_retries,"
                " retry_backoff_min_s, retry_backoff_max_s, alert_on_zero_items, enabled,"
                " current_version, created_at, updated_at) VALUES (:id, :name, :kind, :entry,"
                " '{}', '{}', 60, 3, 10, 600, false, true, :current, :now, :now)"
            ), {"id": _id(empty_engine, sid), "name": name, "kind": kind, "entry": name,
                "current": current, "now": now})  # fmt: skip
        for number in (1, 2):
            conn.execute(text(
                "INSERT INTO spider_version (id, spider_id, number, archive, format, filename,"
                " sha256, size, files, created_at) VALUES (:id, :spider, :n, :archive, 'zip',"
                " 'books.zip', :sha, 3, 1, :now)"
            ), {"id": _id(empty_engine, uuid.uuid4()), "spider": _id(empty_engine, spider),
                "n": number, "archive": b"v%d" % number, "sha": f"{number:064d}",
                "now": now})  # fmt: skip
        conn.execute(text(
            "INSERT INTO schedule (id, spider_id, cron, timezone, params, settings, enabled,"
            " overlap, catchup, jitter_s, created_at, updated_at) VALUES (:id, :spider,"
            " '0 * * * *', 'Europe/Paris', '{}', '{}', true, 'forbid', 'latest', 0, :now, :now)"
        ), {"id": _id(empty_engine, schedule), "spider": _id(empty_engine, spider),
            "now": now})  # fmt: skip
        conn.execute(text(
            "INSERT INTO task (id, spider_id, version, schedule_id, trigger, params, settings,"
            " status, retry_count, max_retries, items_count, items_duplicate, items_invalid,"
            " log_lines, fence, created_at) VALUES (:id, :spider, 2, :schedule, 'schedule',"
            " '{}', '{}', 'completed', 0, 3, 1, 0, 0, 0, 1, :now)"
        ), {"id": _id(empty_engine, task), "spider": _id(empty_engine, spider),
            "schedule": _id(empty_engine, schedule), "now": now})  # fmt: skip
        conn.execute(text(
            "INSERT INTO item (spider_id, task_id, attempt, data, created_at) VALUES"
            " (:spider, :task, 1, :data, :now)"
        ), {"spider": _id(empty_engine, spider), "task": _id(empty_engine, task),
            "data": '{"title": "kept"}', "now": now})  # fmt: skip

    migrate.upgrade(empty_engine)

    with Session(empty_engine) as session:
        books = session.scalars(select(Spider).where(Spider.name == "books")).one()
        assert books.project.name == "books" and books.project.kind == "scrapy"
        assert books.project_id == spider and books.current_version == 2
        versions = session.scalars(
            select(ProjectVersion).where(ProjectVersion.project_id == books.project_id)
            .order_by(ProjectVersion.number)
        ).all()  # fmt: skip
        assert [(v.number, v.archive, v.env_status, v.env_key) for v in versions] == [
            (1, b"v1", "ready", None),
            (2, b"v2", "ready", None),
        ]
        quotes = session.scalars(select(Spider).where(Spider.name == "quotes")).one()
        assert quotes.project.name == "quotes" and quotes.current_version is None
        assert session.get(Task, task).spider_id == spider  # type: ignore[union-attr]
        kept = session.get(Schedule, schedule)
        assert kept is not None and kept.timezone == "Europe/Paris"
        assert session.scalars(select(Item.data).where(Item.task_id == task)).all() == [
            {"title": "kept"}
        ]
    # And back: the versions return to their spider.
    migrate.downgrade(empty_engine, "0006")
    with empty_engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.name, s.current_version, v.number FROM spider_version v"
            " JOIN spider s ON s.id = v.spider_id ORDER BY v.number"
        )).all()  # fmt: skip
        assert [tuple(r) for r in rows] == [("books", 2, 1), ("books", 2, 2)]
        assert conn.execute(text("SELECT count(*) FROM item")).scalar() == 1


def _id(engine: Engine, value: uuid.UUID) -> str:
    """A uuid as each dialect's Uuid column stores it in a raw statement."""
    return value.hex if engine.dialect.name == "sqlite" else str(value)
