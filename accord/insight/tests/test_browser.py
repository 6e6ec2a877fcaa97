"""The insight pages in a real headless Chromium, on the demo company (the `page` fixture: top-level conftest.py)."""

from __future__ import annotations

import os
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from accord.customers.models import Account
from accord.insight.models import AccountValue, ClvFit, HealthScore, OrderLine, Topic
from accord.insight.pareto import pareto

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page: Any, url: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def test_the_account_page_has_an_orders_and_insight_tab_with_every_item(live_server: Any, page: Any) -> None:
    call_command("seed-demo", "--accounts", "80", stdout=StringIO())
    fit = ClvFit.objects.get()
    value = AccountValue.objects.filter(fit=fit, repeat_purchases__gte=2).order_by("-clv").first()
    assert value is not None
    account = value.account
    login(page, live_server.url)
    page.goto(f"{live_server.url}/accounts/{account.pk}/")
    page.click("#insight-tab")
    page.wait_for_selector("#order-table")
    assert page.locator("nav.tabs a[aria-current=page]").inner_text() == "Orders & insight"
    orders = OrderLine.objects.filter(account=account).values("order_id").distinct().count()
    assert page.locator("#order-table tbody tr").count() == min(orders, 100)
    assert page.locator("#orders-chart rect.bar").count() == 24  # a bar per month, its numbers in #monthly
    shown_months = page.locator("#monthly tbody tr").count()
    assert 0 < shown_months <= 24
    assert page.locator("#clv").inner_text() == f"{value.clv:,.2f} EUR"
    assert page.locator("#value-chart line.band").count() == 1
    health = HealthScore.objects.filter(account=account).latest("computed_at")
    assert page.locator("#health-score").inner_text() == str(health.score)
    assert page.locator("#health-factors tbody tr").count() == 8
    stored = {f["factor"]: f for f in health.factors}
    for name in ("sla_breaches", "credits", "ticket_volume", "order_recency", "order_frequency"):
        assert stored[name]["text"] in page.locator(f"#health-factors tr[data-factor={name}]").inner_text()
    assert page.locator("#health-text").inner_text().startswith(f"Health {health.score}/100")
    assert page.locator("#health-trend circle").count() == HealthScore.objects.filter(account=account).count()
    assert page.locator("#account-weeks tbody tr").count() == 12
    offers = page.locator("#offer-table tbody tr")
    assert offers.count() >= 1
    bought = set(OrderLine.objects.filter(account=account).values_list("sku", flat=True))
    first = offers.first.locator("td").first.inner_text()
    assert first not in bought


def test_the_insight_dashboard_shows_value_80_20_touchpoints_topics_health_and_recommendations(
    live_server: Any, page: Any
) -> None:
    call_command("seed-demo", "--accounts", "80", stdout=StringIO())
    login(page, live_server.url)
    page.click("header.top nav >> text=Insight")
    page.wait_for_selector("#pareto-chart")
    fit = ClvFit.objects.get()
    assert f"r = {fit.bgnbd['r']:.4f}" in page.locator("#fit-params").inner_text()
    assert page.locator("#clv-chart g.hbar").count() == page.locator("#top-values tbody tr").count() == 10
    p = pareto("accounts")
    assert page.locator("#pareto-chart path.curve").count() == 2
    assert page.locator("#top-revenue-share").inner_text() == f"{round(p.top_revenue_share * 100)}%"
    assert page.locator("#unprofitable tbody tr").count() == len(p.unprofitable) > 0
    assert page.locator("#deciles tbody tr").count() == 10
    weeks = page.locator("#all-weeks tbody tr")
    assert weeks.count() == 12
    total_in = sum(int(weeks.nth(i).locator("td").nth(1).inner_text()) for i in range(12))
    bars = page.locator("#all-volume-chart rect.bar[data-series^=in] title").all_text_contents()
    assert len(bars) == 12 and sum(int(t.split(": ")[1].split()[0]) for t in bars) == total_in  # chart = table
    assert total_in >= 30  # the demo desk's tickets, all within the last 12 weeks
    clients = page.locator("#top-clients tbody tr")
    assert 0 < clients.count() <= 10
    first_client = clients.first.locator("td")
    assert first_client.count() == 3 + 12  # name, in, out, then in / out for each of the 12 weeks
    assert page.locator("#topic-table tbody tr").count() == Topic.objects.count() > 0
    assert page.locator("#topics-chart g.hbar").count() == Topic.objects.count()
    assert page.locator("#lowest-health tbody tr").count() == 10
    buckets = page.locator("#health-buckets tbody tr")
    assert sum(int(buckets.nth(i).locator("td").nth(1).inner_text()) for i in range(5)) == Account.objects.count()
    evaluation = page.locator("#evaluation tbody tr")
    assert evaluation.count() == 2
    # Keyboard: the section links are reachable and visibly focused.
    page.focus("nav.sections a[href='#pareto']")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
