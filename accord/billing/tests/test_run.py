"""`billing run`: the month per account in its own time zone, plans, proration, no plan, idempotent drafts, the
finalised invoice immutable, late usage corrected on the next invoice, service credits netted."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal as D

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command

from accord.billing.actions import do_finalise, do_run, do_void
from accord.billing.models import FinalisedError, Invoice, InvoiceLine
from accord.desk.actions import Inbound, do_open_ticket
from accord.desk.models import Message, Ticket
from accord.governance.tests.rollups import add_rollup
from accord.reports.models import Credit

from .conftest import account, at, lines, plan, run

FLAT = """
  - name: gold
    currency: EUR
    flat_fee: 300
    tiers: [gold]
    prices:
      - {meter: api-calls, unit_price: 0.01, included: 100}
      - {meter: tickets, unit_price: 2}
"""
DECEMBER = dt.datetime(2026, 12, 3, 9, tzinfo=dt.UTC)


def ticket(acct: object, when: dt.datetime) -> Ticket:
    return do_open_ticket(Inbound(channel="email", subject="help", body_text="hi", from_address="x@example.com",
                                  received_at=when), account=acct)  # type: ignore[arg-type]


@pytest.mark.django_db
def test_the_month_is_the_accounts_own_calendar_month_at_both_edges(catalog: object) -> None:
    plan(FLAT)
    # Tokyo is UTC+9: its November starts 2026-10-31 15:00 UTC and ends 2026-11-30 15:00 UTC.
    tokyo = account("TOKYO", catalog, "Asia/Tokyo")  # type: ignore[arg-type]
    for when, n in [("2026-10-31T14:59:00+00:00", 1), ("2026-10-31T15:00:00+00:00", 10),
                    ("2026-11-30T14:59:00+00:00", 100), ("2026-11-30T15:00:00+00:00", 1000)]:
        add_rollup(at(when), count=n, account="TOKYO", tier="gold", service="booking")
    for when in ["2026-10-31T14:59:59+00:00", "2026-10-31T15:00:00+00:00", "2026-11-30T14:59:59+00:00",
                 "2026-11-30T15:00:00+00:00"]:
        ticket(tokyo, at(when))
    add_rollup(at("2026-11-10T10:00:00+00:00"), count=7, account="TOKYO", service="other")  # not booking
    result = run("2026-11", "TOKYO")
    assert lines("TOKYO", "2026-11") == {"fee": (D(1), D("300.00")), "usage:api-calls": (D(10), D("0.10")),
                                         "usage:tickets": (D(2), D("4.00"))}
    assert result.totals() == {"EUR": D("304.10")}
    # Kolkata is UTC+5:30: the edges are not whole hours, so minute rows are read, and still exact.
    account("KOLKATA", catalog, "Asia/Kolkata")  # type: ignore[arg-type]
    add_rollup(at("2026-10-31T18:29:00+00:00"), count=3, account="KOLKATA", service="booking")
    add_rollup(at("2026-10-31T18:30:00+00:00"), count=250, account="KOLKATA", service="booking")
    run("2026-11", "KOLKATA")
    assert lines("KOLKATA", "2026-11")["usage:api-calls"] == (D(150), D("1.50"))


@pytest.mark.django_db
def test_an_account_without_plan_is_billed_zero_with_its_usage_and_listed(catalog: object) -> None:
    nobody = account("NOBODY")
    add_rollup(at("2026-11-05T10:00:00+00:00"), count=42, account="NOBODY", service="booking")
    ticket(nobody, at("2026-11-05T10:00:00+00:00"))
    out = io.StringIO()
    call_command("billing", "run", "--period", "2026-11", stdout=out)
    assert "accounts without plan 1" in out.getvalue() and "NOBODY" in out.getvalue()
    inv = Invoice.objects.get(account=nobody)
    assert inv.total == D(0) and inv.plan_names == ""
    assert lines("NOBODY", "2026-11") == {"usage:api-calls": (D(42), D(0)), "usage:tickets": (D(1), D(0)),
                                          "usage:inbound": (D(1), D(0))}


@pytest.mark.django_db
def test_minimum_commitment_tops_usage_up_and_a_mid_month_change_is_prorated_by_days(catalog: object) -> None:
    account("ACME")
    plan("""
  - name: small
    currency: EUR
    flat_fee: 300
    minimum_commitment: 60
    accounts: [ACME]
    valid_until: 2026-11-10
    prices:
      - {meter: api-calls, unit_price: 0.01}
  - name: large
    currency: EUR
    flat_fee: 900
    accounts: [ACME]
    valid_from: 2026-11-11
    prices:
      - {meter: api-calls, model: graduated, tiers: [{up_to: 1000, unit_price: 0.01}, {unit_price: 0.001}]}
