"""Insight's pages: the dashboard (/insight/) and an account's insight tab (/insight/accounts/<pk>/)."""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from accord.customers.models import Account
from accord.lib.views import needs, staff_required

from . import charts, health, recommend, touchpoints
from .models import AccountValue, ClvFit, HealthScore, OrderLine
from .orders import CurrencyError, base_currency, rates
from .pareto import pareto

WEEKS = 12


def _week_labels(weeks: list[dt.date]) -> list[str]:
    return [w.strftime("%d %b") for w in weeks]


def _touchpoint_context(account_id: int | None, now: dt.datetime, chart_prefix: str) -> dict[str, Any]:
    vol = touchpoints.volume(WEEKS, account_id, now)
    since = now - dt.timedelta(weeks=WEEKS)
    g = touchpoints.graph(since, account_id)
    labels = _week_labels(vol.weeks)
    return {
        "volume": vol,
        "weeks": list(zip(labels, vol.inbound, vol.outbound, strict=True)),
        "volume_chart": charts.bar_chart(
            f"{chart_prefix}-volume-chart", "Touchpoints per week, in and out", labels,
            [charts.Bars("in (from the customer)", vol.inbound, charts.IN_COLOUR),
             charts.Bars("out (to the customer)", vol.outbound, charts.OUT_COLOUR)],
            empty="No touchpoints in the last 12 weeks.", every=2,
        ),
        "timeliness": touchpoints.timeliness(since, account_id),
        "graph_chart": charts.graph_chart(f"{chart_prefix}-graph", "Who talks with whom: contacts and agents",
                                          dict(g.edges), g.contacts, g.agents),
        "edges": sorted(g.edges.items(), key=lambda e: (-e[1], e[0])),
        "topics": touchpoints.topics_of(account_id),
    }


