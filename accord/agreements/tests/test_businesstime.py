"""The business-time engine against a minute-by-minute reference, across DST, holidays and odd calendars."""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.agreements import businesstime
from accord.agreements.businesstime import BusinessTime, BusinessTimeError, EmptyCalendarError
from accord.agreements.models import BusinessCalendar
from accord.agreements.tests.reference import DAYS, MinuteReference, window_text

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
LONDON = ZoneInfo("Europe/London")
# DST in both hemispheres, none (Kolkata), odd offsets (Chatham +12:45/+13:45), a 30-minute DST shift
# (Lord Howe), and clocks that change at midnight (Santiago, Havana).
ZONES = ["Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "Pacific/Chatham",
         "America/Santiago", "Australia/Lord_Howe", "America/Havana", "UTC"]
YEAR_START = dt.datetime(2026, 1, 1, tzinfo=UTC)

def later(t: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """t plus real elapsed time (Python's `+` on an aware datetime adds wall-clock time), in t's zone."""
    return (t.astimezone(UTC) + delta).astimezone(t.tzinfo)


def same_instant(a: dt.datetime, b: dt.datetime) -> bool:
    """Equality of real instants (PEP 495: `==` across zones is False for a repeated wall time with fold=1)."""
    return a.astimezone(UTC) == b.astimezone(UTC)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def transitions(zone: str) -> tuple[dt.datetime, ...]:
    """The instants in 2026 at which a zone's UTC offset changes, to the minute (found by scanning)."""
    tz = ZoneInfo(zone)
    out = []
    t = YEAR_START
    while t.year == 2026:
        nxt = t + dt.timedelta(hours=1)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = t, nxt
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            out.append(hi.replace(second=0, microsecond=0))
        t = nxt
    return tuple(out)


def test_the_property_tests_really_cross_dst_transitions() -> None:
    assert transitions("Europe/London") == (dt.datetime(2026, 3, 29, 1, tzinfo=UTC), dt.datetime(2026, 10, 25, 1, tzinfo=UTC))
    assert transitions("Asia/Kolkata") == ()
    assert all(len(transitions(z)) == 2 for z in ZONES if z not in ("Asia/Kolkata", "UTC"))


# -- strategies ------------------------------------------------------------------------------------------

def _disjoint(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(windows):
        if not out or s >= out[-1][1]:
            out.append((s, e))
    return out


# Windows on quarter hours (Chatham and Lord Howe change clocks at :45 and by 30 minutes), up to 24:00.
day_windows = st.lists(
    st.tuples(st.integers(0, 95), st.integers(1, 96)).map(lambda p: (p[0] * 15, min(1440, (p[0] + p[1]) * 15))),
    max_size=3,
).map(_disjoint)
some_day = st.dates(dt.date(2025, 12, 1), dt.date(2027, 1, 31))


@st.composite
def calendars(draw: st.DrawFn) -> tuple[str, dict[str, list[tuple[int, int]]], frozenset[dt.date]]:
    """A zone, windows per weekday (at least one somewhere), and holidays: single days and maybe a stretch."""
    tz = draw(st.sampled_from(ZONES))
    hours = {day: draw(day_windows) for day in DAYS}
    if not any(hours.values()):
        hours[draw(st.sampled_from(DAYS))] = [(540, 1020)]
    holidays = set(draw(st.lists(some_day, max_size=6)))
    if draw(st.booleans()):
        first = draw(some_day)
        holidays |= {first + dt.timedelta(days=i) for i in range(draw(st.integers(1, 10)))}
    return tz, hours, frozenset(holidays)


@st.composite
def instants(draw: st.DrawFn, tz: str) -> dt.datetime:
    """Anywhere in 2026, or within three days of one of the zone's DST transitions; sometimes with seconds."""
    near = transitions(tz)
    if near and draw(st.booleans()):
        t = draw(st.sampled_from(near)) + dt.timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)))
    else:
        t = YEAR_START + dt.timedelta(minutes=draw(st.integers(0, 365 * 1440)))
    if draw(st.booleans()):
        t += dt.timedelta(seconds=draw(st.integers(0, 59)), microseconds=draw(st.integers(0, 999_999)))
    # The caller's zone should not matter: give the instant in UTC or in the calendar's zone.
    return t.astimezone(ZoneInfo(draw(st.sampled_from(["UTC", tz]))))