""")
    add_rollup(at("2026-11-10T23:59:00+00:00"), count=500, account="ACME", service="booking")  # small: 5.00
    add_rollup(at("2026-11-11T00:00:00+00:00"), count=3000, account="ACME", service="booking")  # large: 10 + 2
    run("2026-11", "ACME")
    inv = Invoice.objects.get(account__external_id="ACME")
    got = [(x.key, x.quantity, x.amount) for x in inv.lines.order_by("position")]
    assert got == [
        ("fee:small:2026-11-01", D("0.3333"), D("100.00")),  # 10 of 30 days
        ("usage:api-calls:small:2026-11-01", D(500), D("5.00")),
        ("minimum:small:2026-11-01", D(0), D("15.00")),  # 60 x 10/30 = 20, usage 5: top-up 15
        ("fee:large:2026-11-11", D("0.6667"), D("600.00")),  # 20 of 30 days
        ("usage:api-calls:large:2026-11-11", D(3000), D("12.00")),
    ]
    assert inv.total == D("732.00") and inv.plan_names == "large, small"


@pytest.mark.django_db
def test_rerunning_replaces_drafts_and_leaves_finalised_invoices_alone(catalog: object) -> None:
    plan(FLAT)
    account("ACME", catalog)  # type: ignore[arg-type]
    add_rollup(at("2026-11-05T10:00:00+00:00"), count=200, account="ACME", service="booking")
    first = run("2026-11").drafted[0]
    add_rollup(at("2026-11-06T10:00:00+00:00"), count=100, account="ACME", service="booking")
    again = run("2026-11")
    assert Invoice.objects.count() == 1 and not Invoice.objects.filter(pk=first.pk).exists()
    assert lines("ACME", "2026-11")["usage:api-calls"] == (D(200), D("2.00"))
    with time_machine.travel(DECEMBER, tick=False):
        do_finalise(again.drafted[0].pk)
    third = run("2026-11")
    assert not third.drafted and [a.external_id for a in third.skipped_finalised] == ["ACME"]
    assert "skipped finalised 1" in third.summary()


@pytest.mark.django_db
def test_a_finalised_invoice_cannot_be_edited_its_lines_neither(catalog: object) -> None:
    plan(FLAT)
    account("ACME", catalog)  # type: ignore[arg-type]
    inv = run("2026-11").drafted[0]
    with time_machine.travel(DECEMBER, tick=False):
        do_finalise(inv.pk)
    inv.refresh_from_db()
    assert inv.number == "INV-2026-000001" and inv.status == "finalised"
    inv.total = D(1)
    with pytest.raises(FinalisedError, match="INV-2026-000001 is finalised: it cannot be edited \\(total\\)"):
        inv.save()
    line = inv.lines.first()
    assert line is not None
    line.amount = D(0)
    with pytest.raises(FinalisedError):
        line.save()
    with pytest.raises(FinalisedError):
        InvoiceLine(invoice=inv, key="x", for_period="2026-11", description="x", amount=D(1)).save()
    with pytest.raises(FinalisedError):
        Invoice.objects.get(pk=inv.pk).delete()
    do_void(inv.pk)  # the status may still move on
    assert Invoice.objects.get(pk=inv.pk).status == "void"


@pytest.mark.django_db
def test_numbers_are_gapless_per_year_in_the_order_of_finalisation(catalog: object) -> None:
    plan(FLAT)
    for ext in ("A1", "A2", "A3"):
        account(ext, catalog)  # type: ignore[arg-type]
    drafted = {i.account.external_id: i.pk for i in run("2026-11").drafted}
    with time_machine.travel(DECEMBER, tick=False):
        for ext in ("A2", "A3", "A1"):
            do_finalise(drafted[ext])
        with pytest.raises(Exception, match="only a draft can be finalised"):
            do_finalise(drafted["A1"])
    with time_machine.travel(dt.datetime(2027, 1, 2, tzinfo=dt.UTC), tick=False):
        do_run("2026-12", finalise=True)
    numbers = dict(Invoice.objects.values_list("account__external_id", "number").filter(period="2026-11"))
    assert numbers == {"A2": "INV-2026-000001", "A3": "INV-2026-000002", "A1": "INV-2026-000003"}
    assert sorted(Invoice.objects.filter(period="2026-12").values_list("number", flat=True)) == [
        "INV-2027-000001", "INV-2027-000002", "INV-2027-000003"]


@pytest.mark.django_db
def test_late_usage_after_finalise_is_a_correction_on_the_next_invoice(catalog: object) -> None:
    plan(FLAT)
    account("ACME", catalog)  # type: ignore[arg-type]
    add_rollup(at("2026-11-20T10:00:00+00:00"), count=300, account="ACME", service="booking")
    with time_machine.travel(DECEMBER, tick=False):
        nov = run("2026-11", finalise=True).drafted[0]
    # A worker's flush that was late: 150 more requests in a November minute, written in December.
    add_rollup(at("2026-11-30T23:59:00+00:00"), count=150, account="ACME", service="booking")
    nov.refresh_from_db()
    assert nov.total == D("302.00") and lines("ACME", "2026-11")["usage:api-calls"] == (D(200), D("2.00"))
    run("2026-12")
    dec = Invoice.objects.get(account__external_id="ACME", period="2026-12")
    fix = dec.lines.get(for_period="2026-11")
    assert fix.description.startswith("correction for 2026-11: ")
    assert (fix.quantity, fix.amount) == (D(150), D("1.50"))
    # Once December is finalised with the correction, January corrects nothing more for November.
    with time_machine.travel(dt.datetime(2027, 1, 2, tzinfo=dt.UTC), tick=False):
        do_finalise(dec.pk)
        run("2027-01")
    assert not Invoice.objects.get(period="2027-01").lines.filter(for_period="2026-12").exists()


@pytest.mark.django_db
def test_usage_found_smaller_after_finalise_goes_back_on_a_credit_note(catalog: object) -> None:
    plan(FLAT)
    account("ACME", catalog)  # type: ignore[arg-type]
    add_rollup(at("2026-11-20T10:00:00+00:00"), count=300, account="ACME", service="booking")
    with time_machine.travel(DECEMBER, tick=False):
        run("2026-11", finalise=True)
    from accord.gateway.models import Rollup

    Rollup.objects.filter(account="ACME").update(count=250)  # e.g. a double count found and repaired
    run("2026-12")
    note = Invoice.objects.get(account__external_id="ACME", period="2026-12", kind="credit_note")
    assert note.invoice == Invoice.objects.get(account__external_id="ACME", period="2026-12", kind="invoice")
    assert [(x.quantity, x.amount) for x in note.lines.all()] == [(D(50), D("0.50"))]


@pytest.mark.django_db
def test_the_periods_approved_service_credits_are_netted_as_a_credit_note_and_applied(catalog: object) -> None:
    from accord.reports.tests.conftest import make_agreement

    plan(FLAT)
    acme = account("ACME", catalog)  # type: ignore[arg-type]
    agreement = make_agreement("acme-sla", acme, start=dt.date(2026, 1, 1))
    def credit(status: str, amount: str) -> Credit:
        return Credit.objects.create(
            account=acme, agreement=agreement, objective="availability", period="2026-11",
            start=at("2026-11-01T00:00:00+00:00") + dt.timedelta(days=len(amount)), end=at("2026-12-01T00:00:00+00:00"),
            target=D("99.9"), valid_events=1000, bad_events=5, percent=D(10), amount=D(amount), currency="EUR",
            status=status, claim_until=at("2027-01-01T00:00:00+00:00"), computed_at=DECEMBER)
    approved, computed = credit("approved", "100.00"), credit("computed", "25.0")
    with time_machine.travel(DECEMBER, tick=False):
        result = run("2026-11")
        assert result.totals() == {"EUR": D("200.00")}  # 300 fee, less the approved credit only
        inv = result.drafted[0]
        assert inv.net_total() == D("200.00")
        do_finalise(inv.pk)
    note = Invoice.objects.get(kind="credit_note")
    assert note.number == "CN-2026-000001" and note.invoice_id == inv.pk and note.total == D("100.00")
    assert note.lines.get().description == "service credit: acme-sla / availability, 10 % of the fee"
    approved.refresh_from_db()
    computed.refresh_from_db()
    assert approved.status == "applied" and computed.status == "computed"


@pytest.mark.django_db
def test_desk_meters_count_tickets_messages_each_way_and_unique_agents(catalog: object) -> None:
    from accord.desk.actions import do_reply

    plan("""
  - name: desk
    currency: EUR
    tiers: [gold]
    prices:
      - {meter: tickets, unit_price: 1}
      - {meter: inbound, unit_price: 0.1}
      - {meter: outbound, unit_price: 0.2}
      - {meter: agents, unit_price: 50}
