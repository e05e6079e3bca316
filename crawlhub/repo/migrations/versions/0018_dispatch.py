"""dispatch: what a run requires of its node, its priority and when it is due (a fire's
jitter), concurrency limits per spider and project, and the index the dispatcher reads held
runs by

Revision ID: 0018
Revises: 0017

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HELD = sa.text("status = 'pending' AND message_id IS NULL")


def upgrade() -> None:
    """Upgrade schema."""
    for table in ("spider", "schedule", "task"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("labels", new_column_name="requires")
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    for table in ("spider", "project"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("max_concurrent_runs", sa.Integer(), nullable=True))
    op.create_index("ix_task_held", "task", ["spider_id", "priority", "created_at"],
                    postgresql_where=HELD, sqlite_where=HELD)  # fmt: skip


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_task_held", table_name="task")
    for table in ("project", "spider"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("max_concurrent_runs")
    with op.batch_alter_table("task") as batch:
        batch.drop_column("due_at")
        batch.drop_column("priority")
    for table in ("task", "schedule", "spider"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("requires", new_column_name="labels")
