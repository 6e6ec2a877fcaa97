"""Template filters of the desk pages: instants with their zone, support targets in hours and minutes."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone

from accord.lib import units

register = template.Library()
NONE = units.MISSING


@register.filter
def when(value: dt.datetime | None) -> str:
    """An instant in the page's time zone, with the zone named: "2026-11-23 10:30 UTC"."""
    if value is None:
        return NONE
    return units.instant(value, timezone.get_current_timezone())


@register.filter
def business(minutes: int | None) -> str:
    """A support target in business time: "30 min", "4 h", "16 h" (hours at most: a business day is not 24 h)."""
    if minutes is None:
        return NONE
    return units.minutes(minutes, largest="h")