""")
    acme = account("ACME", catalog)  # type: ignore[arg-type]
    ann, bob = User.objects.create(username="ann"), User.objects.create(username="bob")
    when = at("2026-11-10T10:00:00+00:00")
    t1, t2 = ticket(acme, when), ticket(acme, when)
    for i, who in enumerate([ann, ann, bob]):
        do_reply(t1 if i else t2, who, "hello", at=when + dt.timedelta(minutes=i + 1))
    Message.objects.create(ticket=t1, kind="note", channel="email", body_text="internal", created_at=when)
    run("2026-11")
    assert lines("ACME", "2026-11") == {"usage:tickets": (D(2), D("2.00")), "usage:inbound": (D(2), D("0.20")),
                                        "usage:outbound": (D(3), D("0.60")), "usage:agents": (D(2), D("100.00"))}


@pytest.mark.django_db
def test_bytes_the_busiest_hour_and_chat_minutes(catalog: object) -> None:
    from accord.chat.models import ChatSession
    from accord.lib.manifest import apply_manifest

    apply_manifest("""
meters:
  - {name: bytes-out, source: gateway.bytes, direction: out, unit: bytes}
  - {name: bytes, source: gateway.bytes}
  - {name: peak, source: gateway.requests, aggregation: max}
  - {name: chat, source: chat.minutes}
  - {name: longest-chat, source: chat.minutes, aggregation: max}
