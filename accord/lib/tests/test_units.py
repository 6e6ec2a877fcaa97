"""Durations and instants as people read them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from accord.lib.units import duration, instant


@pytest.mark.parametrize(
    ("minutes", "largest", "text"),
    [
        (30, "d", "30 min"),
        (60, "d", "1 h"),
        (240, "d", "4 h"),
        (90, "d", "1 h 30 min"),
        (2880, "d", "2 d"),
        (1500, "d", "1 d 1 h"),
        (14400, "d", "10 d"),
        (960, "h", "16 h"),
        (2400, "h", "40 h"),
        (14400, "h", "240 h"),
        (90, "min", "90 min"),
        (1.5, "d", "1 min 30 s"),
        (Decimal("0.25"), "d", "15 s"),
        (0, "d", "0 min"),
        (-90, "d", "-1 h 30 min"),
        (100_000 * 60, "h", "100,000 h"),
    ],
)
def test_a_duration_reads_in_the_largest_units_that_say_it_exactly(minutes: float, largest: str, text: str) -> None:
    assert duration(minutes, largest=largest) == text


def test_a_duration_refuses_an_unknown_unit() -> None:
    with pytest.raises(ValueError, match="largest must be"):
        duration(5, largest="w")


def test_an_instant_names_its_zone() -> None:
    t = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
    assert instant(t, "America/New_York") == "2026-11-23 05:30 EST (America/New_York)"
    assert instant(t, "Europe/London") == "2026-11-23 10:30 GMT (Europe/London)"
    assert instant(t, "UTC") == "2026-11-23 10:30 UTC"
    assert instant(t, dt.UTC) == "2026-11-23 10:30 UTC"
    summer = dt.datetime(2026, 7, 1, 9, 0, tzinfo=dt.UTC)
    assert instant(summer, "Europe/London", "%a %d %b %Y %H:%M") == "Wed 01 Jul 2026 10:00 BST (Europe/London)"
