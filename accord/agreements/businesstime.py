"""Business time: add business minutes to an instant, count business minutes between two instants.

The definition. A calendar is working windows per weekday in local wall-clock time (``09:00-12:30``; a window
may end at ``24:00``, the next midnight), minus holidays. Each window of each non-holiday date becomes a *real*
interval: its local start and end are converted to UTC with zoneinfo and ``fold=0`` (PEP 495). So

- an ambiguous local time (autumn, clocks go back) means its *first* occurrence, and
- a nonexistent local time (spring, clocks go forward) is read with the offset in force *before* the jump,
  i.e. it lands as far after the jump as it is after the gap's start (London: 01:30 on the spring-forward
  night is 01:30 UTC, i.e. 02:30 BST).

Business time is the real time inside the union of those intervals: a 01:00-04:00 window on a spring-forward
night holds two real hours, on a fall-back night four. Pauses (a ticket waiting on the customer) are real
intervals during which business time does not run.

Resolution. All arithmetic is on integer microseconds since the epoch, so results are exact to the
microsecond (and so at second resolution). Minutes may be fractional (0.5 = 30 s); a float is rounded to the
nearest microsecond. ``elapsed`` returns float minutes; ``elapsed_delta`` the exact ``timedelta``. Inputs must
be aware datetimes (a naive one raises ``BusinessTimeError``: its meaning around DST would be a guess);
returned instants are aware, in the calendar's zone.

Speed. Real time is cut into local days, [local midnight, next local midnight) with the same fold=0 rule,
and each day's working intervals are computed once and cached (clipped to the day, so days never overlap,
even when a DST jump moves a window across midnight). ``add`` then skips whole days, and whole weeks once
the remaining time exceeds a week, by their cached totals. Holidays of a country are computed once per year.

Bounds. A calendar without working time is refused when built; a run of more than five years without any
working time (every day a holiday) raises ``EmptyCalendarError``; no computation reaches further than 100
years from its start. None of them loops.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections.abc import Callable, Collection, Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from .hours import WEEKDAYS, WindowError, parse_window

if TYPE_CHECKING:
    from .models import BusinessCalendar

Interval = tuple[int, int]
Pause = tuple[dt.datetime, dt.datetime]

US_PER_MINUTE = 60_000_000
US_PER_DAY = 1440 * US_PER_MINUTE
MAX_EMPTY_DAYS = 5 * 366  # a longer run of days without working time means the calendar is (practically) empty
MAX_SPAN_DAYS = 100 * 366  # no due date or elapsed count reaches further than this from its start
CACHE_DAYS = 50_000  # per-engine cache bound, in days (about 137 years)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
# Local days that can be converted with a day's margin on both sides (and whose neighbours can be too).
_MIN_ORDINAL = dt.date(1, 1, 1).toordinal() + 3
_MAX_ORDINAL = dt.date.max.toordinal() - 3


class BusinessTimeError(ValueError):
    """Business time cannot be computed (bad calendar, naive instant, negative minutes ...)."""


class EmptyCalendarError(BusinessTimeError):
    """The calendar has no working time (at all, or for years on end), so no due instant exists."""


def _to_us(value: object, what: str) -> int:
    if not isinstance(value, dt.datetime):
        raise BusinessTimeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise BusinessTimeError(f"{what} {value.isoformat()} has no time zone; give an offset like +00:00")
    return (value - _EPOCH) // _ONE_US


def _minutes_to_us(minutes: object) -> int:
    if isinstance(minutes, bool) or not isinstance(minutes, numbers.Real | Decimal):
        raise BusinessTimeError(f"minutes must be a number, not {minutes!r}")
    if isinstance(minutes, numbers.Integral):
        us = int(minutes) * US_PER_MINUTE
    else:
        if not math.isfinite(minutes):
            raise BusinessTimeError(f"minutes must be a finite number (got {minutes})")
        # Rounded to the nearest microsecond; a Decimal or Fraction is converted exactly before that.
        if isinstance(minutes, Decimal):
            us = round(Fraction(minutes) * US_PER_MINUTE)
        elif isinstance(minutes, numbers.Rational):
            us = round(Fraction(int(minutes.numerator), int(minutes.denominator)) * US_PER_MINUTE)
        else:
            us = round(float(minutes) * US_PER_MINUTE)
    if us < 0:
        raise BusinessTimeError(f"minutes must not be negative (got {minutes})")
    if us > MAX_SPAN_DAYS * US_PER_DAY:
        raise BusinessTimeError(f"{minutes} minutes is more business time than fits in {MAX_SPAN_DAYS // 366} years")
    return us


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint, non-touching intervals covering the same time."""
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


