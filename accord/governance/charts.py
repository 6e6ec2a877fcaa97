"""Server-rendered SVG charts of the governance page: budget bars, the policy timeline and live line charts.

Like `accord.customers.charts`: no JavaScript library and no CDN; every text that comes from data goes through
format_html. The live charts are re-rendered on the server and swapped in by the page's few lines of script.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from accord.customers.charts import TIER_COLOURS
from accord.lib.svg import PALETTE, coord, nice_ceiling, summary


def colour_of(name: str, index: int) -> str:
    """Tiers keep their badge colours; anything else takes the palette in order."""
    return TIER_COLOURS.get(name, PALETTE[index % len(PALETTE)])


# -- error budget bar -------------------------------------------------------------------------------------------


def budget_level(remaining: float | None) -> str:
    if remaining is None:
        return "none"
    if remaining <= 0:
        return "bad"
    return "ok" if remaining > 0.5 else "warn"


def budget_bar(remaining: float | None, width: int = 160, height: int = 16) -> SafeString:
    """A bar of the error budget left: full when untouched, empty (and red) when spent."""
    level = budget_level(remaining)
    if remaining is None:
        label, share = "no traffic", 0.0
    elif remaining < 0:
        label, share = f"overspent: {(1 - remaining) * 100:.0f}% used", 0.0
    else:
        label, share = f"{remaining * 100:.0f}% left", min(remaining, 1.0)
    bar = width - 2
    return format_html(
        '<svg class="budget-bar {}" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}" '
        'data-remaining="{}"><title>error budget: {}</title>'
        '<rect class="track" x="1" y="1" width="{}" height="{}" rx="3"></rect>'
        '<rect class="fill" x="1" y="1" width="{}" height="{}" rx="3"></rect></svg>'
        '<span class="budget-label {}">{}</span>',
        level, width, height, width, height, f"error budget: {label}",
        "" if remaining is None else f"{remaining:.4f}", label,
        bar, height - 2, coord(bar * share), height - 2, level, label,
    )


# -- policy timeline --------------------------------------------------------------------------------------------


@dataclass
class Period:
    start: dt.datetime
    end: dt.datetime
    dry_run: bool = False


@dataclass
class Mark:
    at: dt.datetime
    kind: str
    title: str


@dataclass
class Lane:
    name: str
    periods: list[Period] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)


def timeline(lanes: Sequence[Lane], start: dt.datetime, end: dt.datetime) -> SafeString:
    """One lane per policy: its active periods between start and end, and ticks for overrides and errors."""
    if not lanes:
        return mark_safe('<p class="muted" id="timeline">No policies yet.</p>')
    width, left, right, top, lane_h, bottom = 1000, 200, 16, 8, 26, 24
    height = top + lane_h * len(lanes) + bottom
    span = max((end - start).total_seconds(), 1.0)

    def x(at: dt.datetime) -> float:
        at = min(max(at, start), end)
        return left + (width - left - right) * (at - start).total_seconds() / span

    local_start = timezone.localtime(start)
    first_hour = local_start.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    hours = []
    tick = first_hour
    while tick < end:
        hours.append(tick)
        tick += dt.timedelta(hours=1)
    grid = format_html_join(
        "",
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="grid"></line>'
        '<text x="{}" y="{}" text-anchor="middle" class="label">{}</text>',
        ((coord(x(h)), top, coord(x(h)), height - bottom, coord(x(h)), height - 6,
          h.strftime("%H:%M") if width - right - x(h) > 45 else "") for h in hours),
    )
    rows, said = [], []
    for i, lane in enumerate(lanes):
        active = [p for p in lane.periods if not p.dry_run]
        said.append(f"{lane.name} " + (
            f"active {len(active)} time{'s' if len(active) != 1 else ''}, the last from "
            f"{timezone.localtime(active[-1].start):%H:%M} to {timezone.localtime(active[-1].end):%H:%M}"
            if active else "not active") + (f", {len(lane.marks)} override or error mark(s)" if lane.marks else ""))
        y = top + i * lane_h
        periods = format_html_join(
            "",
            '<rect class="{}" x="{}" y="{}" width="{}" height="{}" rx="2"><title>{}{} to {}</title></rect>',
            (
                ("dry-run" if p.dry_run else "active", coord(x(p.start)), y + 5, coord(max(x(p.end) - x(p.start), 3.0)),
                 lane_h - 10, "would be active (dry run) " if p.dry_run else "active ",
                 timezone.localtime(p.start).strftime("%H:%M:%S"), timezone.localtime(p.end).strftime("%H:%M:%S"))
                for p in lane.periods
            ),
        )
        marks = format_html_join(
            "",
            '<path class="mark {}" d="M{} {}l5 -7h-10z"><title>{}</title></path>',
            ((f"mark-{m.kind}", coord(x(m.at)), y + lane_h - 3, m.title) for m in lane.marks),
        )
        rows.append(format_html(
            '<g class="lane" data-policy="{}"><line x1="{}" y1="{}" x2="{}" y2="{}" class="lane-line"></line>'
            '<text x="{}" y="{}" text-anchor="end" class="name">{}</text>{}{}</g>',
            lane.name, left, coord(y + lane_h / 2), width - right, coord(y + lane_h / 2), left - 8, coord(y + lane_h / 2 + 4),
            lane.name if len(lane.name) <= 26 else lane.name[:25] + "…", periods, marks,
        ))
    edges = format_html('<text x="{}" y="{}" class="label" text-anchor="end">now</text>', width - right,
                        height - 6)
    return format_html(
        '<svg class="chart" id="timeline" viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}{}</svg>',
        width, height, summary(f"Active periods of each policy over the last {round(span / 3600)} hours", said), grid,
        mark_safe("".join(rows)), edges,
    )


# -- live line charts -------------------------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    points: list[tuple[float, float | None]]  # (epoch seconds, value); None is a gap
    colour: str = ""




def line_chart(chart_id: str, title: str, series: Sequence[Series], start: float, end: float, *,
               fmt: Callable[[float], str], y_min_top: float = 0.0, reference: float | None = None,
               empty: str = "No data.") -> SafeString:
    """Lines over [start, end] (epoch seconds), one per series, gaps where a value is None; the last value of
    each series is written in the legend."""
    width, height, left, right, top, bottom = 640, 210, 60, 190, 12, 24
    values = [v for s in series for _t, v in s.points if v is not None]
    if not values:
        return format_html(
            '<svg class="chart live" id="{}" viewBox="0 0 {} {}" role="img" aria-label="{}" data-series="0">'
            '<text x="{}" y="{}" text-anchor="middle" class="label empty">{}</text></svg>',
            chart_id, width, 80, f"{title}: {empty}", width // 2, 44, empty,
        )
    y_top = nice_ceiling(max(*values, y_min_top, reference or 0.0))
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max(end - start, 1.0)

    def x(t: float) -> float:
        return left + plot_w * (min(max(t, start), end) - start) / span

    def y(v: float) -> float:
        return top + plot_h * (1 - min(v, y_top) / y_top)

    grid = format_html_join(
        "",
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="{}"></line>'
        '<text x="{}" y="{}" text-anchor="end" class="label">{}</text>',
        ((left, coord(y(v)), left + plot_w, coord(y(v)), "axis" if v == 0 else "grid", left - 6, coord(y(v) + 4), fmt(v))
         for v in (0.0, y_top / 2, y_top)),
    )
    minutes = round(span / 60)
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" text-anchor="{}" class="label">{}</text>',
        ((coord(x(end - m * 60)), height - 6, "end" if m == 0 else "middle", "now" if m == 0 else f"-{m}m")
         for m in range(0, minutes + 1, 5)),
    )
    ref = format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="reference"></line>', left, coord(y(reference)), left + plot_w,
        coord(y(reference)),
    ) if reference is not None else ""
    lines, legend, said = [], [], []
    for i, s in enumerate(series):
        colour = s.colour or colour_of(s.name, i)
        path, pen_down, dots = [], False, []
        for t, v in s.points:
            if v is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{coord(x(t))} {coord(y(v))}")
            pen_down = True
        # a lone point (no neighbour on either side) gets a dot so it shows
        for j, (t, v) in enumerate(s.points):
            before = s.points[j - 1][1] if j > 0 else None
            after = s.points[j + 1][1] if j + 1 < len(s.points) else None
            if v is not None and before is None and after is None:
                dots.append((coord(x(t)), coord(y(v)), colour))
        last = next((v for _t, v in reversed(s.points) if v is not None), None)
        seen = [v for _t, v in s.points if v is not None]
        said.append(f"{s.name} {'no data' if last is None else fmt(last)} now"
                    + (f", at most {fmt(max(seen))}" if seen else ""))
        lines.append(format_html(
            '<g class="series" data-series="{}"><path d="{}" stroke="{}"></path>{}</g>',
            s.name, " ".join(path), colour,
            format_html_join("", '<circle cx="{}" cy="{}" r="2.5" fill="{}"></circle>', dots),
        ))
        legend.append(format_html(
            '<g class="legend-item" data-series="{}"><rect x="{}" y="{}" width="10" height="10" rx="2" fill="{}">'
            '</rect><text x="{}" y="{}" class="label">{}</text><text x="{}" y="{}" class="value" '
            'text-anchor="end">{}</text></g>',
            s.name, width - right + 12, top + i * 18, colour, width - right + 28, top + i * 18 + 9,
            s.name if len(s.name) <= 20 else s.name[:19] + "…", width - 4, top + i * 18 + 9,
            "no data" if last is None else fmt(last),
        ))
    return format_html(
        '<svg class="chart live" id="{}" viewBox="0 0 {} {}" role="img" aria-label="{}" data-series="{}">'
        '{}{}{}{}{}</svg>',
        chart_id, width, height, summary(title, said), len(series), grid, ref, ticks, mark_safe("".join(lines)),
        mark_safe("".join(legend)),
    )


def fmt_ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.3g} s"
    return f"{value:.0f} ms" if value >= 10 or value == 0 else f"{value:.1f} ms"


def fmt_share(value: float) -> str:
    return f"{value * 100:.0f}%"
