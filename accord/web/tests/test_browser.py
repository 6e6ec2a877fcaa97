"""The staff UI in a real headless Chromium (the `browser` and `page` fixtures are in the top-level conftest.py)."""

from __future__ import annotations

import os
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from accord.customers.models import Account, Tier

# Playwright's sync API runs an event loop in the test thread; the ORM calls here are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_manager_logs_in_reads_the_chart_searches_and_opens_an_account(live_server: Any, page: Any) -> None:
    call_command("seed-demo", "--accounts", "80", stdout=StringIO())
    page.goto(f"{live_server.url}/")
    assert "/login/" in page.url
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo")
    page.click("button[type=submit]")
    page.wait_for_selector("#tier-chart")
    assert page.locator("#tier-chart g.bar").count() == Tier.objects.count() == 4
    for tier in Tier.objects.all():
        shown = page.locator(f"#tier-chart g.bar[data-tier={tier.name}] text.value").text_content()
        assert shown == str(tier.accounts.count())
    assert page.evaluate("getComputedStyle(document.querySelector('header.top')).display") == "flex", (
        "the stylesheet did not load"
    )

    target = Account.objects.filter(tier_changes__cause="rules").order_by("name").first()
    assert target is not None and target.external_id and target.tier
    page.click("header.top nav >> text=Accounts")
    page.fill("input[name=q]", target.external_id)
    page.click("#account-filters button[type=submit]")
    page.wait_for_url("**/accounts/?q=*")
    assert page.locator("#account-table tbody tr").count() == 1
    page.click(f"#account-table >> text={target.name}")
    page.wait_for_selector("#tier-history")
    rows = page.locator("#tier-history tbody tr")
    assert rows.count() == target.tier_changes.count() >= 2
    assert page.locator("#account-tier").inner_text() == target.tier.name
    assert page.locator("#tier-timeline circle").count() == rows.count()

    page.goto(f"{live_server.url}/accounts/0/")
    assert page.locator("#not-found h1").inner_text() == "Not found"

    page.click("text=Log out")
    page.wait_for_url("**/login/")
    page.goto(f"{live_server.url}/accounts/")
    assert "/login/" in page.url
