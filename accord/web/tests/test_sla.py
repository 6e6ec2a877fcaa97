"""The SLA where people look: the dashboard, the account page and the agreement page, from data built here.

Every figure is derived in the test from the data it builds (3 clocks met of 4 is 75 %), and the data sits
relative to now (in this month, today, within the hour), so the tests hold whatever the date. The query count of
each page does not grow with the number of accounts, tickets or clocks.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accord.access import roles
from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.catalog.models import Service
from accord.customers.models import Account, Tier
from accord.desk.models import SlaClock, Ticket
from accord.governance.tests.rollups import add_rollup
from accord.lib import units
from accord.reports.models import Credit
from accord.web import sla

pytestmark = pytest.mark.django_db

# (account, requests, 5xx) of the gold tier's traffic an hour and a half ago
TRAFFIC = [("G1", 1000, 5), ("G2", 1000, 20), ("G3", 100, 0)]
TARGET = Decimal("99")  # availability objective: at most 1 % bad


def now_parts() -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    now = timezone.now()
    start, _end = sla.month(now)
    return now, start + (now - start) / 2, sla.day(now) + (now - sla.day(now)) / 2


def clock(ticket: Ticket, objective: Objective, kind: str = "first_response", *, status: str = "met",
          stopped_at: dt.datetime | None = None, breached_at: dt.datetime | None = None,
          due_at: dt.datetime | None = None, cycle: int = 1) -> SlaClock:
    return SlaClock.objects.create(ticket=ticket, kind=kind, cycle=cycle, objective=objective,
                                   calendar=objective.agreement.calendar, target_seconds=3600, status=status,
                                   started_at=ticket.created_at, stopped_at=stopped_at, breached_at=breached_at,
                                   due_at=due_at)


@pytest.fixture
def world() -> dict[str, Any]:
    now, in_month, in_day = now_parts()
    calendar = BusinessCalendar.objects.create(name="always", timezone="UTC", hours={
        d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    gold = Tier.objects.create(name="gold", rank=1)
    silver = Tier.objects.create(name="silver", rank=2)
    booking = Service.objects.create(name="booking", base_path="/bookings")
    since = timezone.localdate() - dt.timedelta(days=400)
    gold_sla = Agreement.objects.create(name="gold-sla", tier=gold, calendar=calendar, effective_from=since)
    silver_sla = Agreement.objects.create(name="silver-sla", tier=silver, calendar=calendar, effective_from=since)
    avail = Objective.objects.create(agreement=gold_sla, name="availability", kind="availability", target=TARGET,
                                     window="rolling", window_days=30, service=booking)
    first = Objective.objects.create(agreement=gold_sla, name="first-response", kind="first_response", target=60)
    silver_first = Objective.objects.create(agreement=silver_sla, name="first-response", kind="first_response",
                                            target=120)
    accounts = {key: Account.objects.create(name=f"Account {key}", external_id=key, tier=gold)
                for key, _n, _e in TRAFFIC}
    accounts["S1"] = Account.objects.create(name="Account S1", external_id="S1", tier=silver)
    minute = now - dt.timedelta(minutes=90)
    for key, count, errors in TRAFFIC:
        add_rollup(minute, count=count, errors=errors, account=key, tier="gold", service="booking")
    g1 = accounts["G1"]
    tickets = [Ticket.objects.create(account=g1, channel="email", subject=f"G1 ticket {i}", status="solved",
                                     agreement=gold_sla, created_at=in_month) for i in range(4)]
    for t in tickets[:3]:
        clock(t, first, stopped_at=in_month)
    # breached today: counted among those due this month, and as today's breach
    clock(tickets[3], first, status="running", breached_at=in_day, due_at=in_day)
    # not counted: cancelled, and one reached last month
    clock(tickets[0], first, kind="resolution", status="cancelled")
    clock(tickets[1], first, kind="next_response", stopped_at=sla.month(now)[0] - dt.timedelta(days=2))
    due = Ticket.objects.create(account=g1, channel="email", subject="Due soon", status="open", agreement=gold_sla,
                                next_due_at=now + dt.timedelta(minutes=30), sla_state="on_track")
    later = Ticket.objects.create(account=g1, channel="email", subject="Due later", status="open",
                                  agreement=gold_sla, next_due_at=now + dt.timedelta(hours=3), sla_state="on_track")
    s1 = Ticket.objects.create(account=accounts["S1"], channel="web", subject="Silver one", status="solved",
                               agreement=silver_sla, created_at=in_month)
    clock(s1, silver_first, stopped_at=in_month)
    return {"now": now, "accounts": accounts, "gold_sla": gold_sla, "silver_sla": silver_sla, "avail": avail,
            "first": first, "due": due, "later": later, "tickets": tickets}


def text(html: str, element_id: str) -> str:
    """The text of the element with this id (tags dropped, spaces squeezed)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, f"no element #{element_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(2)).split())


