"""item.spider_id without its foreign key: the task's already ties an item to its spider

The per-row check of a second foreign key cost 30 % of COPY's speed into `item` (82 000
against 117 000 rows/s; docs/benchmarks.md, item ingest). An item still cannot outlive its
task (task_id keeps its foreign key, ON DELETE CASCADE), and a task cannot outlive its
spider, so deleting a spider still deletes its items.

Revision ID: 0003
Revises: 0002

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("item") as batch:
        batch.drop_constraint(op.f("fk_item_spider_id_spider"), type_="foreignkey")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("item") as batch:
        batch.create_foreign_key(
            op.f("fk_item_spider_id_spider"), "spider", ["spider_id"], ["id"], ondelete="CASCADE"
        )
