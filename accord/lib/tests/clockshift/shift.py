"""Start a moved clock (time-machine, ticking) from a shift such as '200d', '-3h' or '90m'."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_travel: Any = None


def parse(text: str) -> dt.timedelta:
    """'200d' -> 200 days; a sign may lead ('-3h'); units s, m, h, d, w."""
    match = re.fullmatch(r"\s*([+-]?\d+)\s*([smhdw])\s*", text)
    if match is None:
        raise ValueError(f"ACCORD_TEST_CLOCK_SHIFT={text!r}: expected a whole number and a unit, e.g. 200d or -3h")
    return dt.timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])


def start(text: str) -> dt.datetime:
    """Move this process's wall clock by the shift, ticking from there; returns the moved instant."""
    global _travel
    import time_machine

    if _travel is not None:
        _travel.stop()
    destination = dt.datetime.now(dt.UTC) + parse(text)
    _travel = time_machine.travel(destination, tick=True)
    _travel.start()
    return destination