plans:
  - name: all
    currency: EUR
    tiers: [gold]
    prices: [{meter: bytes-out, unit_price: 0}, {meter: bytes, unit_price: 0}, {meter: peak, unit_price: 0},
             {meter: chat, unit_price: 0.5}, {meter: longest-chat, unit_price: 0}]
""")
    acme = account("ACME", catalog)  # type: ignore[arg-type]
    for when, n in [("2026-11-02T10:00:00+00:00", 30), ("2026-11-02T10:59:00+00:00", 30),
                    ("2026-11-03T11:00:00+00:00", 50)]:
        add_rollup(at(when), count=n, account="ACME", service="booking", bytes_in=n * 10, bytes_out=n * 100)
    start = at("2026-11-05T10:00:00+00:00")
    for i, seconds in enumerate([61, 600, 30]):
        t = ticket(acme, start)
        ChatSession.objects.create(ticket=t, token_hash=f"{i:064d}", visitor_name="v", created_at=start,
                                   ended_at=start + dt.timedelta(seconds=seconds))
    t = ticket(acme, start)
    ChatSession.objects.create(ticket=t, token_hash="x" * 64, visitor_name="v", created_at=start)  # still open
    run("2026-11")
    got = lines("ACME", "2026-11")
    assert got["usage:bytes-out"][0] == D(11000) and got["usage:bytes"][0] == D(12100)
    assert got["usage:peak"][0] == D(60)  # two minutes of one hour beat one busier minute
    assert got["usage:chat"] == (D(13), D("6.50")) and got["usage:longest-chat"][0] == D(10)  # 2 + 10 + 1
    # Kolkata's month starts at 18:30 UTC: minute rows are read, and the busiest hour is summed from them.
    account("KOLKATA", catalog, "Asia/Kolkata")  # type: ignore[arg-type]
    for when, n in [("2026-10-31T18:29:00+00:00", 500), ("2026-11-02T10:00:00+00:00", 30),
                    ("2026-11-02T10:59:00+00:00", 30), ("2026-11-03T11:00:00+00:00", 50)]:
        add_rollup(at(when), count=n, account="KOLKATA", service="booking")
    run("2026-11", "KOLKATA")
    assert lines("KOLKATA", "2026-11")["usage:peak"][0] == D(60)  # October's 500 is not November's


@pytest.mark.django_db
def test_usage_two_months_late_is_corrected_once_on_the_next_invoice_drafted(catalog: object) -> None:
    plan(FLAT)
    account("ACME", catalog)  # type: ignore[arg-type]
    with time_machine.travel(DECEMBER, tick=False):
        run("2026-10", finalise=True)
        run("2026-11", finalise=True)
    add_rollup(at("2026-10-15T10:00:00+00:00"), count=700, account="ACME", service="booking")  # October's, late
    add_rollup(at("2026-11-15T10:00:00+00:00"), count=400, account="ACME", service="booking")  # November's, late
    with time_machine.travel(dt.datetime(2027, 1, 2, tzinfo=dt.UTC), tick=False):
        run("2026-12", finalise=True)
        run("2027-01")
    dec = Invoice.objects.get(period="2026-12", kind="invoice")
    assert sorted((x.for_period, x.quantity, x.amount) for x in dec.lines.exclude(for_period="2026-12")) == [
        ("2026-10", D(600), D("6.00")), ("2026-11", D(300), D("3.00"))]  # 100 included each month
    jan = Invoice.objects.get(period="2027-01", kind="invoice")
    assert not jan.lines.exclude(for_period="2027-01").exists()  # corrected once, not again


@pytest.mark.django_db
def test_a_tiers_plan_applies_on_the_days_the_account_had_that_tier(catalog: object) -> None:
    """Tiers change through the customers app (rules, overrides), which records each change; a month is billed
    with the tier of each of its days (local to the account), not the tier at the run."""
    from accord.customers.models import Tier, TierChange, TierOverride
    from accord.customers.tiers import recompute

    gold = catalog
    Tier.objects.filter(pk=gold.pk).update(min_revenue_12m=D(1_000_000))  # earned by an override only, here
    Tier.objects.create(name="silver", rank=2)  # no threshold: everyone's by the rules
    plan("""
  - {name: gold-plan, currency: EUR, flat_fee: 300, tiers: [gold], prices: [{meter: tickets, unit_price: 2}]}
  - {name: silver-plan, currency: EUR, flat_fee: 100, tiers: [silver], prices: [{meter: tickets, unit_price: 3}]}
