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
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_selector("#outcome")
    assert "Thank you" in page.inner_text("#outcome")
    consent.refresh_from_db()
    assert consent.status == "confirmed"
    page.goto(f"{live_server.url}/u/{service.link_token(consent, 'unsubscribe')}/")
    assert axe.violations(page) == [], axe.describe("unsubscribe", axe.violations(page))
    consent.refresh_from_db()
    assert consent.status == "confirmed"  # loading the page changed nothing
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_selector("#outcome")
    assert "You are unsubscribed from the monthly newsletter" in page.inner_text("#outcome")
    assert axe.violations(page) == [], axe.describe("unsubscribed", axe.violations(page))
    consent.refresh_from_db()
    assert consent.status == "withdrawn"
