"""project members (a role per project), tokens limited to projects

A user's role is the role it has on every project (`none`: no project unless made a
member); a membership gives one project a higher role. A personal token may be limited to
some projects.

Revision ID: 0014
Revises: 0013

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "project_member",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("project_id", "user_id", name="pk_project_member"),
        sa.ForeignKeyConstraint(["project_id"], ["project.id"], ondelete="CASCADE",
                                name="fk_project_member_project_id_project"),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], ondelete="CASCADE",
                                name="fk_project_member_user_id_app_user"),
    )  # fmt: skip
    op.create_index("ix_project_member_user_id", "project_member", ["user_id"])
    with op.batch_alter_table("api_token") as batch:
        batch.add_column(sa.Column("project_ids", JSON, nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("api_token") as batch:
        batch.drop_column("project_ids")
    op.drop_index("ix_project_member_user_id", table_name="project_member")
    op.drop_table("project_member")
