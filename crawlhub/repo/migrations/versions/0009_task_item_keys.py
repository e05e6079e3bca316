"""task.item_keys: the top-level keys of a run's items, recorded as they are stored

A CSV or XLSX export needs its columns before its first row; reading them from the items
took seconds at a million (jsonb_object_keys over the selection). Runs from before this
have none recorded: their exports read the items as before.

Revision ID: 0009
Revises: 0008

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("item_keys", JSON, nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("task") as batch:
        batch.drop_column("item_keys")
