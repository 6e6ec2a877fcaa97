"""Forecasts from the stored rollups: per account and meter against its plan, per service against its pool, a
sudden change on its first day, too little history said, and bad arguments refused (issue 19)."""

from __future__ import annotations

import datetime as dt
import io
import json

import numpy as np
import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError

from accord.gateway.flusher import write_rollups
from accord.gateway.measure import Tally

from .conftest import account, plan

NOW = dt.datetime(2026, 3, 20, 10, 0, tzinfo=dt.UTC)  # the last complete day is 19 March
LAST = dt.date(2026, 3, 19)
WEEK = np.array([100.0, 150.0, 120.0, 100.0, 50.0, -400.0, -500.0])  # Monday .. Sunday


def daily(days: int, level: float = 1000.0, slope: float = 5.0, seed: int = 0) -> list[int]:
    first = LAST - dt.timedelta(days=days - 1)
    noise = np.random.default_rng(seed).normal(0.0, 30.0, days)
    return [max(0, round(level + slope * i + WEEK[(first + dt.timedelta(days=i)).weekday()] + noise[i]))
            for i in range(days)]


def store(values: list[int], ext: str = "ACME", latency_ms: float = 50.0) -> None:
    """Each day's requests in the four six-hour blocks of the day (09:00, 12:00, 15:00 and 18:00 UTC), as the
    gateway's flusher writes them."""
    first = LAST - dt.timedelta(days=len(values) - 1)
    tallies = {}
    for i, n in enumerate(values):
        day = dt.datetime.combine(first + dt.timedelta(days=i), dt.time(), dt.UTC)
        for k, hour in enumerate((9, 12, 15, 18)):
            part = n // 4 + (1 if k < n % 4 else 0)
            if not part:
                continue
            tally = Tally()
            tally.count, tally.latency_sum = part, part * latency_ms
            epoch = int((day + dt.timedelta(hours=hour)).timestamp())
            tallies[(epoch, ext, "booking", "", "primary", "ok", "gold")] = tally
    write_rollups(tallies, 60)


