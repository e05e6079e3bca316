"""spider.retention_days and an item index for per-spider time filters

Revision ID: 0002
Revises: 0001

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("spider") as batch:
        batch.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_item_spider_id_created_at"), "item", ["spider_id", "created_at"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_item_spider_id_created_at"), table_name="item")
    with op.batch_alter_table("spider") as batch:
        batch.drop_column("retention_days")