@st.composite
def pause_lists(draw: st.DrawFn, start: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """Up to three pauses around a start, with seconds, possibly overlapping each other or the start."""
    out = []
    for _ in range(draw(st.integers(0, 3))):
        a = later(start, dt.timedelta(seconds=draw(st.integers(-600 * 60, 4000 * 60))))
        out.append((a, later(a, dt.timedelta(seconds=draw(st.integers(0, 2000 * 60))))))
    return out


def engine_for(tz: str, hours: dict[str, list[tuple[int, int]]], holidays: frozenset[dt.date]) -> BusinessTime:
    return BusinessTime(tz, {d: [window_text(s, e) for s, e in ws] for d, ws in hours.items()}, holidays)


def weekly(hours: dict[str, list[tuple[int, int]]]) -> int:
    return sum(e - s for ws in hours.values() for s, e in ws)


@st.composite
def add_cases(draw: st.DrawFn) -> tuple:
    tz, hours, holidays = draw(calendars())
    start = draw(instants(tz))
    # Whole minutes up to 10 hours, minutes with seconds, or up to 2.5 weeks of the calendar's time (so whole
    # weeks get skipped); kept small enough that the reference's minute walk stays short.
    most = min(5 * weekly(hours) // 2, 12_000)
    kind = draw(st.sampled_from(["minutes", "seconds", "weeks"]))
    if kind == "minutes":
        minutes: int | Fraction = draw(st.integers(0, min(600, most)))
    elif kind == "seconds":
        minutes = Fraction(draw(st.integers(0, min(600, most) * 60)), 60)
    else:
        minutes = draw(st.integers(0, most))
    pauses = draw(pause_lists(start))
    return tz, hours, holidays, start, minutes, pauses


# -- properties against the reference ---------------------------------------------------------------------

@PROPERTY
@given(case=add_cases())
def test_add_matches_the_minute_by_minute_reference(case: tuple) -> None:
    tz, hours, holidays, start, minutes, pauses = case
    bt = engine_for(tz, hours, holidays)
    ref = MinuteReference(tz, hours, holidays)
    as_given = float(minutes) if isinstance(minutes, Fraction) else minutes  # what callers pass: int or float
    got = bt.add(start, as_given, pauses)
    expected = ref.add(start, minutes, pauses)
    assert same_instant(got, expected), (tz, hours, sorted(holidays), start, minutes, pauses, got, expected)
    assert got.tzinfo is not None and got.utcoffset() == expected.astimezone(ZoneInfo(tz)).utcoffset()
    assert got.isoformat() == got.astimezone(ZoneInfo(tz)).isoformat()  # in the calendar's zone
    # Counting back over the answer gives the minutes again, to the microsecond.
    assert bt.elapsed_delta(start, got, pauses) == dt.timedelta(microseconds=round(minutes * 60_000_000))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cal=calendars(), data=st.data())
def test_elapsed_matches_the_minute_by_minute_reference(cal: tuple, data: st.DataObject) -> None:
    tz, hours, holidays = cal
    start = data.draw(instants(tz))
    end = later(start, dt.timedelta(seconds=data.draw(st.integers(0, 5 * 86400))))
    pauses = data.draw(pause_lists(start))
    bt = engine_for(tz, hours, holidays)
    expected = MinuteReference(tz, hours, holidays).elapsed(start, end, pauses)
    assert bt.elapsed_delta(start, end, pauses) == expected
    assert bt.elapsed(start, end, pauses) == expected / MINUTE


@PROPERTY
@given(cal=calendars(), data=st.data())
def test_is_working_matches_the_naive_definition(cal: tuple, data: st.DataObject) -> None:
    tz, hours, holidays = cal
    instant = data.draw(instants(tz))
    assert engine_for(tz, hours, holidays).is_working(instant) == MinuteReference(tz, hours, holidays).is_working(instant)


# -- properties for long spans (no reference walk: too slow) ----------------------------------------------

@settings(max_examples=60, deadline=None)
@given(tz=st.sampled_from(ZONES), data=st.data())
def test_on_a_24x7_calendar_business_time_is_real_time_across_years_of_dst(tz: str, data: st.DataObject) -> None:
    bt = BusinessTime(tz, {d: ["00:00-24:00"] for d in DAYS})
    start = data.draw(instants(tz))
    minutes = data.draw(st.integers(0, 3 * 366 * 1440))
    end = later(start, dt.timedelta(minutes=minutes))
    assert same_instant(bt.add(start, minutes), end)
    assert bt.elapsed(start, end) == minutes


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cal=calendars(), data=st.data())
def test_adding_in_two_steps_lands_where_adding_at_once_does(cal: tuple, data: st.DataObject) -> None:
    tz, hours, holidays = cal
    bt = engine_for(tz, hours, holidays)
    start = data.draw(instants(tz))
    total = data.draw(st.integers(0, 60 * weekly(hours)))  # up to 60 weeks of working time
    first = data.draw(st.integers(0, total))
    pauses = data.draw(pause_lists(start))
    once = bt.add(start, total, pauses)
    assert same_instant(bt.add(bt.add(start, first, pauses), total - first, pauses), once)
    assert bt.elapsed(start, once, pauses) == total


