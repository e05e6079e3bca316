"""The dashboard's bar charts: a round scale above the highest bar, said beside the chart,
and the time span its bars cover."""

from datetime import UTC, datetime, timedelta

import pytest

from crawlhub.services.activity import Hour
from crawlhub.ui.charts import HEIGHT, nice_top, simple, stacked


@pytest.mark.parametrize(("value", "top"), [(0, 1), (0.3, 0.5), (1, 1), (1.2, 2), (7, 10),
                                            (23, 25), (180, 200), (4000, 5000)])  # fmt: skip
def test_the_scale_is_the_round_number_at_or_above_the_highest_bar(
    value: float, top: float
) -> None:
    assert nice_top(value) == pytest.approx(top)


def test_short_durations_are_not_drawn_full_height_and_the_scale_says_so() -> None:
    now = datetime(2026, 12, 7, 5, 30, tzinfo=UTC)
    chart = simple([(now, "a", 0.3), (now + timedelta(minutes=5), "b", 0.1)], "duration",
                   "Duration per run", "s")  # fmt: skip
    assert chart.top_label == "0.5 s" and chart.middle_label == "0.25"
    assert [round(b.height, 1) for b in chart.bars] == [
        round(HEIGHT * 0.6, 1),
        round(HEIGHT * 0.2, 1),
    ]
    assert (chart.start, chart.end) == ("2026-12-07 05:30 UTC", "2026-12-07 05:35 UTC")
    assert "scale 0 to 0.5 s" in chart.summary


def test_runs_per_hour_span_their_hours_and_stack_by_outcome() -> None:
    start = datetime(2026, 12, 6, 6, tzinfo=UTC)
    hours = [Hour(start + timedelta(hours=i)) for i in range(24)]
    hours[-1].counts.update({"completed": 3, "failed": 1})
    chart = stacked(hours, "Runs per hour", width=240)
    assert chart.top_label == "5 runs"
    assert (chart.start, chart.end) == ("2026-12-06 06:00 UTC", "2026-12-07 05:00 UTC")
    assert [b.series for b in chart.bars] == ["completed", "failed"]
    assert sum(b.height for b in chart.bars) == pytest.approx(HEIGHT * 4 / 5)
    assert chart.bars[0].x == pytest.approx(230)  # the last hour, at the right end
