"""Bar charts drawn on the server as SVG geometry (no script, nothing to download)."""

from collections.abc import Sequence
from dataclasses import dataclass

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
    """A chart's bars, its size and its scale."""

    bars: list[Bar]
    width: float
    height: int
    top: float  # the value the full height stands for
    label: str


def stacked(hours: Sequence[Hour], label: str, width: float = 720) -> Chart:
    """Runs per hour, stacked by outcome."""
    top = max((h.total for h in hours), default=0) or 1
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
    return Chart(bars, width, HEIGHT, top, label)


def simple(
    values: Sequence[tuple[str, float]], series: str, label: str, width: float = 360
) -> Chart:
    """One bar per (tooltip, value)."""
    top = max((v for _, v in values), default=0) or 1
    step = width / max(len(values), 1)
    bars = [
        Bar(i * step, HEIGHT - HEIGHT * v / top, max(step - 2, 1), HEIGHT * v / top, series, title)
        for i, (title, v) in enumerate(values)
    ]
    return Chart(bars, width, HEIGHT, top, label)
