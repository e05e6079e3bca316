"""initial schema

Revision ID: 0001
Revises:

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Frozen copies of the model column types, so later model changes cannot rewrite history.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "spider",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("entry", sa.String(length=255), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("env", JSON, nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("retry_backoff_min_s", sa.Integer(), nullable=False),
        sa.Column("retry_backoff_max_s", sa.Integer(), nullable=False),
        sa.Column("dedup_keys", JSON, nullable=True),
        sa.Column("alert_on_zero_items", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spider")),
        sa.UniqueConstraint("name", name=op.f("uq_spider_name")),
    )
    op.create_index(op.f("ix_spider_created_at"), "spider", ["created_at"], unique=False)

    op.create_table(
        "channel",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=2048), nullable=False),
        sa.Column("secret", sa.String(length=512), nullable=True),
        sa.Column("min_level", sa.String(length=16), nullable=False),
        sa.Column("spider_id", sa.Uuid(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["spider_id"],
            ["spider.id"],
            name=op.f("fk_channel_spider_id_spider"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel")),
    )
    op.create_table(
        "schedule",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("spider_id", sa.Uuid(), nullable=False),
        sa.Column("cron", sa.String(length=255), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("overlap", sa.String(length=16), nullable=False),
        sa.Column("catchup", sa.String(length=16), nullable=False),
        sa.Column("starting_deadline_s", sa.Integer(), nullable=True),
        sa.Column("jitter_s", sa.Integer(), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["spider_id"],
            ["spider.id"],
            name=op.f("fk_schedule_spider_id_spider"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule")),
    )
    op.create_index(op.f("ix_schedule_next_fire_at"), "schedule", ["next_fire_at"], unique=False)
    op.create_index(
        op.f("ix_schedule_spider_id_created_at"),
        "schedule",
        ["spider_id", "created_at"],
        unique=False,
    )

    op.create_table(
        "spider_version",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("spider_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("archive", sa.LargeBinary(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["spider_id"],
            ["spider.id"],
            name=op.f("fk_spider_version_spider_id_spider"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spider_version")),
        sa.UniqueConstraint("spider_id", "number", name=op.f("uq_spider_version_spider_id_number")),
    )
    op.create_table(
        "task",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("spider_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("schedule_id", sa.Uuid(), nullable=True),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("params", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("items_count", sa.Integer(), nullable=False),
        sa.Column("items_duplicate", sa.Integer(), nullable=False),
        sa.Column("items_invalid", sa.Integer(), nullable=False),
        sa.Column("log_lines", sa.Integer(), nullable=False),
        sa.Column("stats", JSON, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedule.id"],
            name=op.f("fk_task_schedule_id_schedule"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["spider_id"], ["spider.id"], name=op.f("fk_task_spider_id_spider"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
        sa.UniqueConstraint(
            "schedule_id", "scheduled_for", name=op.f("uq_task_schedule_id_scheduled_for")
        ),
    )
    op.create_index(op.f("ix_task_created_at"), "task", ["created_at"], unique=False)
    op.create_index(
        op.f("ix_task_schedule_id_created_at"), "task", ["schedule_id", "created_at"], unique=False
    )
    op.create_index(
        op.f("ix_task_spider_id_created_at"), "task", ["spider_id", "created_at"], unique=False
    )
    op.create_index(
        op.f("ix_task_status_created_at"), "task", ["status", "created_at"], unique=False
    )
    op.create_index(
        op.f("ix_task_status_heartbeat_at"), "task", ["status", "heartbeat_at"], unique=False
    )
    op.create_index(
        op.f("ix_task_trigger_created_at"), "task", ["trigger", "created_at"], unique=False
    )

    op.create_table(
        "alert",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("spider_id", sa.Uuid(), nullable=True),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("is_read", sa.Boolean(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["spider_id"], ["spider.id"], name=op.f("fk_alert_spider_id_spider"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_alert_task_id_task"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
    )
    op.create_index(op.f("ix_alert_created_at"), "alert", ["created_at"], unique=False)
    op.create_index(op.f("ix_alert_is_read_level"), "alert", ["is_read", "level"], unique=False)
    op.create_index(
        op.f("ix_alert_spider_id_type_last_seen_at"),
        "alert",
        ["spider_id", "type", "last_seen_at"],
        unique=False,
    )

    op.create_table(
        "item",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("spider_id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("dedup_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["spider_id"], ["spider.id"], name=op.f("fk_item_spider_id_spider"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_item_task_id_task"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item")),
        sa.UniqueConstraint("spider_id", "dedup_hash", name=op.f("uq_item_spider_id_dedup_hash")),
    )
    op.create_index(op.f("ix_item_created_at"), "item", ["created_at"], unique=False)
    op.create_index(op.f("ix_item_spider_id_id"), "item", ["spider_id", "id"], unique=False)
    op.create_index(op.f("ix_item_task_id_id"), "item", ["task_id", "id"], unique=False)

    op.create_table(
        "log_line",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_log_line_task_id_task"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "seq", name=op.f("pk_log_line")),
    )
    op.create_index(
        op.f("ix_log_line_task_id_attempt_seq"),
        "log_line",
        ["task_id", "attempt", "seq"],
        unique=False,
    )
    op.create_index(op.f("ix_log_line_ts"), "log_line", ["ts"], unique=False)

    op.create_table(
        "delivery",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("alert_id", sa.Uuid(), nullable=False),
        sa.Column("channel_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alert.id"], name=op.f("fk_delivery_alert_id_alert"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channel.id"],
            name=op.f("fk_delivery_channel_id_channel"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
        sa.UniqueConstraint("alert_id", "channel_id", name=op.f("uq_delivery_alert_id_channel_id")),
    )
    op.create_index(op.f("ix_delivery_channel_id"), "delivery", ["channel_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_delivery_channel_id"), table_name="delivery")

    op.drop_table("delivery")
    op.drop_index(op.f("ix_log_line_ts"), table_name="log_line")
    op.drop_index(op.f("ix_log_line_task_id_attempt_seq"), table_name="log_line")

    op.drop_table("log_line")
    op.drop_index(op.f("ix_item_task_id_id"), table_name="item")
    op.drop_index(op.f("ix_item_spider_id_id"), table_name="item")
    op.drop_index(op.f("ix_item_created_at"), table_name="item")

    op.drop_table("item")
    op.drop_index(op.f("ix_alert_spider_id_type_last_seen_at"), table_name="alert")
    op.drop_index(op.f("ix_alert_is_read_level"), table_name="alert")
    op.drop_index(op.f("ix_alert_created_at"), table_name="alert")

    op.drop_table("alert")
    op.drop_index(op.f("ix_task_trigger_created_at"), table_name="task")
    op.drop_index(op.f("ix_task_status_heartbeat_at"), table_name="task")
    op.drop_index(op.f("ix_task_status_created_at"), table_name="task")
    op.drop_index(op.f("ix_task_spider_id_created_at"), table_name="task")
    op.drop_index(op.f("ix_task_schedule_id_created_at"), table_name="task")
    op.drop_index(op.f("ix_task_created_at"), table_name="task")

    op.drop_table("task")
    op.drop_table("spider_version")
    op.drop_index(op.f("ix_schedule_spider_id_created_at"), table_name="schedule")
    op.drop_index(op.f("ix_schedule_next_fire_at"), table_name="schedule")

    op.drop_table("schedule")
    op.drop_table("channel")
    op.drop_index(op.f("ix_spider_created_at"), table_name="spider")

    op.drop_table("spider")
