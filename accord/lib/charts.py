"""Charts the staff pages and the portal share (server-rendered SVG like `customers/charts.py`; each chart sits
beside a table with the same numbers): SLA attainment as horizontal bars against what is required, and daily
volumes with their forecast."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from accord.lib.svg import PALETTE, coord, nice_ceiling, summary


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


@dataclass(frozen=True)
class Level:
    """A horizontal line on a forecast chart: a pool's capacity, a plan's included quantity."""

    label: str
    value: float


def forecast_chart(chart_id: str, title: str, days: list[dt.date], history: list[float], ahead: list[dt.date],
                   mean: list[float], lower: list[float], upper: list[float], levels: list[Level] | None = None,
                   *, reason: str = "") -> SafeString:
    """Daily volumes: the history as a line, the forecast as a dashed line in its interval band, and levels.

    With `reason` (no forecast: too little history), only the history is drawn, with the reason written on it."""
    levels = levels or []
    if not history:
        return format_html('<svg class="chart" id="{}" viewBox="0 0 640 60" role="img" aria-label="{}">'
                           '<text x="320" y="34" text-anchor="middle" class="label empty">{}</text></svg>',
                           chart_id, summary(title, ["no data"]), reason or "No data.")
    width, height, left, right, top, bottom = 640, 240, 60, 90, 16, 28
    every = [*days, *ahead]
    top_value = nice_ceiling(max([*history, *upper, *(lv.value for lv in levels), 1.0]) * 1.05)
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(1, len(every) - 1)

    def px(i: int) -> float:
        return left + step * i

    def py(v: float) -> float:
        return top + plot_h * (1 - min(v, top_value) / top_value)

    def line(values: list[float], start: int) -> str:
        return " ".join(f"{'L' if k else 'M'}{coord(px(start + k))} {coord(py(v))}" for k, v in enumerate(values))

    parts = [format_html('<line x1="{}" y1="{}" x2="{}" y2="{}" class="{}"></line>'
                         '<text x="{}" y="{}" text-anchor="end" class="label">{}</text>',
                         left, coord(py(v)), width - right, coord(py(v)), "axis" if v == 0 else "grid", left - 6,
                         coord(py(v) + 4), f"{v:,.0f}") for v in (0.0, top_value / 2, top_value)]
    ticks = range(0, len(every), max(1, len(every) // 6))
    parts += [format_html('<text x="{}" y="{}" text-anchor="middle" class="label">{}</text>', coord(px(i)),
                          height - 8, every[i].strftime("%d %b")) for i in ticks]
    n = len(history)
    if mean:
        band = [f"{coord(px(n + k))} {coord(py(v))}" for k, v in enumerate(upper)]
        band += [f"{coord(px(n + k))} {coord(py(v))}" for k, v in reversed(list(enumerate(lower)))]
        parts.append(format_html('<polygon class="band" points="{}" fill="{}" fill-opacity="0.18"></polygon>'
                                 '<path class="forecast" d="{}" stroke="{}" stroke-dasharray="5 3" fill="none">'
                                 '</path>', " ".join(band), PALETTE[0], line([history[-1], *mean], n - 1),
                                 PALETTE[0]))
    elif reason:
        parts.append(format_html('<text x="{}" y="{}" class="label empty">{}</text>', coord(left + 8), top + 14,
                                 reason))
    parts.append(format_html('<path class="history" d="{}" stroke="{}" fill="none"></path>', line(history, 0),
                             PALETTE[2]))
    for k, lv in enumerate(levels):
        colour = PALETTE[4 if k == 0 else 1]
        parts.append(format_html('<g class="level" data-value="{}"><line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" '
                                 'stroke-dasharray="2 2"></line><text x="{}" y="{}" class="label">{}</text></g>',
                                 f"{lv.value:g}", left, coord(py(lv.value)), width - right, coord(py(lv.value)),
                                 colour, width - right + 4, coord(py(lv.value) + 4), lv.label))
    said = [f"last {min(n, 28)} days average {sum(history[-28:]) / min(n, 28):,.0f} a day"]
    if mean:
        said.append(f"forecast for {ahead[-1]:%d %b %Y} {mean[-1]:,.0f} a day (interval {lower[-1]:,.0f} to "
                    f"{upper[-1]:,.0f})")
    elif reason:
        said.append(reason)
    for lv in levels:
        crossing = next((ahead[i] for i, v in enumerate(mean) if v > lv.value), None)
        said.append(f"{lv.label} {lv.value:,.0f}" + (f", crossed on {crossing:%d %b %Y}" if crossing else ""))
    return format_html('<svg class="chart forecast-chart" id="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">{}'
                       '</svg>', chart_id, width, height, summary(title, said), mark_safe("".join(parts)))
