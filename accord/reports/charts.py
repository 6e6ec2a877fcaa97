"""The two charts of a report, server-side SVG that the page and the PDF share: daily attainment against the
target, and the error budget burning down over the period.

Self-contained (colours are attributes, not page CSS), so WeasyPrint draws them as the browser does; every text
from data goes through format_html.
"""

from __future__ import annotations

from fractions import Fraction

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accord.agreements.models import Objective
from accord.lib import units
from accord.lib.svg import PALETTE, coord

from .builder import ObjectiveResult

WIDTH, HEIGHT = 520, 170
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 28
INK, GRID, TARGET, BAD = "#1f2933", "#d9dde3", "#b0413e", "#b0413e"


def _frame(title: str, y_labels: list[tuple[float, str]], x_labels: list[tuple[float, str]], body: SafeString,
           description: str, *, printed: bool = False) -> SafeString:
    """The chart's grid and axis labels around its body. `printed`: for WeasyPrint, the labels are HTML laid over
    the drawing (`printing.PRINT_CSS`, class "chart") instead of SVG text, which WeasyPrint lays out and draws
    letter by letter (a label cost as much as eight lines of the page); the grid is one path."""
    if printed:
        lines = "".join(f"M{LEFT} {coord(y)}H{WIDTH - RIGHT}" for y, _text in y_labels)
        ys = format_html_join("", '<span class="y" style="left:{}px;top:{}px">{}</span>',
                              ((LEFT - 4 - 64, coord(y + 3 - 10), text) for y, text in y_labels))
        xs = format_html_join("", '<span class="x" style="left:{}px;top:{}px">{}</span>',
                              ((coord(x - 32), HEIGHT - 20, text) for x, text in x_labels))
        return format_html(
            '<div class="chart" role="img" aria-label="{}: {}"><svg xmlns="http://www.w3.org/2000/svg" '
            'viewBox="0 0 {} {}" width="{}" height="{}"><path d="{}" stroke="{}" stroke-width="1"/>{}</svg>{}{}'
            '</div>', title, description, WIDTH, HEIGHT, WIDTH, HEIGHT, lines, GRID, body, ys, xs)
    grid = format_html_join("", '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="1"/>'
                            '<text x="{}" y="{}" font-size="10" text-anchor="end" fill="{}">{}</text>',
                            ((LEFT, WIDTH - RIGHT, coord(y), coord(y), GRID, LEFT - 4, coord(y + 3), INK, text)
                             for y, text in y_labels))
    xs = format_html_join("", '<text x="{}" y="{}" font-size="10" text-anchor="middle" fill="{}">{}</text>',
                          ((coord(x), HEIGHT - 10, INK, text) for x, text in x_labels))
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="report-chart" viewBox="0 0 {} {}" width="{}" height="{}" '
        'role="img" aria-label="{}: {}"><title>{}</title><desc>{}</desc>{}{}{}</svg>',
        WIDTH, HEIGHT, WIDTH, HEIGHT, title, description, title, description, grid, xs, body)


def _x(i: int, n: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span * (i + 0.5) / n if n else 0)


def _y(value: float, low: float, high: float) -> float:
    share = 0.0 if high == low else (value - low) / (high - low)
    return TOP + (1 - min(max(share, 0.0), 1.0)) * (HEIGHT - TOP - BOTTOM)