@settings(max_examples=40, deadline=None)
@given(tz=st.sampled_from(ZONES), data=st.data())
def test_a_week_without_working_time_is_refused_whatever_the_zone(tz: str, data: st.DataObject) -> None:
    hours = {day: data.draw(st.sampled_from([[], None])) for day in DAYS}
    with pytest.raises(EmptyCalendarError, match="no working time on any weekday"):
        BusinessTime(tz, hours)  # type: ignore[arg-type]


# -- DST rules, by example --------------------------------------------------------------------------------

def test_a_spring_forward_night_window_holds_two_real_hours() -> None:
    bt = BusinessTime("Europe/London", {d: ["01:00-04:00"] for d in DAYS})
    midnight = dt.datetime(2026, 3, 29, tzinfo=LONDON)
    # 01:00-02:00 local does not exist that night: the window is 01:00 GMT (01:00 UTC) to 04:00 BST (03:00 UTC).
    assert bt.elapsed(midnight, midnight + dt.timedelta(hours=12)) == 120
    assert bt.add(midnight, 120).isoformat() == "2026-03-29T04:00:00+01:00"


def test_a_fall_back_night_window_holds_four_real_hours() -> None:
    bt = BusinessTime("Europe/London", {d: ["01:00-04:00"] for d in DAYS})
    midnight = dt.datetime(2026, 10, 25, tzinfo=LONDON)
    assert bt.elapsed(midnight, midnight + dt.timedelta(hours=12)) == 240
    assert bt.add(midnight, 30).isoformat() == "2026-10-25T01:30:00+01:00"  # the first 01:30
    assert bt.add(midnight, 90).isoformat() == "2026-10-25T01:30:00+00:00"  # the second 01:30


def test_a_window_starting_in_the_spring_gap_starts_as_far_after_the_jump() -> None:
    # 01:30 does not exist on 29 March 2026 in London; read with the offset before the jump it is 01:30 UTC,
    # half an hour after the jump (02:30 BST). 03:00 BST is 02:00 UTC: the window holds 30 real minutes.
    bt = BusinessTime("Europe/London", {"sun": ["01:30-03:00"]})
    midnight = dt.datetime(2026, 3, 29, tzinfo=LONDON)
    assert bt.elapsed(midnight, midnight + dt.timedelta(hours=12)) == 30
    assert bt.add(midnight, 1).isoformat() == "2026-03-29T02:31:00+01:00"


def test_an_ambiguous_window_start_means_its_first_occurrence() -> None:
    bt = BusinessTime("Europe/London", {"sun": ["01:30-02:00"]})
    midnight = dt.datetime(2026, 10, 25, tzinfo=LONDON)
    # 01:30 BST (00:30 UTC) to 02:00 GMT (02:00 UTC): 90 real minutes.
    assert bt.elapsed(midnight, midnight + dt.timedelta(hours=12)) == 90


