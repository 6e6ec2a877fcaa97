"""Composite availability of an operation that depends on several services (docs/reports.md, "Partner SLAs").

Serial (every part is needed): the product of the availabilities. Parallel (a standby that takes over when the
primary fails, failures independent): one minus the product of the unavailabilities. Exact on fractions.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction


def serial(levels: Iterable[Fraction]) -> Fraction:
    """All needed: A = a1 x a2 x ... (1 for nothing needed)."""
    out = Fraction(1)
    for a in levels:
        out *= a
    return out


def parallel(levels: Iterable[Fraction]) -> Fraction:
    """Any one enough: A = 1 - (1 - a1) x (1 - a2) x ... (0 for nothing at all)."""
    down = Fraction(1)
    for a in levels:
        down *= 1 - a
    return 1 - down
