"""Charts drawn on the server: the geometry of small SVG bar charts, which
``templates/admin/charts.html`` turns into markup (escaped like any page),
each with its numbers as a table for screen readers. No script, no
third-party resource."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

WIDTH = 480
HEIGHT = 180
LEFT = 44  # room for the value labels
RIGHT = 8
TOP = 10
BOTTOM = 24  # room for the date labels


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str
    negative: bool = False
    level: str = "ok"  # ok, near, over: a rate against a limit


@dataclass(frozen=True)
class Band:
    """A horizontal band of the plot: a warning or an over-the-limit zone."""

    y: float
    height: float
    level: str
    label: str


@dataclass(frozen=True)
class Chart:
    """One chart: its bars, value ticks, date labels and zones, in a
    ``WIDTH`` × ``HEIGHT`` view box, and its numbers as table ``rows``."""

    id: str
    title: str
    description: str
    bars: list[Bar]
    ticks: list[tuple[float, str]]
    labels: list[tuple[float, str]]
    zero_y: float
    columns: tuple[str, str] = ("Day", "Value")
    rows: list[tuple[str, str]] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT


def nice_step(span: float, ticks: int = 4) -> float:
    """A round step (1, 2 or 5 times a power of ten) cutting ``span`` into
    about ``ticks`` parts."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= raw)


def _scale(low: float, high: float, step: float):
    top, bottom = TOP, HEIGHT - BOTTOM

    def y(value: float) -> float:
        return round(bottom - (value - low) / (high - low) * (bottom - top), 2)

    return y


def day_label(day: dt.date) -> str:
    return f"{day.day} {day:%b}"


def _date_labels(days: list[dt.date], slot: float) -> list[tuple[float, str]]:
    """About six evenly spread date labels under the bars."""
    if not days:
        return []
    every = max(1, math.ceil(len(days) / 6))
    return [(round(LEFT + (i + 0.5) * slot, 2), day_label(day)) for i, day in enumerate(days) if i % every == 0]


def daily_bars(chart_id: str, title: str, days: list[dt.date], values: list[int], description: str) -> Chart:
    """A bar per day of ``values`` (which may be negative: below the zero line)."""
    low, high = min(0, *values) if values else 0, max(0, *values) if values else 0
    step = max(nice_step(high - low), 1)  # counts: no step under one
    low = math.floor(low / step) * step
    high = max(math.ceil(high / step) * step, low + step)
    y = _scale(low, high, step)
    slot = (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    width = max(slot * 0.8, 0.5)
    bars = []
    for i, (day, value) in enumerate(zip(days, values)):
        top, bottom = sorted((y(value), y(0)))
        bars.append(Bar(round(LEFT + i * slot + (slot - width) / 2, 2), top, round(width, 2),
                        round(max(bottom - top, 0), 2), day_label(day), f"{value:+,}" if low < 0 else f"{value:,}",
                        negative=value < 0))
    ticks = [(y(v), f"{v:,.0f}") for v in _range(low, high, step)]
    rows = [(f"{day:%a} {day_label(day)} {day.year}", f"{value:+,}" if low < 0 else f"{value:,}")
            for day, value in zip(days, values)]
    return Chart(chart_id, title, description, bars, ticks, _date_labels(days, slot), y(0), rows=rows)


def rate_bars(chart_id: str, title: str, editions: list[tuple[str, str, float, str]], limit: float,
              warn_share: float, description: str) -> Chart:
    """A bar per edition ((key, label, rate, level), oldest first) against
    ``limit``: the zone from ``warn_share`` of it up to it is marked as a
    warning, the zone above it as over the limit."""
    rates = [rate for _key, _label, rate, _level in editions]
    high = max([limit * 1.25, *rates])
    step = nice_step(high)
    high = math.ceil(high / step) * step
    y = _scale(0, high, step)
    slot = (WIDTH - LEFT - RIGHT) / max(len(editions), 1)
    width = max(slot * 0.7, 0.5)
    bars = [Bar(round(LEFT + i * slot + (slot - width) / 2, 2), y(rate), round(width, 2), round(y(0) - y(rate), 2),
                label, f"{rate:.3%}", level=level)
            for i, (_key, label, rate, level) in enumerate(editions)]
    bands = [Band(y(limit), round(y(limit * warn_share) - y(limit), 2), "near",
                  f"from {limit * warn_share:.2%}: near the limit"),
             Band(y(high), round(y(limit) - y(high), 2), "over", f"from {limit:.2%}: over the limit")]
    ticks = [(y(v), f"{v:.2%}") for v in _range(0, high, step)]
    labels = []
    every = max(1, math.ceil(len(editions) / 6))
    for i, (_key, label, _rate, _level) in enumerate(editions):
        if i % every == 0:
            labels.append((round(LEFT + (i + 0.5) * slot, 2), label))
    rows = [(label, f"{rate:.3%}" + {"ok": "", "near": " (near the limit)", "over": " (over the limit)"}[level])
            for _key, label, rate, level in editions]
    return Chart(chart_id, title, description, bars, ticks, labels, y(0), columns=("Edition", "Rate"), rows=rows,
                 bands=bands)


def _range(low: float, high: float, step: float) -> list[float]:
    count = int(round((high - low) / step))
    return [low + i * step for i in range(count + 1)]
