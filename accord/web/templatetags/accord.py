"""Template filters of the staff UI: numbers with their units, by `accord.lib.units` (`{% load accord %}`)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import template

from accord.lib import units

register = template.Library()


@register.filter
def num(value: object) -> str:
    """A decimal without trailing zeros: 99.9000 -> 99.9, 400.0000 -> 400."""
    if value is None or value == "":
        return ""
    try:
        d = Decimal(str(value)).normalize()
    except InvalidOperation:
        return str(value)
    return format(d.quantize(Decimal(1)) if d == d.to_integral_value() else d, "f")


def _places(arg: Any) -> int | None:
    return None if arg in (None, "") else int(arg)


@register.filter
def number(value: Any, places: Any = None) -> str:
    """{{ n|number }} "1,234"; {{ x|number:1 }} "1,234.5"."""
    return units.number(value, _places(places))


@register.filter
def money(value: Any, currency: str | None = None) -> str:
    """{{ account.revenue_12m|money }} "1,200.00 EUR" (ACCORD_CURRENCY); {{ fee|money:agreement.currency }}."""
    return units.money(value, currency or None)


@register.filter
def money0(value: Any, currency: str | None = None) -> str:
    """Whole units, for tables: {{ a.revenue_12m|money0 }} "1,200 EUR"."""
    return units.money(value, currency or None, places=0)


@register.filter
def money_exact(value: Any, currency: str | None = None) -> str:
    """Every decimal the amount has, at least two: {{ s.cost_per_instance_hour|money_exact }} "0.1234 EUR"."""
    return units.money(value, currency or None, places=None)


@register.filter
def percent(value: Any, places: Any = None) -> str:
    """A value in percent: {{ 99.9|percent }} "99.9 %"."""
    return units.percent(value, _places(places))


@register.filter
def share(value: Any, places: Any = None) -> str:
    """A share 0..1 in percent: {{ 0.25|share }} "25 %"."""
    return units.share(value, _places(places))


@register.filter
def duration(value: Any, largest: str = "d") -> str:
    """Seconds: {{ 5400|duration }} "1 h 30 min"; {{ s|duration:"h" }} for hours at most."""
    return units.duration(value, largest=largest or "d")


@register.filter
def minutes(value: Any, largest: str = "d") -> str:
    """Minutes: {{ 240|minutes }} "4 h"."""
    return units.minutes(value, largest=largest or "d")


@register.filter
def latency_ms(value: Any) -> str:
    """Milliseconds: {{ 600|latency_ms }} "600 ms"."""
    return units.latency_ms(value)


@register.filter
def times(value: Any) -> str:
    """A multiple: {{ 14.4|times }} "14.4x"; infinity "∞"."""
    return units.times(value)
