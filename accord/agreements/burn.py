"""The burn-rate alert rules of an objective's error budget: what the governor pages on, what OpenSLO exports.

Multiwindow, multi-burn-rate alerts for a 30-day objective (Google SRE workbook): severity, burn rate, long
window, short window; the windows scale with the objective's own window. ACCORD_BURN_RULES overrides them with
JSON like [["page", 14.4, 3600, 300], ...]. They live with the agreements, the lowest layer that needs them, so
the governor (which evaluates them) and the OpenSLO export (which writes them out) read the same table.
"""

from __future__ import annotations

import json
import os

DEFAULT_BURN_RULES: list[tuple[str, float, int, int]] = [
    ("page", 14.4, 3600, 300),
    ("page", 6.0, 6 * 3600, 1800),
    ("ticket", 1.0, 3 * 86400, 6 * 3600),
]


def burn_rules(window_days: float) -> list[tuple[str, float, float, float]]:
    """The alert rules for an objective window: (severity, rate, long seconds, short seconds)."""
    raw = os.environ.get("ACCORD_BURN_RULES")
    rules = [tuple(r) for r in json.loads(raw)] if raw else DEFAULT_BURN_RULES
    scale = window_days / 30
    return [(str(sev), float(rate), float(long) * scale, float(short) * scale) for sev, rate, long, short in rules]
