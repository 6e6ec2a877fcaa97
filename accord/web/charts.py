"""Small server-rendered SVG charts (no JavaScript, no CDN)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from accord.customers.models import Tier, TierChange


def _f(value: float) -> str:
    return f"{value:.1f}"


PALETTE = ["#5b4bc4", "#c08a1e", "#7b8794", "#3f8f6b", "#b0413e", "#2b6cb0"]


def tier_bars(bars: Sequence[tuple[str, int, Decimal]], total_revenue: Decimal) -> SafeString:
    """Accounts per tier as bars, each labelled with its count and its share of 12-month revenue."""
    width, height, left, bottom, top = 560, 240, 40, 40, 30
    if not bars:
        return mark_safe('<p class="muted">No accounts yet.</p>')
    peak = max(n for _name, n, _rev in bars) or 1
    slot = (width - left) / len(bars)
    bar_w = min(80.0, slot * 0.6)
    parts = []
    for i, (name, n, revenue) in enumerate(bars):
        h = (height - top - bottom) * n / peak
        x = left + i * slot + (slot - bar_w) / 2
        y = height - bottom - h
        share = float(revenue / total_revenue * 100) if total_revenue else 0.0
        parts.append(
            format_html(
                '<g class="bar" data-tier="{}"><title>{}: {} accounts, {}% of revenue</title>'
                '<rect x="{}" y="{}" width="{}" height="{}" rx="3" fill="{}"></rect>'
                '<text x="{}" y="{}" text-anchor="middle" class="value">{}</text>'
                '<text x="{}" y="{}" text-anchor="middle" class="label">{}</text>'
                '<text x="{}" y="{}" text-anchor="middle" class="share">{}% of revenue</text></g>',
                name, name, n, f"{share:.0f}",
                _f(x), _f(y), _f(bar_w), _f(max(h, 1)), PALETTE[i % len(PALETTE)],
                _f(x + bar_w / 2), _f(y - 6), n,
                _f(x + bar_w / 2), _f(height - bottom + 16), name,
                _f(x + bar_w / 2), _f(height - bottom + 32), f"{share:.0f}",
            )
        )
    axis = format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"></line>', left, height - bottom, width, height - bottom
    )
    return format_html(
        '<svg class="chart" id="tier-chart" viewBox="0 0 {} {}" role="img" aria-label="Accounts by tier">{}{}</svg>',
        width, height + 4, axis, mark_safe("".join(parts)),
    )


def tier_timeline(history: Sequence[TierChange], tiers: Sequence[Tier], now: dt.datetime) -> SafeString:
    """The account's tier over time as a step line: higher tiers higher."""
    if not history:
        return mark_safe("")
    width, height, left, right, top, bottom = 560, 150, 80, 10, 10, 24
    levels = {t.pk: i for i, t in enumerate(tiers)}
    n_levels = max(len(tiers), 1)
    start = history[0].at
    span = max((now - start).total_seconds(), 1.0)

    def x(at: dt.datetime) -> float:
        return left + (width - left - right) * (at - start).total_seconds() / span

    def y(tier: Tier | None) -> float:
        level = levels.get(tier.pk, n_levels) if tier else n_levels
        return top + (height - top - bottom) * level / n_levels

    points: list[tuple[float, float]] = []
    for change in history:
        if points:
            points.append((x(change.at), points[-1][1]))
        points.append((x(change.at), y(change.to_tier)))
    points.append((x(now), points[-1][1]))
    path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    labels = format_html_join(
        "", '<text x="{}" y="{}" class="label" text-anchor="end">{}</text>',
        ((left - 8, _f(y(t) + 4), t.name) for t in tiers),
    )
    dots = format_html_join(
        "", '<circle cx="{}" cy="{}" r="4"><title>{}: {}</title></circle>',
        ((_f(x(c.at)), _f(y(c.to_tier)), c.at.strftime("%Y-%m-%d"), c.to_tier.name if c.to_tier else "no tier")
         for c in history),
    )
    dates = format_html(
        '<text x="{}" y="{}" class="label">{}</text><text x="{}" y="{}" class="label" text-anchor="end">now</text>',
        left, height - 4, start.strftime("%Y-%m-%d"), width - right, height - 4,
    )
    return format_html(
        '<svg class="chart" id="tier-timeline" viewBox="0 0 {} {}" role="img" aria-label="Tier history">'
        '{}<polyline points="{}" class="step"></polyline>{}{}</svg>',
        width, height, labels, path, dots, dates,
    )


