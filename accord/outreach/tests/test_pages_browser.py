"""The pages behind the links in outreach mail, in a real browser: accessible, and a click unsubscribes."""

from __future__ import annotations

from typing import Any

import pytest

from accord.customers.models import Contact, ContactPoint
from accord.outreach import consent as service
from accord.outreach.models import Consent, Purpose

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_unsubscribe_and_confirm_pages(live_server: Any, page: Any, axe: Any) -> None:
    ada = Contact.objects.create(name="Ada Lovelace")
    ContactPoint.objects.create(contact=ada, kind="email", value="ada@example.com")
    news = Purpose.objects.create(name="newsletter", title="the monthly newsletter")
    consent = service.request(ada, news, Consent.Source.WEB, send=False)
    page.goto(f"{live_server.url}/c/{service.link_token(consent, 'confirm')}/")
    assert axe.violations(page) == [], axe.describe("confirm", axe.violations(page))
    assert axe.page_problems(page) == [], "confirm"
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_selector("#outcome")
    assert "Thank you" in page.inner_text("#outcome")
    consent.refresh_from_db()
    assert consent.status == "confirmed"
    page.goto(f"{live_server.url}/u/{service.link_token(consent, 'unsubscribe')}/")
    assert axe.violations(page) == [], axe.describe("unsubscribe", axe.violations(page))
    assert axe.page_problems(page) == [], "unsubscribe"
    consent.refresh_from_db()
    assert consent.status == "confirmed"  # loading the page changed nothing
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_selector("#outcome")
    assert "You are unsubscribed from the monthly newsletter" in page.inner_text("#outcome")
    assert axe.violations(page) == [], axe.describe("unsubscribed", axe.violations(page))
    assert axe.page_problems(page) == [], "unsubscribed"
    consent.refresh_from_db()
    assert consent.status == "withdrawn"


def test_the_segment_form_counts_live_as_the_filter_is_typed(live_server: Any, page: Any, axe: Any) -> None:
    from django.contrib.auth.models import User

    from accord.access.roles import grant
    from accord.customers.models import Account
    from accord.outreach.models import Segment

    user = User.objects.create_user("mona", "mona@accord.example", "pw-long-enough-1", is_staff=True)
    grant(user, "manager")
    berlin = Account.objects.create(name="Berlin Reisen", country="DE", custom_fields={"industry": "travel"})
    for name in ("Ada", "Bob"):
        Contact.objects.create(name=name, account=berlin)
    Contact.objects.create(name="Cy", account=Account.objects.create(name="Paris", country="FR"))
    page.goto(f"{live_server.url}/login/?next=/outreach/segments/new/")
    page.fill("#id_username", "mona")
    page.fill("#id_password", "pw-long-enough-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/outreach/segments/new/")
    page.fill("#id_name", "german travel")
    page.fill("#id_spec", '{"country": ["DE", "FR"]}')
    page.wait_for_function("document.getElementById('segment-count').textContent.includes('3 contacts match')")
    page.fill("#id_spec", '{"country": ["DE"], "custom": [{"on": "account", "key": "industry", "equals": "travel"}]}')
    page.wait_for_function("document.getElementById('segment-count').textContent.includes('2 contacts match')")
    page.fill("#id_spec", '{"country": ["XX"]}')
    page.wait_for_function("document.getElementById('segment-count').textContent.includes('Cannot count')")
    assert "country[0]: 'XX' is not an ISO 3166-1" in page.inner_text("#segment-count")
    page.fill("#id_spec", '{"country": ')
    page.wait_for_function("document.getElementById('segment-count').textContent.includes('Not JSON yet')")
    assert not Segment.objects.exists()  # counting saves nothing
    assert axe.violations(page) == [], axe.describe("segment form", axe.violations(page))
    page.fill("#id_spec", '{"country": ["DE"]}')
    page.get_by_role("button", name="Create segment").click()
    page.wait_for_url(f"{live_server.url}/outreach/segments/")
    assert "2 contact(s) match now" in page.inner_text("main")
    assert Segment.objects.get().spec == {"country": ["DE"]}
