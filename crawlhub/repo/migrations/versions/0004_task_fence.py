"""task.fence: the fencing token of a task's current attempt

Every claim (and every reap) increments it; an attempt writes only while the task still
carries the token it claimed with, so a worker that stalled past its lease (or lost the
database for longer) cannot add items, log lines or an outcome to a task that another
attempt now owns.

Revision ID: 0004
Revises: 0003

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("fence", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("task") as batch:
        batch.drop_column("fence")
