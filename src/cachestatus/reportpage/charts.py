"""The report's per-level charts as inline SVG, written here: no JavaScript, they print, and each
bar is one ``<rect class="bar" data-level data-value>`` a test can count."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any, NamedTuple

#: Geometry of a chart (pixels): label column, bar area, row height.
_LABEL_W = 44
_BAR_W = 260
_VALUE_W = 110
_ROW_H = 16
_TOP = 22


class Chart(NamedTuple):
    """One chart: a title, the value of a level's row, how a value reads, and whether bars
    scale logarithmically (counts that span orders of magnitude)."""

    title: str
    value: Callable[[dict[str, Any]], float | None]
    text: Callable[[float], str]
    log: bool = False
    #: A second value drawn as a tick on the bar (the expected count behind the present one).
    mark: Callable[[dict[str, Any]], float | None] | None = None
    #: The value of a full bar (default: the largest value).
    top: float | None = None


def _count(value: float) -> str:
    return f"{int(value):,}"


def _bytes(value: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{int(value):,} B"


#: The charts of the page, in order.
CHARTS = (
    Chart("Percent complete", lambda r: r["percentComplete"], lambda v: f"{v:.2f} %", top=100.0),
    Chart(
        "Tiles present (tick: expected; log scale)",
        lambda r: r["tilesPresent"],
        _count,
        log=True,
        mark=lambda r: r["tilesExpected"],
    ),
    Chart("Tile bytes", lambda r: r["tileBytes"], _bytes),
)


def _scale(chart: Chart, rows: Sequence[dict[str, Any]]) -> Callable[[float], float]:
    """Bar length in pixels of a value."""
    values = [v for r in rows for v in (chart.value(r), chart.mark and chart.mark(r)) if v]
    top = chart.top or max([1.0, *values])
    if chart.log:
        span = math.log10(top + 1)
        return lambda v: _BAR_W * math.log10(v + 1) / span if span else 0.0
    return lambda v: _BAR_W * v / top


def bar_chart(chart: Chart, rows: Sequence[dict[str, Any]]) -> str:
    """One chart of the level table's rows (as :func:`~.data.page_data` gives them)."""
    length = _scale(chart, rows)
    height = _TOP + _ROW_H * len(rows) + 4
    width = _LABEL_W + _BAR_W + _VALUE_W
    parts = [
        f'<svg class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(chart.title)}">',
        f'<text x="0" y="14" class="title">{escape(chart.title)}</text>',
    ]
    for i, row in enumerate(rows):
        y = _TOP + i * _ROW_H
        value = chart.value(row)
        shown = 0.0 if value is None else float(value)
        parts.append(f'<text x="0" y="{y + 12}">L{row["level"]}</text>')
        parts.append(
            f'<rect class="bar" data-level="{row["level"]}" data-value="{shown:g}" '
            f'x="{_LABEL_W}" y="{y + 2}" width="{length(shown):.1f}" height="{_ROW_H - 4}"/>'
        )
        mark = chart.mark(row) if chart.mark else None
        if mark:
            x = _LABEL_W + length(float(mark))
            parts.append(
                f'<line class="mark" x1="{x:.1f}" x2="{x:.1f}" y1="{y + 1}" y2="{y + _ROW_H - 1}"/>'
            )
        label = "n/a" if value is None else chart.text(shown)
        parts.append(f'<text x="{_LABEL_W + _BAR_W + 6}" y="{y + 12}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def charts(rows: Sequence[dict[str, Any]]) -> str:
    """Every chart of :data:`CHARTS` for the level table's rows."""
    return "\n".join(bar_chart(chart, rows) for chart in CHARTS)
