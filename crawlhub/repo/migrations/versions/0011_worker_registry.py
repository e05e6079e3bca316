"""worker: each worker process registers itself and heartbeats its row

"Workers online" counted every process that had touched Dramatiq's heartbeat set (a ticker's
maintenance call, a web process that had just enqueued). A worker now keeps its own row,
stamped by the database's clock; the ticker and the web never write one.

Revision ID: 0011
Revises: 0010

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "worker",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_worker_last_seen_at", "worker", ["last_seen_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_worker_last_seen_at", table_name="worker")
    op.drop_table("worker")