def test_windows_ending_at_24_00_meet_a_midnight_that_does_not_exist() -> None:
    # Santiago moves its clocks from 24:00 on Saturday 5 September 2026 to 01:00 on Sunday (-04 to -03).
    bt = BusinessTime("America/Santiago", {"sat": ["22:00-24:00"], "sun": ["00:00-02:00"]})
    evening = dt.datetime(2026, 9, 5, 20, tzinfo=ZoneInfo("America/Santiago"))
    # Saturday 02:00-04:00 UTC, Sunday 04:00 UTC (the midnight read as -04) to 02:00 -03 (05:00 UTC).
    assert bt.elapsed(evening, evening + dt.timedelta(hours=16)) == 180
    assert bt.add(evening, 121).isoformat() == "2026-09-06T01:01:00-03:00"


def test_business_minutes_cross_weekends_holidays_and_midnight_windows() -> None:
    bt = BusinessTime("Europe/London", {"mon": ["09:00-17:00"], "fri": ["09:00-17:00", "22:00-24:00"]},
                      {dt.date(2026, 11, 23)})
    friday = dt.datetime(2026, 11, 20, 16, 30, tzinfo=UTC)
    assert bt.add(friday, 30) == dt.datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
    assert bt.add(friday, 150) == dt.datetime(2026, 11, 21, 0, 0, tzinfo=UTC)  # the window ends at 24:00
    assert bt.add(friday, 151) == dt.datetime(2026, 11, 27, 9, 1, tzinfo=UTC)  # Monday 23rd is a holiday


def test_a_start_outside_hours_counts_from_the_next_window_and_zero_minutes_is_the_start() -> None:
    bt = BusinessTime("Europe/London", {d: ["09:00-17:00"] for d in DAYS[:5]})
    saturday = dt.datetime(2026, 11, 21, 12, tzinfo=UTC)
    assert bt.add(saturday, 1).isoformat() == "2026-11-23T09:01:00+00:00"
    assert bt.add(saturday, 0).isoformat() == "2026-11-21T12:00:00+00:00"
    assert bt.elapsed(saturday, saturday + dt.timedelta(hours=30)) == 0


# -- resolution ---------------------------------------------------------------------------------------------

def test_it_is_exact_to_the_second_and_the_microsecond() -> None:
    bt = BusinessTime("UTC", {d: ["09:00-17:00"] for d in DAYS[:5]})
    monday = dt.datetime(2026, 11, 23, 9, 0, 30, tzinfo=UTC)
    assert bt.add(monday, 1) == monday + MINUTE
    assert bt.add(monday, 0.5) == monday + dt.timedelta(seconds=30)
    assert bt.add(monday, Fraction(1, 3)) == monday + dt.timedelta(seconds=20)
    friday = dt.datetime(2026, 11, 27, 16, 59, 30, 250_000, tzinfo=UTC)
    assert bt.add(friday, 1) == dt.datetime(2026, 11, 30, 9, 0, 30, 250_000, tzinfo=UTC)
    assert bt.elapsed_delta(friday, dt.datetime(2026, 11, 30, 9, 0, 30, 250_000, tzinfo=UTC)) == MINUTE
    assert bt.elapsed(monday, monday + dt.timedelta(seconds=20)) == pytest.approx(1 / 3, abs=1e-12)


# -- pauses ---------------------------------------------------------------------------------------------------

def test_pauses_do_not_count() -> None:
    bt = BusinessTime("UTC", {d: ["09:00-17:00"] for d in DAYS[:5]})
    start = dt.datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    pause = (dt.datetime(2026, 11, 23, 10, 0, tzinfo=UTC), dt.datetime(2026, 11, 23, 12, 30, tzinfo=UTC))
    assert bt.add(start, 120, [pause]) == dt.datetime(2026, 11, 23, 13, 30, tzinfo=UTC)
    assert bt.elapsed(start, dt.datetime(2026, 11, 23, 17, 0, tzinfo=UTC), [pause]) == 330


