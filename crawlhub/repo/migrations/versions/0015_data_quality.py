"""data quality: rules per spider and per version, a verdict and statistics per run

A spider's rules (`spider.quality`, set through the API) win over the ones its project
ships in crawlhub.toml (`project_version.quality`, by spider name). A run keeps its verdict
(`task.verdict`: pass, warn, fail; None without rules) and its reasons and per-field
statistics (`task.quality`).

Revision ID: 0015
Revises: 0014

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("spider") as batch:
        batch.add_column(sa.Column("quality", JSON, nullable=True))
    with op.batch_alter_table("project_version") as batch:
        batch.add_column(sa.Column("quality", JSON, nullable=True))
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("verdict", sa.String(8), nullable=True))
        batch.add_column(sa.Column("quality", JSON, nullable=True))
    op.create_index("ix_task_verdict_created_at", "task", ["verdict", "created_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_task_verdict_created_at", table_name="task")
    with op.batch_alter_table("task") as batch:
        batch.drop_column("quality")
        batch.drop_column("verdict")
    with op.batch_alter_table("project_version") as batch:
        batch.drop_column("quality")
    with op.batch_alter_table("spider") as batch:
        batch.drop_column("quality")
