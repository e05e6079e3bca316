"""workers as nodes: labels, what the machine has left, drain

A worker process's row (`worker`) also keeps its labels (CRAWLHUB_WORKER_LABELS), the
environments it holds, its machine's load, memory and disk as its heartbeat last read them,
and whether it is draining (it finishes its runs and takes no new ones).

Revision ID: 0016
Revises: 0015

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("worker") as batch:
        batch.add_column(sa.Column("labels", JSON, nullable=True))
        batch.add_column(sa.Column("machine", JSON, nullable=True))
        batch.add_column(sa.Column("draining", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))  # fmt: skip


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("worker") as batch:
        batch.drop_column("draining")
        batch.drop_column("machine")
        batch.drop_column("labels")
