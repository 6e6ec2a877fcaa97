"""Declared maintenance windows in a report: their minutes are not counted, the report lists them, credits follow."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import time_machine

from accord.agreements.models import MaintenanceWindow
from accord.customers.models import Account
from accord.governance.tests.rollups import add_rollup
from accord.reports import render
from accord.reports.builder import build
from accord.reports.periods import parse_period

NOV = parse_period("2026-11")
AFTER = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


def minute(day: int, hour: int, m: int) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, m, tzinfo=dt.UTC)


def outage(acme: Account) -> None:
    """1,000 good requests on the 2nd; on the 14th an outage from 02:00 to 02:40, 10 failing requests a minute."""
    add_rollup(minute(2, 10, 0), count=1000, account="ACME", tier="gold")
    for m in range(40):
        add_rollup(minute(14, 2, m), count=10, errors=10, account="ACME", tier="gold")


def declare(acme: Account, start: dt.datetime, end: dt.datetime) -> None:
    agreement = acme.agreements.get()
    MaintenanceWindow.objects.create(agreement=agreement, start=start, end=end, reason="database upgrade",
                                     declared_at=start - dt.timedelta(days=7))


@time_machine.travel(AFTER, tick=False)
def test_an_outage_inside_a_declared_window_is_not_downtime(acme: Account) -> None:
    outage(acme)
    declare(acme, minute(14, 1, 0), minute(14, 3, 0))
    [part] = build(acme, NOV).parts
    [result] = part.objectives
    assert (result.valid, result.bad, result.attained) == (1000, 0, Fraction(100))
    [credit] = part.credits
    assert credit.amount == 0
    page = render.html(build(acme, NOV)).decode()
    assert "Declared maintenance, not counted" in page
    assert "2026-11-14 01:00 UTC to 2026-11-14 03:00 UTC (120 min: database upgrade)" in page


@time_machine.travel(AFTER, tick=False)
def test_an_outage_half_inside_a_window_counts_its_other_half(acme: Account) -> None:
    outage(acme)
    declare(acme, minute(14, 2, 20), minute(14, 4, 0))  # 02:20-02:40 inside; 02:00-02:19 counted
    [part] = build(acme, NOV).parts
    [result] = part.objectives
    assert (result.valid, result.bad) == (1200, 200)
    assert result.attained == Fraction(1000, 1200) * 100  # 83.333... %: below every band
    [credit] = part.credits
    assert (credit.percent, str(credit.amount)) == (100, "1000.00")
    data = render.as_dict(build(acme, NOV))
    assert data["parts"][0]["maintenance"][0]["minutes"] == 100
    # without the window the whole outage counts: 400 bad of 1,400
    MaintenanceWindow.objects.all().delete()
    [result] = build(acme, NOV).parts[0].objectives
    assert (result.valid, result.bad) == (1400, 400)