def row(html: str, table_id: str, attr: str, value: str) -> str:
    table = re.search(rf'<table id="{table_id}".*?</table>', html, re.S)
    assert table, table_id
    match = re.search(rf'<tr {attr}="{re.escape(value)}">(.*?)</tr>', table.group(0), re.S)
    assert match, (table_id, value)
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def percent(f: Fraction, places: int) -> str:
    return f"{float(f * 100):,.{places}f} %"


def test_dashboard_attainment_per_tier_breaches_today_due_soon_and_burning(staff: Client,
                                                                          world: dict[str, Any]) -> None:
    html = staff.get("/").content.decode()
    # gold: the availability objective over all gold traffic, and 3 of the 4 first-response clocks that came due
    bad = sum(e for _k, _n, e in TRAFFIC)
    valid = sum(n for _k, n, _e in TRAFFIC)
    met = Fraction(valid - bad, valid) * 100 >= TARGET
    gold = row(html, "sla-tiers", "data-tier", "gold")
    assert gold.startswith("gold")
    assert f"({int(met)} of 1)" in gold and percent(Fraction(int(met), 1), 1) in gold
    assert f"{percent(Fraction(3, 4), 1)} (3 of 4)" in gold
    assert gold.endswith(" 1"), "one breach today"
    silver = row(html, "sla-tiers", "data-tier", "silver")
    assert "no data" in silver and "100.0 % (1 of 1)" in silver and silver.endswith(" 0")
    assert text(html, "sla-breaches-today").startswith("1")
    # due within the hour: the one in 30 minutes, linked; not the one in 3 hours
    due = text(html, "sla-due-list")
    assert world["due"].reference in due and world["later"].reference not in due
    assert f'href="/desk/tickets/{world["due"].pk}/"' in html
    assert text(html, "sla-due-soon").startswith("1")
    # burning: 25 bad of 2100 spends more than the 1 % budget, so less than 25 % of it is left
    remaining = 1 - Fraction(bad, valid) / Fraction(1, 100)
    burning = text(html, "sla-burning")
    assert remaining < Fraction(1, 4)
    assert "gold-sla / availability" in burning and "budget below 25 %" in burning
    assert units.share(float(remaining), 1) in burning
    # charts with their text alternative
    assert re.search(r'<svg class="chart" id="sla-support-chart"[^>]*aria-label="[^"]*gold 75.00%', html)


def test_dashboard_with_nothing_due_says_so(staff: Client) -> None:
    Tier.objects.create(name="gold", rank=1)
    html = staff.get("/").content.decode()
    assert "none due" in row(html, "sla-tiers", "data-tier", "gold")
    assert "No open ticket is due within the hour." in text(html, "sla-due-list")
    assert "No error budget" in text(html, "sla-burning")


def test_account_page_tickets_open_first_attainment_budgets_and_credits(staff: Client, world: dict[str, Any]) -> None:
    g1 = world["accounts"]["G1"]
    Credit.objects.create(account=g1, agreement=world["gold_sla"], objective="availability", period="2020-01",
                          start=world["now"], end=world["now"], target=TARGET, valid_events=10, bad_events=5,
                          percent=Decimal(10), amount=Decimal("123.45"), currency="EUR", claim_until=world["now"],
                          computed_at=world["now"])
    html = staff.get(f"/accounts/{g1.pk}/").content.decode()
    tickets = re.findall(r'<tr data-ticket="(\d+)">', html)
    opened = [world["due"].pk, world["later"].pk]
    assert [int(t) for t in tickets[:2]] == opened, "open tickets first, the soonest due first"
    assert {int(t) for t in tickets[2:]} == {t.pk for t in world["tickets"]}
    assert "(2 open of 6)" in html
    # its own share of the traffic: 5 bad of 1000 against a 1 % budget
    availability = row(html, "account-objectives", "data-objective", "availability")
    good = Fraction(1000 - 5, 1000)
    assert percent(good, 2) in availability and "met" in availability
    left = 1 - Fraction(5, 1000) / Fraction(1, 100)
    assert percent(left, 1) in availability
    first = row(html, "account-objectives", "data-objective", "first-response")
    assert "3 of 4 met" in first and percent(Fraction(3, 4), 2) in first and "missed" in first
    assert "123.45" in text(html, "account-credits") and "2020-01" in text(html, "account-credits")
    assert 'id="sla-account-chart"' in html and 'id="tier-history"' in html


