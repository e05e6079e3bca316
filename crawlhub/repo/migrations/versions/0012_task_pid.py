"""task.pid: the process id of a running attempt's spider, as its worker sees it

What Scrapyd's listjobs.json and jobs page show for a running job. Set by the attempt's
first write of its log; kept once it ended. Existing tasks get none.

Revision ID: 0012
Revises: 0011

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("task") as batch:
        batch.drop_column("pid")
