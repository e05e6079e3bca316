"""item without a foreign key, and its dedup index over deduplicated items only

COPY into `item` ran at half the speed of COPY into the same table without the per-row
check of `task_id`'s foreign key. Items now go with their run by the data lifecycle, which
deletes them by `task_id` (or `spider_id`) after their runs, in the same transaction
(crawlhub/repo/items.py, `delete_for_tasks`). The unique index on (spider_id, dedup_hash)
held an entry for every item, though only items with a dedup hash can collide: it is now
partial (WHERE dedup_hash IS NOT NULL), and `ON CONFLICT` names its predicate.

Revision ID: 0019
Revises: 0018

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEDUPED = sa.text("dedup_hash IS NOT NULL")


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("item") as batch:
        batch.drop_constraint(op.f("fk_item_task_id_task"), type_="foreignkey")
        batch.drop_constraint(op.f("uq_item_spider_id_dedup_hash"), type_="unique")
    op.create_index("ix_item_dedup", "item", ["spider_id", "dedup_hash"], unique=True,
                    postgresql_where=DEDUPED, sqlite_where=DEDUPED)  # fmt: skip


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM item WHERE task_id NOT IN (SELECT id FROM task)")
    op.drop_index("ix_item_dedup", table_name="item")
    with op.batch_alter_table("item") as batch:
        batch.create_unique_constraint(
            op.f("uq_item_spider_id_dedup_hash"), ["spider_id", "dedup_hash"]
        )
        batch.create_foreign_key(
            op.f("fk_item_task_id_task"), "task", ["task_id"], ["id"], ondelete="CASCADE"
        )
