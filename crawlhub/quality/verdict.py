"""A run's verdict: pass, warn or fail, with each reason (rule, observed, expected), from the
spider's rules and what the run did; and rules learnt from a good run's statistics."""

from dataclasses import dataclass, field
from typing import Any

from crawlhub.quality.rules import Bound, QualityRules, levels

LEVELS = ("pass", "warn", "fail")
COVERAGE_MARGIN = 0.05  # learnt coverage rules sit this far under what the good run had
LEARN_MIN_COVERAGE = 0.5  # fields rarer than this in the good run get no coverage rule
REQUIRED_FROM = 0.999  # fields at least this common are required by a learnt schema


@dataclass(frozen=True)
class Observed:
    """What a run did, as its rules are checked against it."""

    items: int  # stored
    duplicates: int
    stats: dict[str, Any]  # ItemStats.snapshot()
    duration_s: float
    stderr_lines: int
    scrapy: dict[str, Any] | None  # Scrapy's final stats, for a Scrapy run
    median_items: float | None  # of the last completed runs with the same params
    median_runs: int = 0  # how many runs that median is of


@dataclass
class Verdict:
    level: str = "pass"
    reasons: list[dict[str, Any]] = field(default_factory=list)

    def add(self, level: str, rule: str, observed: Any, expected: str) -> None:
        self.reasons.append({"level": level, "rule": rule, "observed": observed,
                             "expected": expected})  # fmt: skip
        if LEVELS.index(level) > LEVELS.index(self.level):
            self.level = level