def _parse_hours(hours: object) -> tuple[tuple[Interval, ...], ...]:
    if not isinstance(hours, Mapping):
        raise BusinessTimeError("hours must map weekdays (mon ... sun) to lists of windows like '09:00-17:30'")
    unknown = [str(day) for day in hours if day not in WEEKDAYS]
    if unknown:
        raise BusinessTimeError(f"hours has {', '.join(unknown)}: not a weekday (use {', '.join(WEEKDAYS)})")
    week: list[tuple[Interval, ...]] = []
    for day in WEEKDAYS:
        windows = hours.get(day) or []
        if isinstance(windows, str) or not isinstance(windows, Iterable):
            raise BusinessTimeError(f"hours[{day}] must be a list of windows like ['09:00-17:30']")
        try:
            parsed = [parse_window(w) for w in windows]
        except WindowError as e:
            raise BusinessTimeError(f"hours[{day}]: {e}") from None
        # Overlapping windows are allowed here and mean their union (the model refuses them anyway).
        week.append(tuple(_merge(parsed)))
    return tuple(week)


class BusinessTime:
    """Business-time arithmetic on one calendar: pure, no database; build once, call many times."""

    def __init__(
        self,
        tz: str,
        hours: Mapping[str, Iterable[str]],
        holidays: Callable[[dt.date], bool] | Collection[dt.date] | None = None,
    ) -> None:
        try:
            self.zone = ZoneInfo(tz)
        except Exception as e:  # ZoneInfoNotFoundError, ValueError or TypeError for malformed keys
            raise BusinessTimeError(f"'{tz}' is not an IANA time zone (e.g. Europe/London)") from e
        self.tz = tz
        self._windows = _parse_hours(hours)
        self.weekly_minutes = sum(e - s for day in self._windows for s, e in day)
        if self.weekly_minutes == 0:
            raise EmptyCalendarError("the calendar has no working time on any weekday")
        self._nominal_week_us = self.weekly_minutes * US_PER_MINUTE
        if holidays is None:
            self._is_holiday: Callable[[dt.date], bool] = lambda _day: False
        elif callable(holidays):
            self._is_holiday = holidays
        else:
            self._is_holiday = frozenset(holidays).__contains__
        self._midnights: dict[int, int] = {}
        self._raw: dict[int, tuple[Interval, ...]] = {}
        self._days: dict[int, tuple[tuple[Interval, ...], int]] = {}
        self._weeks: dict[int, int] = {}

    @classmethod
    def from_calendar(cls, calendar: BusinessCalendar) -> BusinessTime:
        """An engine for a stored calendar: holidays of its country/subdivision, plus extra, minus removed."""
        try:
            extra = _dates(calendar.extra_holidays, "extra_holidays")
            removed = _dates(calendar.removed_holidays, "removed_holidays")
            year_table = _holiday_years(calendar.holiday_country or "", calendar.holiday_subdivision or "")

            def is_holiday(day: dt.date) -> bool:
                if day in removed:
                    return False
                return day in extra or day in year_table(day.year)

            return cls(calendar.timezone, calendar.hours, is_holiday)
        except BusinessTimeError as e:
            raise type(e)(f"calendar '{calendar.name}': {e}") from e

    # -- public arithmetic -----------------------------------------------------------------------------

    def add(self, start: dt.datetime, minutes: float | int | Decimal | Fraction, pauses: Iterable[Pause] = ()) -> dt.datetime:
        """The first instant by which `minutes` business minutes have passed since `start`, pauses not counting."""
        t = _to_us(start, "start")
        need = _minutes_to_us(minutes)
        cuts = _pause_list(pauses)
        try:
            local = start.astimezone(self.zone)
        except OverflowError:
            raise BusinessTimeError(f"start {start.isoformat()} is outside the years 1-9999") from None
        if need == 0:
            return local
        day = self._owner(t, local.toordinal())
        if not cuts:
            return self._instant(self._add_us(t, day, need))
        # Add, see how much of that time fell in pauses, add that much again from where we got; each round
        # passes at least one pause, so this ends after len(cuts) + 1 rounds at most.
        x, i = t, 0
        while True:
            y = self._add_us(x, day, need)
            while i < len(cuts) and cuts[i][1] <= x:
                i += 1
            paused, j = 0, i
            while j < len(cuts) and cuts[j][0] < y:
                paused += self._elapsed_us(max(cuts[j][0], x), min(cuts[j][1], y))
                j += 1
            if paused == 0:
                return self._instant(y)
            x, need = y, paused
            if j > 0 and cuts[j - 1][0] <= x < cuts[j - 1][1]:
                x = cuts[j - 1][1]  # the rest of a pause that holds x is paused: resume at its end
            day = self._owner(x, self._local_ordinal(x))

    def elapsed(self, start: dt.datetime, end: dt.datetime, pauses: Iterable[Pause] = ()) -> float:
        """Business minutes from `start` to `end`, pauses not counting (a float; exact when whole)."""
        return self._elapsed_total(start, end, pauses) / US_PER_MINUTE

    def elapsed_delta(self, start: dt.datetime, end: dt.datetime, pauses: Iterable[Pause] = ()) -> dt.timedelta:
        """Business time from `start` to `end`, pauses not counting, exact to the microsecond."""
        return dt.timedelta(microseconds=self._elapsed_total(start, end, pauses))

    def is_working(self, instant: dt.datetime) -> bool:
        """Whether an instant lies inside working time (pauses aside)."""
        t = _to_us(instant, "instant")
        intervals, _total = self._day(self._owner(t, self._local_ordinal(t)))
        return any(a <= t < b for a, b in intervals)

    # -- internals -------------------------------------------------------------------------------------

    def _elapsed_total(self, start: dt.datetime, end: dt.datetime, pauses: Iterable[Pause]) -> int:
        t0, t1 = _to_us(start, "start"), _to_us(end, "end")
        if t1 < t0:
            raise BusinessTimeError(f"end {end.isoformat()} is before start {start.isoformat()}")
        cuts = _pause_list(pauses)
        total = self._elapsed_us(t0, t1)
        for a, b in cuts:
            if a < t1 and b > t0:
                total -= self._elapsed_us(max(a, t0), min(b, t1))
        return total

    def _instant(self, us: int) -> dt.datetime:
        return (_EPOCH + dt.timedelta(microseconds=us)).astimezone(self.zone)

    def _local_ordinal(self, us: int) -> int:
        try:
            return (_EPOCH + dt.timedelta(microseconds=us)).astimezone(self.zone).toordinal()
        except OverflowError:
            raise BusinessTimeError("the instant is outside the years 1-9999") from None

    def _local_us(self, ordinal: int, minute: int) -> int:
        """The real instant of a local wall-clock time (minute of a local date, up to 1440), fold=0."""
        if minute in (0, 1440):
            return self._midnight(ordinal + minute // 1440)
        day = dt.date.fromordinal(ordinal)
        local = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=self.zone)
        return (local - _EPOCH) // _ONE_US

    def _midnight(self, ordinal: int) -> int:
        us = self._midnights.get(ordinal)
        if us is None:
            if not _MIN_ORDINAL <= ordinal <= _MAX_ORDINAL:
                raise BusinessTimeError("business time is only computed within the years 1-9999")
            day = dt.date.fromordinal(ordinal)
            us = (dt.datetime(day.year, day.month, day.day, tzinfo=self.zone) - _EPOCH) // _ONE_US
            if len(self._midnights) >= CACHE_DAYS:
                self._midnights.clear()
            self._midnights[ordinal] = us
        return us

    def _raw_day(self, ordinal: int) -> tuple[Interval, ...]:
        """The real intervals of a local date's windows, not yet clipped to the day (empty on holidays)."""
        raw = self._raw.get(ordinal)
        if raw is None:
            day = dt.date.fromordinal(ordinal)
            windows = self._windows[day.weekday()]
            if not windows or self._is_holiday(day):
                raw = ()
            else:
                converted = ((self._local_us(ordinal, s), self._local_us(ordinal, e)) for s, e in windows)
                raw = tuple((a, b) for a, b in converted if a < b)  # a window inside a spring gap can vanish
            if len(self._raw) >= CACHE_DAYS:
                self._raw.clear()
            self._raw[ordinal] = raw
        return raw

    def _day(self, ordinal: int) -> tuple[tuple[Interval, ...], int]:
        """Working intervals inside [midnight, next midnight) of a local date, and their total (microseconds)."""
        hit = self._days.get(ordinal)
        if hit is not None:
            return hit
        lo, hi = self._midnight(ordinal), self._midnight(ordinal + 1)
        # A DST jump can move a window of the day before or after into this day: take the neighbours too.
        pieces = [
            (max(a, lo), min(b, hi))
            for o in (ordinal - 1, ordinal, ordinal + 1)
            for a, b in self._raw_day(o)
            if a < hi and b > lo
        ]
        merged = tuple(_merge(pieces))
        result = (merged, sum(b - a for a, b in merged))
        if len(self._days) >= CACHE_DAYS:
            self._days.clear()
        self._days[ordinal] = result
        return result

    def _week(self, monday: int) -> int:
        total = self._weeks.get(monday)
        if total is None:
            total = sum(self._day(monday + i)[1] for i in range(7))
            if len(self._weeks) >= CACHE_DAYS // 7:
                self._weeks.clear()
            self._weeks[monday] = total
        return total

    def _owner(self, t: int, ordinal: int) -> int:
        """The local date whose [midnight, next midnight) holds instant t (ordinal: a guess, its local date)."""
        while t < self._midnight(ordinal):
            ordinal -= 1
        while t >= self._midnight(ordinal + 1):
            ordinal += 1
        return ordinal

    def _add_us(self, x: int, day: int, need: int) -> int:
        """The first instant y with need microseconds of working time in [x, y); day owns x; need > 0."""
        for a, b in self._day(day)[0]:
            if b <= x:
                continue
            if a < x:
                a = x
            if b - a >= need:
                return a + need
            need -= b - a
        first = last_working = day
        day += 1
        while True:
            if day - last_working > MAX_EMPTY_DAYS:
                raise EmptyCalendarError(
                    f"no working time for {MAX_EMPTY_DAYS} days after {dt.date.fromordinal(last_working)} "
                    "(every day a holiday?)"
                )
            if day - first > MAX_SPAN_DAYS:
                raise BusinessTimeError(f"the due instant would be more than {MAX_SPAN_DAYS // 366} years away")
            if day % 7 == 1 and need > self._nominal_week_us:  # a Monday (ordinal 1 is one), long way to go
                week = self._week(day)
                if week < need:
                    need -= week
                    if week:
                        last_working = day + 6
                    day += 7
                    continue
            intervals, total = self._day(day)
            if total:
                if total < need:
                    need -= total
                else:
                    for a, b in intervals:
                        if b - a >= need:
                            return a + need
                        need -= b - a
                last_working = day
            day += 1

    def _elapsed_us(self, t0: int, t1: int) -> int:
        """Working microseconds in [t0, t1), pauses aside."""
        if t1 <= t0:
            return 0
        d0 = self._owner(t0, self._local_ordinal(t0))
        d1 = self._owner(t1, self._local_ordinal(t1))
        if d1 - d0 > MAX_SPAN_DAYS:
            raise BusinessTimeError(f"cannot count business time over more than {MAX_SPAN_DAYS // 366} years")
        if d0 == d1:
            return sum(min(b, t1) - max(a, t0) for a, b in self._day(d0)[0] if b > t0 and a < t1)
        total = sum(b - max(a, t0) for a, b in self._day(d0)[0] if b > t0)
        day = d0 + 1
        while day < d1:
            if day % 7 == 1 and day + 7 <= d1:
                total += self._week(day)
                day += 7
            else:
                total += self._day(day)[1]
                day += 1
        return total + sum(min(b, t1) - a for a, b in self._day(d1)[0] if a < t1)


