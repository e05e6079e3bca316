"""Data quality rules, per-field statistics and verdicts, without a database."""

import random

import pytest

from crawlhub.errors import InvalidInput
from crawlhub.quality.rules import from_project_file, parse
from crawlhub.quality.stats import MASK, SALT, ItemStats, K
from crawlhub.quality.verdict import Observed, judge, learn


def observed(stats: ItemStats, **overrides: object) -> Observed:
    values: dict[str, object] = {
        "items": stats.items, "duplicates": 0, "stats": stats.snapshot(), "duration_s": 10.0,
        "stderr_lines": 0, "scrapy": None, "median_items": None,
    }  # fmt: skip
    values.update(overrides)
    return Observed(**values)  # type: ignore[arg-type]


def test_statistics_follow_every_field_and_nested_paths_rules_name() -> None:
    stats = ItemStats(parse({"coverage": {"offer.price": 0.5}}))
    for n in range(100):
        stats.add({"title": f"t{n % 10}" if n % 4 else "", "offer": {"price": n} if n % 2 else {},
                   "flag": n % 3 == 0, "tags": [] if n % 5 else ["a"]})  # fmt: skip
    snap = stats.snapshot()["fields"]
    assert snap["title"]["coverage"] == 0.75 and snap["title"]["empty_share"] == 0.25
    assert snap["title"]["distinct"] == 10 + 1  # ten titles and ""
    assert snap["offer.price"]["present"] == 50 and snap["offer.price"]["min"] == 1
    assert snap["offer.price"]["max"] == 99 and snap["offer.price"]["mean"] == 50.0
    assert snap["offer"]["coverage"] == 0.5  # {} is empty
    assert snap["flag"]["types"] == ["boolean"] and snap["flag"]["distinct"] == 2
    assert snap["tags"]["coverage"] == 0.2 and snap["tags"]["types"] == ["array"]


