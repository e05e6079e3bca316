"""Cron: validation, calendar features, hashing and the DST rules of SPEC §6."""

import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from crawlhub.errors import InvalidInput
from crawlhub.scheduling.cron import Cron

NY = "America/New_York"
BERLIN = "Europe/Berlin"


def z(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware UTC datetime."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- DST: America/New_York --------------------------------------------------------------


def test_ny_spring_forward_fixed_time_fires_once_at_the_transition() -> None:
    assert Cron("30 2 * * *", NY).preview(z(2026, 3, 7), 3) == [
        z(2026, 3, 7, 7, 30),  # 02:30 EST
        z(2026, 3, 8, 7, 0),  # 02:30 does not exist: 03:00 EDT
        z(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]


def test_ny_spring_forward_hourly_skips_the_missing_hour() -> None:
    fires = Cron("0 * * * *", NY).fires_between(z(2026, 3, 8, 5, 30), z(2026, 3, 8, 8, 30), 10)
    assert fires == [z(2026, 3, 8, 6), z(2026, 3, 8, 7), z(2026, 3, 8, 8)]
    assert [f.astimezone(ZoneInfo(NY)).hour for f in fires] == [1, 3, 4]


@pytest.mark.parametrize("expr", ["0,30 2 * * *", "* 2 * * *", "0 2-3 * * *"])
def test_ny_several_gap_wall_times_collapse_into_one_fire(expr: str) -> None:
    cron = Cron(expr, NY)
    assert cron.fires_between(z(2026, 3, 8, 5), z(2026, 3, 8, 7, 59), 1000) == [z(2026, 3, 8, 7)]


def test_ny_spring_forward_quarter_hours_skip_the_gap() -> None:
    fires = Cron("*/15 * * * *", NY).fires_between(z(2026, 3, 8, 6, 30), z(2026, 3, 8, 7, 30), 10)
    assert fires == [
        z(2026, 3, 8, 6, 45),
        z(2026, 3, 8, 7),
        z(2026, 3, 8, 7, 15),
        z(2026, 3, 8, 7, 30),
    ]


def test_ny_fall_back_fixed_time_fires_once_at_the_first_occurrence() -> None:
    cron = Cron("30 1 * * *", NY)
    assert cron.fires_between(z(2026, 10, 31, 12), z(2026, 11, 2, 12), 10) == [
        z(2026, 11, 1, 5, 30),  # 01:30 EDT, not also 06:30Z (01:30 EST)
        z(2026, 11, 2, 6, 30),
    ]


def test_ny_fall_back_hourly_fires_at_both_one_oclocks() -> None:
    fires = Cron("0 * * * *", NY).fires_between(z(2026, 11, 1, 4, 30), z(2026, 11, 1, 7, 30), 10)
    assert fires == [z(2026, 11, 1, 5), z(2026, 11, 1, 6), z(2026, 11, 1, 7)]


@pytest.mark.parametrize(
    "after",
    [
        z(2026, 11, 1, 5, 30),  # right at the first 01:30
        z(2026, 11, 1, 5, 45),
        z(2026, 11, 1, 6, 0),  # 01:00 EST, the second 01:00
        z(2026, 11, 1, 6, 29),
        z(2026, 11, 1, 6, 30),
    ],
)
def test_ny_restart_inside_the_repeated_hour_does_not_fire_again(after: datetime) -> None:
    assert Cron("30 1 * * *", NY).next_after(after) == z(2026, 11, 2, 6, 30)


def test_ny_hourly_restart_inside_the_first_occurrence_finds_the_second() -> None:
    cron = Cron("0 * * * *", NY)
    assert cron.next_after(z(2026, 11, 1, 5, 30)) == z(2026, 11, 1, 6)
    assert cron.next_after(z(2026, 11, 1, 4, 59)) == z(2026, 11, 1, 5)
    assert cron.next_after(z(2026, 11, 1, 6)) == z(2026, 11, 1, 7)


def test_after_may_be_in_any_zone_and_results_are_utc() -> None:
    after = datetime(2026, 11, 1, 14, 30, tzinfo=ZoneInfo("Asia/Tokyo"))  # 05:30Z
    fire = Cron("0 * * * *", NY).next_after(after)
    assert fire == z(2026, 11, 1, 6)
    assert fire.tzinfo is UTC


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Cron("0 * * * *").next_after(datetime(2026, 1, 1))


# --- DST: Europe/Berlin -----------------------------------------------------------------


def test_berlin_spring_forward() -> None:
    assert Cron("30 2 * * *", BERLIN).preview(z(2026, 3, 28), 3) == [
        z(2026, 3, 28, 1, 30),
        z(2026, 3, 29, 1, 0),  # 03:00 CEST
        z(2026, 3, 30, 0, 30),
    ]
    fires = Cron("0 * * * *", BERLIN).fires_between(z(2026, 3, 28, 23, 30), z(2026, 3, 29, 2), 9)
    assert [f.astimezone(ZoneInfo(BERLIN)).hour for f in fires] == [1, 3, 4]
    assert fires == [z(2026, 3, 29, 0), z(2026, 3, 29, 1), z(2026, 3, 29, 2)]


def test_berlin_fall_back() -> None:
    assert Cron("30 2 * * *", BERLIN).fires_between(
        z(2026, 10, 24, 12), z(2026, 10, 25, 12), 9
    ) == [z(2026, 10, 25, 0, 30)]
    fires = Cron("0 * * * *", BERLIN).fires_between(z(2026, 10, 24, 23, 30), z(2026, 10, 25, 2), 9)
    assert fires == [z(2026, 10, 25, 0), z(2026, 10, 25, 1), z(2026, 10, 25, 2)]
    assert [f.astimezone(ZoneInfo(BERLIN)).hour for f in fires] == [2, 2, 3]


# --- calendar features ------------------------------------------------------------------


def test_february_29th() -> None:
    assert Cron("0 0 29 2 *").next_after(z(2026, 3, 1)) == z(2028, 2, 29)


def test_31st_fires_only_in_31_day_months() -> None:
    fires = Cron("0 0 31 * *").preview(z(2026, 1, 15), 7)
    assert [(f.year, f.month) for f in fires] == [
        (2026, 1),
        (2026, 3),
        (2026, 5),
        (2026, 7),
        (2026, 8),
        (2026, 10),
        (2026, 12),
    ]
    assert {f.day for f in fires} == {31}


def test_sunday_is_0_or_7_and_weekly() -> None:
    start = z(2026, 1, 1)
    sequences = [
        Cron(e).preview(start, 10) for e in ("0 0 * * 0", "0 0 * * 7", "@weekly", "0 0 * * sun")
    ]
    assert all(s == sequences[0] for s in sequences)
    assert {f.isoweekday() for f in sequences[0]} == {7}


def test_last_day_of_month() -> None:
    fires = Cron("0 0 L * *").preview(z(2026, 1, 1), 4)
    assert fires == [z(2026, 1, 31), z(2026, 2, 28), z(2026, 3, 31), z(2026, 4, 30)]


def test_third_friday() -> None:
    fires = Cron("0 0 * * 5#3").preview(z(2026, 1, 1), 3)
    assert fires == [z(2026, 1, 16), z(2026, 2, 20), z(2026, 3, 20)]


def test_day_of_month_or_day_of_week() -> None:
    fires = Cron("0 0 13 * 5").preview(z(2026, 1, 1), 6)  # 2026-01-13 is a Tuesday
    assert [f.day for f in fires] == [2, 9, 13, 16, 23, 30]
    assert all(f.day == 13 or f.isoweekday() == 5 for f in fires)


def test_names_ranges_steps_and_lists() -> None:
    fires = Cron("0 9 * jan mon").preview(z(2026, 1, 1), 5)
    assert [f.day for f in fires] == [5, 12, 19, 26, 4]
    assert fires[-1].year == 2027
    assert Cron("5,35 8-10/2 * * *").preview(z(2026, 1, 1), 4) == [
        z(2026, 1, 1, 8, 5),
        z(2026, 1, 1, 8, 35),
        z(2026, 1, 1, 10, 5),
        z(2026, 1, 1, 10, 35),
    ]


@pytest.mark.parametrize(
    ("alias", "expansion"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_aliases_expand_to_their_five_fields(alias: str, expansion: str) -> None:
    cron = Cron(f"  {alias.upper()} ", BERLIN, hash_id="s1")
    assert cron.expr == alias.upper()
    assert cron.fixed_time is (alias != "@hourly")
    assert cron.preview(z(2026, 1, 1), 5) == Cron(expansion, BERLIN).preview(z(2026, 1, 1), 5)


@pytest.mark.parametrize(
    ("expr", "fixed"),
    [
        ("30 2 * * *", True),
        ("0 1-3 * * *", True),
        ("0 H * * *", True),
        ("0 * * * *", False),
        ("0 */2 * * *", False),
        ("0 1-23/2 * * *", False),
        ("@daily", True),
    ],
)
def test_fixed_time_depends_on_the_hour_field(expr: str, fixed: bool) -> None:
    assert Cron(expr, hash_id="x").fixed_time is fixed


def test_hash_spreads_by_id_and_is_stable() -> None:
    start = z(2026, 1, 1)
    one = Cron("H 3 * * *", hash_id="spider-1").preview(start, 5)
    two = Cron("H 3 * * *", hash_id="spider-2").preview(start, 5)
    assert len({f.minute for f in one}) == 1
    assert len({f.minute for f in two}) == 1
    assert one[0].minute != two[0].minute
    assert all(f.hour == 3 for f in one + two)
    assert Cron("H 3 * * *", hash_id="spider-1").preview(start, 5) == one
    assert Cron("H 3 * * *", hash_id=b"spider-1").preview(start, 5) == one


def test_attributes() -> None:
    cron = Cron("  */5 * * * * ", "Asia/Kolkata")
    assert (cron.expr, cron.timezone, cron.fixed_time) == ("*/5 * * * *", "Asia/Kolkata", False)


# --- rejections -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "timezone", "reason"),
    [
        ("0 0 30 2 *", "UTC", "never fires in the next five years"),
        ("0 0 31 4 *", "UTC", "never fires in the next five years"),
        ("@reboot", "UTC", "@reboot is not supported: CrawlHub schedules only recurring times"),
        ("@fortnightly", "UTC", "unknown cron alias '@fortnightly'"),
        (
            "* * * * * *",
            "UTC",
            "expected 5 fields (minute hour day-of-month month day-of-week), got 6",
        ),
        ("0 0 0 * * * *", "UTC", "got 7"),
        ("61 * * * *", "UTC", "invalid cron expression '61 * * * *'"),
        ("abc", "UTC", "expected 5 fields (minute hour day-of-month month day-of-week), got 1"),
        ("a b c d e", "UTC", "invalid cron expression"),
        ("*/0 * * * *", "UTC", "invalid cron expression"),
        ("0 0 * * 5#6", "UTC", "invalid cron expression"),
        ("", "UTC", "empty"),
        ("   ", "UTC", "empty"),
        ("0 * * * *", "Mars/Base", "unknown time zone 'Mars/Base'"),
        ("0 * * * *", "", "unknown time zone ''"),
        ("0 * * * *", "../etc/passwd", "unknown time zone"),
    ],
)
def test_rejections_carry_a_one_line_reason(expr: str, timezone: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Cron(expr, timezone)
    assert reason in caught.value.message
    assert "\n" not in caught.value.message


# --- bounds and speed -------------------------------------------------------------------


def test_fires_between_is_bounded_for_dense_expressions() -> None:
    cron = Cron("* * * * *", NY)
    began = time.perf_counter()
    fires = cron.fires_between(z(2026, 5, 5), z(2026, 5, 6), 100)
    assert time.perf_counter() - began < 0.05
    assert len(fires) == 100
    assert fires[0] == z(2026, 5, 5, 0, 1)


def test_fires_between_bounds() -> None:
    cron = Cron("0 * * * *")
    assert len(cron.fires_between(z(2026, 5, 5), z(2026, 5, 5, 3), 100)) == 3  # start excluded
    assert cron.fires_between(z(2026, 5, 5), z(2026, 5, 5, 3), 0) == []
    assert cron.fires_between(z(2026, 5, 5, 3), z(2026, 5, 5), 10) == []
    assert Cron("0 0 1 1 *").fires_between(z(2026, 1, 1), z(2031, 1, 1), 100) == [
        z(year, 1, 1) for year in range(2027, 2032)
    ]


def test_next_after_is_fast() -> None:
    cron = Cron("*/15 9-17 * * 1-5", NY)
    after = z(2026, 5, 5, 12, 3)
    began = time.perf_counter()
    for _ in range(200):
        cron.next_after(after)
    assert (time.perf_counter() - began) / 200 < 0.002


# --- properties -------------------------------------------------------------------------

ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"]


@pytest.mark.parametrize("zone", ZONES)
def test_hourly_over_a_year_is_strictly_increasing_and_on_the_hour(zone: str) -> None:
    cron, tz = Cron("0 * * * *", zone), ZoneInfo(zone)
    fire, end, count = z(2026, 1, 1), z(2027, 1, 1), 0
    while True:
        following = cron.next_after(fire)
        assert following > fire
        if following > end:
            break
        assert following.tzinfo is UTC
        assert following.astimezone(tz).minute == 0
        fire, count = following, count + 1
    assert 8760 - 2 <= count <= 8760 + 2


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("expr", ["30 2 * * *", "30 1 * * *", "15 0 * * *"])
def test_fixed_daily_time_fires_exactly_once_per_local_day(zone: str, expr: str) -> None:
    cron, tz = Cron(expr, zone), ZoneInfo(zone)
    fires = cron.preview(z(2026, 1, 1), 400)
    assert all(a < b for a, b in pairwise(fires))
    days = [f.astimezone(tz).date() for f in fires]
    assert len(set(days)) == len(days)
    assert all((b - a).days == 1 for a, b in pairwise(days))
    chained = [cron.next_after(z(2026, 1, 1))]
    while len(chained) < 40:
        chained.append(cron.next_after(chained[-1]))
    assert chained == fires[:40]


def _reference(
    expr: str, fixed: bool, tz: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """Fires in (start, end] found by testing every UTC minute against the SPEC §6 rules."""
    fires: list[datetime] = []
    instant = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while instant <= end:
        local = instant.astimezone(tz)
        fire = croniter.match(expr, local.replace(tzinfo=None), day_or=True)
        fire = fire and not (fixed and local.fold == 1)
        before = (instant - timedelta(seconds=1)).astimezone(tz).utcoffset()
        after = local.utcoffset()
        assert before is not None and after is not None
        if fixed and after > before:  # the first instant after a gap takes the gap's fires
            wall = instant.replace(tzinfo=None) + before
            while wall < instant.replace(tzinfo=None) + after:
                fire = fire or croniter.match(expr, wall, day_or=True)
                wall += timedelta(minutes=1)
        if fire:
            fires.append(instant)
        instant += timedelta(minutes=1)
    return fires


@pytest.mark.parametrize(
    ("zone", "transition"),
    [
        (NY, z(2026, 3, 8, 7)),
        (NY, z(2026, 11, 1, 6)),
        ("Australia/Lord_Howe", z(2026, 4, 4, 15)),
        ("Australia/Lord_Howe", z(2026, 10, 3, 15, 30)),
    ],
)
@pytest.mark.parametrize("expr", ["30 * * * *", "*/20 0-4 * * *", "15,45 1-3 * * *", "* 2 * * *"])
def test_matches_a_minute_by_minute_reference_around_transitions(
    zone: str, transition: datetime, expr: str
) -> None:
    cron, tz = Cron(expr, zone), ZoneInfo(zone)
    just_before = (transition - timedelta(seconds=1)).astimezone(tz)
    assert just_before.utcoffset() != transition.astimezone(tz).utcoffset()
    start, end = transition - timedelta(hours=4, minutes=7), transition + timedelta(hours=4)
    expected = _reference(expr, cron.fixed_time, tz, start, end)
    assert cron.fires_between(start, end, 1000) == expected
    for after in [start + timedelta(minutes=m) for m in range(0, 480, 11)]:
        if after < expected[-1]:
            assert cron.next_after(after) == next(f for f in expected if f > after)


def test_preview_at_the_end_of_the_calendar_stops_instead_of_failing() -> None:
    cron = Cron("* * * * *", "Pacific/Kiritimati")
    fires = cron.preview(datetime(9999, 12, 31, 23, 50, tzinfo=UTC), 1000)
    assert len(fires) < 1000
    assert all(fire.year == 9999 for fire in fires)