def _pause_list(pauses: Iterable[Pause]) -> list[Interval]:
    out: list[Interval] = []
    for pause in pauses:
        try:
            a, b = pause
        except (TypeError, ValueError):
            raise BusinessTimeError(f"a pause is a (start, end) pair of datetimes, not {pause!r}") from None
        ua, ub = _to_us(a, "pause start"), _to_us(b, "pause end")
        if ub < ua:
            raise BusinessTimeError(f"the pause {a.isoformat()} - {b.isoformat()} ends before it starts")
        out.append((ua, ub))
    return _merge(out)


def _dates(values: object, field: str) -> frozenset[dt.date]:
    if not values:
        return frozenset()
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise BusinessTimeError(f"{field} must be a list of dates like 2026-12-24")
    out = set()
    for value in values:
        try:
            out.add(dt.date.fromisoformat(str(value)))
        except ValueError:
            raise BusinessTimeError(f"{field} has '{value}', not a date like 2026-12-24") from None
    return frozenset(out)


def _holiday_years(country: str, subdivision: str) -> Callable[[int], frozenset[dt.date]]:
    """Public holidays per year of a country (and subdivision), computed once per year."""
    if not country:
        return lambda _year: frozenset()
    import holidays as holidays_lib

    @lru_cache(maxsize=128)
    def year_table(year: int) -> frozenset[dt.date]:
        return frozenset(holidays_lib.country_holidays(country, subdiv=subdivision or None, years=[year]).keys())

    try:
        year_table(dt.date.today().year)
    except (NotImplementedError, KeyError, ValueError) as e:
        where = f"{country}/{subdivision}" if subdivision else country
        raise BusinessTimeError(f"the holidays package does not know '{where}' ({e})") from None
    return year_table