@pytest.mark.parametrize("count", [K * 4, 50_000])
def test_distinct_estimates_are_close_above_the_sketch_size(count: int) -> None:
    stats = ItemStats(None)
    values = random.Random(7).sample(range(10**9), count)
    for value in values + values[: count // 2]:  # repeats do not count
        stats.add({"n": value, "s": f"v{value}"})
    for name in ("n", "s"):
        estimate = stats.snapshot()["fields"][name]["distinct"]
        assert abs(estimate - count) / count < 0.2, (name, estimate)


def test_batches_keep_exactly_the_k_smallest_hashes_and_skip_items_without_the_key() -> None:
    values = random.Random(3).sample(range(10**9), 5000)
    items = [{"n": v} if i % 3 else {"other": v} for i, v in enumerate(values)]
    stats = ItemStats(None)
    for start in range(0, len(items), 700):
        stats.add_many(items[start : start + 700])
    having = [v for i, v in enumerate(values) if i % 3]
    field = stats.fields["n"]
    assert field.present == len(having)
    assert field._sketch == set(sorted({hash((v, SALT)) & MASK for v in having})[:K])


def test_nan_and_infinity_are_no_numbers_and_odd_values_do_not_break_it() -> None:
    stats = ItemStats(None)
    for value in (float("nan"), float("inf"), 3, None, {"a": 1}, "x" * 10_000):
        stats.add({"v": value})
    snap = stats.snapshot()["fields"]["v"]
    assert (snap["min"], snap["max"], snap["mean"]) == (3, 3, 3.0)
    assert snap["types"] == ["integer", "null", "number", "object", "string"]


def test_a_schema_counts_invalid_items_per_field_and_error_and_keeps_examples() -> None:
    schema = {"type": "object", "required": ["price"],
              "properties": {"price": {"type": "number", "minimum": 0}}}  # fmt: skip
    stats = ItemStats(parse({"schema": schema}))
    for item in ({"price": 1}, {"price": -1}, {"name": "no price"}, {"price": "12"}) * 3:
        stats.add(item)
    found = stats.snapshot()["schema"]
    assert found["invalid"] == 9
    assert found["errors"] == {"price: properties/price/minimum": 3, "(item): required": 3,
                               "price: properties/price/type": 3}  # fmt: skip
    assert len(found["examples"]) == 5 and found["examples"][0]["item"] == '{"price": -1}'


def test_each_rule_gives_its_level_with_what_it_saw_and_expected() -> None:
    rules = parse({
        "coverage": {"price": 0.9, "title": {"warn": 0.99, "fail": 0.5}},
        "items": {"min": 5, "warn_below": 0.7, "fail_below": 0.4},
        "max_duplicate_share": {"warn": 0.1},
        "health": {"finish_reasons": ["finished"], "max_error_lines": 0,
                   "max_status_share": {"5xx": 0.1, "403": {"warn": 0}},
                   "max_stderr_lines": 3, "max_duration_s": 5},
    })  # fmt: skip
    stats = ItemStats(rules)
    for n in range(10):
        stats.add({"price": n if n < 8 else None, "title": "t" if n else ""})
    scrapy = {"finish_reason": "closespider_timeout", "log_count/ERROR": 2,
              "downloader/response_status_count/200": 8, "downloader/response_status_count/503": 1,
              "downloader/response_status_count/403": 1}  # fmt: skip
    verdict = judge(rules, observed(stats, duplicates=2, scrapy=scrapy, median_items=20.0,
                                    median_runs=3, stderr_lines=4))  # fmt: skip
    got = {r["rule"]: (r["level"], r["observed"], r["expected"]) for r in verdict.reasons}
    assert verdict.level == "fail"
    assert got == {
        "coverage.price": ("fail", 0.8, "≥ 0.9"),
        "coverage.title": ("warn", 0.9, "≥ 0.99"),
        "items.warn_below": ("warn", 0.5, "≥ 0.7 of the median 20 of 3 run(s)"),
        "max_duplicate_share": ("warn", 0.2, "≤ 0.1"),
        "health.max_stderr_lines": ("fail", 4, "≤ 3"),
        "health.max_duration_s": ("fail", 10.0, "≤ 5"),
        "health.finish_reasons": ("fail", "closespider_timeout", "one of finished"),
        "health.max_error_lines": ("fail", 2, "≤ 0"),
        "health.max_status_share.403": ("warn", 0.1, "≤ 0"),
    }  # 5xx: 0.1 is not above 0.1


def test_a_run_within_its_rules_passes_and_no_rules_say_nothing() -> None:
    rules = parse({"coverage": {"a": 1}, "items": {"min": 1, "fail_below": 0.5}})
    stats = ItemStats(rules)
    stats.add({"a": 1})
    verdict = judge(rules, observed(stats, median_items=1.5))
    assert (verdict.level, verdict.reasons) == ("pass", [])
    assert judge(parse({}), observed(ItemStats(None))).level == "pass"


def test_rules_learnt_from_statistics_are_a_schema_and_coverage_with_a_margin() -> None:
    stats = ItemStats(None)
    for n in range(100):
        stats.add({"id": n, "price": n * 1.5 if n % 10 else None, "note": "x" if n < 30 else ""})
    learnt = learn(stats.snapshot(), scrapy=False)
    assert learnt["schema"]["properties"] == {
        "id": {"type": "integer"}, "price": {"type": ["number", "null"]},
        "note": {"type": "string"}}  # fmt: skip
    assert learnt["schema"]["required"] == ["id", "note", "price"]
    assert learnt["coverage"] == {"id": 0.95, "price": 0.85}  # note: 30 % is too rare
    assert "health" not in learnt
    assert parse(learnt).coverage == {"id": 0.95, "price": 0.85}  # they are valid rules


@pytest.mark.parametrize(
    ("rules", "mistake"),
    [
        ({"coverage": {"a": -0.1}}, "quality.coverage.a"),
        ({"schema": {"type": "nonsense"}}, "not a valid JSON Schema"),
        ({"schema": {"$ref": "http://127.0.0.1:9/x.json"}}, "is not followed"),
        ({"health": {"max_status_share": {"999": 0.1}}}, "is not an HTTP status"),
        ({"items": {"runs": 0}}, "quality.items.runs"),
        ({"on_fail": "explode"}, "quality.on_fail"),
        ({"whatever": 1}, "quality.whatever"),
        ({"coverage": {"": 0.5}}, "a field path is 1 to 200 characters"),
    ],
)
def test_bad_rules_are_refused_naming_the_mistake(rules: dict[str, object], mistake: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(rules)
    assert mistake in caught.value.message


def test_rules_shipped_in_crawlhub_toml_are_read_per_spider() -> None:
    text = b'[quality.books]\ncoverage = { price = 0.9 }\non_fail = "retry"\n'
    assert from_project_file(text) == {"books": {"coverage": {"price": 0.9}, "on_fail": "retry"}}
    assert from_project_file(b"[tool.other]\nx = 1\n") == {}
    with pytest.raises(InvalidInput, match=r"crawlhub\.toml"):
        from_project_file(b"[quality.books\n")
    with pytest.raises(InvalidInput, match=r"crawlhub\.toml: quality\.books\.coverage"):
        from_project_file(b"[quality.books]\ncoverage = 3\n")
