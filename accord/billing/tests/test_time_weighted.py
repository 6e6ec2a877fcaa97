"""`time_weighted`: a gauge's average over the account's month (chats open at once), checked against the same step
function walked hour by hour; its peak with `max`; the combination refused at apply where it means nothing."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
import time_machine

from accord.billing.models import Meter
from accord.chat.models import ChatSession
from accord.customers.models import Tier
from accord.lib.manifest import ManifestError, apply_manifest

from .conftest import account, lines, run
from .test_run import ticket

UTC = dt.UTC
NOV = dt.datetime(2026, 11, 1, tzinfo=UTC)
DEC = dt.datetime(2026, 12, 1, tzinfo=UTC)
MANIFEST = """
meters:
  - {name: seats, source: chat.open, aggregation: time_weighted, unit: chats}
  - {name: peak-chats, source: chat.open, aggregation: max, unit: chats}
plans:
  - name: chats
    currency: EUR
    tiers: [gold]
    prices: [{meter: seats, unit_price: 100}, {meter: peak-chats, unit_price: 0}]
"""


def day(d: int, hour: int = 0) -> dt.datetime:
    return NOV + dt.timedelta(days=d - 1, hours=hour)


# (start, end or None while open) of each chat of the account: every change falls on a whole hour
CHATS: list[tuple[dt.datetime, dt.datetime | None]] = [
    (day(1), day(11)),                       # A: ten days
    (day(6), day(16)),                       # B: with A from the 6th to the 11th
    (NOV - dt.timedelta(days=7), day(7)),    # C: from October; A, B and C at once on the 6th: the peak, 3
    (day(19), day(20)), (day(20), day(21)),  # E ends as F starts: never two at once
    (day(29, 6), None),                      # D: still open when the month is billed (counted to its end)
    (DEC, DEC + dt.timedelta(hours=5)),      # December's
]


def hourly_average(chats: list[tuple[dt.datetime, dt.datetime | None]], start: dt.datetime, end: dt.datetime,
                   now: dt.datetime) -> tuple[Fraction, int]:
    """The step function sampled at each hour of [start, end) (exact: it only changes on whole hours): its mean,
    and its largest value."""
    hours = int((end - start).total_seconds()) // 3600
    levels = []
    for h in range(hours):
        t = start + dt.timedelta(hours=h)
        levels.append(sum(1 for b, e in chats if b <= t < min(e or now, now)))
    return Fraction(sum(levels), hours), max(levels)


def exact(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("0.0001"), ROUND_HALF_UP)


@pytest.mark.django_db
def test_chats_open_at_once_averaged_over_the_month_and_their_peak(catalog: Tier) -> None:
    apply_manifest(MANIFEST)
    acme = account("ACME", catalog)
    for i, (begun, ended) in enumerate(CHATS):
        ChatSession.objects.create(ticket=ticket(acme, begun), token_hash=f"{i:064d}", visitor_name="v",
                                   created_at=begun, ended_at=ended)
    billed_at = dt.datetime(2026, 12, 3, 9, tzinfo=UTC)
    with time_machine.travel(billed_at, tick=False):
        run("2026-11")
    mean, peak = hourly_average(CHATS, NOV, DEC, billed_at)
    # by hand: A 10 + B 10 + C 6 (its days in November) + E 1 + F 1 + D 1.75 = 29.75 chat-days over 30 days
    assert mean == Fraction(2975, 3000) and peak == 3
    got = lines("ACME", "2026-11")
    assert got["usage:seats"] == (exact(mean), Decimal("99.17"))  # 0.9917 x 100 EUR
    assert got["usage:peak-chats"][0] == peak
    # the same chats seen from Kolkata: its November starts at 18:30 UTC on 31 October
    kolkata = account("KOLKATA", catalog, "Asia/Kolkata")
    start, end = NOV - dt.timedelta(hours=5, minutes=30), DEC - dt.timedelta(hours=5, minutes=30)
    edge = [(start - dt.timedelta(minutes=30), start + dt.timedelta(minutes=30))]  # half an hour in its November
    ChatSession.objects.create(ticket=ticket(kolkata, edge[0][0]), token_hash="k" * 64, visitor_name="v",
                               created_at=edge[0][0], ended_at=edge[0][1])
    with time_machine.travel(billed_at, tick=False):
        run("2026-11", "KOLKATA")
    assert lines("KOLKATA", "2026-11")["usage:seats"][0] == exact(Fraction(30 * 60, int((end - start).total_seconds())))
    assert lines("KOLKATA", "2026-11")["usage:peak-chats"][0] == 1


@pytest.mark.django_db
def test_a_month_not_over_counts_what_happened_so_far_over_the_whole_month(catalog: Tier) -> None:
    apply_manifest(MANIFEST)
    acme = account("ACME", catalog)
    ChatSession.objects.create(ticket=ticket(acme, day(2)), token_hash="a" * 64, visitor_name="v", created_at=day(2))
    now = day(5)  # open for three days so far
    with time_machine.travel(now, tick=False):
        run("2026-11")
    mean, _ = hourly_average([(day(2), None)], NOV, DEC, now)
    assert mean == Fraction(3, 30) and lines("ACME", "2026-11")["usage:seats"][0] == Decimal("0.1000")


@pytest.mark.django_db
def test_time_weighted_is_refused_on_a_source_that_is_no_gauge_with_its_path(catalog: Tier) -> None:
    with pytest.raises(ManifestError) as e:
        apply_manifest("meters:\n  - {name: s, source: desk.active_agents, aggregation: time_weighted}\n"
                       "  - {name: r, source: gateway.requests, aggregation: time_weighted}\n"
                       "  - {name: c, source: chat.open, aggregation: sum}\n")
    assert e.value.errors == ["meters[0].aggregation: desk.active_agents is aggregated by unique",
                              "meters[1].aggregation: gateway.requests is aggregated by count or max",
                              "meters[2].aggregation: chat.open is aggregated by time_weighted or max"]
    assert not Meter.objects.filter(name__in=["s", "r", "c"]).exists()
    apply_manifest("meters:\n  - {name: open-chats, source: chat.open}\n")  # the default is time_weighted
    assert Meter.objects.get(name="open-chats").aggregation == "time_weighted"


@pytest.mark.django_db
def test_a_forecast_of_a_time_weighted_meter_alerts_on_the_months_average_not_the_sum_of_its_days(
        catalog: Tier) -> None:
    import calendar
    import io
    import json

    from django.core.management import call_command

    apply_manifest(MANIFEST.replace("prices: [{meter: seats, unit_price: 100}",
                                    "prices: [{meter: seats, unit_price: 100, included: 0.4}"))
    acme = account("ACME", catalog)
    now, last = dt.datetime(2026, 3, 20, 10, tzinfo=UTC), dt.date(2026, 3, 19)
    for i in range(84):  # one chat a day from 06:00, 6 to 10 hours by weekday, an hour longer every two weeks
        d = last - dt.timedelta(days=83 - i)
        begun = dt.datetime.combine(d, dt.time(6), UTC)
        ended = begun + dt.timedelta(hours=6 + 2 * (d.weekday() % 3) + i // 14)
        ChatSession.objects.create(ticket=ticket(acme, begun), token_hash=f"{i:064d}", visitor_name="v",
                                   created_at=begun, ended_at=ended)
    out = io.StringIO()
    with time_machine.travel(now, tick=False):
        call_command("forecast", "--json", "--account", "ACME", "--meter", "seats", stdout=out)
    result = json.loads(out.getvalue())
    [series] = result["series"]
    assert series["history"]["values"][-1] == pytest.approx((6 + 2 * (last.weekday() % 3) + 83 // 14) / 24, abs=5e-5)
    assert series["levels"][0]["per_day"] == pytest.approx(0.4)  # an average: the same line every day
    # the month's average so far plus the forecast day by day, over the month's days, first above 0.4
    history = dict(zip([last - dt.timedelta(days=83 - i) for i in range(84)], series["history"]["values"],
                       strict=True))
    ahead = [last + dt.timedelta(days=i + 1) for i in range(len(series["forecast"]["mean"]))]
    expected = None
    for month in ("2026-03", "2026-04", "2026-05"):
        total = sum(v for d, v in history.items() if f"{d:%Y-%m}" == month)
        days = calendar.monthrange(int(month[:4]), int(month[5:]))[1]
        for d, v in zip(ahead, series["forecast"]["mean"], strict=True):
            if f"{d:%Y-%m}" == month:
                if total / days <= 0.4 < (total + v) / days:
                    expected = expected or d.isoformat()
                    break
                total += v
    included = [a for a in result["alerts"] if a["kind"] == "included"]
    assert expected is not None and included and included[0]["on"] == expected, (expected, included)
    assert expected[8:] != "01"  # not on the first day of a month, as adding up daily averages would
