"""Insight's charts: server-rendered SVG, no JavaScript, no CDN; every chart's numbers are also in a table beside
it on the page (the templates), so nothing is only a picture."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from accord.lib.svg import coord, nice_ceiling

IN_COLOUR, OUT_COLOUR = "#2b6cb0", "#c08a1e"
REVENUE_COLOUR, PROFIT_COLOUR = "#2b6cb0", "#3f8f6b"





def _empty(chart_id: str, title: str, text: str) -> SafeString:
    return format_html('<svg class="chart" id="{}" viewBox="0 0 560 60" role="img" aria-label="{}">'
                       '<text x="280" y="34" text-anchor="middle" class="label empty">{}</text></svg>',
                       chart_id, title, text)


@dataclass(frozen=True)
class Bars:
    """One series of a bar chart: its name, colour and a value per label."""

    name: str
    values: Sequence[float]
    colour: str


def bar_chart(chart_id: str, title: str, labels: Sequence[str], series: Sequence[Bars], *,
              fmt: Callable[[float], str] = lambda v: f"{v:,.0f}", empty: str = "No data.",
              every: int = 1) -> SafeString:
    """Grouped vertical bars, one group per label (every `every`-th label written under the axis)."""
    values = [v for s in series for v in s.values]
    if not labels or not any(v > 0 for v in values):
        return _empty(chart_id, title, empty)
    width, height, left, right, top, bottom = 640, 220, 56, 8, 30, 26
    top_value = nice_ceiling(max(values))
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(labels)
    bar_w = max(1.0, min(18.0, slot * 0.8 / len(series)))

    def y(v: float) -> float:
        return top + plot_h * (1 - v / top_value)

    grid = format_html_join(
        "", '<line x1="{}" y1="{}" x2="{}" y2="{}" class="{}"></line><text x="{}" y="{}" text-anchor="end" '
            'class="label">{}</text>',
        ((left, coord(y(v)), width - right, coord(y(v)), "axis" if v == 0 else "grid", left - 6, coord(y(v) + 4), fmt(v))
         for v in (0.0, top_value / 2, top_value)),
    )
    groups = []
    for i, label in enumerate(labels):
        x0 = left + i * slot + (slot - bar_w * len(series)) / 2
        rects = format_html_join(
            "", '<rect class="bar" data-series="{}" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {} {}'
                '</title></rect>',
            ((s.name, coord(x0 + j * bar_w), coord(y(s.values[i])), coord(bar_w), coord(max(y(0) - y(s.values[i]), 0)), s.colour,
              label, fmt(s.values[i]), s.name) for j, s in enumerate(series)),
        )
        text = format_html('<text x="{}" y="{}" text-anchor="middle" class="label">{}</text>',
                           coord(left + i * slot + slot / 2), height - 8, label) if i % every == 0 else ""
        groups.append(format_html('<g class="group" data-label="{}">{}{}</g>', label, rects, text))
    legend = format_html_join(
        "", '<rect x="{}" y="6" width="12" height="12" rx="2" fill="{}"></rect><text x="{}" y="16" class="label">{}'
            '</text>',
        ((left + k * 150, s.colour, left + k * 150 + 18, s.name) for k, s in enumerate(series)),
    )
    return format_html('<svg class="chart" id="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}{}</svg>',
                       chart_id, width, height, title, legend, grid, mark_safe("".join(groups)))


def hbar_chart(chart_id: str, title: str, rows: Sequence[tuple[str, float, float | None, float | None]], *,
               fmt: Callable[[float], str] = lambda v: f"{v:,.0f}", colour: str = REVENUE_COLOUR,
               empty: str = "No data.") -> SafeString:
    """Horizontal bars, one per (label, value, low, high); a band from low to high is drawn where given."""
    if not rows or not any(v > 0 for _l, v, _lo, _hi in rows):
        return _empty(chart_id, title, empty)
    width, left, right, row_h, top = 640, 170, 110, 22, 8
    height = top * 2 + row_h * len(rows)
    top_value = nice_ceiling(max(max(v, hi or 0) for _l, v, _lo, hi in rows))

    def x(v: float) -> float:
        return left + (width - left - right) * max(v, 0) / top_value

    parts = []
    for i, (label, value, low, high) in enumerate(rows):
        y0 = top + i * row_h
        band = format_html('<line class="band" x1="{}" y1="{}" x2="{}" y2="{}"></line>', coord(x(low)), coord(y0 + row_h / 2),
                           coord(x(high)), coord(y0 + row_h / 2)) if low is not None and high is not None else ""
        parts.append(format_html(
            '<g class="hbar" data-label="{}"><text x="{}" y="{}" text-anchor="end" class="label">{}</text>'
            '<rect x="{}" y="{}" width="{}" height="{}" rx="2" fill="{}" fill-opacity="0.8"><title>{}: {}</title></rect>'
            '{}<text x="{}" y="{}" class="value">{}</text></g>',
            label, left - 6, coord(y0 + row_h * 0.7), label if len(label) <= 24 else label[:23] + "…", left, coord(y0 + 3),
            coord(x(value) - left), row_h - 6, colour, label, fmt(value), band, coord(x(max(value, high or 0)) + 6),
            coord(y0 + row_h * 0.7), fmt(value),
        ))
    return format_html('<svg class="chart" id="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
                       chart_id, width, height, title, mark_safe("".join(parts)))


@dataclass(frozen=True)
class Curve:
    """A line through (x, y) points, x and y as shares (0-1; y may pass 1, e.g. cumulative profit)."""

    name: str
    points: Sequence[tuple[float, float]]
    colour: str


def curve_chart(chart_id: str, title: str, curves: Sequence[Curve], *, marker: float | None = None,
                x_label: str = "share of accounts", empty: str = "No data.") -> SafeString:
    """Cumulative curves on percentage axes, with a vertical marker (e.g. at the top 20%)."""
    values = [y for c in curves for _x, y in c.points]
    if not values or len(curves[0].points) < 2:
        return _empty(chart_id, title, empty)
    width, height, left, right, top, bottom = 640, 260, 56, 16, 30, 34
    y_top = max(1.0, math.ceil(max(values) * 10) / 10)
    y_bottom = min(0.0, math.floor(min(values) * 10) / 10)
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(v: float) -> float:
        return left + plot_w * v

    def py(v: float) -> float:
        return top + plot_h * (y_top - v) / (y_top - y_bottom)

    ticks = sorted({y_bottom, 0.0, 0.5, 1.0, y_top})
    grid = format_html_join(
        "", '<line x1="{}" y1="{}" x2="{}" y2="{}" class="{}"></line><text x="{}" y="{}" text-anchor="end" '
            'class="label">{}%</text>',
        ((left, coord(py(v)), width - right, coord(py(v)), "axis" if v == 0 else "grid", left - 6, coord(py(v) + 4),
          f"{v * 100:.0f}") for v in ticks),
    )
    x_ticks = format_html_join("", '<text x="{}" y="{}" text-anchor="middle" class="label">{}%</text>',
                               ((coord(px(v / 100)), height - 16, v) for v in range(0, 101, 20)))
    mark = format_html('<line class="marker" x1="{}" y1="{}" x2="{}" y2="{}"></line>', coord(px(marker)), top,
                       coord(px(marker)), height - bottom) if marker is not None else ""
    paths = format_html_join(
        "", '<path class="curve" data-series="{}" d="{}" stroke="{}"></path>',
        ((c.name, " ".join(f"{'L' if i else 'M'}{coord(px(x))} {coord(py(y))}" for i, (x, y) in enumerate(c.points)),
          c.colour) for c in curves),
    )
    legend = format_html_join(
        "", '<rect x="{}" y="6" width="12" height="12" rx="2" fill="{}"></rect><text x="{}" y="16" class="label">{}'
            '</text>',
        ((left + k * 200, c.colour, left + k * 200 + 18, c.name) for k, c in enumerate(curves)),
    )
    return format_html(
        '<svg class="chart" id="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}{}{}{}'
        '<text x="{}" y="{}" text-anchor="middle" class="label">{}</text></svg>',
        chart_id, width, height, title, legend, grid, x_ticks, mark, paths, coord(left + plot_w / 2), height - 2, x_label,
    )


def graph_chart(chart_id: str, title: str, edges: dict[tuple[str, str], int], contacts: Sequence[str],
                agents: Sequence[str], empty: str = "No exchanges with agents yet.") -> SafeString:
    """Who talks with whom: contacts on the left, agents on the right, a line per pair as thick as its count."""
    if not edges:
        return _empty(chart_id, title, empty)
    width, row_h, top, left_x, right_x = 640, 26, 16, 200, 440
    height = top * 2 + row_h * max(len(contacts), len(agents))
    most = max(edges.values())

    def y(i: int, n: int) -> float:
        total = max(len(contacts), len(agents))
        return top + row_h * (i + 0.5 + (total - n) / 2)

    cy = {c: y(i, len(contacts)) for i, c in enumerate(contacts)}
    ay = {a: y(i, len(agents)) for i, a in enumerate(agents)}
    lines = format_html_join(
        "", '<line class="edge" data-contact="{}" data-agent="{}" x1="{}" y1="{}" x2="{}" y2="{}" stroke-width="{}">'
            '<title>{} and {}: {}</title></line>',
        ((c, a, left_x, coord(cy[c]), right_x, coord(ay[a]), coord(1 + 7 * n / most), c, a, n)
         for (c, a), n in sorted(edges.items()) if c in cy and a in ay),
    )
    nodes = format_html_join(
        "", '<circle class="node {}" cx="{}" cy="{}" r="5"></circle><text x="{}" y="{}" text-anchor="{}" '
            'class="label">{}</text>',
        [("contact", left_x, coord(cy[c]), left_x - 10, coord(cy[c] + 4), "end", c if len(c) <= 28 else c[:27] + "…")
         for c in contacts]
        + [("agent", right_x, coord(ay[a]), right_x + 10, coord(ay[a] + 4), "start", a) for a in agents],
    )
    return format_html('<svg class="chart" id="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}</svg>',
                       chart_id, width, height, title, lines, nodes)


def score_chart(chart_id: str, title: str, points: Sequence[tuple[str, int]],
                empty: str = "No scores yet.") -> SafeString:
    """A score 0-100 over time: one dot per computation, joined; labels are the computations' dates."""
    if not points:
        return _empty(chart_id, title, empty)
    width, height, left, right, top, bottom = 640, 160, 40, 16, 12, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(points)

    def px(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def py(v: float) -> float:
        return top + plot_h * (1 - v / 100)

    grid = format_html_join(
        "", '<line x1="{}" y1="{}" x2="{}" y2="{}" class="{}"></line><text x="{}" y="{}" text-anchor="end" '
            'class="label">{}</text>',
        ((left, coord(py(v)), width - right, coord(py(v)), "axis" if v == 0 else "grid", left - 6, coord(py(v) + 4), v)
         for v in (0, 50, 100)),
    )
    path = " ".join(f"{'L' if i else 'M'}{coord(px(i))} {coord(py(v))}" for i, (_l, v) in enumerate(points))
    dots = format_html_join("", '<circle cx="{}" cy="{}" r="3.5"><title>{}: {}</title></circle>',
                            ((coord(px(i)), coord(py(v)), label, v) for i, (label, v) in enumerate(points)))
    every = max(1, n // 6)
    labels = format_html_join("", '<text x="{}" y="{}" text-anchor="middle" class="label">{}</text>',
                              ((coord(px(i)), height - 8, label) for i, (label, _v) in enumerate(points)
                               if i % every == 0 or i == n - 1))
    return format_html('<svg class="chart" id="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">{}'
                       '<path class="step" d="{}"></path>{}{}</svg>',
                       chart_id, width, height, title, grid, path, dots, labels)
