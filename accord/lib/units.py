"""Numbers as people read them: durations with their units ("4 h", "2 d", "1 h 30 min") and instants with their zone.

One place for these, so every page, e-mail and command says a support target or a due instant the same way.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

MINUTES_PER_HOUR = 60
MINUTES_PER_DAY = 24 * 60


def duration(minutes: int | float | Decimal, *, largest: str = "d") -> str:
    """A number of minutes in the largest units that say it exactly: 30 -> "30 min", 240 -> "4 h",
    90 -> "1 h 30 min", 2880 -> "2 d", 1500 -> "1 d 1 h".

    `largest="h"` stops at hours (960 -> "16 h"): business time, where a "day" of 24 hours would mislead.
    A fraction of a minute is rounded to whole seconds ("1 min 30 s").
    """
    if largest not in ("d", "h", "min"):
        raise ValueError(f"largest must be 'd', 'h' or 'min', not {largest!r}")
    seconds = round(Decimal(str(minutes)) * 60)
    if seconds < 0:
        return "-" + duration(-Decimal(seconds) / 60, largest=largest)
    if seconds == 0:
        return "0 min"
    units = [("d", MINUTES_PER_DAY * 60), ("h", MINUTES_PER_HOUR * 60), ("min", 60), ("s", 1)]
    units = units[[name for name, _size in units].index(largest):]
    parts = []
    for name, size in units:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count:,} {name}")
    return " ".join(parts)


def instant(value: dt.datetime, zone: str | dt.tzinfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An aware instant as wall-clock time in a zone, with the zone named: "2026-11-23 05:30 EST (America/New_York)".

    The abbreviation alone is ambiguous (CST is three zones) and the IANA name alone is hard to read, so both are
    given when they differ; UTC is just "UTC".
    """
    tz = ZoneInfo(zone) if isinstance(zone, str) else zone
    local = value.astimezone(tz)
    name = getattr(tz, "key", None) or str(tz)
    abbreviation = local.tzname() or name
    if name == abbreviation or name in ("UTC", "Etc/UTC"):
        return f"{local.strftime(fmt)} {abbreviation}"
    return f"{local.strftime(fmt)} {abbreviation} ({name})"
