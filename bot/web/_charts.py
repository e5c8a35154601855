"""The admin page's plots as inline SVG: no JavaScript, no plotting library, crisp at any zoom.

Bars only: per day (a column per UTC day) and per member (a row per member, with their quota drawn
as a red mark across the row when a `/quota` rule caps them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["Bar", "Chart", "columns_chart", "rows_chart"]

_WIDTH = 720
_LABEL_W = 170
_ROW_H = 22
_COL_AREA_H = 160
_AXIS_H = 34


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    limit: float | None = None
    """The quota for this bar (same unit); None = no cap."""


@dataclass(frozen=True, slots=True)
class Chart:
    """A plot and its title; a template renders it as its SVG."""

    title: str
    svg: Markup

    def __html__(self) -> str:
        return str(self.svg)


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) or value >= 100 else f"{value:.1f}"


def columns_chart(title: str, bars: Sequence[Bar], *, unit: str) -> Chart:
    """A column per bar (one UTC day each), labelled underneath every few columns."""
    top = max([bar.value for bar in bars] + [1.0])
    step = (_WIDTH - 40) / max(len(bars), 1)
    every = max(1, len(bars) // 10)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {_WIDTH} {_COL_AREA_H + _AXIS_H + 20}" '
        f'width="{_WIDTH}" height="{_COL_AREA_H + _AXIS_H + 20}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="12" class="axis">{escape(unit)} (max {_number(top)})</text>',
    ]
    for i, bar in enumerate(bars):
        height = _COL_AREA_H * bar.value / top
        x = 40 + i * step
        y = 20 + _COL_AREA_H - height
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{height:.1f}">'
            f"<title>{escape(bar.label)}: {_number(bar.value)} {escape(unit)}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{20 + _COL_AREA_H + 14}">{escape(bar.label[5:])}</text>'
            )
    parts.append("</svg>")
    return Chart(title, Markup("".join(parts)))


def rows_chart(title: str, bars: Sequence[Bar], *, unit: str) -> Chart:
    """A row per bar (one member each), with the quota as a red mark where one is set."""
    top = max([max(bar.value, bar.limit or 0.0) for bar in bars] + [1.0])
    area = _WIDTH - _LABEL_W - 60
    height = _ROW_H * max(len(bars), 1) + 10
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, bar in enumerate(bars):
        y = 4 + i * _ROW_H
        width = area * bar.value / top
        over = bar.limit is not None and bar.value >= bar.limit
        parts.append(f'<text class="label" x="0" y="{y + 14}">{escape(bar.label[:24])}</text>')
        parts.append(
            f'<rect class="{"bar over" if over else "bar"}" x="{_LABEL_W}" y="{y}" '
            f'width="{max(width, 1):.1f}" height="{_ROW_H - 6}">'
            f"<title>{escape(bar.label)}: {_number(bar.value)} {escape(unit)}</title></rect>"
        )
        parts.append(
            f'<text class="value" x="{_LABEL_W + width + 4:.1f}" y="{y + 14}">{_number(bar.value)}</text>'
        )
        if bar.limit is not None:
            x = _LABEL_W + area * bar.limit / top
            parts.append(
                f'<line class="quota" x1="{x:.1f}" x2="{x:.1f}" y1="{y - 2}" y2="{y + _ROW_H - 4}">'
                f"<title>quota: {_number(bar.limit)} {escape(unit)} a day</title></line>"
            )
    parts.append("</svg>")
    return Chart(title, Markup("".join(parts)))
