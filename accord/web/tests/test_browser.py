"""The staff UI in a real headless Chromium."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from accord.customers.models import Account, Tier

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_manager_logs_in_reads_the_chart_searches_and_opens_an_account(live_server: Any, page: Any) -> None:
    call_command("seed-demo", "--accounts", "80", stdout=StringIO())
    page.goto(f"{live_server.url}/")
    assert "/login/" in page.url
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo")
    page.click("button[type=submit]")
    page.wait_for_selector("#tier-chart")
    bars = page.locator("#tier-chart g.bar")
    assert bars.count() == Tier.objects.count()
    assert page.locator("#tier-chart g.bar[data-tier=platinum] text.value").text_content() == str(
        Account.objects.filter(tier__name="platinum").count()
    )
    css_ok = page.evaluate("getComputedStyle(document.querySelector('header.top')).display")
    assert css_ok == "flex", "the stylesheet did not load"

    target = Account.objects.filter(tier_changes__cause="rules").order_by("name").first()
    assert target is not None
    page.click("text=Accounts")
    page.fill("input[name=q]", target.external_id or "")
    page.click("#account-filters button[type=submit]")
    page.wait_for_selector("#account-table tbody a")
    assert page.locator("#account-table tbody tr").count() == 1
    page.click(f"#account-table >> text={target.name}")
    page.wait_for_selector("#tier-history")
    rows = page.locator("#tier-history tbody tr")
    assert rows.count() == target.tier_changes.count() >= 2
    assert page.locator("#account-tier").inner_text() == target.tier.name  # type: ignore[union-attr]
    assert page.locator("#tier-timeline circle").count() == rows.count()

    page.click("text=Log out")
    page.wait_for_url("**/login/")
