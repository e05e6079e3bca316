"""spider.limits: a spider's own run limits (memory, processes, open files, disk, files)

Runs are limited by default (CRAWLHUB_MEMORY_LIMIT_MB and the rest); a spider that needs
more, or should get less, says so here. Existing spiders get none of their own.

Revision ID: 0010
Revises: 0009

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("spider") as batch:
        batch.add_column(sa.Column("limits", JSON, nullable=False, server_default="{}"))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("spider") as batch:
        batch.drop_column("limits")