def forecast_json(*args: str) -> dict:
    out = io.StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("forecast", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_an_account_forecast_to_pass_its_included_quantity_is_alerted_with_the_day(catalog: object) -> None:
    account("ACME")
    values = daily(84)
    store(values)
    # ~1,360 a day now and rising 5 a day: about 41,700 in March (under 43,000) and 45,000 in April (over it)
    plan("  - {name: api, currency: EUR, accounts: [ACME], prices: [{meter: api-calls, unit_price: 0.001, "
         "included: 43000}]}\n")
    result = forecast_json("--account", "ACME", "--meter", "api-calls")
    [series] = result["series"]
    assert series["subject"] == "account ACME" and series["history"]["values"] == values
    assert series["forecast"]["reason"] is None and len(series["forecast"]["mean"]) == 56
    assert series["forecast"]["first_day"] == "2026-03-20"
    included = [a for a in result["alerts"] if a["kind"] == "included"]
    assert included, result["alerts"]
    assert included[0]["on"].startswith("2026-04-2") and included[0]["message"].startswith("2026-04:")
    assert not any(a["on"].startswith("2026-03") for a in included)
    # the day is where April's forecast, added up day by day, first passes 40,000
    april = series["forecast"]["mean"][12:42]  # 20 March + 12 days = 1 April
    passed = next(i for i in range(30) if sum(april[:i + 1]) > 43000)
    assert included[0]["on"] == f"2026-04-{passed + 1:02d}"
    assert series["levels"][0]["per_day"] == pytest.approx(43000 / 31)  # a day of March
    assert not any(a["kind"] == "change" for a in result["alerts"])


@pytest.mark.django_db
def test_a_day_three_times_its_usual_volume_is_alerted_on_that_day(catalog: object) -> None:
    account("ACME")
    values = daily(84)
    values[-1] *= 3
    store(values)
    result = forecast_json("--account", "ACME", "--meter", "api-calls")
    [change] = [a for a in result["alerts"] if a["kind"] == "change"]
    assert change["on"] == "2026-03-19" and ", up from the " in change["message"]


@pytest.mark.django_db
def test_a_service_forecast_to_pass_its_pools_capacity_is_alerted(catalog: object) -> None:
    from accord.catalog.models import Pool, Service

    account("ACME")
    store(daily(84, level=4000.0, slope=40.0), latency_ms=2400.0)  # about 7,300 a day now, 40 more each day
    # a quarter of each day in its busiest hour (the four blocks are hour rows of their own); 2.4 s per request,
    # 2 at once: 3,000 an hour, 70% of it 2,100 -> 8,400 a day; the forecast reaches that in about four weeks
    Pool.objects.create(service=Service.objects.get(name="booking"), name="primary", role="primary", capacity=2)
    result = forecast_json("--service", "booking")
    [series] = result["series"]
    assert series["subject"] == "service booking"
    assert series["levels"][0]["per_day"] == pytest.approx(2 / 2.4 * 3600 * 0.7 * 4, rel=0.01)
    [capacity] = [a for a in result["alerts"] if a["kind"] == "capacity"]
    assert "2026-04-01" < capacity["on"] < "2026-05-01" and "pool primary's capacity" in capacity["message"]


@pytest.mark.django_db
def test_too_little_history_says_so_and_the_text_ends_with_a_summary(catalog: object) -> None:
    account("ACME")
    account("NEWCO")
    store(daily(84))
    store(daily(84)[-10:], ext="NEWCO")
    out = io.StringIO()
    with time_machine.travel(NOW, tick=False):
        call_command("forecast", "--meter", "api-calls", "--account", "ACME", "--account", "NEWCO", stdout=out)
    text = out.getvalue()
    assert "account NEWCO api-calls" in text and "no forecast: too little history" in text
    assert "account ACME api-calls: last 7 days" in text and "in 56 days" in text
    assert text.strip().splitlines()[-1].startswith("forecast 1 series, 1 without a forecast")


@pytest.mark.django_db
def test_bad_arguments_are_refused_with_what_is_wrong(catalog: object) -> None:
    account("ACME")
    for args, said in ((["--account", "NOPE"], "no account 'NOPE'"), (["--meter", "nope"], "no meter 'nope'"),
                       (["--service", "nope"], "no service 'nope'"), (["--horizon", "0"], "--horizon"),
                       (["--history", "3"], "--history")):
        with pytest.raises(CommandError, match=said):
            call_command("forecast", *args, stdout=io.StringIO())


@pytest.mark.django_db
def test_the_account_and_service_pages_draw_the_stored_forecast_and_its_alerts(catalog: object, client: object
                                                                                ) -> None:
    from django.contrib.auth.models import User

    from accord.billing.models import StoredForecast
    from accord.catalog.models import Pool, Service

    acme = account("ACME")
    values = daily(84)
    values[-1] *= 3
    store(values)
    service = Service.objects.get(name="booking")
    Pool.objects.create(service=service, name="primary", role="primary", capacity=50)
    staff = User.objects.create_superuser("boss", "boss@example.org", "pw")
    client.force_login(staff)  # type: ignore[attr-defined]
    page = client.get(f"/accounts/{acme.pk}/").content.decode()  # type: ignore[attr-defined]
    assert "No forecast yet" in page
    forecast_json("--account", "ACME", "--service", "booking", "--meter", "api-calls")
    assert StoredForecast.objects.count() == 2  # the account's meter and the service
    page = client.get(f"/accounts/{acme.pk}/").content.decode()  # type: ignore[attr-defined]
    assert 'class="chart forecast-chart"' in page and 'class="band"' in page
    assert "2026-03-19" in page and "up from the" in page  # the sudden change, in words
    page = client.get(f"/services/{service.pk}/").content.decode()  # type: ignore[attr-defined]
    assert 'class="chart forecast-chart"' in page and "pool primary capacity" in page
    forecast_json("--account", "ACME", "--meter", "api-calls", "--dry-run")
    assert StoredForecast.objects.count() == 2


@pytest.mark.django_db
def test_a_commitment_is_alerted_on_the_day_the_forecast_passes_it_and_when_a_period_ends_short(
        catalog: object) -> None:
    from accord.customers.models import Account, Commitment

    account("ACME")
    values = daily(120)  # the series reads the last 84 days; the 36 before are there for a longer period
    store(values)
    days = [LAST - dt.timedelta(days=119 - i) for i in range(120)]
    before = forecast_json("--account", "ACME", "--meter", "api-calls")
    [series] = before["series"]
    mean = series["forecast"]["mean"]  # from 20 March
    assert not any(a["kind"] in ("commitment", "shortfall") for a in before["alerts"])

    acme = Account.objects.get(external_id="ACME")
    # February to April: what February 1 - March 19 used, plus ten days of the forecast and half of the eleventh
    used_feb = sum(v for d, v in zip(days, values, strict=True) if d >= dt.date(2026, 2, 1))
    over = round(used_feb + sum(mean[:10]) + mean[10] / 2)
    Commitment.objects.create(account=acme, period_start=dt.date(2026, 2, 1), period_end=dt.date(2026, 4, 30),
                              volume=over, unit="Requests")  # matched to the meter's unit, case aside
    # from 21 November (before the series' 84 days: measured from the rollups) to 15 April, 1,000 more than forecast
    start = LAST - dt.timedelta(days=118)
    used_long = sum(v for d, v in zip(days, values, strict=True) if d >= start)
    short = round(used_long + sum(mean[:27]) + 1000)  # 20 March + 26 days = 15 April
    Commitment.objects.create(account=acme, period_start=start, period_end=dt.date(2026, 4, 15), volume=short,
                              unit="requests")
    Commitment.objects.create(account=acme, period_start=dt.date(2026, 3, 1), period_end=dt.date(2026, 3, 31),
                              volume=1, unit="bookings")  # another unit: not this meter's
    result = forecast_json("--account", "ACME", "--meter", "api-calls")
    found = {a["kind"]: a for a in result["alerts"] if a["kind"] in ("commitment", "shortfall")}
    assert set(found) == {"commitment", "shortfall"}, result["alerts"]
    assert found["commitment"]["on"] == "2026-03-30"  # the eleventh day ahead
    assert f"commitment of {over:,} Requests for 2026-02-01..2026-04-30" in found["commitment"]["message"]
    assert found["shortfall"]["on"] == "2026-04-15"
    gap = float(found["shortfall"]["message"].split(" requests short")[0].rsplit(" ", 1)[1].replace(",", ""))
    assert abs(gap - 1000) <= 1, found["shortfall"]["message"]
    assert [a for a in result["alerts"] if "bookings" in a["message"]] == []
    labels = [lv["label"] for lv in result["series"][0]["levels"]]
    assert sum("commitment of" in label for label in labels) == 2