def _day_labels(result: ObjectiveResult) -> list[tuple[float, str]]:
    n = len(result.days)
    step = max(1, n // 6)
    return [(_x(i, n), d.day.strftime("%d %b")) for i, d in enumerate(result.days) if i % step == 0]


def attainment(result: ObjectiveResult, *, printed: bool = False) -> SafeString:
    """Each day's attainment (a dot, none on a day without traffic) against the target (a dashed line); each dot
    says its day and value on hover, except `printed` (for WeasyPrint: nobody hovers, and they cost a PDF time)."""
    o = result.objective
    target = float(o.target)
    error_rate = o.kind == Objective.Kind.ERROR_RATE
    if o.kind == Objective.Kind.LATENCY:  # share of valid events within the latency target
        target = float(o.percentile or 95)
    levels: list[float | None] = []
    for d in result.days:
        if not d.valid:
            levels.append(None)
        else:
            share = Fraction(d.bad, d.valid) * 100
            levels.append(float(share if error_rate else 100 - share))
    seen = [v for v in levels if v is not None] + [target]
    if error_rate:
        low, high = 0.0, max(max(seen) * 1.1, 0.1)
    else:
        low = min(seen)
        low = max(0.0, low - max((100 - low) * 0.25, 0.05))
        high = 100.0
    n = len(levels)
    if not printed:
        dots = format_html_join("", '<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}: {}</title></circle>', (
            (coord(_x(i, n)), coord(_y(v, low, high)),
             BAD if (v > target if error_rate else v < target) else PALETTE[0],
             result.days[i].day.isoformat(), units.percent(v, 3))
            for i, v in enumerate(levels) if v is not None))
    else:  # print: a dot is a zero-length stroke with round caps, all dots of a colour one path (cheap to draw)
        by_colour: dict[str, list[str]] = {}
        for i, v in enumerate(levels):
            if v is not None:
                colour = BAD if (v > target if error_rate else v < target) else PALETTE[0]
                by_colour.setdefault(colour, []).append(f"M{coord(_x(i, n))} {coord(_y(v, low, high))}h0")
        dots = format_html_join("", '<path d="{}" stroke="{}" stroke-width="6" stroke-linecap="round"/>',
                                (("".join(moves), colour) for colour, moves in sorted(by_colour.items())))
    points = " ".join(f"{coord(_x(i, n))},{coord(_y(v, low, high))}" for i, v in enumerate(levels) if v is not None)
    body = format_html('<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>'
                       '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="1.5" stroke-dasharray="5 3"/>'
                       '{}', points, PALETTE[0], LEFT, WIDTH - RIGHT, coord(_y(target, low, high)),
                       coord(_y(target, low, high)), TARGET, dots)
    y_labels = [(_y(v, low, high), units.percent(v, 2)) for v in (low, (low + high) / 2, high)]
    days_with = sum(1 for v in levels if v is not None)
    said = f"{days_with} days with traffic of {n}"
    if days_with:  # the day furthest from the target: what the dots would show a sighted reader first
        worst = (max if error_rate else min)((v, i) for i, v in enumerate(levels) if v is not None)
        said += f"; worst day {result.days[worst[1]].day.isoformat()}: {units.percent(worst[0], 3)}"
    return _frame(f"{o.name}: daily attainment against the target {o.target_label()}", y_labels,
                  _day_labels(result), body, said, printed=printed)


def burn_down(result: ObjectiveResult, *, printed: bool = False) -> SafeString:
    """The share of the period's error budget left at the end of each day (100 % down to 0 and below)."""
    budget = result.allowed * result.valid
    n = len(result.days)
    left: list[float] = []
    spent = 0
    for d in result.days:
        spent += d.bad
        left.append(float((1 - Fraction(spent) / budget) * 100) if budget else (100.0 if not spent else -100.0))
    low = min([0.0, *left])
    low = max(low, -100.0)
    high = 100.0
    points = " ".join(f"{coord(_x(i, n))},{coord(_y(v, low, high))}" for i, v in enumerate(left))
    ideal = f"{coord(_x(0, n))},{coord(_y(100, low, high))} {coord(_x(n - 1, n))},{coord(_y(0, low, high))}"
    body = format_html('<polyline points="{}" fill="none" stroke="{}" stroke-width="1" stroke-dasharray="3 3"/>'
                       '<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>'
                       '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="1"/>',
                       ideal, PALETTE[2], points, PALETTE[0], LEFT, WIDTH - RIGHT, coord(_y(0, low, high)),
                       coord(_y(0, low, high)), INK)
    y_labels = [(_y(v, low, high), units.percent(v, 0)) for v in sorted({low, 0.0, 50.0, high})]
    last = units.percent(left[-1], 1) if left else units.MISSING
    return _frame(f"{result.objective.name}: error budget left", y_labels, _day_labels(result), body,
                  f"budget left at the end: {last}", printed=printed)
