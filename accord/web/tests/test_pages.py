"""Staff pages: permissions, content, filters, bad input, and the demo seed."""

from __future__ import annotations

import re
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from accord.agreements.models import Agreement
from accord.catalog.models import Service
from accord.customers.models import Account, Contact, Tier, TierChange

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(db: None) -> None:
    call_command("seed-demo", "--accounts", "120", stdout=StringIO())


@pytest.fixture
def staff(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client


PAGES = ["/", "/accounts/", "/agreements/", "/services/"]


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(url: str) -> None:
    response = Client().get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize("url", PAGES)
def test_people_without_staff_rights_are_sent_to_the_login_page(bob: User, url: str) -> None:
    client = Client()
    client.force_login(bob)
    assert client.get(url).status_code == 302


def test_the_dashboard_shows_accounts_by_tier_as_a_chart(staff: Client, demo: None) -> None:
    html = staff.get("/").content.decode()
    bars = re.findall(r'<g class="bar" data-tier="([a-z ]+)">', html)
    assert bars == ["platinum", "gold", "silver", "standard"]
    for tier in Tier.objects.all():
        assert f"<title>{tier.name}: {tier.accounts.count()} accounts" in html
    assert f'id="account-count">{Account.objects.count()}<' in html


def test_the_account_list_filters_with_the_shared_filterset(staff: Client, demo: None) -> None:
    gold = Account.objects.filter(tier__name="gold")
    html = staff.get("/accounts/", {"tier": "gold"}).content.decode()
    assert f"{gold.count()} accounts" in html
    some = Account.objects.order_by("name").first()
    assert some is not None
    html = staff.get("/accounts/", {"q": some.external_id}).content.decode()
    assert some.name in html and "1 accounts" in html


def test_bad_filter_values_show_a_message_not_an_error(staff: Client, demo: None) -> None:
    response = staff.get("/accounts/", {"tier": "diamond", "kind": "robot"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="filter-errors"' in html and "No accounts match." in html


def test_the_account_page_shows_facts_contacts_agreement_and_tier_history(staff: Client, demo: None) -> None:
    acct = Account.objects.filter(tier_changes__cause="rules").first()
    assert acct is not None, "the demo should contain accounts whose tier changed"
    html = staff.get(f"/accounts/{acct.pk}/").content.decode()
    assert acct.name in html and 'id="tier-timeline"' in html
    assert html.count("<circle") == TierChange.objects.filter(account=acct).count()
    agreement = Agreement.for_account(acct, __import__("datetime").date.today())
    assert agreement is not None and (agreement.title or agreement.name) in html
    for contact in acct.contacts.all():
        assert contact.name in html


def test_agreement_and_service_pages_show_their_parts(staff: Client, demo: None) -> None:
    ag = Agreement.objects.get(name="platinum-sla")
    html = staff.get(f"/agreements/{ag.pk}/").content.decode()
    assert "booking-p95" in html and "rolling 28 days" in html and "99.9%" in html
    svc = Service.objects.get(name="booking")
    html = staff.get(f"/services/{svc.pk}/").content.decode()
    assert "http://127.0.0.1:9202" in html and "standby" in html and "gds" in html


@pytest.mark.parametrize("url", ["/accounts/999999/", "/agreements/999999/", "/services/999999/"])
def test_unknown_ids_are_404(staff: Client, url: str) -> None:
    assert staff.get(url).status_code == 404


def test_the_demo_seed_spreads_accounts_over_every_tier_and_is_deterministic(demo: None) -> None:
    counts = {t.name: t.accounts.count() for t in Tier.objects.all()}
    assert all(n > 0 for n in counts.values()), counts
    names = list(Account.objects.order_by("external_id").values_list("name", "revenue_12m"))
    out = StringIO()
    call_command("seed-demo", "--if-empty", stdout=out)
    assert "not seeded again" in out.getvalue() and Account.objects.count() == 120
    with pytest.raises(CommandError, match="accounts exist already"):
        call_command("seed-demo")
    Account.objects.all().delete()
    Contact.objects.all().delete()
    call_command("seed-demo", "--accounts", "120", stdout=StringIO())
    assert list(Account.objects.order_by("external_id").values_list("name", "revenue_12m")) == names
    assert User.objects.get(username="demo").check_password("demo")


def test_static_assets_are_local(staff: Client, demo: None) -> None:
    html = staff.get("/").content.decode()
    assert not re.findall(r'(?:src|href)="https?://', html)
    assert "/static/web/accord.css" in html


def test_login_form_rejects_a_wrong_password(alice: Any) -> None:
    response = Client().post("/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200 and "did not match" in response.content.decode()


def test_the_account_list_without_filters_lists_everyone(staff: Client, demo: None) -> None:
    html = staff.get("/accounts/").content.decode()
    assert f"{Account.objects.count()} accounts" in html


def test_the_demo_desk_has_tickets_on_their_agreements_clocks(demo: None) -> None:
    from accord.desk.models import Ticket

    tickets = Ticket.objects.select_related("account")
    assert tickets.count() > 10
    with_clocks = [t for t in tickets if t.clocks.exists()]
    assert len(with_clocks) == tickets.count()  # every demo account has a tier and so an agreement