def test_overlapping_unsorted_pauses_and_a_pause_holding_the_start_count_once() -> None:
    bt = BusinessTime("UTC", {d: ["09:00-17:00"] for d in DAYS[:5]})
    start = dt.datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime(2026, 11, day, hour, minute, tzinfo=UTC)

    pauses = [(at(23, 15), at(24, 10)), (at(23, 8), at(23, 9, 30)), (at(23, 14), at(23, 16))]
    # Working: 09:30-14:00 on Monday (270), then Tuesday from 10:00.
    assert bt.add(start, 300, pauses) == at(24, 10, 30)
    assert bt.elapsed(start, at(24, 17), pauses) == 270 + 420
    assert bt.add(start, 60, [(at(21, 0), at(30, 12))]) == at(30, 13)  # a pause over the weekend and beyond


# -- calendars from the database model ---------------------------------------------------------------------

def test_a_stored_calendar_brings_its_countrys_holidays_extra_days_and_worked_holidays() -> None:
    calendar = BusinessCalendar(
        name="emea", timezone="Europe/London", hours={d: ["09:00-17:00"] for d in DAYS[:5]},
        holiday_country="GB", holiday_subdivision="ENG", extra_holidays=["2026-12-24"], removed_holidays=["2026-12-28"],
    )
    bt = BusinessTime.from_calendar(calendar)
    # 24th extra, 25th Christmas, 26-27 weekend, 28th (Boxing Day observed) worked after all.
    assert bt.add(dt.datetime(2026, 12, 23, 16, 30, tzinfo=UTC), 60).isoformat() == "2026-12-28T09:30:00+00:00"
    without = BusinessTime.from_calendar(BusinessCalendar(name="x", timezone="Europe/London", hours=calendar.hours,
                                                          holiday_country="GB", holiday_subdivision="ENG"))
    assert without.add(dt.datetime(2026, 12, 23, 16, 30, tzinfo=UTC), 60).isoformat() == "2026-12-24T09:30:00+00:00"


def test_a_stored_calendar_with_bad_data_is_refused_with_its_name() -> None:
    hours = {"mon": ["09:00-17:00"]}
    with pytest.raises(BusinessTimeError, match=r"calendar 'emea': extra_holidays has '2026-13-01'"):
        BusinessTime.from_calendar(BusinessCalendar(name="emea", timezone="UTC", hours=hours, extra_holidays=["2026-13-01"]))
    with pytest.raises(BusinessTimeError, match=r"calendar 'emea': the holidays package does not know 'XX'"):
        BusinessTime.from_calendar(BusinessCalendar(name="emea", timezone="UTC", hours=hours, holiday_country="XX"))
    with pytest.raises(EmptyCalendarError, match=r"calendar 'never': the calendar has no working time"):
        BusinessTime.from_calendar(BusinessCalendar(name="never", timezone="UTC", hours={"mon": []}))
    with pytest.raises(BusinessTimeError, match=r"calendar 'emea': hours\[tue\]: '9-5' is not a window"):
        BusinessTime.from_calendar(BusinessCalendar(name="emea", timezone="UTC", hours={"tue": ["9-5"]}))


# -- bad input ------------------------------------------------------------------------------------------------

def test_a_calendar_that_cannot_work_is_refused_when_built() -> None:
    with pytest.raises(EmptyCalendarError):
        BusinessTime("UTC", {"mon": []})
    with pytest.raises(BusinessTimeError, match="not an IANA time zone"):
        BusinessTime("Mars/Base", {"mon": ["09:00-10:00"]})
    with pytest.raises(BusinessTimeError, match="monday: not a weekday"):
        BusinessTime("UTC", {"monday": ["09:00-10:00"]})
    with pytest.raises(BusinessTimeError, match=r"hours\[mon\]: '17:00-09:00' ends before it starts"):
        BusinessTime("UTC", {"mon": ["17:00-09:00"]})
    with pytest.raises(BusinessTimeError, match=r"hours\[mon\] must be a list"):
        BusinessTime("UTC", {"mon": "09:00-10:00"})


