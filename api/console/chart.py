"""A segment's member count over time, as the geometry of an inline SVG line chart.

Drawn on the server: no chart library, no script, and nothing for the page's policy to allow. The
template draws it; the calculations' table beside it says the same in text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 34  # margins: room for the axes' labels


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    partition: str
    member_count: int


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    points: list[ChartPoint]
    line: str  # the polyline's points
    y_ticks: list[tuple[float, str]]  # y, label
    x_labels: list[tuple[float, str, str]]  # x, label, text-anchor
    left: int = LEFT
    right: int = WIDTH - RIGHT
    bottom: float = HEIGHT - BOTTOM


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2 or 5 times a power of ten that is at least `value` (an axis' top)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def member_count_chart(calculations: list[dict[str, Any]]) -> Chart | None:
    """The chart of a segment's history (newest first, as the history answers), oldest on the left."""
    oldest_first = list(reversed(calculations))
    if not oldest_first:
        return None
    top = nice_ceiling(max(c["member_count"] for c in oldest_first))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(i: int) -> float:
        return LEFT + (plot_width / 2 if len(oldest_first) == 1 else plot_width * i / (len(oldest_first) - 1))

    def y_of(count: int) -> float:
        return TOP + plot_height * (1 - count / top)

    points = [
        ChartPoint(round(x_of(i), 1), round(y_of(c["member_count"]), 1), c["partition"], c["member_count"])
        for i, c in enumerate(oldest_first)
    ]
    x_labels = [(points[0].x, points[0].partition, "start" if len(points) > 1 else "middle")]
    if len(points) > 1:
        x_labels.append((points[-1].x, points[-1].partition, "end"))
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        points=points,
        line=" ".join(f"{p.x},{p.y}" for p in points),
        y_ticks=[(round(y_of(v), 1), f"{v:,}") for v in sorted({0, top // 2, top})],
        x_labels=x_labels,
    )
