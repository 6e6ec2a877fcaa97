"""In a browser (Debian's Chromium): no staff page is wider than the window at 1280 and 375 px (wide tables scroll
in their own labelled box), and the SLA pages (dashboard, account, agreement) have no axe violation at all."""

from __future__ import annotations

import datetime as dt
import os
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from accord.agreements.models import Agreement
from accord.customers.models import Account
from accord.desk.models import Ticket
from accord.governance.tests.rollups import add_rollup

from .test_accessibility import staff_pages

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser]


def add_traffic() -> None:
    """Rollups for three accounts of the first tier agreement's tier, so the SLA charts draw bars."""
    agreement = Agreement.objects.filter(tier__isnull=False, simulated=False).order_by("tier__rank").first()
    assert agreement and agreement.tier
    minute = timezone.now() - dt.timedelta(minutes=90)
    service = agreement.objectives.filter(service__isnull=False).values_list("service__name", flat=True).first()
    for i, acct in enumerate(Account.objects.filter(tier=agreement.tier).order_by("pk")[:3]):
        add_rollup(minute, count=1000, errors=i * 4, account=acct.external_id or str(acct.pk),
                   tier=agreement.tier.name, service=service or "booking")


# The innermost elements that reach past the window's right edge, to start the fix from.
WIDEST = """() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1
  && ![...e.children].some(c => c.getBoundingClientRect().right > innerWidth + 1)).slice(0, 4)
  .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string'
  ? '.' + e.className.split(' ').join('.') : '') + ' ' + Math.round(e.getBoundingClientRect().right))"""


def sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_no_staff_page_is_wider_than_the_window(live_server: Any, browser: Any) -> None:
    call_command("seed-demo", "--accounts", "40", stdout=StringIO())
    add_traffic()
    base = live_server.url
    too_wide = []
    for width in (1280, 375):
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        sign_in(page, base)
        for name, path in staff_pages(base).items():
            page.goto(f"{base}{path}")
            scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            if scroll > inner:
                culprits = page.evaluate(WIDEST)
                too_wide.append(f"{name} at {width} px: {scroll} > {inner}: {culprits}")
        context.close()
    assert not too_wide, "pages wider than the window:\n" + "\n".join(too_wide)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_sla_pages_have_no_accessibility_violation(live_server: Any, page: Any, axe: Any) -> None:
    call_command("seed-demo", "--accounts", "40", stdout=StringIO())
    add_traffic()
    base = live_server.url
    sign_in(page, base)
    account = Account.objects.filter(tickets__isnull=False, tier__isnull=False).order_by("pk").first()
    agreement = Agreement.objects.filter(tier__isnull=False, simulated=False).order_by("tier__rank").first()
    assert account and agreement and Ticket.objects.exists()
    reports = []
    for path in ("/", f"/accounts/{account.pk}/", f"/agreements/{agreement.pk}/"):
        page.goto(f"{base}{path}")
        assert page.locator("#sla-attainment, #sla").count() >= 1, path
        found = axe.run(page)  # every impact, not only critical and serious
        if found:
            reports.append(axe.describe(path, found))
    page.goto(f"{base}/agreements/{agreement.pk}/")
    assert page.locator("#sla-agreement-chart g.bar").count() >= 1
    assert not reports, "\n".join(reports)
