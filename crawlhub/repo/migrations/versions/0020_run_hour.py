"""run_hour: finished runs per hour of their creation, spider and status, with their items,
kept by triggers on task as runs end (the overview reads it, not a scan of every run);
filled from the runs already finished; and an index of running runs by start (the overview's
"Running now", oldest first) and one of runs under way (the dispatcher counts them at
every start)

Revision ID: 0020
Revises: 0019

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINISHED = "('completed', 'failed', 'cancelled', 'skipped')"
RUNNING = sa.text("status = 'running'")
NOT_OVER = sa.text("status IN ('pending', 'running', 'retrying')")
UNDER_WAY = sa.text(
    "status IN ('running', 'retrying') OR (status = 'pending' AND message_id IS NOT NULL)"
)


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "run_hour",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spider_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("items", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["spider_id"], ["spider.id"],
                                name=op.f("fk_run_hour_spider_id_spider"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("hour", "spider_id", "status", name=op.f("pk_run_hour")),
    )  # fmt: skip
    # Index-only reads of the overview: the week's hours, the runs not over.
    op.create_index("ix_run_hour_hour_status", "run_hour", ["hour", "status"],
                    postgresql_include=["spider_id", "runs", "items"])  # fmt: skip
    op.create_index("ix_task_not_over", "task", ["created_at"], postgresql_include=[
        "status", "items_count"], postgresql_where=NOT_OVER, sqlite_where=NOT_OVER)  # fmt: skip
    op.create_index("ix_task_running", "task", ["started_at"],
                    postgresql_where=RUNNING, sqlite_where=RUNNING)  # fmt: skip
    op.create_index("ix_task_under_way", "task", ["spider_id", "status", "worker"],
                    postgresql_where=UNDER_WAY, sqlite_where=UNDER_WAY)  # fmt: skip
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRES if postgres else SQLITE:
        op.execute(statement.replace("{add}", _SQLITE_ADD).replace("{finished}", FINISHED))
    if postgres:
        hour = "date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:  # as a UTC timestamp is stored there: text, no zone
        hour = "strftime('%Y-%m-%d %H:00:00.000000', created_at)"
    backfill = (
        "INSERT INTO run_hour (hour, spider_id, status, runs, items) SELECT {}, spider_id,"
        " status, count(*), coalesce(sum(items_count), 0) FROM task WHERE status IN {}"
        " GROUP BY 1, 2, 3"
    )
    op.execute(backfill.format(hour, FINISHED))


# A run is counted when it reaches a final status or is born in one, taken out when it leaves
# it, its items following its count; rows of runs not finished before or after are untouched
# (the WHEN clauses: a running run's progress costs no call).
POSTGRES = (
    """
CREATE FUNCTION run_hour_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.status IN {finished} THEN
    UPDATE run_hour SET runs = runs - 1, items = items - coalesce(OLD.items_count, 0)
     WHERE hour = date_trunc('hour', OLD.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
       AND spider_id = OLD.spider_id AND status = OLD.status;
  END IF;
  IF NEW.status IN {finished} THEN
    INSERT INTO run_hour (hour, spider_id, status, runs, items)
    VALUES (date_trunc('hour', NEW.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
            NEW.spider_id, NEW.status, 1, coalesce(NEW.items_count, 0))
    ON CONFLICT (hour, spider_id, status) DO UPDATE
      SET runs = run_hour.runs + 1, items = run_hour.items + excluded.items;
  END IF;
  RETURN NULL;
END $$""",
    """
CREATE TRIGGER task_run_hour_insert AFTER INSERT ON task FOR EACH ROW
  WHEN (NEW.status IN {finished}) EXECUTE FUNCTION run_hour_count()""",
    """
CREATE TRIGGER task_run_hour_update AFTER UPDATE OF status, items_count ON task FOR EACH ROW
  WHEN ((OLD.status IN {finished} OR NEW.status IN {finished})
        AND (OLD.status IS DISTINCT FROM NEW.status
             OR OLD.items_count IS DISTINCT FROM NEW.items_count))
  EXECUTE FUNCTION run_hour_count()""",
)
_SQLITE_ADD = """
  INSERT INTO run_hour (hour, spider_id, status, runs, items)
  SELECT strftime('%Y-%m-%d %H:00:00.000000', NEW.created_at), NEW.spider_id, NEW.status, 1,
         coalesce(NEW.items_count, 0)
  WHERE NEW.status IN {finished}
  ON CONFLICT (hour, spider_id, status) DO UPDATE
    SET runs = run_hour.runs + 1, items = run_hour.items + excluded.items;"""
SQLITE = (
    """
CREATE TRIGGER task_run_hour_insert AFTER INSERT ON task FOR EACH ROW
  WHEN NEW.status IN {finished}
BEGIN{add}
END""",
    """
CREATE TRIGGER task_run_hour_update AFTER UPDATE OF status, items_count ON task FOR EACH ROW
  WHEN (OLD.status IN {finished} OR NEW.status IN {finished})
   AND (OLD.status IS NOT NEW.status OR OLD.items_count IS NOT NEW.items_count)
BEGIN
  UPDATE run_hour SET runs = runs - 1, items = items - coalesce(OLD.items_count, 0)
   WHERE OLD.status IN {finished}
     AND hour = strftime('%Y-%m-%d %H:00:00.000000', OLD.created_at)
     AND spider_id = OLD.spider_id AND status = OLD.status;{add}
END""",
)


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DROP TRIGGER task_run_hour_update" + (" ON task" if _pg() else ""))
    op.execute("DROP TRIGGER task_run_hour_insert" + (" ON task" if _pg() else ""))
    if _pg():
        op.execute("DROP FUNCTION run_hour_count()")
    op.drop_table("run_hour")
    op.drop_index("ix_task_not_over", table_name="task")
    op.drop_index("ix_task_under_way", table_name="task")
    op.drop_index("ix_task_running", table_name="task")


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"