def test_an_agent_sees_no_credits_on_the_account_page(world: dict[str, Any]) -> None:
    agent = User.objects.create_user("agent-1", is_staff=True)
    roles.grant(agent, "agent")
    client = Client()
    client.force_login(agent)
    html = client.get(f"/accounts/{world['accounts']['G1'].pk}/").content.decode()
    assert 'id="account-tickets"' in html and 'id="account-credits"' not in html


def test_agreement_page_attainment_across_accounts_worst_first(staff: Client, world: dict[str, Any]) -> None:
    html = staff.get(f"/agreements/{world['gold_sla'].pk}/").content.decode()
    bad = sum(e for _k, _n, e in TRAFFIC)
    valid = sum(n for _k, n, _e in TRAFFIC)
    total = row(html, "agreement-objectives", "data-objective", "availability")
    assert percent(Fraction(valid - bad, valid), 2) in total and "missed" in total
    assert "3 of 4 met" in row(html, "agreement-objectives", "data-objective", "first-response")
    # worst first: G1 misses the support objective (a breach), G2 the availability, G3 nothing; G1 and G2 miss
    # one each, and G1's 75 % is lower than G2's 98 %
    order = re.findall(r'<tr data-account="([^"]+)">', html)
    assert order == ["G1", "G2", "G3"]
    shares = {key: Fraction(n - e, n) for key, n, e in TRAFFIC}
    g2 = row(html, "agreement-accounts", "data-account", "G2")
    assert percent(shares["G2"], 2) in g2
    g1 = row(html, "agreement-accounts", "data-account", "G1")
    assert percent(shares["G1"], 2) in g1 and percent(Fraction(3, 4), 2) in g1
    assert text(html, "sla-account-summary").startswith("3 accounts")
    assert 'id="sla-agreement-chart"' in html


def test_per_account_events_add_up_to_the_all_accounts_rows(world: dict[str, Any]) -> None:
    from accord.governance import indicators

    o = world["avail"]
    start, end, _days = indicators.objective_window(o, world["now"])
    by_account = indicators.objective_events_by_account(o, start, end)
    assert {k: (e.valid, e.bad) for k, e in by_account.items()} == {k: (n, e) for k, n, e in TRAFFIC}
    everyone = indicators.objective_events(o, start, end)
    assert (everyone.valid, everyone.bad) == (sum(e.valid for e in by_account.values()),
                                              sum(e.bad for e in by_account.values()))
    for key, events in by_account.items():
        one = indicators.objective_events(o, start, end, account=key)
        assert (one.valid, one.bad) == (events.valid, events.bad)


def grow(world: dict[str, Any], n: int) -> None:
    """n more gold accounts, each with traffic, a ticket and a clock met this month."""
    _now, in_month, _day = now_parts()
    minute = world["now"] - dt.timedelta(minutes=90)
    for i in range(n):
        key = f"X{Account.objects.count()}-{i}"
        acct = Account.objects.create(name=f"Extra {key}", external_id=key, tier=world["gold_sla"].tier)
        add_rollup(minute, count=10, errors=i % 2, account=key, tier="gold", service="booking")
        t = Ticket.objects.create(account=acct, channel="email", subject="x", status="solved",
                                  agreement=world["gold_sla"], created_at=in_month,
                                  next_due_at=world["now"] + dt.timedelta(minutes=20), sla_state="on_track")
        clock(t, world["first"], stopped_at=in_month)


@pytest.mark.parametrize("page", ["dashboard", "account", "agreement"])
def test_the_number_of_queries_does_not_grow_with_the_rows(staff: Client, world: dict[str, Any], page: str) -> None:
    def url() -> str:
        return {"dashboard": "/", "account": f"/accounts/{world['accounts']['G1'].pk}/",
                "agreement": f"/agreements/{world['gold_sla'].pk}/"}[page]

    staff.get(url())  # sessions, caches
    with CaptureQueriesContext(connection) as few:
        assert staff.get(url()).status_code == 200
    grow(world, 30)
    with CaptureQueriesContext(connection) as many:
        response = staff.get(url())
        assert response.status_code == 200
    assert len(many) <= len(few), (len(few), len(many))
    if page == "agreement":
        assert text(response.content.decode(), "sla-account-summary").startswith("33 accounts")
