"""Staff UI views: thin, server-rendered; filtering comes from the API's FilterSets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import Count, DecimalField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from accord.agreements.hours import WEEKDAYS
from accord.agreements.models import Agreement, CreditSchedule
from accord.billing.forecasting import drawn
from accord.billing.usage import account_key
from accord.catalog.models import CredentialUsage, Pool, Service
from accord.customers import charts
from accord.customers.filters import AccountFilterSet
from accord.customers.models import Account, Tier, TierChange
from accord.lib.views import needs, staff_required

from . import sla

PAGE_SIZE = 50
# The account list's sort orders: the value in the URL, its label, and the ORM ordering.
SORTS: dict[str, tuple[str, list[Any]]] = {
    "name": ("name", ["name", "id"]),
    "revenue": ("highest revenue", ["-revenue_12m", "name", "id"]),
    "tier": ("highest tier", [Coalesce("tier__rank", Value(32767)).asc(), "name", "id"]),
}
TOP_SHARE = Decimal("0.2")


def _revenue_of_top(fraction: Decimal) -> tuple[int, Decimal, Decimal]:
    """How many real accounts make the top `fraction` by 12-month revenue, their revenue, and everyone's."""
    real = Account.objects.filter(simulated=False)
    n = real.count()
    k = max(1, int(n * fraction)) if n else 0
    money: DecimalField[Decimal, Decimal] = DecimalField(max_digits=20, decimal_places=2)
    total = real.aggregate(s=Coalesce(Sum("revenue_12m"), Value(Decimal(0)), output_field=money))["s"]
    top_ids = real.order_by("-revenue_12m", "id").values("id")[:k]
    top = Account.objects.filter(id__in=top_ids).aggregate(
        s=Coalesce(Sum("revenue_12m"), Value(Decimal(0)), output_field=money)
    )["s"]
    return k, top, total


@staff_required
@needs("customers.view_account")
def dashboard(request: HttpRequest) -> HttpResponse:
    # The business's figures: accounts a scenario made up are counted apart (and said so), never mixed in.
    real = Q(accounts__simulated=False)
    rows = list(
        Tier.objects.order_by("rank").annotate(n=Count("accounts", filter=real),
                                               revenue=Sum("accounts__revenue_12m", filter=real))
    )
    untiered = Account.objects.filter(tier__isnull=True, simulated=False).aggregate(
        n=Count("id"), revenue=Sum("revenue_12m"))
    bars = [charts.TierBar(t.name, t.n, t.revenue or Decimal(0)) for t in rows]
    if untiered["n"]:
        bars.append(charts.TierBar("no tier", untiered["n"], untiered["revenue"] or Decimal(0)))
    total_revenue = sum((b.revenue for b in bars), Decimal(0))
    account_count = sum(b.accounts for b in bars)
    top_n, top_revenue, _total = _revenue_of_top(TOP_SHARE)
    context = {
        "tier_chart": charts.tier_bars(bars),
        "tiers": [
            {
                "name": b.name, "accounts": b.accounts, "revenue": b.revenue,
                "account_share": Decimal(b.accounts * 100) / account_count if account_count else Decimal(0),
                "share": (b.revenue / total_revenue * 100) if total_revenue else Decimal(0),
            }
            for b in bars
        ],
        "total_revenue": total_revenue,
        "account_count": account_count,
        "top_n": top_n,
        "top_share": (top_revenue / total_revenue * 100) if total_revenue else None,
        "agreement_count": Agreement.objects.filter(simulated=False).count(),
        "service_count": Service.objects.filter(simulated=False).count(),
        "simulated": {"accounts": Account.objects.filter(simulated=True).count(),
                      "agreements": Agreement.objects.filter(simulated=True).count(),
                      "services": Service.objects.filter(simulated=True).count()},
        "recent_changes": TierChange.objects.select_related("account", "from_tier", "to_tier")[:10],
    }
    context.update(sla.dashboard_context(timezone.now()))
    return render(request, "web/dashboard.html", context)


def _filter_errors(filterset: AccountFilterSet) -> list[str]:
    """The filter form's errors as sentences that name the field and the value that was refused."""
    messages = []
    for name, errors in filterset.errors.items():
        field = filterset.form.fields.get(name)
        label = str(field.label) if field is not None and field.label else name
        value = filterset.data.get(name, "")
        shown = value if len(value) <= 40 else value[:40] + "…"
        for error in errors:
            messages.append(f"{label} “{shown}”: {error}" if value else f"{label}: {error}")
    return messages


