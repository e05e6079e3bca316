"""task.settings and schedule.settings: Scrapy settings of a run, applied with `-s`

Revision ID: 0006
Revises: 0005

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Upgrade schema."""
    for table in ("task", "schedule"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("settings", JSON, nullable=False, server_default=sa.text("'{}'"))
            )


def downgrade() -> None:
    """Downgrade schema."""
    for table in ("task", "schedule"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("settings")
