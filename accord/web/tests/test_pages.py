"""Staff pages: who may see them, what they show, and how they answer bad input.

Most tests read the demo company, seeded once for the module (see conftest.py).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from accord.agreements.models import Agreement
from accord.catalog.models import ApiCredential, CredentialUsage, Service
from accord.customers.models import Account, Tier, TierChange, TierOverride

pytestmark = pytest.mark.django_db

LIST_PAGES = ["/", "/accounts/", "/agreements/", "/services/"]


def _detail_pages() -> list[str]:
    account = Account.objects.order_by("id").first()
    agreement = Agreement.objects.order_by("id").first()
    service = Service.objects.order_by("id").first()
    assert account and agreement and service
    return [f"/accounts/{account.pk}/", f"/agreements/{agreement.pk}/", f"/services/{service.pk}/"]


def test_anonymous_visitors_are_sent_to_the_login_page_and_back(demo: None) -> None:
    for url in LIST_PAGES + _detail_pages():
        response = Client().get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/login/?next={url}"


def test_people_without_staff_rights_are_sent_to_log_in_as_staff(demo: None, bob: User) -> None:
    client = Client()
    client.force_login(bob)
    for url in LIST_PAGES + _detail_pages():
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    page = client.get("/login/?next=/").content.decode()
    assert 'id="not-staff"' in page and "bob" in page


def test_an_inactive_staff_member_is_not_let_in(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert client.get("/").status_code == 302


def test_the_login_form_lets_staff_in_and_refuses_a_wrong_password(alice: User) -> None:
    wrong = Client().post("/login/", {"username": "alice", "password": "wrong"})
    assert wrong.status_code == 200 and "did not match" in wrong.content.decode()
    client = Client()
    right = client.post("/login/", {"username": "alice", "password": "alice-password", "next": "/accounts/"})
    assert right.status_code == 302 and right["Location"] == "/accounts/"
    assert client.get("/accounts/").status_code == 200


def test_logging_out_is_a_post_that_ends_the_session(staff: Client) -> None:
    html = staff.get("/").content.decode()
    assert re.search(r'<form method="post" action="/logout/">', html)
    assert staff.post("/logout/").status_code == 302
    assert staff.get("/").status_code == 302


def test_the_dashboard_shows_accounts_and_revenue_per_tier(staff: Client, demo: None) -> None:
    html = staff.get("/").content.decode()
    bars = re.findall(r'<g class="bar" data-tier="([a-z ]+)">', html)
    assert bars == list(Tier.objects.order_by("rank").values_list("name", flat=True))
    total = sum(Account.objects.values_list("revenue_12m", flat=True), Decimal(0))
    for tier in Tier.objects.all():
        revenue = sum(tier.accounts.values_list("revenue_12m", flat=True), Decimal(0))
        share = f"{revenue / total * 100:.0f}"
        assert f"<title>{tier.name}: {tier.accounts.count()} accounts (" in html
        assert f"{share}% of 12-month revenue</title>" in html
    assert f'id="account-count">{Account.objects.count()}<' in html
    assert f'id="agreement-count">{Agreement.objects.count()}<' in html
    assert f'id="service-count">{Service.objects.count()}<' in html


def test_the_dashboard_says_how_much_revenue_the_top_fifth_brings(staff: Client, demo: None) -> None:
    revenues = sorted(Account.objects.values_list("revenue_12m", flat=True), reverse=True)
    top = revenues[: len(revenues) // 5]
    expected = round(sum(top) / sum(revenues) * 100)
    html = staff.get("/").content.decode()
    assert f'id="top-share">{expected} %<' in html
    assert f"the top {len(top)} accounts" in html


def test_the_dashboard_lists_the_latest_tier_changes_first(staff: Client, demo: None) -> None:
    latest = TierChange.objects.select_related("account").order_by("-at", "-id").first()
    assert latest is not None
    html = staff.get("/").content.decode()
    table = html[html.index('id="recent-changes"'):]
    first_link = re.search(r'href="/accounts/(\d+)/"', table)
    assert first_link and int(first_link.group(1)) == latest.account_id


def test_the_account_list_filters_by_tier_kind_and_owner(staff: Client, demo: None) -> None:
    gold = Account.objects.filter(tier__name="gold").count()
    assert gold > 0
    assert f">{gold} accounts match<" in staff.get("/accounts/", {"tier": "gold"}).content.decode()
    people = Account.objects.filter(kind="person")
    html = staff.get("/accounts/", {"kind": "person"}).content.decode()
    assert f">{people.count()} account{'s' if people.count() != 1 else ''} match" in html
    for person in people:
        assert person.name in html
    owner = Account.objects.filter(owner__isnull=False).values_list("owner__username", flat=True).first()
    assert owner is not None
    owned = Account.objects.filter(owner__username=owner).count()
    assert f">{owned} accounts match<" in staff.get("/accounts/", {"owner": owner}).content.decode()


def test_the_account_list_searches_names_and_external_ids(staff: Client, demo: None) -> None:
    some = Account.objects.order_by("name").first()
    assert some is not None and some.external_id
    html = staff.get("/accounts/", {"q": some.external_id.lower()}).content.decode()
    assert ">1 account matches<" in html and some.name in html
    word = some.name.split()[0]
    expected = Account.objects.filter(name__icontains=word).count() + Account.objects.filter(
        external_id__icontains=word
    ).exclude(name__icontains=word).count()
    html = staff.get("/accounts/", {"q": word.upper()}).content.decode()
    assert f">{expected} account" in html
    assert ">0 accounts match<" in staff.get("/accounts/", {"q": "no such company"}).content.decode()


def test_the_account_list_pages_through_everyone_in_order(staff: Client, demo: None) -> None:
    names = list(Account.objects.order_by("name", "id").values_list("name", flat=True))
    seen: list[str] = []
    pages = -(-len(names) // 50)
    for number in range(1, pages + 1):
        html = staff.get("/accounts/", {"page": number}).content.decode()
        table = html[html.index('id="account-table"'):]
        seen += re.findall(r'<td><a href="/accounts/\d+/">([^<]+)</a></td>', table)
    assert [unescape(n) for n in seen] == names
    last = staff.get("/accounts/", {"page": 999}).content.decode()
    assert f"page {pages} of {pages}" in last
    assert "page 1 of" in staff.get("/accounts/", {"page": "abc"}).content.decode()


def test_the_account_list_sorts_by_revenue(staff: Client, demo: None) -> None:
    biggest = Account.objects.order_by("-revenue_12m").first()
    assert biggest is not None
    html = staff.get("/accounts/", {"sort": "revenue"}).content.decode()
    table = html[html.index('id="account-table"'):]
    first = re.search(r'href="/accounts/(\d+)/"', table)
    assert first and int(first.group(1)) == biggest.pk


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tier": "diamond"}, "Tier “diamond”"),
        ({"kind": "robot"}, "“robot”"),
        ({"sort": "price"}, "Sort “price” is not one of: name, revenue, tier."),
        ({"min_revenue_12m": "lots"}, "“lots”"),
        ({"q": "bad\x00byte"}, "Null characters are not allowed."),
        ({"tier": "gold\x00"}, "“gold\x00”"),
    ],
)
def test_bad_filter_values_show_a_message_not_an_error(
    staff: Client, demo: None, params: dict[str, str], message: str
) -> None:
    response = staff.get("/accounts/", params)
    assert response.status_code == 200
    html = response.content.decode()
    errors = html[html.index('id="filter-errors"'):html.index("</div>", html.index('id="filter-errors"'))]
    assert message.replace("\x00", "") in errors.replace("\x00", "")
    assert "No accounts match." in html


def test_the_account_page_shows_facts_contacts_commitments_agreement_and_keys(staff: Client, demo: None) -> None:
    acct = Account.objects.filter(credentials__revoked_at__isnull=True).order_by("-revenue_12m").first()
    assert acct is not None
    html = staff.get(f"/accounts/{acct.pk}/").content.decode()
    assert acct.name in html and acct.timezone in html and (acct.external_id or "") in html
    margin = acct.revenue_12m - acct.cost_to_serve_12m
    assert f'id="account-margin">{margin:,.2f}' in html
    agreement = Agreement.for_account(acct, timezone.localdate())
    assert agreement is not None and f"/agreements/{agreement.pk}/" in html
    for contact in acct.contacts.all():
        assert contact.name in html
        for address in contact.emails + contact.phones:
            assert address in html
    for commitment in acct.commitments.all():
        assert f"{commitment.amount:,.0f}" in html
    for key in ApiCredential.objects.filter(account=acct):
        assert f"<code>{key.prefix}…</code>" in html
    assert 'class="badge ok">active<' in html
    # each key's requests this month, as the gateway counted them (another account's usage not mixed in)
    key = ApiCredential.objects.filter(account=acct).order_by("pk").first()
    other = ApiCredential.objects.exclude(account=acct).first()
    today = timezone.now().astimezone(dt.UTC).date()
    CredentialUsage.objects.create(credential=key, day=today, requests=314)
    if other is not None:
        CredentialUsage.objects.create(credential=other, day=today, requests=2718)
    html = staff.get(f"/accounts/{acct.pk}/").content.decode()
    assert 'data-usage="314">314<' in html and "2718" not in html


def test_the_account_page_shows_the_tier_history_as_a_table_and_a_timeline(staff: Client, demo: None) -> None:
    acct = Account.objects.filter(tier_changes__cause="override_ended").first()
    assert acct is not None, "the demo has a client whose trial upgrade ended"
    html = staff.get(f"/accounts/{acct.pk}/").content.decode()
    changes = TierChange.objects.filter(account=acct)
    start = html.index('id="tier-history"')
    history = html[start:html.index("</table>", start)]
    assert history.count("<tr>") - 1 == changes.count()  # minus the header row
    assert html.count("<circle") == changes.count()
    assert 'class="cause-override"' in html and "override expired or revoked" in html
    assert "Trial: faster response times" in html


def test_the_account_page_shows_a_live_override_with_its_reason(staff: Client, demo: None) -> None:
    override = TierOverride.objects.filter(expires_at__gt=timezone.now()).select_related("account", "tier").first()
    assert override is not None
    html = staff.get(f"/accounts/{override.account_id}/").content.decode()
    assert 'id="account-override"' in html and override.reason in html
    assert f'id="account-tier">{override.tier.name}<' in html


def test_an_account_with_nothing_yet_has_a_page(staff: Client) -> None:
    bare = Account.objects.create(name="Brand New Ltd")
    html = staff.get(f"/accounts/{bare.pk}/").content.decode()
    for empty in ("No tier changes recorded.", "No contacts.", "No commitments.", "No keys.", "none applies today"):
        assert empty in html


def test_agreement_pages_show_terms_calendar_objectives_and_credits(staff: Client, demo: None) -> None:
    html = staff.get("/agreements/").content.decode()
    for agreement in Agreement.objects.all():
        assert f"/agreements/{agreement.pk}/" in html
    ag = Agreement.objects.get(name="platinum-sla")
    html = staff.get(f"/agreements/{ag.pk}/").content.decode()
    assert "booking-p95" in html and "rolling 28 days" in html and "≥ 99.9 %" in html
    assert f'id="accounts-covered">{Account.objects.filter(tier=ag.tier).count()} accounts<' in html
    assert ag.calendar.name in html and "Capped at" in html


def objective_targets(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-objective="([^"]+)">.*?data-role="target"[^>]*>([^<]*)<', html, re.S))


def test_agreement_pages_show_targets_fees_and_credits_with_their_units(staff: Client, demo: None) -> None:
    platinum = Agreement.objects.get(name="platinum-sla")
    html = staff.get(f"/agreements/{platinum.pk}/").content.decode()
    targets = objective_targets(html)
    assert targets["booking-p95"] == "p95 ≤ 400 ms" and targets["booking-errors"] == "≤ 0.5 % errors"
    assert targets["booking-availability"] == "≥ 99.95 %"
    # support targets are business minutes; on a calendar that never closes a business day is a day
    assert targets["first-response-urgent"] == "30 min" and targets["resolution-urgent"] == "4 h"
    assert targets["resolution-low"] == "3 d 8 h"  # 4,800 minutes
    assert 'id="monthly-fee">12,000.00 EUR<' in html
    bands = re.findall(r"<tr><td>([^<]*)</td><td class=\"num\">([^<]*)</td><td class=\"num nowrap\">([^<]*)</td>", html)
    assert bands == [("99.9 %", "10 %", "1,200.00 EUR"), ("99 %", "25 %", "3,000.00 EUR"),
                     ("95 %", "100 %", "12,000.00 EUR")]
    assert "Capped at 100 % of the monthly fee (12,000.00 EUR)." in html
    # on office hours a business day is not 24 hours: the target stays in hours, with its minutes in the title
    gold = Agreement.objects.get(name="gold-sla")
    html = staff.get(f"/agreements/{gold.pk}/").content.decode()
    targets = objective_targets(html)
    assert targets["resolution-low"] == "160 h" and 'title="9,600 business minutes"' in html
    assert targets["booking-p95"] == "p95 ≤ 600 ms" and "600m" not in html and "9600 min" not in html
    assert "business time on emea-support" in html
    listing = staff.get("/agreements/").content.decode()
    assert "12,000 EUR" in listing and "4,000 EUR" in listing


def test_money_on_account_pages_carries_the_currency(staff: Client, settings: Any) -> None:
    account = Account.objects.create(name="Globex", revenue_12m=Decimal("1234567.50"),
                                     cost_to_serve_12m=Decimal("234567.25"))
    html = staff.get(f"/accounts/{account.pk}/").content.decode()
    assert 'id="account-revenue">1,234,567.50 EUR<' in html and 'id="account-cost">234,567.25 EUR<' in html
    assert "1,000,000.25 EUR" in html and "(81 % of revenue)" in html
    assert "1,234,568 EUR" in staff.get("/accounts/").content.decode()
    settings.ACCORD_CURRENCY = "CHF"
    assert 'id="account-revenue">1,234,567.50 CHF<' in staff.get(f"/accounts/{account.pk}/").content.decode()
    assert "1,234,568 CHF" in staff.get("/").content.decode()  # the dashboard's revenue per tier


def test_service_pages_show_operations_pools_and_partners(staff: Client, demo: None) -> None:
    html = staff.get("/services/").content.decode()
    for svc in Service.objects.all():
        assert f"/services/{svc.pk}/" in html
    svc = Service.objects.get(name="booking")
    html = staff.get(f"/services/{svc.pk}/").content.decode()
    for pool in svc.pools.all():
        for endpoint in pool.endpoints.all():
            assert endpoint.url in html
    for partner in svc.partners.all():
        assert partner.name in html
    assert "standby" in html and "/bookings/{id}" in html


@pytest.mark.parametrize("url", ["/accounts/999999/", "/agreements/999999/", "/services/999999/", "/no/such/page/"])
def test_unknown_addresses_get_the_not_found_page(staff: Client, url: str) -> None:
    response = staff.get(url)
    assert response.status_code == 404
    html = response.content.decode()
    assert 'id="not-found"' in html and f"<code>{url}</code>" in html
    assert "/static/web/accord.css" in html


def test_every_asset_is_served_from_here(staff: Client, demo: None) -> None:
    acct = Account.objects.order_by("id").first()
    assert acct is not None
    for url in ["/", "/accounts/", f"/accounts/{acct.pk}/", "/login/"]:
        html = staff.get(url).content.decode()
        assert not re.findall(r'(?:src|href)="(?:https?:)?//', html), url
        assert "/static/web/accord.css" in html
