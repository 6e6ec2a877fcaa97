"""The SLA charts of the staff pages: attainment as horizontal bars against what is required (server-rendered
SVG like `customers/charts.py`; each chart sits beside a table with the same numbers)."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from accord.lib.svg import PALETTE, coord, summary


@dataclass(frozen=True)
class Bar:
    label: str
    percent: float | None  # None: nothing to judge yet
    required: float | None = None  # the target's share in percent, drawn as a tick


def _floor(lowest: float) -> float:
    """Where the axis starts: high attainment differs in its last digits, so the axis starts near it."""
    for start in (99.0, 90.0, 50.0):
        if lowest >= start:
            return start
    return 0.0


def attainment_bars(chart_id: str, title: str, bars: list[Bar]) -> SafeString:
    """One bar per row, its attainment in percent; a dark tick where the target lies; "no data" when empty."""
    if not bars:
        return mark_safe("")
    known = [v for b in bars for v in (b.percent, b.required) if v is not None]
    low = _floor(min(known)) if known else 0.0
    width, left, right, row_h, top = 560, 170, 60, 26, 22
    height = top + row_h * len(bars) + 8
    span = width - left - right

    def x(percent: float) -> float:
        return left + span * max(0.0, percent - low) / (100 - low)

    parts = [format_html(
        '<text x="{}" y="14" class="label" text-anchor="middle">{}%</text>'
        '<text x="{}" y="14" class="label" text-anchor="middle">100%</text>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"></line>',
        coord(left), f"{low:g}", coord(width - right), coord(left), top - 4, coord(left), coord(height - 4))]
    texts = []
    for i, b in enumerate(bars):
        y = top + i * row_h
        name = b.label if len(b.label) <= 24 else b.label[:23] + "…"
        if b.percent is None:
            value, shown = format_html('<text x="{}" y="{}" class="label">no data</text>', coord(left + 6),
                                       coord(y + 16)), "no data"
        else:
            shown = f"{b.percent:.2f}%"
            value = format_html(
                '<rect x="{}" y="{}" width="{}" height="16" rx="2" fill="{}"></rect>'
                '<text x="{}" y="{}" class="value">{}</text>',
                coord(left), coord(y + 4), coord(max(x(b.percent) - left, 1.0)),
                PALETTE[3] if b.required is None or b.percent >= b.required else PALETTE[4],
                coord(width - right + 4), coord(y + 16), f"{b.percent:.2f}%")
        tick = format_html('<line x1="{}" y1="{}" x2="{}" y2="{}" class="target"></line>', coord(x(b.required)),
                           coord(y + 1), coord(x(b.required)), coord(y + 23)) if b.required is not None else ""
        parts.append(format_html('<g class="bar" data-label="{}"><text x="{}" y="{}" class="label" '
                                 'text-anchor="end">{}</text>{}{}</g>',
                                 b.label, left - 8, coord(y + 16), name, value, tick))
        texts.append(f"{b.label} {shown}" + (f" (target {b.required:g}%)" if b.required is not None else ""))
    return format_html('<svg class="chart" id="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
                       chart_id, width, height, summary(title, texts), mark_safe("".join(parts)))
