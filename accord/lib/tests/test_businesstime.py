"""The business-time engine against a minute-by-minute reference, across DST, holidays and odd calendars."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.lib.businesstime import BusinessTime, BusinessTimeError, EmptyCalendarError

UTC = dt.UTC
ZONES = ["Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "Pacific/Chatham", "America/Santiago"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def reference_working(bt: BusinessTime, instant: dt.datetime, tz: ZoneInfo, hours: dict[str, list[tuple[int, int]]],
                      holidays: set[dt.date]) -> bool:
    """The naive definition: is this real instant inside some day's window, converted with fold=0?"""
    local_day = instant.astimezone(tz).date()
    for day in (local_day - dt.timedelta(days=1), local_day, local_day + dt.timedelta(days=1)):
        if day in holidays:
            continue
        for start, end in hours[DAYS[day.weekday()]]:
            a = _local(day, start, tz)
            b = _local(day, end, tz)
            if a <= instant < b:
                return True
    return False


def _local(day: dt.date, minute: int, tz: ZoneInfo) -> dt.datetime:
    day = day + dt.timedelta(days=minute // 1440)
    minute %= 1440
    return dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz).astimezone(UTC)


def reference_add(is_working: object, start: dt.datetime, minutes: int) -> dt.datetime:
    t, counted = start, 0
    if minutes == 0:
        return start
    for _ in range(60 * 24 * 60):  # bounded: 60 days of minutes
        if is_working(t):  # type: ignore[operator]
            counted += 1
            if counted == minutes:
                return t + dt.timedelta(minutes=1)
        t += dt.timedelta(minutes=1)
    raise AssertionError("reference did not finish")


windows = st.lists(
    st.tuples(st.integers(0, 47), st.integers(1, 48)).map(lambda p: (p[0] * 30, min(1440, p[0] * 30 + p[1] * 30))),
    max_size=3,
).map(lambda ws: _disjoint(ws))


def _disjoint(ws: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(ws):
        if e <= s:
            continue
        if out and s < out[-1][1]:
            continue
        out.append((s, e))
    return out


def _fmt(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@st.composite
def calendars(draw: st.DrawFn) -> tuple[str, dict[str, list[tuple[int, int]]], set[dt.date]]:
    tz = draw(st.sampled_from(ZONES))
    hours = {day: draw(windows) for day in DAYS}
    if not any(hours.values()):
        hours["mon"] = [(540, 1020)]
    holidays = set(draw(st.lists(st.dates(dt.date(2026, 1, 1), dt.date(2027, 1, 31)), max_size=8)))
    return tz, hours, holidays


# Instants near the 2026 DST transitions of the zones above, plus anywhere in the year.
TRANSITIONS = [dt.datetime(2026, 3, 29, 1, tzinfo=UTC), dt.datetime(2026, 10, 25, 1, tzinfo=UTC),
               dt.datetime(2026, 3, 8, 7, tzinfo=UTC), dt.datetime(2026, 11, 1, 6, tzinfo=UTC),
               dt.datetime(2026, 4, 4, 16, tzinfo=UTC), dt.datetime(2026, 10, 3, 16, tzinfo=UTC),
               dt.datetime(2026, 4, 5, 3, tzinfo=UTC), dt.datetime(2026, 9, 6, 4, tzinfo=UTC)]
starts = st.one_of(
    st.builds(lambda base, m: base + dt.timedelta(minutes=m), st.sampled_from(TRANSITIONS), st.integers(-3000, 3000)),
    st.builds(lambda m: dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=m), st.integers(0, 364 * 1440)),
)


def engine(tz: str, hours: dict[str, list[tuple[int, int]]], holidays: set[dt.date]) -> BusinessTime:
    return BusinessTime(tz, {d: [f"{_fmt(s)}-{_fmt(e)}" for s, e in ws] for d, ws in hours.items()},
                        lambda day: day in holidays)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cal=calendars(), start=starts, minutes=st.integers(0, 900))