""")
    acme = account("ACME", zone="Asia/Tokyo")
    recompute(now=at("2026-10-01T00:00:00+00:00"))  # silver, by the rules
    # gold from 10:00 on 16 November in Tokyo (01:00 UTC) until the override is revoked on 2 December
    with time_machine.travel(at("2026-11-16T01:00:00+00:00"), tick=False):
        override = TierOverride.objects.create(account=acme, tier=gold, reason="key account",
                                               expires_at=at("2027-01-01T00:00:00+00:00"))
        recompute()
    ticket(acme, at("2026-11-15T14:59:00+00:00"))  # 23:59 on the 15th in Tokyo: silver's, 3 EUR
    ticket(acme, at("2026-11-15T15:00:00+00:00"))  # 00:00 on the 16th in Tokyo: gold's, 2 EUR
    with time_machine.travel(at("2026-12-02T00:00:00+00:00"), tick=False):
        TierOverride.objects.filter(pk=override.pk).update(revoked_at=at("2026-12-02T00:00:00+00:00"))
        recompute()
    acme.refresh_from_db()
    assert acme.tier.name == "silver"  # type: ignore[union-attr]
    assert list(TierChange.objects.filter(account=acme).order_by("at").values_list("cause", "to_tier__name")) == [
        ("initial", "silver"), ("override", "gold"), ("override_ended", "silver")]
    with time_machine.travel(DECEMBER, tick=False):
        run("2026-11", "ACME")
        run("2026-10", "ACME")
    inv = Invoice.objects.get(account__external_id="ACME", period="2026-11")
    got = [(x.key, x.quantity, x.amount) for x in inv.lines.order_by("position")]
    assert got == [
        ("fee:silver-plan:2026-11-01", D("0.5"), D("50.00")),  # 1-15 November: 15 of 30 days
        ("usage:tickets:silver-plan:2026-11-01", D(1), D("3.00")),
        ("fee:gold-plan:2026-11-16", D("0.5"), D("150.00")),  # 16-30 November
        ("usage:tickets:gold-plan:2026-11-16", D(1), D("2.00")),
    ]
    assert inv.plan_names == "gold-plan, silver-plan"
    assert Invoice.objects.get(account__external_id="ACME", period="2026-10").plan_names == "silver-plan"
