"""Period reports and credits on rollup rows: exact attainment, band edges, no data, provisional periods, an
agreement changed mid-period, the ledger's steps and claim window, the `credits` command's JSON."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal
from fractions import Fraction

import pytest
import time_machine
from django.core.management import CommandError, call_command

from accord.customers.models import Account
from accord.reports import render
from accord.reports.builder import build
from accord.reports.credits import CreditError, compute, decide
from accord.reports.models import Credit
from accord.reports.partners import parallel, serial
from accord.reports.periods import parse_period

from .conftest import make_agreement, traffic

NOV = parse_period("2026-11")
AFTER = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)  # November has ended; the claim window is open


def credits_json(*args: str) -> list[dict]:
    out = io.StringIO()
    call_command("credits", "compute", "--period", "2026-11", "--json", *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.parametrize(("valid", "bad", "attained", "percent", "amount"), [
    (1000, 1, Fraction(999, 10), Decimal(0), "0.00"),  # 99.9 % exactly is not below 99.9
    (10000, 11, Fraction(9989, 100), Decimal(10), "100.00"),  # 99.89 %
    (1000, 10, Fraction(99), Decimal(10), "100.00"),  # 99.0 % exactly: the 99.9 band, not the 99.0 one
    (100000, 1001, Fraction(98999, 1000), Decimal(25), "250.00"),  # 98.999 %: one bad request more
    (1000, 50, Fraction(95), Decimal(25), "250.00"),
    (1000, 51, Fraction(949, 10), Decimal(100), "1000.00"),
])
@time_machine.travel(AFTER, tick=False)
def test_attainment_is_exact_and_a_band_edge_lands_in_the_band_above(acme: Account, valid: int, bad: int,
                                                                     attained: Fraction, percent: Decimal,
                                                                     amount: str) -> None:
    # spread over two days and an excluded kind of request: the sum of the days is the period
    traffic(dt.date(2026, 11, 3), valid // 2, bad // 2)
    traffic(dt.date(2026, 11, 20), valid - valid // 2, bad - bad // 2)
    traffic(dt.date(2026, 11, 21), 7, outcome="rate_limited")  # the customer's own 429s are not valid events
    report = build(acme, NOV)
    assert not report.provisional
    [part] = report.parts
    [result] = part.objectives
    assert (result.valid, result.bad, result.requests) == (valid, bad, valid + 7)
    assert result.attained == attained
    [credit] = part.credits
    assert (credit.percent, str(credit.amount)) == (percent, amount)
    [row] = credits_json()
    assert set(row) == {"account", "agreement", "objective", "target", "attained", "valid_events", "bad_events",
                        "percent", "amount", "currency", "status"}
    assert row["account"] == "ACME" and row["agreement"] == "acme-sla" and row["objective"] == "availability"
    assert (row["valid_events"], row["bad_events"]) == (valid, bad)
    assert row["attained"] == float(attained) and row["target"] == 99.9
    assert Decimal(str(row["percent"])) == percent and row["amount"] == amount and row["currency"] == "EUR"
    assert row["status"] == ("computed" if percent else "none")
    assert Credit.objects.count() == (1 if percent else 0)


@time_machine.travel(AFTER, tick=False)
def test_no_traffic_is_no_data_and_no_credit_never_100_percent(acme: Account) -> None:
    traffic(dt.date(2026, 11, 4), 5, outcome="rate_limited")  # only excluded requests: still no valid event
    report = build(acme, NOV)
    [result] = report.parts[0].objectives
    assert result.valid == 0 and result.attained is None and result.met is None
    assert result.attained_label() == "no data"
    page = render.html(report).decode()
    assert "no data" in page and "100.000 %" not in page
    [row] = credits_json()
    assert row["attained"] is None and row["percent"] == 0 and row["amount"] == "0.00" and row["status"] == "none"
    assert "no data" in render.csv_bytes(report).decode()


def test_a_running_period_is_provisional_on_every_format(acme: Account) -> None:
    with time_machine.travel(dt.datetime(2026, 11, 18, 12, 0, tzinfo=dt.UTC), tick=False):
        traffic(dt.date(2026, 11, 17), 100, 5)
        report = build(acme, NOV)
        assert report.provisional
        assert "Provisional: the period has not ended" in render.html(report).decode()
        assert ",yes,objective," in render.csv_bytes(report).decode()
        # measured up to now: the days after today are not in the chart
        assert [d.day.day for d in report.parts[0].objectives[0].days][-1] == 18


@time_machine.travel(AFTER, tick=False)
def test_an_agreement_changed_mid_period_judges_each_part_by_its_own_terms(acme: Account) -> None:
    acme.agreements.update(effective_to=dt.date(2026, 11, 15))
    make_agreement("acme-sla-2", acme, start=dt.date(2026, 11, 16), target=Decimal("99.0"), fee=Decimal(3000))
    traffic(dt.date(2026, 11, 10), 1000, 5)  # 99.5 %: misses 99.9 -> 10 % of half of 1000
    traffic(dt.date(2026, 11, 20), 1000, 5)  # 99.5 %: meets 99.0, but the schedule still pays below 99.9
    report = build(acme, NOV)
    first, second = report.parts
    assert (first.agreement.name, first.first_day.day, first.last_day.day) == ("acme-sla", 1, 15)
    assert (second.agreement.name, second.first_day.day, second.last_day.day) == ("acme-sla-2", 16, 30)
    assert first.share == Fraction(1, 2) and second.share == Fraction(1, 2)
    assert (first.objectives[0].valid, first.objectives[0].met) == (1000, False)
    assert (second.objectives[0].valid, second.objectives[0].met) == (1000, True)
    assert [str(c.amount) for c in first.credits] == ["50.00"]  # 10 % of 1000 x 15/30
    assert [str(c.amount) for c in second.credits] == ["150.00"]  # 10 % of 3000 x 15/30
    page = render.html(report).decode()
    assert "terms in force 2026-11-01 to 2026-11-15" in page and "terms in force 2026-11-16 to 2026-11-30" in page
    assert [r["agreement"] for r in credits_json()] == ["acme-sla", "acme-sla-2"]


@time_machine.travel(AFTER, tick=False)
def test_cap_and_minimum_of_the_schedule(db: None) -> None:
    account = Account.objects.create(name="Tiny", external_id="TINY")
    make_agreement("tiny-sla", account, start=dt.date(2026, 1, 1), fee=Decimal(100), cap=Decimal(20),
                   minimum_amount=Decimal("15.00"))
    traffic(dt.date(2026, 11, 3), 100, 10, account="TINY")  # 90 %: band 100 %, capped at 20 % = 20.00
    report = build(account, NOV)
    assert [(c.percent, str(c.amount)) for c in report.parts[0].credits] == [(Decimal(20), "20.00")]
    traffic(dt.date(2026, 11, 4), 900, 0, account="TINY")  # 99.0 %: band 10 % = 10.00, below the minimum
    [credit] = build(account, NOV).parts[0].credits
    assert (credit.percent, str(credit.amount)) == (Decimal(10), "0.00") and "minimum" in credit.note


@pytest.mark.django_db
def test_the_ledger_steps_are_audited_and_the_claim_window_is_enforced(acme: Account) -> None:
    traffic(dt.date(2026, 11, 3), 1000, 20)
    with time_machine.travel(AFTER, tick=False):
        [row] = compute([acme], NOV)
        credit = Credit.objects.get()
        assert (row["status"], credit.status, credit.period) == ("computed", "computed", "2026-11")
        assert credit.claim_until == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)  # end of the next month
        with pytest.raises(CreditError, match="cannot be applied"):
            decide(credit.pk, "applied", "fran")
        with pytest.raises(CreditError, match="needs a reason"):
            decide(credit.pk, "rejected", "fran", "  ")
        out = io.StringIO()
        call_command("credits", "approve", str(credit.pk), "--by", "fran", stdout=out)
        assert f"credit {credit.pk}: approved by fran (250.00 EUR)" in out.getvalue()
        with pytest.raises(CommandError, match="is approved: it cannot be approved"):
            call_command("credits", "approve", str(credit.pk))
        # late data after approval: recomputing leaves a decided credit alone
        traffic(dt.date(2026, 11, 4), 1000, 0)
        compute([acme], NOV)
        credit.refresh_from_db()
        assert (credit.status, credit.valid_events, credit.amount) == ("approved", 1000, Decimal("250.00"))
    with time_machine.travel(dt.datetime(2027, 1, 2, tzinfo=dt.UTC), tick=False):
        with pytest.raises(CommandError, match="claim window ended 2027-01-01"):
            call_command("credits", "apply", str(credit.pk))
        call_command("credits", "reject", str(credit.pk), "--by", "fran", "--reason", "claimed too late",
                     stdout=io.StringIO())
        credit.refresh_from_db()
        assert (credit.status, credit.reason) == ("rejected", "claimed too late")
        assert [(s.status, s.actor) for s in credit.steps.all()] == [
            ("computed", "accord"), ("approved", "fran"), ("rejected", "fran")]
        # past the claim window nothing new is computed for the period
        Credit.objects.all().delete()
        compute([acme], NOV)
        assert not Credit.objects.exists()
    with pytest.raises(CommandError, match="no credit 999"):
        call_command("credits", "approve", "999")


@time_machine.travel(AFTER, tick=False)
def test_recomputing_refreshes_a_computed_credit_and_withdraws_one_late_data_cancels(acme: Account) -> None:
    traffic(dt.date(2026, 11, 3), 1000, 20)  # 98 %: 25 %
    compute([acme], NOV)
    traffic(dt.date(2026, 11, 4), 1000, 0)  # 99 %: 10 %
    compute([acme], NOV)
    credit = Credit.objects.get()
    assert (credit.valid_events, credit.percent, credit.status) == (2000, Decimal(10), "computed")
    traffic(dt.date(2026, 11, 5), 100000, 0)  # far above 99.9 %: nothing owed
    compute([acme], NOV)
    credit.refresh_from_db()
    assert credit.status == "rejected" and credit.reason == "recomputed: no credit owed"
    assert [s.note for s in credit.steps.all()][-1] == "recomputed: no credit owed"


@pytest.mark.django_db
def test_bad_command_inputs_are_refused_clearly(acme: Account) -> None:
    for period, message in (("2026-13", "not a month"), ("November", "not a period"),
                            ("2026-11-10..2026-11-01", "ends before it starts")):
        with pytest.raises(CommandError, match=message):
            call_command("credits", "compute", "--period", period)
    with pytest.raises(CommandError, match="no account with external id 'NOPE'"):
        call_command("credits", "compute", "--period", "2026-11", "--account", "NOPE")
    assert not Credit.objects.exists()


def test_composite_availability_serial_and_parallel_are_exact() -> None:
    assert serial([Fraction(999, 1000), Fraction(995, 1000)]) == Fraction(994005, 1000000)
    assert parallel([Fraction(99, 100), Fraction(99, 100)]) == Fraction(9999, 10000)
    assert serial([]) == 1 and parallel([]) == 0


@time_machine.travel(AFTER, tick=False)
def test_partners_promised_against_measured_and_the_pools_in_parallel(acme: Account) -> None:
    from accord.catalog.models import PartnerService, Pool, Service
    from accord.governance.tests.rollups import add_rollup

    booking = Service.objects.get(name="booking")
    gds = PartnerService.objects.create(name="gds", promised_availability=Decimal("99.9"))
    gds.services.add(booking)
    PartnerService.objects.create(name="pay", promised_availability=Decimal("99.5")).services.add(booking)
    Pool.objects.create(service=booking, name="primary", role="primary", capacity=4)
    Pool.objects.create(service=booking, name="standby", role="standby", capacity=4)
    at = dt.datetime(2026, 11, 5, 10, tzinfo=dt.UTC)
    add_rollup(at, count=100, errors=2, account="ACME", tier="gold", pool="primary")  # 98 %
    add_rollup(at, count=100, errors=10, account="ACME", tier="gold", pool="standby")  # 90 %
    report = build(acme, NOV)
    assert [(p.partner, p.promised, p.measured) for p in report.partners] == [
        ("gds", Decimal("99.9000"), Fraction(94)), ("pay", Decimal("99.5000"), Fraction(94))]
    [composite] = report.composites
    assert composite["partners_serial"] == Fraction(999, 1000) * Fraction(995, 1000) * 100
    assert composite["pools_parallel"] == (1 - Fraction(2, 100) * Fraction(10, 100)) * 100  # 99.8 %
    page = render.html(report).decode()
    assert "at most 99.400 %" in page and "measured 99.800 %" in page and "94.000 %" in page
