"""The tier charts of the staff pages: accounts and revenue per tier, an account's tier history (server-rendered
SVG, no JavaScript, no CDN)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from accord.lib.svg import PALETTE, coord, summary

from .models import Tier, TierChange

# The demo's tiers keep the colours of their badges; other tiers take the palette in rank order.
TIER_COLOURS = {"platinum": "#5b4bc4", "gold": "#c08a1e", "silver": "#7b8794", "standard": "#3f8f6b"}


@dataclass(frozen=True)
class TierBar:
    """One tier on the dashboard: how many accounts it has and what they brought in over 12 months."""

    name: str
    accounts: int
    revenue: Decimal


def tier_bars(bars: Sequence[TierBar]) -> SafeString:
    """Per tier, its share of the accounts beside its share of 12-month revenue: the 80/20 view.

    The light bar is the share of accounts (labelled with the count), the solid bar the share of revenue.
    """
    n_total = sum(b.accounts for b in bars)
    if not n_total:
        return mark_safe('<p class="muted">No accounts yet.</p>')
    revenue_total = sum((b.revenue for b in bars), Decimal(0))
    shares = [
        (b.accounts / n_total * 100, float(b.revenue / revenue_total * 100) if revenue_total else 0.0) for b in bars
    ]
    scale = max(10, math.ceil(max(max(pair) for pair in shares) / 10) * 10)
    width, height, left, right, top, bottom = 560, 262, 40, 8, 44, 28
    plot = height - top - bottom
    slot = (width - left - right) / len(bars)
    bar_w, gap = min(34.0, slot * 0.32), 4.0

    def y(percent: float) -> float:
        return top + plot * (1 - percent / scale)

    grid = format_html_join(
        "",
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="{}"></line>'
        '<text x="{}" y="{}" text-anchor="end" class="label">{}%</text>',
        (
            (left, coord(y(p)), width - right, coord(y(p)), "axis" if p == 0 else "grid", left - 6, coord(y(p) + 4), p)
            for p in (0, scale // 2, scale)
        ),
    )
    parts = []
    for i, (bar, (account_share, revenue_share)) in enumerate(zip(bars, shares, strict=True)):
        colour = TIER_COLOURS.get(bar.name, PALETTE[i % len(PALETTE)])
        centre = left + i * slot + slot / 2
        x_accounts, x_revenue = centre - gap / 2 - bar_w, centre + gap / 2
        parts.append(
            format_html(
                '<g class="bar" data-tier="{}"><title>{}: {} accounts ({}% of accounts), {}% of 12-month revenue'
                "</title>"
                '<rect class="accounts" x="{}" y="{}" width="{}" height="{}" rx="2" fill="{}" fill-opacity="0.35">'
                "</rect>"
                '<rect class="revenue" x="{}" y="{}" width="{}" height="{}" rx="2" fill="{}"></rect>'
                '<text x="{}" y="{}" text-anchor="middle" class="value">{}</text>'
                '<text x="{}" y="{}" text-anchor="middle" class="share">{}%</text>'
                '<text x="{}" y="{}" text-anchor="middle" class="label">{}</text></g>',
                bar.name, bar.name, bar.accounts, f"{account_share:.0f}", f"{revenue_share:.0f}",
                coord(x_accounts), coord(y(account_share)), coord(bar_w), coord(max(y(0) - y(account_share), 1)), colour,
                coord(x_revenue), coord(y(revenue_share)), coord(bar_w), coord(max(y(0) - y(revenue_share), 1)), colour,
                coord(x_accounts + bar_w / 2), coord(y(account_share) - 5), bar.accounts,
                coord(x_revenue + bar_w / 2), coord(y(revenue_share) - 5), f"{revenue_share:.0f}",
                coord(centre), coord(height - bottom + 18), bar.name,
            )
        )
    legend = mark_safe(
        '<g class="legend"><rect x="40" y="6" width="12" height="12" rx="2" fill="#7b8794" fill-opacity="0.35"></rect>'
        '<text x="58" y="16" class="label">share of accounts (count on top)</text>'
        '<rect x="270" y="6" width="12" height="12" rx="2" fill="#7b8794"></rect>'
        '<text x="288" y="16" class="label">share of 12-month revenue</text></g>'
    )
    return format_html(
        '<svg class="chart" id="tier-chart" viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}{}</svg>',
        width, height, summary("Share of accounts and of 12-month revenue per tier", [
            f"{b.name} {b.accounts} accounts ({a:.0f}% of accounts), {r:.0f}% of revenue"
            for b, (a, r) in zip(bars, shares, strict=True)]),
        legend, grid, mark_safe("".join(parts)),
    )


def tier_timeline(history: Sequence[TierChange], tiers: Sequence[Tier], now: dt.datetime) -> SafeString:
    """The account's tier over time as a step line, higher tiers higher; a dot per change, years marked."""
    if not history:
        return mark_safe("")
    width, height, left, right, top, bottom = 560, 150, 80, 14, 12, 24
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
    rows = format_html_join(
        "",
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="grid"></line>'
        '<text x="{}" y="{}" class="label" text-anchor="end">{}</text>',
        ((left, coord(y(t)), width - right, coord(y(t)), left - 8, coord(y(t) + 4), t.name) for t in tiers),
    )
    local_start, local_now = timezone.localtime(start), timezone.localtime(now)
    new_years = [
        timezone.make_aware(dt.datetime(year, 1, 1), local_start.tzinfo)
        for year in range(local_start.year + 1, local_now.year + 1)
    ]
    years = format_html_join(
        "",
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="year"></line>'
        '<text x="{}" y="{}" class="label" text-anchor="middle">{}</text>',
        (
            # The year is written under its line where it does not collide with the first date or "now".
            (coord(x(ny)), top, coord(x(ny)), height - bottom, coord(x(ny)), height - 4,
             ny.year if x(ny) - left > 100 and width - right - x(ny) > 40 else "")
            for ny in new_years
        ),
    )
    dots = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="4" class="cause-{}"><title>{}: {} ({})</title></circle>',
        (
            (coord(x(c.at)), coord(y(c.to_tier)), c.cause, timezone.localtime(c.at).strftime("%Y-%m-%d"),
             c.to_tier.name if c.to_tier else "no tier", c.get_cause_display())
            for c in history
        ),
    )
    dates = format_html(
        '<text x="{}" y="{}" class="label">{}</text><text x="{}" y="{}" class="label" text-anchor="end">now</text>',
        left, height - 4, local_start.strftime("%Y-%m-%d"), width - right, height - 4,
    )
    return format_html(
        '<svg class="chart" id="tier-timeline" viewBox="0 0 {} {}" role="img" aria-label="Tier history">'
        '{}{}<polyline points="{}" class="step"></polyline>{}{}</svg>',
        width, height, rows, years, path, dots, dates,
    )