@staff_required
@needs("customers.view_account")
def accounts(request: HttpRequest) -> HttpResponse:
    filterset = AccountFilterSet(request.GET, queryset=Account.objects.select_related("tier", "owner"))
    errors = _filter_errors(filterset) if not filterset.is_valid() else []
    sort = request.GET.get("sort") or "name"
    if sort not in SORTS:
        errors.append(f"Sort “{sort[:40]}” is not one of: {', '.join(SORTS)}.")
        sort = "name"
    qs: QuerySet[Account] = Account.objects.none() if errors else filterset.qs.order_by(*SORTS[sort][1])
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    filtered = any(request.GET.get(k) for k in filterset.filters)
    owners = get_user_model().objects.filter(accounts__isnull=False).distinct().order_by("username")
    return render(
        request,
        "web/accounts.html",
        {
            "filter": filterset,
            "errors": errors,
            "page": page,
            "query": query.urlencode(),
            "filtered": filtered,
            "sort": sort,
            "sorts": [(key, label) for key, (label, _order) in SORTS.items()],
            "tiers": Tier.objects.order_by("rank"),
            "kinds": Account.Kind.choices,
            "owners": owners.values_list("username", flat=True),
        },
    )


@staff_required
@needs("customers.view_account")
def account(request: HttpRequest, pk: int) -> HttpResponse:
    acct = get_object_or_404(Account.objects.select_related("tier", "owner"), pk=pk)
    today = timezone.localdate()
    history = list(acct.tier_changes.select_related("from_tier", "to_tier").order_by("at", "id"))
    margin = acct.revenue_12m - acct.cost_to_serve_12m
    context: dict[str, Any] = {
        "account": acct,
        "margin": margin,
        "margin_percent": (margin / acct.revenue_12m * 100) if acct.revenue_12m else None,
        "committed": acct.committed_amount(today),
        "today": today,
        "contacts": acct.contacts.prefetch_related("points").select_related("portal_user"),
        "commitments": acct.commitments.all(),
        "agreement": Agreement.for_account(acct, today),
        "credentials": CredentialUsage.attach_this_month(list(acct.credentials.all()),
                                   CredentialUsage.objects.filter(credential__account=acct)),
        "override": acct.active_override(),
        "history": list(reversed(history)),
        "history_chart": charts.tier_timeline(history, list(Tier.objects.order_by("rank")), timezone.now()),
        "forecasts": drawn(f"account {account_key(acct.external_id, acct.pk)}"),
    }
    context.update(sla.account_context(request, acct, context["agreement"], timezone.now()))
    return render(request, "web/account.html", context)


def _simulated_choice(request: HttpRequest) -> str:
    """The list pages' `simulated` filter: "true", "false", or "" (anything else) for all rows."""
    value = request.GET.get("simulated", "")
    return value if value in ("true", "false") else ""


@staff_required
@needs("agreements.view_agreement")
def agreements(request: HttpRequest) -> HttpResponse:
    rows = Agreement.objects.select_related("tier", "account", "calendar").annotate(n_objectives=Count("objectives"))
    simulated = _simulated_choice(request)
    if simulated:
        rows = rows.filter(simulated=simulated == "true")
    return render(request, "web/agreements.html", {"agreements": rows.order_by("tier__rank", "name"),
                                                   "simulated": simulated})


@staff_required
@needs("agreements.view_agreement")
def agreement(request: HttpRequest, pk: int) -> HttpResponse:
    ag = get_object_or_404(Agreement.objects.select_related("tier", "account", "calendar"), pk=pk)
    schedule = CreditSchedule.objects.filter(agreement=ag).first()
    bands = [{"below_percent": b.below_percent, "credit_percent": b.credit_percent,
              "amount": schedule.credit_amount(b.credit_percent)} for b in schedule.bands.all()] if schedule else []
    hours = [(day, ag.calendar.hours.get(day, [])) for day in WEEKDAYS]
    accounts_covered = Account.objects.filter(tier_id=ag.tier_id).count() if ag.tier_id else None
    return render(
        request,
        "web/agreement.html",
        {
            "agreement": ag,
            "accounts_covered": accounts_covered,
            "objectives": ag.objectives.select_related("service", "operation"),
            "schedule": schedule,
            "schedule_cap": schedule.credit_amount(schedule.cap_percent) if schedule else None,
            "bands": bands,
            "hours": hours,
            "services": ag.services.all(),
            **sla.agreement_context(ag, timezone.now()),
        },
    )


@staff_required
@needs("catalog.view_service")
def services(request: HttpRequest) -> HttpResponse:
    capacity = Pool.objects.filter(service=OuterRef("pk")).values("service").annotate(c=Sum("capacity")).values("c")
    rows = Service.objects.annotate(
        n_operations=Count("operations", distinct=True),
        n_pools=Count("pools", distinct=True),
        capacity=Subquery(capacity),
    )
    simulated = _simulated_choice(request)
    if simulated:
        rows = rows.filter(simulated=simulated == "true")
    return render(request, "web/services.html", {"services": rows.order_by("name"), "simulated": simulated})


@staff_required
@needs("catalog.view_service")
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
            "forecasts": drawn(f"service {svc.name}"),
        },
    )