@pytest.mark.parametrize(
    ("minutes", "message"),
    [(-1, "must not be negative"), (-0.5, "must not be negative"), (math.nan, "finite"), (math.inf, "finite"),
     ("30", "must be a number"), (True, "must be a number"), (10**12, "more business time than fits in 100 years")],
)
def test_minutes_that_make_no_sense_are_refused(minutes: object, message: str) -> None:
    bt = BusinessTime("UTC", {"mon": ["09:00-10:00"]})
    with pytest.raises(BusinessTimeError, match=message):
        bt.add(dt.datetime(2026, 1, 1, 9, tzinfo=UTC), minutes)  # type: ignore[arg-type]


def test_instants_and_pauses_that_make_no_sense_are_refused() -> None:
    bt = BusinessTime("UTC", {"mon": ["09:00-10:00"]})
    aware = dt.datetime(2026, 1, 5, 9, tzinfo=UTC)
    with pytest.raises(BusinessTimeError, match="start 2026-01-05T09:00:00 has no time zone"):
        bt.add(dt.datetime(2026, 1, 5, 9), 10)
    with pytest.raises(BusinessTimeError, match="end 2026-01-05T09:00:00 has no time zone"):
        bt.elapsed(aware, dt.datetime(2026, 1, 5, 9))
    with pytest.raises(BusinessTimeError, match="start must be a datetime, not str"):
        bt.add("2026-01-05T09:00Z", 10)  # type: ignore[arg-type]
    with pytest.raises(BusinessTimeError, match="is before start"):
        bt.elapsed(aware, aware - MINUTE)
    with pytest.raises(BusinessTimeError, match="ends before it starts"):
        bt.add(aware, 10, [(aware, aware - MINUTE)])
    with pytest.raises(BusinessTimeError, match=r"pause start .* has no time zone"):
        bt.add(aware, 10, [(dt.datetime(2026, 1, 5, 9), aware)])
    with pytest.raises(BusinessTimeError, match=r"a pause is a \(start, end\) pair"):
        bt.add(aware, 10, [(aware,)])  # type: ignore[list-item]
    with pytest.raises(BusinessTimeError, match="years 1-9999"):
        bt.add(dt.datetime(9999, 12, 30, tzinfo=UTC), 600)


def test_a_calendar_on_holiday_for_years_ends_in_an_error_not_a_loop() -> None:
    always_off = BusinessTime("UTC", {"mon": ["09:00-10:00"]}, lambda _day: True)
    with pytest.raises(EmptyCalendarError, match="no working time for 1830 days"):
        always_off.add(dt.datetime(2026, 1, 1, tzinfo=UTC), 10)
    assert always_off.elapsed(dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2036, 1, 1, tzinfo=UTC)) == 0
    rarely = BusinessTime("UTC", {"mon": ["09:00-10:00"]}, lambda day: day.year < 2040)
    assert rarely.add(dt.datetime(2036, 1, 1, tzinfo=UTC), 10).isoformat() == "2040-01-02T09:10:00+00:00"  # 4 years on


def test_answers_stay_right_when_the_day_cache_overflows(monkeypatch: pytest.MonkeyPatch) -> None:
    hours = {d: ["09:00-12:30", "13:30-17:30"] for d in DAYS[:5]}
    start = dt.datetime(2026, 3, 27, 16, tzinfo=UTC)
    expected = BusinessTime("Europe/London", hours).add(start, 200_000)
    monkeypatch.setattr(businesstime, "CACHE_DAYS", 10)
    small = BusinessTime("Europe/London", hours)
    assert small.add(start, 200_000) == expected
    assert len(small._days) <= 10
    assert small.elapsed(start, expected) == 200_000


def test_the_cli_example_in_the_issue() -> None:
    bt = BusinessTime("Europe/London", {d: ["09:00-17:00"] for d in DAYS[:5]})
    assert bt.add(dt.datetime(2026, 3, 27, 16, tzinfo=UTC), 120).isoformat() == "2026-03-30T10:00:00+01:00"
