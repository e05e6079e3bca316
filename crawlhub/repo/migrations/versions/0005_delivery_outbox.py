"""delivery.next_attempt_at: deliveries are an outbox the ticker drains

An alert's transaction writes one pending delivery per matching channel; whoever sends it
(the alert actor at once, or the ticker when its time has come) claims it by moving its
next attempt forward, so a lost Redis message or a crashed worker delays a notification but
never loses it.

Revision ID: 0005
Revises: 0004

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(
            op.f("ix_delivery_status_next_attempt_at"), ["status", "next_attempt_at"]
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("delivery") as batch:
        batch.drop_index(op.f("ix_delivery_status_next_attempt_at"))
        batch.drop_column("next_attempt_at")
