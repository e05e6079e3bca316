"""placement: the labels a spider's, a schedule's or a single run's node must have

Revision ID: 0017
Revises: 0016

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Upgrade schema."""
    for table in ("spider", "schedule", "task"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("labels", JSON, nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    for table in ("task", "schedule", "spider"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("labels")
