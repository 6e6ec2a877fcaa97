"""The insight pages in a real headless Chromium, on the demo company (the `page` fixture: top-level conftest.py)."""

from __future__ import annotations

import datetime as dt
import os
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from accord.customers.models import Account
from accord.insight import recommend, touchpoints
from accord.insight.models import AccountValue, ClvFit, HealthScore, OrderLine, Topic
from accord.insight.pareto import pareto

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def check_touchpoints(page: Any, prefix: str, account_id: int | None) -> None:
    """The touchpoint block of a page: the volume chart equals its table, the channels, the timely-response rate,
    the who-with-whom graph equals its table; all as the touchpoint functions compute them."""
    weeks = page.locator(f"#{prefix}-weeks tbody tr")
    assert weeks.count() == 12
    total_in = sum(int(weeks.nth(i).locator("td").nth(1).inner_text()) for i in range(12))
    total_out = sum(int(weeks.nth(i).locator("td").nth(2).inner_text()) for i in range(12))
    bars = page.locator(f"#{prefix}-volume-chart rect.bar title").all_text_contents()
    assert len(bars) == 24  # in and out for each of the 12 weeks
    assert sum(int(t.split(": ")[1].split()[0]) for t in bars) == total_in + total_out > 0
    vol = touchpoints.volume(12, account_id)
    shown = [(row.get_attribute("data-channel"), int(row.locator("td").nth(1).inner_text()),
              int(row.locator("td").nth(2).inner_text())) for row in page.locator(f"#{prefix}-channels tbody tr").all()]
    assert shown == [(c, i, o) for c, _label, i, o in vol.by_channel()]
    assert sum(i for _c, i, _o in shown) == total_in and sum(o for _c, _i, o in shown) == total_out
    rate = touchpoints.timeliness(timezone.now() - dt.timedelta(weeks=12), account_id)
    text = page.locator(f"#{prefix}-timeliness").inner_text()
    assert (f"{rate.percent}% ({rate.met} met, {rate.breached} breached)" in text) if rate.percent is not None \
        else "no response clock has finished yet" in text
    edges = page.locator(f"#{prefix}-edges tbody tr:has(td.num)")  # not the row saying there are none
    lines = page.locator(f"#{prefix}-graph line.edge")
    assert lines.count() == edges.count() == len(touchpoints.graph(timezone.now() - dt.timedelta(weeks=12),
                                                                    account_id).edges) > 0
    first = edges.first.locator("td")
    assert page.locator(f"#{prefix}-graph line.edge[data-contact='{first.nth(0).inner_text()}']"
                        f"[data-agent='{first.nth(1).inner_text()}']").count() == 1


def login(page: Any, url: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("#id_username", "demo")
    page.fill("#id_password", "demo")
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def test_the_account_page_has_an_orders_and_insight_tab_with_every_item(live_server: Any, page: Any) -> None:
    call_command("seed-demo", "--accounts", "80", stdout=StringIO())
    fit = ClvFit.objects.get()
    # An account that bought again and talked with agents: every block of its page has something to show.
    talked = {t.account_id for t in touchpoints.touches(timezone.now() - dt.timedelta(weeks=12)) if t.agent and t.contacts}
    value = AccountValue.objects.filter(fit=fit, repeat_purchases__gte=1, account__in=talked).order_by("-clv").first()
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
    check_touchpoints(page, "account", account.pk)
    topics = touchpoints.topics_of(account.pk)
    assert [r.inner_text().split("\t")[0] for r in page.locator("#account-topics tbody tr").all()] == \
        [t.name for t, _n in topics] and topics
    bars = page.locator("#account-topics-chart g.hbar")
    assert [bars.nth(i).get_attribute("data-label") for i in range(bars.count())] == [t.name for t, _n in topics]
    offers = page.locator("#offer-table tbody tr")
    assert offers.count() >= 1
    bought = set(OrderLine.objects.filter(account=account).values_list("sku", flat=True))
    first = offers.first.locator("td").first.inner_text()
    assert first not in bought
    # An account with one purchase only: its value per purchase is the prior's, and the page flags it.
    single = AccountValue.objects.filter(fit=fit, prior_only=True).first()
    assert single is not None and single.repeat_purchases == 0
    page.goto(f"{live_server.url}/insight/accounts/{single.account_id}/")
    assert "one purchase only" in page.locator("#prior-only").inner_text()
    assert page.locator("#clv").inner_text() == f"{single.clv:,.2f} EUR"


def test_the_insight_dashboard_shows_value_80_20_touchpoints_topics_health_and_recommendations(
    live_server: Any, page: Any
) -> None:
    call_command("seed-demo", "--accounts", "80", stdout=StringIO())
    login(page, live_server.url)
    page.click("header.top nav >> text=Insight")
    page.wait_for_selector("#pareto-chart")
    fit = ClvFit.objects.get()
    params = page.locator("#fit-params").inner_text()
    assert f"r = {fit.bgnbd['r']:.4f}" in params and f"p = {fit.gamma_gamma['p']:.4f}" in params
    flagged = AccountValue.objects.filter(fit=fit, prior_only=True).count()
    assert flagged > 0 and f"{flagged} account{'s' if flagged > 1 else ''} with one purchase only" in params
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
    check_touchpoints(page, "all", None)
    clients = page.locator("#top-clients tbody tr")
    assert 0 < clients.count() <= 10
    first_client = clients.first.locator("td")
    assert first_client.count() == 3 + 12  # name, in, out, then in / out for each of the 12 weeks
    top = touchpoints.volume(12).top(10)  # top clients first: the most touchpoints in and out
    assert [r.locator("td").first.inner_text() for r in clients.all()] == \
        [Account.objects.get(pk=pk).name for pk, _i, _o in top]
    assert page.locator("#topic-table tbody tr").count() == Topic.objects.count() > 0
    assert page.locator("#topics-chart g.hbar").count() == Topic.objects.count()
    assert page.locator("#lowest-health tbody tr").count() == 10
    buckets = page.locator("#health-buckets tbody tr")
    assert sum(int(buckets.nth(i).locator("td").nth(1).inner_text()) for i in range(5)) == Account.objects.count()
    evaluation = page.locator("#evaluation tbody tr")
    assert evaluation.count() == 2
    e = recommend.evaluate()
    bars = page.locator("#evaluation-chart rect.bar title").all_text_contents()
    assert bars == [f"precision@5: {e.precision:.3f} bought together",
                    f"precision@5: {e.baseline_precision:.3f} most popular (baseline)",
                    f"recall@5: {e.recall:.3f} bought together", f"recall@5: {e.baseline_recall:.3f} most popular (baseline)"]
    assert evaluation.first.locator("td").nth(1).inner_text() == f"{e.precision:.3f}"
    # Keyboard: the section links are reachable and visibly focused.
    page.focus("nav.sections a[href='#pareto']")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
