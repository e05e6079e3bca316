"""Projects: what is deployed, with its versions and their environments; spiders are entries

Each spider becomes a project of the same name (and id) holding that one spider, with the
spider's versions, which keep their numbers, so every task's `version` still names the code
it ran. Versions uploaded before this run on the platform's environment, as they did.

Revision ID: 0007
Revises: 0006

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
VERSION_COLUMNS = "id, number, archive, format, filename, sha256, size, files, created_at"


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "project",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project")),
        sa.UniqueConstraint("name", name=op.f("uq_project_name")),
    )
    op.create_index(op.f("ix_project_created_at"), "project", ["created_at"])
    op.execute(
        "INSERT INTO project (id, name, kind, current_version, created_at, updated_at) "
        "SELECT id, name, kind, current_version, created_at, updated_at FROM spider"
    )
    with op.batch_alter_table("spider") as batch:
        batch.add_column(sa.Column("project_id", sa.Uuid(), nullable=True))
    op.execute("UPDATE spider SET project_id = id")
    with op.batch_alter_table("spider") as batch:
        batch.alter_column("project_id", existing_type=sa.Uuid(), nullable=False)
        batch.create_foreign_key(op.f("fk_spider_project_id_project"), "project",
                                 ["project_id"], ["id"], ondelete="CASCADE")  # fmt: skip
        batch.create_index(op.f("ix_spider_project_id"), ["project_id"])
        batch.drop_column("current_version")

    op.create_table(
        "project_version",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("archive", sa.LargeBinary(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("spiders", JSON, nullable=True),
        sa.Column("requirements", sa.Text(), nullable=True),
        sa.Column("env_key", sa.String(length=64), nullable=True),
        sa.Column("env_status", sa.String(length=16), nullable=False),
        sa.Column("env_log", sa.Text(), nullable=True),
        sa.Column("env_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_project_version_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_version")),
        sa.UniqueConstraint(
            "project_id", "number", name=op.f("uq_project_version_project_id_number")
        ),
    )
    op.create_index(op.f("ix_project_version_env_key"), "project_version", ["env_key"])
    op.execute(
        f"INSERT INTO project_version ({VERSION_COLUMNS}, project_id, env_status) "  # noqa: S608
        f"SELECT {VERSION_COLUMNS}, spider_id, 'ready' FROM spider_version"
    )
    op.drop_table("spider_version")


def downgrade() -> None:
    """Downgrade schema: each project's versions go back to the spider of the project's name
    (or its first spider); projects and what only they held are gone."""
    op.create_table(
        "spider_version",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("spider_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("archive", sa.LargeBinary(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["spider_id"],
            ["spider.id"],
            name=op.f("fk_spider_version_spider_id_spider"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spider_version")),
        sa.UniqueConstraint("spider_id", "number", name=op.f("uq_spider_version_spider_id_number")),
    )
    with op.batch_alter_table("spider") as batch:
        batch.add_column(sa.Column("current_version", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE spider SET current_version = "
        "(SELECT current_version FROM project WHERE project.id = spider.project_id)"
    )
    # Each project's versions go to one of its spiders: the one of its name, else the first.
    op.execute(
        f"INSERT INTO spider_version ({VERSION_COLUMNS}, spider_id) "  # noqa: S608
        f"SELECT {', '.join('v.' + c.strip() for c in VERSION_COLUMNS.split(','))}, s.id "
        "FROM project_version v JOIN spider s ON s.project_id = v.project_id "
        "WHERE s.id = (SELECT s2.id FROM spider s2 JOIN project p ON p.id = s2.project_id "
        "WHERE s2.project_id = v.project_id ORDER BY (s2.name = p.name) DESC, s2.created_at "
        "LIMIT 1)"
    )
    op.drop_table("project_version")
    with op.batch_alter_table("spider") as batch:
        batch.drop_index(op.f("ix_spider_project_id"))
        batch.drop_constraint(op.f("fk_spider_project_id_project"), type_="foreignkey")
        batch.drop_column("project_id")
    op.drop_index(op.f("ix_project_created_at"), table_name="project")
    op.drop_table("project")
