"""users, personal API tokens, sign-in failures, the audit log; task.actor

Everyone shared the tokens of CRAWLHUB_API_TOKENS (which keep working, as instance-admin
tokens). Users sign in by password and hold personal tokens with scopes; failed sign-ins
are counted per account name and per address; state changes are logged with their actor.
A run records who started it.

Revision ID: 0013
Revises: 0012

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "app_user",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("sso_subject", sa.String(512), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("last_sign_in_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_app_user"),
        sa.UniqueConstraint("username", name="uq_app_user_username"),
        sa.UniqueConstraint("sso_subject", name="uq_app_user_sso_subject"),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("expires_at", WHEN, nullable=True),
        sa.Column("last_used_at", WHEN, nullable=True),
        sa.Column("revoked_at", WHEN, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_token"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], ondelete="CASCADE", name="fk_api_token_user_id_app_user"
        ),
        sa.UniqueConstraint("digest", name="uq_api_token_digest"),
        sa.UniqueConstraint("user_id", "name", name="uq_api_token_user_id_name"),
    )
    op.create_table(
        "sign_in_failures",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", WHEN, nullable=False),
        sa.Column("locked_until", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_sign_in_failures"),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("before", JSON, nullable=True),
        sa.Column("after", JSON, nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_event"),
    )
    op.create_index("ix_audit_event_at", "audit_event", ["at"])
    op.create_index("ix_audit_event_actor_at", "audit_event", ["actor", "at"])
    op.create_index("ix_audit_event_action_at", "audit_event", ["action", "at"])
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("actor", sa.String(200), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("task") as batch:
        batch.drop_column("actor")
    op.drop_table("audit_event")
    op.drop_table("sign_in_failures")
    op.drop_table("api_token")
    op.drop_table("app_user")
