"""The campaign page's chart: one bar split by what became of each recipient, with its numbers as text."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accord.lib.svg import PALETTE, coord, summary

ORDER = [("sent", PALETTE[3]), ("bounced", PALETTE[4]), ("failed", PALETTE[1]), ("skipped", PALETTE[2]),
         ("queued", PALETTE[0]), ("sending", PALETTE[5])]


def progress_bar(chart_id: str, title: str, counts: dict[str, int]) -> SafeString:
    """A stacked horizontal bar of the recipients by status (role img, its numbers in the aria-label)."""
    total = sum(counts.values()) or 1
    width, height = 600.0, 28.0
    x = 0.0
    rects = []
    for status, colour in ORDER:
        n = counts.get(status, 0)
        if not n:
            continue
        w = width * n / total
        rects.append((coord(x), coord(w), coord(height), colour, f"{status}: {n:,}"))
        x += w
    parts = [f"{status} {counts.get(status, 0):,}" for status, _c in ORDER if counts.get(status)]
    body = format_html_join("", '<rect x="{}" y="0" width="{}" height="{}" fill="{}"><title>{}</title></rect>', rects)
    return format_html('<svg class="chart" id="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
                       chart_id, coord(width), coord(height), summary(title, parts), body)