def _share(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def _most(verdict: Verdict, rule: str, observed: float, bound: Bound | None) -> None:
    """A violation when `observed` is above a threshold of the bound."""
    if bound is None:
        return
    for level, limit in levels(bound):
        if observed > limit:
            verdict.add(level, rule, observed, f"≤ {limit:g}")
            return


def _least(verdict: Verdict, rule: str, observed: float, bound: Bound | None) -> None:
    """A violation when `observed` is below a threshold of the bound."""
    if bound is None:
        return
    for level, limit in levels(bound):
        if observed < limit:
            verdict.add(level, rule, observed, f"≥ {limit:g}")
            return


def judge(rules: QualityRules, seen: Observed) -> Verdict:
    """The verdict on a completed run."""
    verdict = Verdict()
    fields = seen.stats.get("fields", {})
    total = seen.stats.get("items", 0)  # items read (duplicates too)
    schema = seen.stats.get("schema")
    if schema is not None:
        bound = rules.max_invalid_share
        share = _share(schema["invalid"], total)
        if bound is None:  # by default any invalid item is a warning
            if schema["invalid"]:
                verdict.add("warn", "schema", share, "no item refused by the schema")
        else:
            _most(verdict, "max_invalid_share", share, bound)
    for path, bound in rules.coverage.items():
        coverage = fields.get(path, {}).get("coverage", 0.0) if total else 0.0
        _least(verdict, f"coverage.{path}", coverage, bound)
    if rules.items is not None:
        count = rules.items
        if count.min is not None and seen.items < count.min:
            verdict.add("fail", "items.min", seen.items, f"≥ {count.min}")
        if count.max is not None and seen.items > count.max:
            verdict.add("fail", "items.max", seen.items, f"≤ {count.max}")
        if seen.median_items:
            share = _share(seen.items, seen.median_items)
            what = f"of the median {seen.median_items:g} of {seen.median_runs} run(s)"
            if count.fail_below is not None and share < count.fail_below:
                verdict.add("fail", "items.fail_below", share, f"≥ {count.fail_below:g} {what}")
            elif count.warn_below is not None and share < count.warn_below:
                verdict.add("warn", "items.warn_below", share, f"≥ {count.warn_below:g} {what}")
    _most(verdict, "max_duplicate_share", _share(seen.duplicates, total),
          rules.max_duplicate_share)  # fmt: skip
    if rules.health is not None:
        _health(verdict, rules, seen)
    return verdict


def _health(verdict: Verdict, rules: QualityRules, seen: Observed) -> None:
    health = rules.health
    assert health is not None
    _most(verdict, "health.max_stderr_lines", seen.stderr_lines, health.max_stderr_lines)
    if health.min_duration_s is not None and seen.duration_s < health.min_duration_s:
        verdict.add("fail", "health.min_duration_s", round(seen.duration_s, 2),
                    f"≥ {health.min_duration_s:g}")  # fmt: skip
    if health.max_duration_s is not None and seen.duration_s > health.max_duration_s:
        verdict.add("fail", "health.max_duration_s", round(seen.duration_s, 2),
                    f"≤ {health.max_duration_s:g}")  # fmt: skip
    stats = seen.scrapy
    if stats is None:
        return
    reason = stats.get("finish_reason")
    if health.finish_reasons is not None and reason not in health.finish_reasons:
        verdict.add("fail", "health.finish_reasons", reason,
                    f"one of {', '.join(health.finish_reasons)}")  # fmt: skip
    _most(verdict, "health.max_error_lines", int(stats.get("log_count/ERROR", 0)),
          health.max_error_lines)  # fmt: skip
    _most(verdict, "health.max_warning_lines", int(stats.get("log_count/WARNING", 0)),
          health.max_warning_lines)  # fmt: skip
    _most(verdict, "health.max_retries", int(stats.get("retry/count", 0)), health.max_retries)
    _most(verdict, "health.max_download_exceptions",
          int(stats.get("downloader/exception_count", 0)),
          health.max_download_exceptions)  # fmt: skip
    prefix = "downloader/response_status_count/"
    statuses = {k[len(prefix):]: int(v) for k, v in stats.items()
                if k.startswith(prefix) and isinstance(v, int | float)}  # fmt: skip
    responses = sum(statuses.values())
    for key, bound in health.max_status_share.items():
        if key.endswith("xx"):
            count = sum(v for k, v in statuses.items() if k[:1] == key[0])
        else:
            count = statuses.get(key, 0)
        _most(verdict, f"health.max_status_share.{key}", _share(count, responses), bound)


def learn(stats: dict[str, Any], scrapy: bool) -> dict[str, Any]:
    """Rules a good run's statistics suggest (to be edited before they are saved): a schema
    of the types each field had, the fields it always had required; coverage a margin under
    what it had; item counts against the median; for Scrapy, a clean finish."""
    fields = stats.get("fields", {})
    properties: dict[str, Any] = {}
    required, coverage = [], {}
    for name, field_stats in fields.items():
        if "." in name:
            continue  # a nested path a rule named: its parent has the type
        types = [t for t in field_stats["types"] if t != "null"]
        if "integer" in types and "number" in types:
            types.remove("integer")
        if types:
            nullable = "null" in field_stats["types"]
            properties[name] = {"type": types[0] if len(types) == 1 and not nullable
                                else [*types, *(["null"] if nullable else [])]}  # fmt: skip
        share = field_stats["coverage"]
        if field_stats["present"] >= REQUIRED_FROM * stats.get("items", 0) > 0:
            required.append(name)
        if share >= LEARN_MIN_COVERAGE:
            coverage[name] = round(max(0.0, share - COVERAGE_MARGIN), 2)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = sorted(required)
    learnt: dict[str, Any] = {
        "schema": schema,
        "max_invalid_share": {"warn": 0, "fail": 0.05},
        "coverage": coverage,
        "items": {"warn_below": 0.7, "fail_below": 0.4, "runs": 5},
    }
    if scrapy:
        learnt["health"] = {"finish_reasons": ["finished"],
                            "max_status_share": {"403": {"warn": 0.01, "fail": 0.1},
                                                 "429": {"warn": 0.01, "fail": 0.1},
                                                 "5xx": {"warn": 0.02, "fail": 0.1}}}  # fmt: skip
    return learnt
