"""Server-rendered SVG bar charts, readable without colour.

Each bar carries its label and its value as text next to it (direct labels), and bars of
different series are told apart by a fill pattern (hatching, dots, solid), never by hue
alone. The chart is decoration for sighted readers: it is `aria-hidden`, and the table
rendered beside it is the accessible alternative (WCAG 2.2, 1.1.1 and 1.4.1).

Geometry is integer arithmetic on minor units: no float is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PATTERNS = ("solid", "hatch", "dots", "cross")

_DEFS = (
    "<defs>"
    '<pattern id="{p}-hatch" width="8" height="8" patternUnits="userSpaceOnUse"'
    ' patternTransform="rotate(45)">'
    '<rect width="8" height="8" fill="#fff"/><rect width="3" height="8" fill="#1f3a5f"/>'
    "</pattern>"
    '<pattern id="{p}-dots" width="6" height="6" patternUnits="userSpaceOnUse">'
    '<rect width="6" height="6" fill="#fff"/><circle cx="3" cy="3" r="1.6" fill="#1f3a5f"/>'
    "</pattern>"
    '<pattern id="{p}-cross" width="8" height="8" patternUnits="userSpaceOnUse">'
    '<rect width="8" height="8" fill="#fff"/>'
    '<path d="M0 0L8 8M8 0L0 8" stroke="#1f3a5f" stroke-width="1.5"/>'
    "</pattern>"
    "</defs>"
)


@dataclass(frozen=True)
class Bar:
    """One bar: `value` in any integer unit (minor units, a count); `text` is what is shown
    beside it (the formatted amount)."""

    label: str
    value: int
    text: str
    pattern: str = "solid"


def _fill(prefix: str, pattern: str) -> str:
    return "#1f3a5f" if pattern == "solid" else f"url(#{prefix}-{pattern})"


def horizontal_bars(chart_id: str, bars: Sequence[Bar], *, width: int = 640) -> Markup:
    """One row per bar: label on the left, the bar, its value after the bar."""
    label_w, value_w, row_h, bar_h = 150, 150, 30, 20
    track = width - label_w - value_w
    top = max((abs(bar.value) for bar in bars), default=0) or 1
    height = row_h * len(bars) + 10
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" xmlns="http://www.w3.org/2000/svg"'
        f' viewBox="0 0 {width} {height}" width="100%" aria-hidden="true" focusable="false">',
        _DEFS.format(p=escape(chart_id)),
    ]
    for i, bar in enumerate(bars):
        y = 5 + i * row_h
        length = max(abs(bar.value) * track // top, 1 if bar.value else 0)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="13">'
            f"{escape(bar.label)}</text>"
            f'<rect x="{label_w}" y="{y}" width="{length}" height="{bar_h}"'
            f' fill="{_fill(chart_id, bar.pattern)}" stroke="#1f3a5f"/>'
            f'<text x="{label_w + length + 6}" y="{y + 15}" font-size="13">'
            f"{escape(bar.text)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text and id in it went through escape())


def columns(chart_id: str, bars: Sequence[Bar], *, height: int = 220, every: int = 1) -> Markup:
    """Vertical columns for a series over time; every `every`-th label is written under
    its column, and the largest value is written above its column."""
    if not bars:
        return Markup("")
    plot_h, base = height - 40, height - 25
    step = max(6, min(40, 900 // len(bars)))
    width = step * len(bars) + 20
    top = max((abs(bar.value) for bar in bars), default=0) or 1
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" xmlns="http://www.w3.org/2000/svg"'
        f' viewBox="0 0 {width} {height}" width="100%" aria-hidden="true" focusable="false">',
        _DEFS.format(p=escape(chart_id)),
        f'<line x1="10" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#333"/>',
    ]
    peak = max(range(len(bars)), key=lambda i: bars[i].value)
    for i, bar in enumerate(bars):
        x = 10 + i * step
        h = max(bar.value, 0) * plot_h // top
        parts.append(
            f'<rect x="{x + 1}" y="{base - h}" width="{step - 2}" height="{h}"'
            f' fill="{_fill(chart_id, bar.pattern)}" stroke="#1f3a5f"/>'
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + step // 2}" y="{height - 8}" text-anchor="middle"'
                f' font-size="11">{escape(bar.label)}</text>'
            )
        if i == peak and bar.value > 0:
            parts.append(
                f'<text x="{x + step // 2}" y="{base - h - 4}" text-anchor="middle"'
                f' font-size="11">{escape(bar.text)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text and id in it went through escape())
