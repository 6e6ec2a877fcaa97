"""Report periods: a calendar month by default ("2026-11"), or any range of days ("2026-11-03..2026-11-09").

Days and months are those of the installation's time zone (settings.TIME_ZONE), like the calendar-month window
of objectives (`accord.governance.indicators.objective_window`). A period is [start, end): its last instant is
not in it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.utils import timezone

MONTH = re.compile(r"^(\d{4})-(\d{2})$")
RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Period:
    """A report period; `label` is how it was asked for and how files are named."""

    label: str
    first_day: dt.date
    last_day: dt.date  # inclusive

    @property
    def start(self) -> dt.datetime:
        return _midnight(self.first_day)

    @property
    def end(self) -> dt.datetime:
        return _midnight(self.last_day + dt.timedelta(days=1))

    @property
    def is_month(self) -> bool:
        return MONTH.match(self.label) is not None

    def days(self) -> list[dt.date]:
        return [self.first_day + dt.timedelta(days=i) for i in range((self.last_day - self.first_day).days + 1)]

    def ended(self, now: dt.datetime) -> bool:
        return now >= self.end

    def next_month_end(self) -> dt.datetime:
        """The end of the calendar month after the one the period ends in (the default claim deadline)."""
        after = (self.last_day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        return _midnight((after + dt.timedelta(days=32)).replace(day=1))


def _midnight(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time()), timezone.get_default_timezone())


def parse_period(text: str) -> Period:
    """"YYYY-MM" or "YYYY-MM-DD..YYYY-MM-DD" (both days included); ValueError with what is wrong."""
    text = (text or "").strip()
    if m := MONTH.match(text):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12 or year < 1970:
            raise ValueError(f"{text!r} is not a month like 2026-11")
        first = dt.date(year, month, 1)
        last = (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        return Period(text, first, last)
    if m := RANGE.match(text):
        try:
            first, last = dt.date.fromisoformat(m[1]), dt.date.fromisoformat(m[2])
        except ValueError as e:
            raise ValueError(f"{text!r}: {e}") from None
        if last < first:
            raise ValueError(f"{text!r} ends before it starts")
        return Period(text, first, last)
    raise ValueError(f"{text!r} is not a period: use a month like 2026-11 or days like 2026-11-03..2026-11-09")


def current_month(now: dt.datetime | None = None) -> Period:
    local = timezone.localtime(now or timezone.now())
    return parse_period(f"{local.year:04d}-{local.month:02d}")


def previous_month(now: dt.datetime | None = None) -> Period:
    return current_month(current_month(now).start - dt.timedelta(days=1))
