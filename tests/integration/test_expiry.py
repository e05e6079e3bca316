"""The data lifecycle on the database: old finished runs (with their items and logs), old
alerts and deliveries, old versions' packages go; nothing current ever does."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from crawlhub.context import Context
from crawlhub.housekeeping import retention
from crawlhub.repo.models import (
    Alert,
    Channel,
    Delivery,
    Item,
    LogLine,
    ProjectVersion,
    RunHour,
    Spider,
    Task,
)
from tests.conftest import make_settings

NOW = datetime.now(UTC)
LONG_AGO = NOW - timedelta(days=400)


def test_retention_removes_old_runs_alerts_deliveries_and_packages_never_what_is_current(
    context: Context,
) -> None:
    with context.db.session() as session:
        spider = Spider.standalone(name="aged", kind="python", entry="main:run", current_version=5)
        session.add(spider)
        session.flush()
        for number in range(1, 6):
            session.add(ProjectVersion(project_id=spider.project_id, number=number,
                                       archive=b"package %d" % number, format="py",
                                       filename="main.py", sha256=f"{number:064d}", size=9,
                                       files=1, created_at=LONG_AGO))  # fmt: skip

        def task(status: str, version: int, ended: datetime | None) -> uuid.UUID:
            row = Task(spider_id=spider.id, trigger="manual", status=status, version=version,
                       created_at=LONG_AGO, finished_at=ended)  # fmt: skip
            session.add(row)
            session.flush()
            session.add(Item(spider_id=spider.id, task_id=row.id, attempt=1, data={"n": 1},
                             created_at=LONG_AGO))  # fmt: skip
            session.add(LogLine(task_id=row.id, seq=1, attempt=1, stream="stdout", ts=LONG_AGO,
                                text="line"))  # fmt: skip
            return row.id

        old_done = task("completed", 1, LONG_AGO)
        old_failed = task("failed", 2, LONG_AGO)
        recent = task("completed", 3, NOW)
        waiting = task("pending", 1, None)  # made long ago, still to run: needs version 1
        running = task("running", 4, None)
        channel = Channel(kind="webhook", target="https://hooks.example/x")
        session.add(channel)
        session.flush()

        def alert(seen: datetime, delivery: str, updated: datetime) -> uuid.UUID:
            row = Alert(type="task_failed", level="error", message="m", spider_id=spider.id,
                        created_at=seen, last_seen_at=seen)  # fmt: skip
            session.add(row)
            session.flush()
            session.add(Delivery(alert_id=row.id, channel_id=channel.id, status=delivery,
                                 created_at=updated, updated_at=updated))  # fmt: skip
            return row.id

        old_alert = alert(LONG_AGO, "delivered", LONG_AGO)
        kept_alert = alert(NOW, "delivered", LONG_AGO)  # its old delivery goes
        pending_alert = alert(NOW, "pending", LONG_AGO)  # a delivery still due stays
    settings = make_settings(context.settings.data_dir.parent, keep_versions=2)
    assert retention.expire_history(context.db, settings, NOW) > 0
    with context.db.session() as session:
        tasks = set(session.scalars(select(Task.id)))
        assert tasks == {recent, waiting, running}
        assert old_done not in tasks and old_failed not in tasks
        assert {i.task_id for i in session.scalars(select(Item))} == tasks
        assert {line.task_id for line in session.scalars(select(LogLine))} == tasks
        assert set(session.scalars(select(Alert.id))) == {kept_alert, pending_alert}
        assert old_alert not in set(session.scalars(select(Alert.id)))
        assert [d.alert_id for d in session.scalars(select(Delivery))] == [pending_alert]
        # The overview's counts of runs made long ago (all of these) are past retention too.
        assert session.scalar(select(func.count()).select_from(RunHour)) == 0
        packages = {v.number: v.archive for v in session.scalars(
            select(ProjectVersion).execution_options(populate_existing=True))}  # fmt: skip
    # Versions 4 and 5 are the newest two (5 the current); 1 waits for a run; 2 and 3 go.
    assert packages == {1: b"package 1", 2: b"", 3: b"", 4: b"package 4", 5: b"package 5"}
    assert retention.expire_history(context.db, settings, NOW) == 0  # nothing more to do
    with context.db.session() as session:  # the run that needed version 1 is over: it may go
        session.execute(update(Task).where(Task.id == waiting).values(status="cancelled"))
    retention.expire_history(context.db, settings, NOW)
    with context.db.session() as session:
        archive = session.scalar(select(ProjectVersion.archive).where(ProjectVersion.number == 1))
    assert archive == b""
