"""Scrapyd's names: task.job_id (a client's job id) and project_version.label (its version)

Revision ID: 0008
Revises: 0007

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("project_version") as batch:
        batch.add_column(sa.Column("label", sa.String(length=128), nullable=True))
        batch.create_index(op.f("ix_project_version_project_id_label"), ["project_id", "label"])
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("job_id", sa.String(length=128), nullable=True))
        batch.create_unique_constraint(op.f("uq_task_job_id"), ["job_id"])


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("task") as batch:
        batch.drop_constraint(op.f("uq_task_job_id"), type_="unique")
        batch.drop_column("job_id")
    with op.batch_alter_table("project_version") as batch:
        batch.drop_index(op.f("ix_project_version_project_id_label"))
        batch.drop_column("label")
