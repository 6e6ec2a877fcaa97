"""Numbers as people read them, each with its unit: durations, latencies, money, percentages, multiples.

One place for the rules, used by the pages (through the template filters of `accord.web.templatetags.accord`),
the CLI and the e-mails:

- a number and its unit are separated by a space: "4 h", "600 ms", "99.95 %", "1,200.00 EUR"; a multiple has
  none: "14.4x";
- thousands are separated by commas; a float is read to 15 significant digits (all a float holds for certain,
  so 0.1 + 0.2 is 0.3) and rounded half up on that decimal, so 0.125 at two places is 0.13 (figures are
  computed exactly where they can be, see `accord.governance.indicators`, so that little needs hiding);
- infinity is "∞" (a zero error budget with a bad event is spent infinitely fast), a missing value an en dash.

`json_number` is the other side: how a number that may be infinite travels in JSON, which has no infinity.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from zoneinfo import ZoneInfo

from django.conf import settings

MISSING = "\u2013"  # an en dash
INFINITY = "∞"
Number = int | float | Decimal | Fraction

# Largest unit first: (name, seconds)
_DURATION_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def _decimal(value: Number) -> Decimal:
    """The value as a Decimal; a float to 15 significant digits, as many as a float holds for certain, which
    drops the noise of its last bits (1 - 0.999 is 0.0010000000000000009 as a float, 0.001 here)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(format(value, ".15g"))
    if isinstance(value, Fraction):
        return Decimal(value.numerator) / Decimal(value.denominator)
    return Decimal(value)


def _infinite(value: Number) -> bool:
    return isinstance(value, float | Decimal) and not isinstance(value, bool) and value in (math.inf, -math.inf)


def number(value: Number | None, places: int | None = None) -> str:
    """A number with thousands separators: `places` decimals (half up), or as many as it has without trailing
    zeros when None. "1,234.5", "99.95", "-0.5"; "∞" for infinity, an en dash (MISSING) for None or NaN."""
    if value is None:
        return MISSING
    if _infinite(value):
        return INFINITY if value > 0 else "-" + INFINITY
    try:
        d = _decimal(value)
    except (InvalidOperation, ValueError):
        return str(value)
    if d.is_nan():
        return MISSING
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    else:
        d = d.normalize()
        if d == d.to_integral_value():
            d = d.quantize(Decimal(1))
    if d == 0:
        d = abs(d)  # no "-0"
    return format(d, ",f")


def duration(seconds: Number | None, *, largest: str = "d") -> str:
    """A duration in whole units, largest first, down to seconds: "30 min", "4 h", "2 d", "1 h 30 min",
    "1 d 2 h 5 min", "1.5 s", "0 s". `largest` ("d", "h", "min" or "s") is the biggest unit used: business time
    is shown in hours ("48 h", not "2 d": a business day is not 24 hours)."""
    if seconds is None:
        return MISSING
    if _infinite(seconds):
        return INFINITY if seconds > 0 else "-" + INFINITY
    names = [name for name, _ in _DURATION_UNITS]
    if largest not in names:
        raise ValueError(f"largest must be one of {', '.join(names)}, not {largest!r}")
    left = _decimal(seconds)
    if left < 0:
        return "-" + duration(-left, largest=largest)
    parts: list[str] = []
    for name, size in _DURATION_UNITS[names.index(largest):]:
        if name == "s":
            if left or not parts:
                parts.append(f"{number(left)} s")
            break
        whole = int(left // size)
        if whole:
            parts.append(f"{whole:,} {name}")
            left -= whole * size
    return " ".join(parts)


def minutes(value: Number | None, *, largest: str = "d") -> str:
    """A duration given in minutes (support targets are business minutes): 240 -> "4 h"."""
    if value is None:
        return MISSING
    if isinstance(value, Fraction):  # exact: 1/60 of a minute is "1 s", not 0.99999... s
        seconds = value * 60
        return duration(seconds.numerator if seconds.denominator == 1 else seconds, largest=largest)
    return duration(_decimal(value) * 60, largest=largest)


def latency_ms(value: Number | None, places: int | None = None) -> str:
    """A latency in milliseconds: "600 ms", "1,000 ms", "12.5 ms". An exact value (a target: int or Decimal)
    keeps its digits; a measured float is rounded to whole milliseconds from 10 ms, 0.1 ms from 1 ms, else
    0.01 ms (a sketch's percentile is within 1 % anyway)."""
    if value is None:
        return MISSING
    if places is None and isinstance(value, float) and math.isfinite(value):
        places = 0 if abs(value) >= 10 else 1 if abs(value) >= 1 else 2
    return f"{number(value, places)} ms"


def money(amount: Number | None, currency: str | None = None, places: int | None = 2) -> str:
    """An amount with its currency: "1,200.00 EUR"; without a currency, the setting ACCORD_CURRENCY. `places`
    None keeps every decimal the amount has, at least two: a cost of 0.1234 per hour is "0.1234 EUR"."""
    if amount is None:
        return MISSING
    if places is None:
        exponent = _decimal(amount).normalize().as_tuple().exponent
        places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"{number(amount, places)} {currency or settings.ACCORD_CURRENCY}"


def percent(value: Number | None, places: int | None = None) -> str:
    """A value that is already a percentage: 99.95 -> "99.95 %"."""
    return MISSING if value is None else f"{number(value, places)} %"


def share(value: Number | None, places: int | None = None) -> str:
    """A share (0..1) as a percentage: 0.0005 -> "0.05 %"."""
    if value is None:
        return MISSING
    if _infinite(value):
        return percent(value)
    return percent(_decimal(value) * 100, places)


def times(value: Number | None) -> str:
    """A multiple, e.g. a burn rate: "14.4x", "0.25x", "∞" (one decimal from 1, two below)."""
    if value is None:
        return MISSING
    if _infinite(value):
        return INFINITY if value > 0 else "-" + INFINITY
    d = _decimal(value)
    places = 1 if abs(d) >= 1 else 2
    return f"{number(d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))}x"


def json_number(value: float | int | Decimal | Fraction | None) -> float | int | str | None:
    """A number JSON can carry: finite ones as numbers (Decimals and Fractions as the nearest float), infinity as
    the string "Infinity" ("-Infinity"), which JavaScript's Number() and Python's float() read back as infinity;
    NaN and None as null."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if _infinite(value):
        return "Infinity" if value > 0 else "-Infinity"
    f = float(value)
    return None if math.isnan(f) else f


def significant(value: float | None, digits: int = 4) -> float | None:
    """A float rounded to `digits` significant digits, for figures known only that well: a latency percentile
    from a sketch is within 1 %, so 412.3456 ms is 412.3 and 0.853219 ms 0.8532."""
    if value is None or not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{digits}g}")


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
