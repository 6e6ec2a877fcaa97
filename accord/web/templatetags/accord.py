"""Template filters of the staff UI."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

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
