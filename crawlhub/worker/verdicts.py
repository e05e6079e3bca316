"""A run's data quality at its end: its items' statistics stored, and for a completed run with
rules its verdict, its alert and what a failing verdict does (docs/guide/quality.md)."""

import statistics
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from crawlhub.alerting import alerts
from crawlhub.context import Context
from crawlhub.quality.rules import QualityRules
from crawlhub.quality.verdict import Observed, judge
from crawlhub.repo import tasks as task_repo

RETRY_TRIGGER = "retry"  # a run started again once because its data failed its checks
REASONS_IN_ALERT = 5


@dataclass(frozen=True)
class Checks:
    """What an attempt's quality is judged on, besides its outcome."""

    rules: QualityRules | None
    stats: dict[str, Any]  # ItemStats.snapshot()
    duplicates: int
    stderr_lines: int
    duration_s: float
    params: dict[str, Any]
    scrapy: bool


def conclude(
    session: Session, context: Context, task_id: uuid.UUID, spider_id: uuid.UUID,
    spider_name: str, status: str, items: int, scrapy_stats: dict[str, Any] | None,
    checks: Checks,
) -> uuid.UUID | None:  # fmt: skip
    """In the caller's transaction: store the statistics, judge a completed run with rules,
    raise its alert and, for a failing verdict, act as the rules say (a run started again is
    held, for the dispatcher). Returns the new alert, to notify after the commit."""
    quality: dict[str, Any] = dict(checks.stats)
    rules = checks.rules
    if status != "completed" or rules is None:
        task_repo.set_quality(session, task_id, None, quality)
        return None
    median, runs = None, 0
    if rules.items is not None and (rules.items.warn_below or rules.items.fail_below):
        counts = task_repo.recent_item_counts(session, spider_id, checks.params, task_id,
                                              rules.items.runs)  # fmt: skip
        if counts:
            median, runs = float(statistics.median(counts)), len(counts)
    verdict = judge(rules, Observed(
        items=items, duplicates=checks.duplicates, stats=checks.stats,
        duration_s=checks.duration_s, stderr_lines=checks.stderr_lines,
        scrapy=scrapy_stats if checks.scrapy else None, median_items=median, median_runs=runs,
    ))  # fmt: skip
    quality["reasons"] = verdict.reasons
    failing = verdict.level == "fail"
    quality["suspect"] = failing and rules.on_fail == "suspect"
    task_repo.set_quality(session, task_id, verdict.level, quality)
    if verdict.level == "pass":
        return None
    if failing and rules.on_fail == "retry":
        again = task_repo.retry_once(session, task_id, RETRY_TRIGGER)
        if again is not None:
            quality["retried_as"] = str(again)
            task_repo.set_quality(session, task_id, verdict.level, quality)
    said = "; ".join(f"{r['rule']} {r['observed']} (expected {r['expected']})"
                     for r in verdict.reasons[:REASONS_IN_ALERT])  # fmt: skip
    more = len(verdict.reasons) - REASONS_IN_ALERT
    said += f"; and {more} more" if more > 0 else ""
    alert = alerts.raise_alert(
        session, context, f"quality_{verdict.level}", "error" if failing else "warning",
        f"{spider_name}: run {task_id} data quality {verdict.level}: {said}",
        spider_id=spider_id, task_id=task_id,
    )  # fmt: skip
    return alert
