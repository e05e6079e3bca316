"""Bar charts drawn on the server as SVG geometry (no script, nothing to download), with
their scale and their time axis as text beside them."""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from crawlhub.services.activity import OUTCOMES, Hour

HEIGHT = 120  # drawing height in SVG units


@dataclass
class Bar:
    """One rectangle: where it stands, how tall, which series, and its tooltip."""

    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass
class Chart:
    """A chart's bars, its size, its scale (`top`: the value the full height stands for,
    a round number above the highest bar) and the times its first and last bars stand for."""

    bars: list[Bar]
    width: float
    height: int
    top: float
    label: str
    unit: str
    start: str
    end: str
    # A rule's thresholds drawn across the chart: (y in SVG units, level, title).
    bands: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def top_label(self) -> str:
        return f"{self.top:g} {self.unit}".strip()

    @property
    def middle_label(self) -> str:
        return f"{self.top / 2:g}"

    @property
    def summary(self) -> str:
        """What the chart shows, for those who do not see it."""
        return f"{self.label}: {len(self.bars)} bars from {self.start} to {self.end}, " \
            f"scale 0 to {self.top_label}"  # fmt: skip


def nice_top(value: float) -> float:
    """The round number (1, 2, 2.5 or 5 times a power of ten) at or above `value`: bars
    are drawn against it, so the highest is not always full height and the scale reads."""
    if value <= 0:
        return 1
    power: float = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if value <= m * power * (1 + 1e-9))


def _when(moment: datetime, hours: bool) -> str:
    return f"{moment:%Y-%m-%d %H:00}" if hours else f"{moment:%Y-%m-%d %H:%M}"


def stacked(hours: Sequence[Hour], label: str, width: float = 720) -> Chart:
    """Runs per hour, stacked by outcome, oldest hour left (UTC)."""
    top = nice_top(max((h.total for h in hours), default=0))
    step = width / max(len(hours), 1)
    bars: list[Bar] = []
    for i, hour in enumerate(hours):
        y = float(HEIGHT)
        for outcome in OUTCOMES:
            count = hour.counts.get(outcome, 0)
            if not count:
                continue
            height = HEIGHT * count / top
            y -= height
            title = f"{hour.start:%Y-%m-%d %H:00} UTC: {count} {outcome}"
            bars.append(Bar(i * step, y, max(step - 1, 1), height, outcome, title))
    start = _when(hours[0].start, True) + " UTC" if hours else ""
    end = _when(hours[-1].start, True) + " UTC" if hours else ""
    return Chart(bars, width, HEIGHT, top, label, "runs", start, end)


def simple(
    values: Sequence[tuple[datetime, str, float]], series: str, label: str, unit: str,
    width: float = 360, *, top: float | None = None,
    bands: Sequence[tuple[float, str]] = (),
) -> Chart:  # fmt: skip
    """One bar per (time, tooltip, value), oldest left, against `top` (default: a round
    number above the highest); `bands`: a rule's (threshold, level) drawn as lines."""
    top = top or nice_top(max((v for _, _, v in values), default=0))
    step = width / max(len(values), 1)
    bars = [
        Bar(i * step, HEIGHT - HEIGHT * v / top, max(step - 2, 1), HEIGHT * v / top, series, title)
        for i, (_, title, v) in enumerate(values)
    ]
    start = _when(values[0][0], False) + " UTC" if values else ""
    end = _when(values[-1][0], False) + " UTC" if values else ""
    lines = [(HEIGHT - HEIGHT * min(v, top) / top, level, f"{level} below {v:g}")
             for v, level in bands]  # fmt: skip
    return Chart(bars, width, HEIGHT, top, label, unit, start, end, lines)
