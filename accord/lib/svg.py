"""What every server-rendered SVG chart shares: coordinates written short, axis tops, the palette.

The charts themselves live with the data they draw (`customers/charts.py`, `governance/charts.py`,
`insight/charts.py`): no JavaScript library and no CDN, every text from data escaped by `format_html`.
"""

from __future__ import annotations

import math

# Series colours in order; each has at least 3:1 contrast on the page's white.
PALETTE = ["#5b4bc4", "#c08a1e", "#7b8794", "#3f8f6b", "#b0413e", "#2b6cb0"]


def summary(title: str, parts: list[str]) -> str:
    """A chart's text alternative: its title and the numbers behind it, for the SVG's aria-label.

    A chart drawn as `role="img"` is one image to a screen reader; this is what it reads instead of the lines.
    "p95 latency per tier: gold 120 ms now, at most 340 ms; silver 80 ms now, at most 95 ms."
    """
    return f"{title}: {'; '.join(parts)}." if parts else f"{title}."


def coord(value: float) -> str:
    """A coordinate with one decimal: enough for a screen, short in the page."""
    return f"{value:.1f}"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value` (an axis's top)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        nice = step * 10**exponent
        if nice >= value:
            return float(nice)
    return float(10 ** (exponent + 1))
