"""Staff UI views: thin, server-rendered; filtering comes from the API's FilterSets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.paginator import Paginator
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from accord.agreements.hours import WEEKDAYS
from accord.agreements.models import Agreement, CreditSchedule
from accord.catalog.models import Service
from accord.customers.filters import AccountFilterSet
from accord.customers.models import Account, Tier, TierChange
from accord.lib.views import staff_required

from . import charts


@staff_required
def dashboard(request: HttpRequest) -> HttpResponse:
    rows = list(
        Tier.objects.order_by("rank").annotate(n=Count("accounts"), revenue=Sum("accounts__revenue_12m"))
    )
    untiered = Account.objects.filter(tier__isnull=True).aggregate(n=Count("id"), revenue=Sum("revenue_12m"))
    bars = [(t.name, t.n, t.revenue or Decimal(0)) for t in rows]
    if untiered["n"]:
        bars.append(("no tier", untiered["n"], untiered["revenue"] or Decimal(0)))
    total_revenue = sum((b[2] for b in bars), Decimal(0))
    context = {
        "tier_chart": charts.tier_bars(bars, total_revenue),
        "tiers": [
            {"name": name, "accounts": n, "revenue": revenue,
             "share": (revenue / total_revenue * 100) if total_revenue else Decimal(0)}
            for name, n, revenue in bars
        ],
        "account_count": sum(b[1] for b in bars),
        "agreement_count": Agreement.objects.count(),
        "service_count": Service.objects.count(),
        "recent_changes": TierChange.objects.select_related("account", "from_tier", "to_tier")[:10],
    }
    return render(request, "web/dashboard.html", context)


@staff_required
def accounts(request: HttpRequest) -> HttpResponse:
    filterset = AccountFilterSet(request.GET, queryset=Account.objects.select_related("tier", "owner"))
    qs = filterset.qs if filterset.is_valid() else Account.objects.none()
    page = Paginator(qs.order_by("name", "id"), 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "web/accounts.html",
        {"filter": filterset, "page": page, "query": query.urlencode(), "tiers": Tier.objects.order_by("rank")},
    )


@staff_required
def account(request: HttpRequest, pk: int) -> HttpResponse:
    acct = get_object_or_404(Account.objects.select_related("tier", "owner"), pk=pk)
    today = timezone.localdate()
    history = list(acct.tier_changes.select_related("from_tier", "to_tier").order_by("at", "id"))
    context: dict[str, Any] = {
        "account": acct,
        "margin": acct.revenue_12m - acct.cost_to_serve_12m,
        "committed": acct.committed_amount(today),
        "contacts": acct.contacts.prefetch_related("points"),
        "commitments": acct.commitments.all(),
        "agreement": Agreement.for_account(acct, today),
        "credentials": acct.credentials.all(),
        "override": acct.active_override(),
        "history": list(reversed(history)),
        "history_chart": charts.tier_timeline(history, list(Tier.objects.order_by("rank")), timezone.now()),
    }
    return render(request, "web/account.html", context)


@staff_required
def agreements(request: HttpRequest) -> HttpResponse:
    rows = Agreement.objects.select_related("tier", "account", "calendar").annotate(n_objectives=Count("objectives"))
    return render(request, "web/agreements.html", {"agreements": rows.order_by("tier__rank", "name")})


@staff_required
def agreement(request: HttpRequest, pk: int) -> HttpResponse:
    ag = get_object_or_404(Agreement.objects.select_related("tier", "account", "calendar"), pk=pk)
    schedule = CreditSchedule.objects.filter(agreement=ag).first()
    hours = [(day, ag.calendar.hours.get(day, [])) for day in WEEKDAYS]
    return render(
        request,
        "web/agreement.html",
        {
            "agreement": ag,
            "objectives": ag.objectives.select_related("service", "operation"),
            "schedule": schedule,
            "bands": schedule.bands.all() if schedule else [],
            "hours": hours,
            "services": ag.services.all(),
        },
    )


@staff_required
def services(request: HttpRequest) -> HttpResponse:
    rows = Service.objects.annotate(n_operations=Count("operations", distinct=True), n_pools=Count("pools", distinct=True))
    return render(request, "web/services.html", {"services": rows})


@staff_required
def service(request: HttpRequest, pk: int) -> HttpResponse:
    svc = get_object_or_404(Service, pk=pk)
    return render(
        request,
        "web/service.html",
        {
            "service": svc,
            "operations": svc.operations.all(),
            "pools": svc.pools.prefetch_related("endpoints"),
            "partners": svc.partners.all(),
            "agreements": svc.agreements.select_related("tier", "account"),
        },
    )
