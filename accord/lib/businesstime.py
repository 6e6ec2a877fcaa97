"""Business time: add business minutes to an instant, count business minutes between instants.

A calendar is working windows per weekday in local wall-clock time (e.g. 09:00-12:30), minus holidays.
Each window is turned into a *real* interval: its local start and end are converted to UTC with zoneinfo,
using fold=0 (PEP 495). So an ambiguous local time (autumn, clocks go back) means its first occurrence, and a
nonexistent one (spring, clocks go forward) is read with the offset before the jump, i.e. moved forward by
the gap. Business time is the real time inside the union of those intervals, so a 01:00-04:00 window on a
spring-forward night holds two real hours. Instants are exact to the microsecond; results are aware
datetimes in the calendar's zone.

The engine keeps a per-day cache of intervals as POSIX seconds and walks days; a calendar with no working
time at all is refused when built, and a search that finds no working time for five years stops with an
error instead of looping.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from accord.agreements.hours import WEEKDAYS, parse_window

if TYPE_CHECKING:
    from accord.agreements.models import BusinessCalendar

Interval = tuple[float, float]
MAX_SEARCH_DAYS = 5 * 366


class BusinessTimeError(ValueError):
    """Business time cannot be computed (empty calendar, naive instant, negative minutes ...)."""


class EmptyCalendarError(BusinessTimeError):
    """The calendar has no working time, so no due instant exists."""


def _aware_ts(value: dt.datetime, what: str) -> float:
    if value.tzinfo is None or value.utcoffset() is None:
        raise BusinessTimeError(f"{what} {value.isoformat()} has no time zone; give an offset like +00:00")
    return value.timestamp()


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


class BusinessTime:
    """Business-time arithmetic on one calendar."""

    def __init__(
        self,
        tz: str,
        hours: Mapping[str, Sequence[str]],
        is_holiday: Callable[[dt.date], bool] | None = None,
    ) -> None:
        try:
            self.zone = ZoneInfo(tz)
        except Exception as e:
            raise BusinessTimeError(f"'{tz}' is not an IANA time zone") from e
        self.tz = tz
        self._windows: tuple[tuple[tuple[int, int], ...], ...] = tuple(
            tuple(sorted(parse_window(w) for w in hours.get(day, []))) for day in WEEKDAYS
        )
        if not any(self._windows):
            raise EmptyCalendarError("the calendar has no working time in any weekday")
        self._is_holiday = is_holiday or (lambda _d: False)
        self._day_cache: dict[int, tuple[Interval, ...]] = {}

    @classmethod
    def from_calendar(cls, calendar: BusinessCalendar) -> BusinessTime:
        """An engine for a stored calendar (holidays by country and subdivision, plus extra, minus removed)."""
        extra = frozenset(dt.date.fromisoformat(d) for d in calendar.extra_holidays or [])
        removed = frozenset(dt.date.fromisoformat(d) for d in calendar.removed_holidays or [])
        country, subdivision = calendar.holiday_country, calendar.holiday_subdivision or None

        @lru_cache(maxsize=64)
        def year_table(year: int) -> frozenset[dt.date]:
            if not country:
                return frozenset()
            import holidays

            return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=[year]).keys())

        def is_holiday(day: dt.date) -> bool:
            if day in removed:
                return False
            return day in extra or day in year_table(day.year)

        return cls(calendar.timezone, calendar.hours, is_holiday)

    # -- intervals -------------------------------------------------------------------------------------

    def _local_ts(self, ordinal: int, minute: int) -> float:
        day = dt.date.fromordinal(ordinal + minute // 1440)
        minute %= 1440
        return dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=self.zone).timestamp()

    def day_intervals(self, ordinal: int) -> tuple[Interval, ...]:
        """The real working intervals of a local date (by ordinal), merged, as POSIX seconds."""
        cached = self._day_cache.get(ordinal)
        if cached is not None:
            return cached
        day = dt.date.fromordinal(ordinal)
        windows = self._windows[day.weekday()]
        if not windows or self._is_holiday(day):
            result: tuple[Interval, ...] = ()
        else:
            result = tuple(_merge((self._local_ts(ordinal, s), self._local_ts(ordinal, e)) for s, e in windows))
        if len(self._day_cache) > 20000:
            self._day_cache.clear()
        self._day_cache[ordinal] = result
        return result

    def _local_ordinal(self, ts: float) -> int:
        return dt.datetime.fromtimestamp(ts, self.zone).toordinal()

    def intervals_from(self, ts: float) -> Iterable[Interval]:
        """Working intervals (clipped, disjoint, increasing) from instant ts on."""
        ordinal = self._local_ordinal(ts) - 1  # the day before too: DST shifts can move intervals across midnight
        last_end = ts
        empty_days = 0
        while True:
            intervals = self.day_intervals(ordinal)
            ordinal += 1
            produced = False
            for a, b in intervals:
                if b <= last_end:
                    continue
                a = max(a, last_end)
                last_end = b
                produced = True
                yield a, b
            if produced:
                empty_days = 0
            else:
                empty_days += 1
                if empty_days > MAX_SEARCH_DAYS:
                    raise EmptyCalendarError(
                        f"no working time within {MAX_SEARCH_DAYS} days of "
                        f"{dt.datetime.fromtimestamp(ts, self.zone).isoformat()} (every day a holiday?)"
                    )

    # -- arithmetic ------------------------------------------------------------------------------------

    def add(
        self, start: dt.datetime, minutes: float, pauses: Sequence[tuple[dt.datetime, dt.datetime]] = ()
    ) -> dt.datetime:
        """The instant at which `minutes` business minutes have passed since `start`, not counting pauses."""
        if minutes < 0:
            raise BusinessTimeError(f"minutes must not be negative (got {minutes})")
        ts = _aware_ts(start, "start")
        remaining = minutes * 60.0
        if remaining == 0:
            return start.astimezone(self.zone)
        cuts = self._pauses(pauses)
        for a, b in self.intervals_from(ts):
            for sa, sb in _subtract((a, b), cuts) if cuts else ((a, b),):
                span = sb - sa
                if span >= remaining:
                    return self._instant(sa + remaining)
                remaining -= span
        raise AssertionError("unreachable: intervals_from raises or yields forever")

    def elapsed(
        self, start: dt.datetime, end: dt.datetime, pauses: Sequence[tuple[dt.datetime, dt.datetime]] = ()
    ) -> float:
        """Business minutes between two instants, not counting pauses (0 if end is not after start)."""
        t0, t1 = _aware_ts(start, "start"), _aware_ts(end, "end")
        if t1 <= t0:
            return 0.0
        cuts = self._pauses(pauses)
        total = 0.0
        ordinal = self._local_ordinal(t0) - 1
        last_ordinal = self._local_ordinal(t1) + 1
        last_end = t0
        while ordinal <= last_ordinal:
            for a, b in self.day_intervals(ordinal):
                a, b = max(a, last_end), min(b, t1)
                if b <= a:
                    continue
                last_end = b
                for sa, sb in _subtract((a, b), cuts) if cuts else ((a, b),):
                    total += sb - sa
            ordinal += 1
        return total / 60.0

    def is_working(self, instant: dt.datetime) -> bool:
        """Whether an instant lies inside working time."""
        ts = _aware_ts(instant, "instant")
        ordinal = self._local_ordinal(ts)
        return any(a <= ts < b for o in (ordinal - 1, ordinal, ordinal + 1) for a, b in self.day_intervals(o))

    def _instant(self, ts: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(round(ts, 6), self.zone)

    @staticmethod
    def _pauses(pauses: Sequence[tuple[dt.datetime, dt.datetime]]) -> list[Interval]:
        return _merge((_aware_ts(a, "pause start"), _aware_ts(b, "pause end")) for a, b in pauses)


def _subtract(interval: Interval, cuts: list[Interval]) -> list[Interval]:
    """An interval minus a sorted list of disjoint intervals."""
    a, b = interval
    out: list[Interval] = []
    for ca, cb in cuts:
        if cb <= a:
            continue
        if ca >= b:
            break
        if ca > a:
            out.append((a, ca))
        a = max(a, cb)
        if a >= b:
            break
    if a < b:
        out.append((a, b))
    return out


