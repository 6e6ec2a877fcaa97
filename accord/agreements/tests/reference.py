"""The definition of business time, checked one real minute at a time: slow, plain, and obviously right.

Used by the property tests and by bench/desk.py as the reference for `accord.agreements.businesstime`.
An instant is working time if some non-holiday local date has a window whose local start and end, converted
to UTC with zoneinfo and fold=0, hold it. The walk goes over real (UTC) minutes; window edges fall on whole
UTC minutes in every zone used (all offsets are whole minutes), so a minute is working or not as a whole, and
starts, pauses and results may still have seconds and microseconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from fractions import Fraction
from zoneinfo import ZoneInfo

UTC = dt.UTC
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTE = dt.timedelta(minutes=1)


def window_text(start: int, end: int) -> str:
    """(540, 1440) -> '09:00-24:00'."""
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


class MinuteReference:
    """Business time by walking real minutes and asking the naive definition about each one."""

    def __init__(self, tz: str, hours: dict[str, list[tuple[int, int]]], holidays: set[dt.date] | frozenset[dt.date],
                 max_days: int = 120) -> None:
        self.zone = ZoneInfo(tz)
        self.hours = hours
        self.holidays = holidays
        self.max_minutes = max_days * 1440
        self._memo: dict[dt.date, list[tuple[dt.datetime, dt.datetime]]] = {}

    def _local(self, day: dt.date, minute: int) -> dt.datetime:
        """A local wall-clock time (fold=0) as a real instant in UTC.

        In UTC, because Python compares two datetimes of the same zone by wall clock, ignoring fold.
        """
        day += dt.timedelta(days=minute // 1440)
        minute %= 1440
        return dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=self.zone).astimezone(UTC)

    def windows_of(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        """A local date's windows as real instants (fold=0), none on a holiday; memoised, nothing else."""
        if day not in self._memo:
            self._memo[day] = [] if day in self.holidays else [
                (self._local(day, s), self._local(day, e)) for s, e in self.hours.get(DAYS[day.weekday()], [])
            ]
        return self._memo[day]

    def is_working(self, instant: dt.datetime) -> bool:
        """Is this real instant inside some date's window? (The dates around it: DST moves windows by hours.)"""
        local_day = instant.astimezone(self.zone).date()
        instant = instant.astimezone(UTC)
        for offset in (-1, 0, 1):
            for a, b in self.windows_of(local_day + dt.timedelta(days=offset)):
                if a <= instant < b:
                    return True
        return False

    @staticmethod
    def _minus(a: dt.datetime, b: dt.datetime, pauses: Sequence[tuple[dt.datetime, dt.datetime]]
               ) -> list[tuple[dt.datetime, dt.datetime]]:
        pieces = [(a, b)]
        for pa, pb in pauses:
            pieces = [
                piece
                for x, y in pieces
                for piece in ((x, min(y, pa)), (max(x, pb), y))
                if piece[0] < piece[1]
            ]
        return sorted(pieces)

    @staticmethod
    def _minute_of(instant: dt.datetime) -> dt.datetime:
        """The start of the whole UTC minute holding an instant."""
        return instant.astimezone(UTC).replace(second=0, microsecond=0)

    def add(self, start: dt.datetime, minutes: int | Fraction,
            pauses: Sequence[tuple[dt.datetime, dt.datetime]] = ()) -> dt.datetime:
        """The first instant by which `minutes` working, unpaused minutes have passed since start."""
        need = dt.timedelta(microseconds=round(Fraction(minutes) * 60_000_000))
        if not need:
            return start.astimezone(self.zone)
        # All in UTC: `+` on a datetime in a zone with DST would add wall-clock time.
        start, pauses = start.astimezone(UTC), [(a.astimezone(UTC), b.astimezone(UTC)) for a, b in pauses]
        t = self._minute_of(start)
        for _ in range(self.max_minutes):
            if self.is_working(t):
                for a, b in self._minus(max(t, start), t + MINUTE, pauses):
                    if b - a >= need:
                        return (a + need).astimezone(self.zone)
                    need -= b - a
            t += MINUTE
        raise AssertionError("the reference walked its whole range without reaching the target")

    def elapsed(self, start: dt.datetime, end: dt.datetime,
                pauses: Sequence[tuple[dt.datetime, dt.datetime]] = ()) -> dt.timedelta:
        """Working, unpaused time between start and end."""
        total = dt.timedelta(0)
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        pauses = [(a.astimezone(UTC), b.astimezone(UTC)) for a, b in pauses]
        t = self._minute_of(start)
        while t < end:
            if self.is_working(t):
                for a, b in self._minus(max(t, start), min(t + MINUTE, end), pauses):
                    total += b - a
            t += MINUTE
        return total
