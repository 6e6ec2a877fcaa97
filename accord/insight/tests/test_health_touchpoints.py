"""Touchpoints from the real desk (tickets, replies, clocks, the worker's breaches), topics, and the health score
with its weights applied from the manifest."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User

from accord.agreements.models import Objective
from accord.catalog.models import Service
from accord.chat import service as chat_service
from accord.chat.models import AgentConnection
from accord.customers.models import Account, Contact
from accord.desk import actions as desk_actions
from accord.desk import worker
from accord.desk.actions import Inbound
from accord.desk.models import Ticket
from accord.desk.tests.conftest import Desk, at
from accord.governance.tests.rollups import add_rollup
from accord.insight import health, touchpoints
from accord.insight.actions import do_compute_health, do_compute_topics
from accord.insight.models import AccountValue, HealthWeights, Topic
from accord.insight.orders import Order
from accord.lib.manifest import apply_manifest, export_manifest
from accord.lib.manifest.yamlio import ManifestError
from accord.reports.models import Credit

pytestmark = pytest.mark.django_db
MONDAY = at("2026-11-23 08:00")  # London on UTC+0: working hours 09:00-17:00 UTC


@pytest.fixture(autouse=True)
def frozen() -> Iterator[None]:
    with time_machine.travel(MONDAY, tick=False):
        yield


def ticket(desk: Desk, when: str, subject: str = "Booking failed", body: str = "Help", cc: list[str] | None = None,
           channel: str = "email") -> Ticket:
    return desk_actions.do_open_ticket(Inbound(
        channel=channel, subject=subject, body_text=body,
        from_address="+442079460000" if channel == "phone" else "grace@globetrotter.example",
        cc_addresses=cc or [], received_at=at(when)))


def test_touchpoints_count_in_and_out_per_week_and_who_talks_with_whom(desk: Desk) -> None:
    other = User.objects.create_user("lin", is_staff=True)
    first = ticket(desk, "2026-11-16 10:00", cc=["ops@globetrotter.example"])  # the week before
    Ticket.objects.filter(pk=first.pk).update(assignee=desk.agent)  # assigned: its inbound mail is with the agent
    desk_actions.do_reply(first, desk.agent, "On it", at=at("2026-11-16 10:20"))
    second = ticket(desk, "2026-11-23 07:00", channel="phone")
    desk_actions.do_add_note(second, other, "internal: not a touchpoint", at=at("2026-11-23 07:10"))
    desk_actions.do_reply(second, other, "Called back", at=at("2026-11-23 07:30"))
    vol = touchpoints.volume(weeks=3, now=at("2026-11-23 08:00"))
    assert vol.weeks == [dt.date(2026, 11, 9), dt.date(2026, 11, 16), dt.date(2026, 11, 23)]
    assert (vol.inbound, vol.outbound) == ([0, 1, 1], [0, 1, 1])
    assert vol.top() == [(desk.account.pk, 2, 2)]
    g = touchpoints.graph(at("2026-11-01 00:00"))
    assert g.edges[("Grace Hopper", "agent")] == 2  # her mail to the assignee, and his reply to her
    assert g.edges[("Grace Hopper", "lin")] == 1  # the call back (no address: the ticket's contact)
    assert g.edges[("ops@globetrotter.example", "agent")] == 1  # Cc'd on her mail, an address of no contact
    assert "internal" not in str(g.edges)


def test_a_live_chat_is_a_touchpoint_in_and_out_on_the_channel_chat(desk: Desk, settings: Any) -> None:
    # A real chat: a signed-in visitor (the host site vouches for Grace) starts it while an agent is online, writes
    # again, and the agent answers, as the chat's WebSocket consumers do (desk messages on the chat's ticket).
    settings.ACCORD_CHAT_SECRET = "host-site-secret"
    Contact.objects.filter(pk=desk.contact.pk).update(external_id="grace-1")
    now = at("2026-11-23 10:00")  # within the London hours of Grace's agreement: the chat is staffed
    with time_machine.travel(now, tick=False):
        AgentConnection.objects.create(user=desk.agent, channel_name="console-1", seen_at=now)
        started = chat_service.start("Grace", "grace@globetrotter.example", "Is my hotel booked?",
                                     identity=("grace-1", str(int(now.timestamp())), chat_service.sign("grace-1",
                                                                                                      int(now.timestamp()))))
        assert not started.offline and started.ticket.channel == "chat" and started.ticket.account == desk.account
        desk_actions.do_add_customer_message(started.ticket, Inbound(channel="chat", subject="", body_text="Any news?",
                                                                     received_at=at("2026-11-23 10:02")))
        desk_actions.do_reply(started.ticket, desk.agent, "Yes, booked", at=at("2026-11-23 10:03"))
    ticket(desk, "2026-11-23 09:30")  # and an e-mail, to tell the channels apart
    vol = touchpoints.volume(weeks=1, account_id=desk.account.pk, now=at("2026-11-23 11:00"))
    assert (vol.inbound, vol.outbound) == ([3], [1])
    assert vol.channels == {"chat": [2, 1], "email": [1, 0]}
    assert vol.by_channel()[0] == ("chat", "live chat", 2, 1)
    g = touchpoints.graph(at("2026-11-01 00:00"), desk.account.pk)
    # The agent's answer is to the chat's contact (its To is "the visitor in the chat", not an address).
    assert dict(g.edges) == {("Grace Hopper", "agent"): 1}


def test_the_timely_response_rate_is_the_desks_response_clocks_met_and_breached(desk: Desk) -> None:
    fast = ticket(desk, "2026-11-23 09:00")
    slow = ticket(desk, "2026-11-23 09:05")
    with time_machine.travel(at("2026-11-23 09:30"), tick=False):
        desk_actions.do_reply(fast, desk.agent, "Done", at=at("2026-11-23 09:30"))
    with time_machine.travel(at("2026-11-23 12:00"), tick=False):
        worker.run_once(at("2026-11-23 12:00"))  # slow's first response (60 min) is breached by now
        desk_actions.do_reply(slow, desk.agent, "Sorry", at=at("2026-11-23 12:00"))
    rate = touchpoints.timeliness(at("2026-11-01 00:00"), desk.account.pk)
    assert (rate.met, rate.breached, rate.percent) == (1, 1, 50)


def test_topics_cluster_tickets_and_are_named_by_their_terms(desk: Desk) -> None:
    for i in range(12):
        ticket(desk, f"2026-11-2{i % 3} 10:{i:02d}", subject="Invoice for October bookings",
               body="Please send the invoice and the VAT receipt")
        ticket(desk, f"2026-11-2{i % 3} 11:{i:02d}", subject="Hotel missing from itinerary",
               body="The hotel reservation is missing from our itinerary")
    topics = do_compute_topics(n_topics=2)
    names = sorted(t.name for t in topics)
    assert len(topics) == 2 and all(t.size == 12 for t in topics)
    assert any("invoice" in n for n in names) and any("hotel" in n or "itinerary" in n for n in names)
    assert touchpoints.topics_of(desk.account.pk)[0][1] == 12
    assert Topic.objects.count() == 2


def test_too_few_tickets_make_no_topics(desk: Desk) -> None:
    ticket(desk, "2026-11-20 10:00")
    assert do_compute_topics() == [] and not Topic.objects.exists()


def test_breaches_lower_the_health_score_and_the_factors_say_why(desk: Desk) -> None:
    [good] = do_compute_health(accounts=[desk.account])
    assert good.score == 100  # no orders, no clocks: only skipped factors and an empty ticket history
    late = ticket(desk, "2026-11-20 09:00")
    worker.run_once(at("2026-11-23 08:00"))  # first response due 10:00 on the 20th: breached
    late.refresh_from_db()
    [bad] = do_compute_health(accounts=[desk.account])
    factors = {f["factor"]: f for f in bad.factors}
    assert factors["sla_breaches"]["text"] == "1 of 2 SLA clocks breached in the last 90 days"
    assert factors["sla_breaches"]["lost"] > 0 and bad.score < good.score
    assert not factors["credits"]["skipped"] and factors["credits"]["score"] == 1.0
    assert factors["credits"]["text"] == "no service credits for the last 90 days"
    assert "sla breaches" in health.describe(bad).lower()


def test_service_credits_owed_lower_the_health_score_and_rejected_ones_do_not(desk: Desk) -> None:
    [before] = do_compute_health(accounts=[desk.account])

    def credit(period: str, status: str, amount: str, currency: str = "EUR", objective: str = "availability") -> Credit:
        start = dt.datetime.fromisoformat(f"{period}-01T00:00:00+00:00")
        return Credit.objects.create(
            account=desk.account, agreement=desk.agreement, objective=objective, period=period, start=start,
            end=(start + dt.timedelta(days=32)).replace(day=1), target=Decimal("99.9"), valid_events=1000,
            bad_events=5, percent=Decimal(10), amount=Decimal(amount), currency=currency, status=status,
            claim_until=MONDAY + dt.timedelta(days=30), computed_at=MONDAY)

    credit("2026-09", Credit.Status.APPROVED, "120.00")
    credit("2026-10", Credit.Status.COMPUTED, "60.00")
    credit("2026-10", Credit.Status.APPLIED, "15.00", "USD", objective="latency")
    credit("2026-11", Credit.Status.REJECTED, "999.00")  # rejected by finance: owed nothing
    credit("2026-06", Credit.Status.APPROVED, "500.00")  # before the 90 days (from 2026-08-25)
    [after] = do_compute_health(accounts=[desk.account])
    factors = {f["factor"]: f for f in after.factors}
    # The window (2026-08-25 to 2026-11-23) touches 4 monthly periods; 2 of them have a credit.
    assert factors["credits"]["score"] == 0.5
    assert factors["credits"]["text"] == ("3 service credit(s) (180.00 EUR, 15.00 USD) in 2 of the 4 monthly "
                                          "periods of the last 90 days (2026-09, 2026-10)")
    assert after.score < before.score
    # An account under no agreement can be owed no credit: the factor is skipped, not scored as perfect.
    loner = Account.objects.create(name="No SLA Ltd", external_id="NOSLA")
    [alone] = do_compute_health(accounts=[loner])
    factors = {f["factor"]: f for f in alone.factors}
    assert factors["credits"]["skipped"] and factors["credits"]["text"].startswith("no agreement applies")


def test_health_weights_are_applied_from_the_manifest_and_exported_back(desk: Desk) -> None:
    late = ticket(desk, "2026-11-20 09:00")
    worker.run_once(at("2026-11-23 08:00"))
    assert late.clocks.filter(breached_at__isnull=False).exists()
    [before] = do_compute_health(accounts=[desk.account])
    apply_manifest("health:\n  - name: default\n    window_days: 30\n    weights: {sla_breaches: 0, ticket_volume: 5}\n")
    assert HealthWeights.objects.get().weights == {"sla_breaches": 0.0, "ticket_volume": 5.0}
    [after] = do_compute_health(accounts=[desk.account])
    assert "sla_breaches" not in {f["factor"] for f in after.factors}  # weight 0: left out
    assert after.score != before.score
    exported = export_manifest()
    assert "health:" in exported and "window_days: 30" in exported
    assert apply_manifest(exported).summary().startswith("0 created, 0 updated")  # apply(export()) is a no-op


def test_the_manifest_refuses_unknown_factors_and_bad_weights(db: None) -> None:
    with pytest.raises(ManifestError) as e:
        apply_manifest("health:\n  - name: default\n    weights: {happiness: 3, sla_breaches: 300}\n")
    text = str(e.value)
    assert "health[0].weights.happiness: unknown factor" in text
    assert "health[0].weights.sla_breaches: weight 300 must be between 0 and 100" in text
    assert not HealthWeights.objects.exists()


def test_an_unchanged_lifetime_value_costs_no_health_and_a_fall_costs_in_proportion(desk: Desk) -> None:
    def value(clv: str) -> AccountValue:
        return AccountValue(account=desk.account, repeat_purchases=1, expected_purchases=1, probability_alive=1,
                            expected_value=Decimal(1), clv=Decimal(clv), clv_low=Decimal(0), clv_high=Decimal(clv),
                            prior_only=False)

    ctx = health.Context(MONDAY, 90)
    ctx.clv_before[desk.account.pk], ctx.clv_now[desk.account.pk] = value("1000"), value("1000")
    same = health.clv_trend(ctx, desk.account)
    assert isinstance(same, health.Factor) and same.score == 1.0
    ctx.clv_now[desk.account.pk] = value("600")
    fall = health.clv_trend(ctx, desk.account)
    assert isinstance(fall, health.Factor) and fall.score == pytest.approx(0.6)
    assert "-40% since the fit before" in fall.text


def test_the_error_budget_factor_is_the_share_of_the_budget_the_accounts_own_traffic_spent(desk: Desk) -> None:
    service = Service.objects.create(name="booking", base_path="/bookings")
    Objective.objects.create(agreement=desk.agreement, name="availability", kind="availability",
                             target=Decimal("99.9"), window="rolling", window_days=30, service=service)
    # 10,000 of GLOBE's requests, 5 failed: half of a 0.1% budget. Another account's failures are not GLOBE's.
    add_rollup(MONDAY - dt.timedelta(hours=1), count=9995, account="GLOBE", tier="platinum")
    add_rollup(MONDAY - dt.timedelta(hours=1), count=5, errors=5, account="GLOBE", tier="platinum")
    add_rollup(MONDAY - dt.timedelta(hours=2), count=100, errors=100, account="OTHER", tier="platinum")
    ctx = health.load_context(MONDAY, 90)
    spent = health.error_budget(ctx, desk.account)
    assert isinstance(spent, health.Factor) and spent.score == pytest.approx(0.5)
    assert spent.text.startswith("50") and "of the error budget of 'availability' spent by this account's traffic" \
        in spent.text
    quiet = Account.objects.create(name="Quiet Ltd", external_id="QUIET", tier=desk.platinum)
    assert isinstance(health.error_budget(ctx, quiet), health.Skipped)  # no traffic of its own: nothing to judge
    gold_only = Account.objects.create(name="Solo", external_id="SOLO")
    assert health.error_budget(ctx, gold_only) == health.Skipped("no agreement applies")


def test_ticket_volume_timeliness_and_order_factors_score_their_numbers_and_say_them(desk: Desk) -> None:
    a = desk.account
    ctx = health.Context(MONDAY, 90)
    ctx.tickets_before[a.pk] = 12  # a norm of 2 per 30 days over the 180 days before the last 30
    for recent, expected in ((2, 1.0), (4, 0.5), (6, 0.0), (9, 0.0)):
        ctx.tickets_recent[a.pk] = recent
        f = health.ticket_volume(ctx, a)
        assert isinstance(f, health.Factor) and f.score == pytest.approx(expected), recent
    assert f.text == "9 ticket(s) in the last 30 days against a norm of 2.0 per 30 days (4.5x)"
    assert isinstance(health.response_timeliness(ctx, a), health.Skipped)
    ctx.responses[a.pk] = touchpoints.Timeliness(met=3, breached=1)
    timely = health.response_timeliness(ctx, a)
    assert timely == health.Factor(0.75, "3 of 4 responses on time (75%) in the last 90 days")
    assert health.order_recency(ctx, a) == health.Skipped("no orders")
    today = MONDAY.date()

    def order(days_ago: int) -> Order:
        return Order(f"O{days_ago}", a.pk, today - dt.timedelta(days=days_ago), Decimal(100))

    ctx.orders[a.pk] = [order(73), order(200), order(250), order(300), order(350)]
    recency = health.order_recency(ctx, a)
    assert recency == health.Factor(pytest.approx(1 - 73 / 365), "last order 73 day(s) ago (no lifetime-value fit yet)")
    frequency = health.order_frequency(ctx, a)
    assert frequency == health.Factor(0.25, "1 order(s) in the last 180 days against 4 in the 180 before")
    ctx.clv_now[a.pk] = AccountValue(account=a, repeat_purchases=4, expected_purchases=1, probability_alive=0.42,
                                     expected_value=Decimal(1), clv=Decimal(1), clv_low=Decimal(0),
                                     clv_high=Decimal(2), prior_only=False)
    with_fit = health.order_recency(ctx, a)
    assert isinstance(with_fit, health.Factor) and with_fit.score == pytest.approx(0.42)
    assert with_fit.text == "last order 73 day(s) ago; probability still a customer 42% (BG/NBD)"