@staff_required
@needs("insight.view_healthscore")
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    currency = base_currency()
    context: dict[str, Any] = {"currency": currency, "now": now}
    fit = ClvFit.objects.first()
    context["fit"] = fit
    if fit is not None:
        top = list(AccountValue.objects.filter(fit=fit).select_related("account").order_by("-clv")[:10])
        context["top_values"] = top
        context["clv_chart"] = charts.hbar_chart(
            "clv-chart", f"Lifetime value of the top accounts ({currency}), with 90% bands",
            [(v.account.name, float(v.clv), float(v.clv_low), float(v.clv_high)) for v in top],
            fmt=lambda v: f"{v:,.0f} {currency}",
        )
        context["flagged"] = AccountValue.objects.filter(fit=fit, prior_only=True).count()
    try:
        p = pareto("accounts", timezone.localdate(now))
    except CurrencyError as e:
        p, context["pareto_error"] = None, str(e)
    if p is not None:
        context["pareto"] = p
        context["pareto_chart"] = charts.curve_chart(
            "pareto-chart", "Cumulative share of revenue and of profit by share of accounts, best first",
            [charts.Curve("revenue", p.revenue_curve, charts.REVENUE_COLOUR),
             charts.Curve("profit (revenue - cost to serve)", p.profit_curve, charts.PROFIT_COLOUR)],
            marker=0.2,
        )
        context["deciles"] = p.deciles()
        context["unprofitable"] = p.unprofitable
    context.update(_touchpoint_context(None, now, "all"))
    vol = context["volume"]
    names = Account.objects.in_bulk([pk for pk, _i, _o in vol.top(10)])
    context["top_clients"] = [
        (names[pk], i, o, list(zip(*vol.per_account[pk], strict=True))) for pk, i, o in vol.top(10) if pk in names
    ]
    context["week_labels"] = _week_labels(vol.weeks)
    context["topics_chart"] = charts.hbar_chart(
        "topics-chart", "Tickets per topic", [(t.name, n, None, None) for t, n in context["topics"]],
        fmt=lambda v: f"{v:,.0f} tickets", empty="No topics yet: run `accord insight topics`.",
    )
    latest = HealthScore.objects.order_by("-computed_at").values_list("computed_at", flat=True).first()
    if latest is not None:
        scores = list(HealthScore.objects.filter(computed_at=latest).select_related("account").order_by("score", "id"))
        context["health_at"] = latest
        context["lowest_health"] = scores[:10]
        buckets = [0] * 5
        for s in scores:
            buckets[min(s.score // 20, 4)] += 1
        context["health_buckets"] = list(zip(["0-19", "20-39", "40-59", "60-79", "80-100"], buckets, strict=True))
        context["health_chart"] = charts.bar_chart(
            "health-chart", "Accounts by health score", [b for b, _n in context["health_buckets"]],
            [charts.Bars("accounts", buckets, charts.PROFIT_COLOUR)],
        )
    held_out = context["evaluation"] = recommend.evaluate()
    context["evaluation_chart"] = charts.bar_chart(
        "evaluation-chart", "Recommendations on held-out orders: bought together against most popular",
        [f"precision@{held_out.k}", f"recall@{held_out.k}"],
        [charts.Bars("bought together", [held_out.precision, held_out.recall], charts.IN_COLOUR),
         charts.Bars("most popular (baseline)", [held_out.baseline_precision, held_out.baseline_recall],
                     charts.OUT_COLOUR)],
        fmt=lambda v: f"{v:.3f}", empty="Not enough orders to evaluate.",
    )
    context["weights"], context["window_days"], context["weights_source"] = health.weights()
    context["labels"] = health.LABELS
    return render(request, "insight/dashboard.html", context)


def _orders_of(account: Account, limit: int = 100) -> list[dict[str, Any]]:
    """The account's latest orders with their lines and net value, newest first."""
    lines = list(OrderLine.objects.filter(account=account).order_by("-ordered_at", "order_id", "sku")[: limit * 5])
    grouped: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for line in lines:
        order = grouped.setdefault(line.order_id, {"order_id": line.order_id, "lines": [], "net": Decimal(0),
                                                   "currency": line.currency, "refunded": False, "at": line.ordered_at})
        order["lines"].append(line)
        order["net"] += line.amount
        order["refunded"] |= line.amount < 0
        if line.amount >= 0:
            order["at"] = min(order["at"], line.ordered_at)
    return sorted(grouped.values(), key=lambda o: o["at"], reverse=True)[:limit]


def _monthly(account: Account, months: int = 24) -> tuple[list[str], list[float]]:
    """Net order value per calendar month in the base currency (orders without a rate left out)."""
    table = rates()
    today = timezone.localdate()
    keys = []
    y, m = today.year, today.month
    for _ in range(months):
        keys.append((y, m))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    keys.reverse()
    totals = dict.fromkeys(keys, 0.0)
    for day, amount, currency in OrderLine.objects.filter(account=account, ordered_on__gte=dt.date(*keys[0], 1))\
            .values_list("ordered_on", "amount", "currency"):
        rate = table.get(currency)
        if rate is not None and (day.year, day.month) in totals:
            totals[(day.year, day.month)] += float(amount * rate)
    return [dt.date(y, m, 1).strftime("%b %y") for y, m in keys], [totals[k] for k in keys]


@staff_required
@needs("insight.view_healthscore")
def account(request: HttpRequest, pk: int) -> HttpResponse:
    acct = get_object_or_404(Account.objects.select_related("tier"), pk=pk)
    now = timezone.now()
    currency = base_currency()
    labels, monthly = _monthly(acct)
    fit = ClvFit.objects.first()
    value = AccountValue.objects.filter(fit=fit, account=acct).first() if fit else None
    scores = list(HealthScore.objects.filter(account=acct).order_by("-computed_at", "-id")[:24])
    latest = scores[0] if scores else None
    offers = recommend.for_accounts(only=acct.pk).get(acct.pk, [])
    context: dict[str, Any] = {
        "account": acct, "currency": currency, "orders": _orders_of(acct),
        "order_count": OrderLine.objects.filter(account=acct).values("order_id").distinct().count(),
        "monthly": list(zip(labels, monthly, strict=True)),
        "orders_chart": charts.bar_chart("orders-chart", f"Net order value per month ({currency})", labels,
                                         [charts.Bars(f"net orders ({currency})", monthly, charts.REVENUE_COLOUR)],
                                         fmt=lambda v: f"{v:,.0f}", empty="No orders in the last 24 months.", every=3),
        "fit": fit, "value": value,
        "value_chart": charts.hbar_chart(
            "value-chart", f"Lifetime value with its 90% band ({currency})",
            [("lifetime value", float(value.clv), float(value.clv_low), float(value.clv_high))] if value else [],
            fmt=lambda v: f"{v:,.0f} {currency}", empty="No lifetime value yet.",
        ),
        "health": latest, "health_text": health.describe(latest) if latest else None,
        "health_history": scores,
        "health_chart": charts.score_chart("health-trend", "Health score over time",
                                           [(s.computed_at.strftime("%Y-%m-%d"), s.score) for s in reversed(scores)]),
        "offers": offers,
    }
    context.update(_touchpoint_context(acct.pk, now, "account"))
    context["topics_chart"] = charts.hbar_chart(
        "account-topics-chart", "This account's tickets per topic", [(t.name, n, None, None) for t, n in context["topics"]],
        fmt=lambda v: f"{v:,.0f} tickets", empty="No topics for this account's tickets.",
    )
    return render(request, "insight/account.html", context)