def test_add_matches_the_minute_by_minute_reference(cal: tuple, start: dt.datetime, minutes: int) -> None:
    tz_name, hours, holidays = cal
    tz = ZoneInfo(tz_name)
    bt = engine(tz_name, hours, holidays)

    def working(t: dt.datetime) -> bool:
        return reference_working(bt, t, tz, hours, holidays)

    if sum(e - s for ws in hours.values() for s, e in ws) < 60 and minutes > 120:
        minutes = 120  # keep the reference walk short on nearly empty calendars
    expected = reference_add(working, start, minutes)
    got = bt.add(start, minutes)
    assert got == expected, (tz_name, hours, start, minutes, got, expected)
    assert got.tzinfo is not None and got.utcoffset() == expected.astimezone(tz).utcoffset()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cal=calendars(), start=starts, span=st.integers(0, 4 * 1440))
def test_elapsed_matches_the_reference_and_inverts_add(cal: tuple, start: dt.datetime, span: int) -> None:
    tz_name, hours, holidays = cal
    tz = ZoneInfo(tz_name)
    bt = engine(tz_name, hours, holidays)
    end = start + dt.timedelta(minutes=span)
    expected = sum(
        1 for i in range(span) if reference_working(bt, start + dt.timedelta(minutes=i), tz, hours, holidays)
    )
    assert bt.elapsed(start, end) == expected
    if expected:
        assert bt.elapsed(start, bt.add(start, expected)) == expected


def test_a_spring_forward_night_window_holds_the_real_time() -> None:
    bt = BusinessTime("Europe/London", {d: ["00:00-04:00"] for d in DAYS})
    night = dt.datetime(2026, 3, 29, 0, 0, tzinfo=ZoneInfo("Europe/London"))
    # 01:00-02:00 local does not exist that night: 00:00-04:00 BST-or-GMT is 3 real hours.
    assert bt.elapsed(night, night + dt.timedelta(hours=6)) == 180
    autumn = dt.datetime(2026, 10, 25, 0, 0, tzinfo=ZoneInfo("Europe/London"))
    assert bt.elapsed(autumn, autumn + dt.timedelta(hours=6)) == 300  # the repeated hour is worked twice


def test_business_minutes_cross_weekends_holidays_and_midnight_windows() -> None:
    bt = BusinessTime("Europe/London", {"mon": ["09:00-17:00"], "fri": ["09:00-17:00", "22:00-24:00"]},
                      lambda d: d == dt.date(2026, 11, 23))
    friday = dt.datetime(2026, 11, 20, 16, 30, tzinfo=UTC)
    assert bt.add(friday, 30) == dt.datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
    assert bt.add(friday, 150) == dt.datetime(2026, 11, 21, 0, 0, tzinfo=UTC)  # the window ends at 24:00
    assert bt.add(friday, 151) == dt.datetime(2026, 11, 27, 9, 1, tzinfo=UTC)  # Monday 23rd is a holiday


def test_pauses_do_not_count() -> None:
    bt = BusinessTime("UTC", {d: ["09:00-17:00"] for d in DAYS[:5]})
    start = dt.datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    pause = (dt.datetime(2026, 11, 23, 10, 0, tzinfo=UTC), dt.datetime(2026, 11, 23, 12, 30, tzinfo=UTC))
    assert bt.add(start, 120, [pause]) == dt.datetime(2026, 11, 23, 13, 30, tzinfo=UTC)
    assert bt.elapsed(start, dt.datetime(2026, 11, 23, 17, 0, tzinfo=UTC), [pause]) == 330


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(EmptyCalendarError):
        BusinessTime("UTC", {"mon": []})
    with pytest.raises(BusinessTimeError, match="not an IANA time zone"):
        BusinessTime("Mars/Base", {"mon": ["09:00-10:00"]})
    bt = BusinessTime("UTC", {"mon": ["09:00-10:00"]})
    with pytest.raises(BusinessTimeError, match="has no time zone"):
        bt.add(dt.datetime(2026, 1, 1, 9), 10)
    with pytest.raises(BusinessTimeError, match="must not be negative"):
        bt.add(dt.datetime(2026, 1, 1, 9, tzinfo=UTC), -1)
    always_off = BusinessTime("UTC", {"mon": ["09:00-10:00"]}, lambda d: True)
    with pytest.raises(EmptyCalendarError, match="no working time within"):
        always_off.add(dt.datetime(2026, 1, 1, tzinfo=UTC), 10)
