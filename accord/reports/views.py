"""The staff pages: reports per account (with CSV, HTML and PDF downloads) and the finance page of the credit
ledger, where a user with `reports.approve_credit` approves, rejects (with a reason) or applies credits."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accord.customers.models import Account
from accord.lib.views import needs, staff_required

from . import render as formats
from .builder import accounts_for, build
from .credits import CreditError, decide
from .freeze import pdf_available
from .models import Credit, FrozenReport
from .periods import Period, current_month, parse_period, previous_month

APPROVE = "reports.approve_credit"


class PeriodForm(forms.Form):
    period = forms.CharField(label="Period (YYYY-MM)", max_length=40, required=False)


def _period(request: HttpRequest) -> tuple[Period, PeriodForm, str]:
    form = PeriodForm(request.GET or None)
    error = ""
    if form.is_valid() and form.cleaned_data["period"]:
        try:
            return parse_period(form.cleaned_data["period"]), form, ""
        except ValueError as e:
            error = str(e)
    return previous_month(), form, error


@staff_required
@needs("reports.view_credit")
def index(request: HttpRequest) -> HttpResponse:
    period, form, error = _period(request)
    return render(request, "reports/index.html", {
        "period": period, "form": form, "error": error, "accounts": accounts_for(None),
        "closed": set(FrozenReport.objects.filter(period=period.label).values_list("account_id", flat=True)),
        "this_month": current_month().label,
    })


@staff_required
@needs("reports.view_credit")
def account(request: HttpRequest, external_id: str) -> HttpResponse:
    acc = get_object_or_404(Account.objects.select_related("tier"), external_id=external_id)
    period, form, error = _period(request)
    report = build(acc, period, timezone.now())
    output = request.GET.get("output", "")
    if output in ("csv", "html", "pdf"):
        if output == "pdf" and not pdf_available():
            return HttpResponse("PDF output needs WeasyPrint (with Pango) on the server", status=503,
                                content_type="text/plain")
        data = {"csv": formats.csv_bytes, "html": formats.html, "pdf": formats.pdf}[output](report)
        kind = {"csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8", "pdf": "application/pdf"}
        response = HttpResponse(data, content_type=kind[output])
        response["Content-Disposition"] = f'attachment; filename="{external_id}-{period.label}.{output}"'
        return response
    versions = FrozenReport.objects.filter(account=acc, period=period.label, fmt="csv").order_by("version")
    stored = set(FrozenReport.objects.filter(account=acc, period=period.label).values_list("version", "fmt"))
    closed = [(v, [f for f in FROZEN_TYPES if (v.version, f) in stored]) for v in versions]
    return render(request, "reports/account.html", {
        **formats.context(report), "form": form, "error": error, "versions": closed,
        "pdf": pdf_available(), "query": f"period={period.label}",
    })


FROZEN_TYPES = {"csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8", "pdf": "application/pdf"}


@staff_required
@needs("reports.view_credit")
def closed_version(request: HttpRequest, external_id: str, period: str, version: int, fmt: str) -> HttpResponse:
    """A closed version's file as frozen (the bytes the customer got and `accord reports verify` knows)."""
    frozen = get_object_or_404(FrozenReport, account__external_id=external_id, period=period, version=version,
                               fmt=fmt if fmt in FROZEN_TYPES else "")
    response = HttpResponse(bytes(frozen.content), content_type=FROZEN_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{external_id}-{period}-v{version}.{fmt}"'
    return response


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approved", "approve"), ("rejected", "reject"), ("applied", "apply")])
    reason = forms.CharField(label="Reason", required=False, max_length=2000)


@staff_required
@needs("reports.view_credit")
def ledger(request: HttpRequest) -> HttpResponse:
    credits = Credit.objects.select_related("account", "agreement").prefetch_related("steps")
    status = request.GET.get("status", "")
    if status in Credit.Status.values:
        credits = credits.filter(status=status)
    return render(request, "reports/ledger.html", {
        "credits": credits, "status": status, "statuses": Credit.Status.values,
        "can_decide": request.user.has_perm(APPROVE),
    })


@staff_required
@needs("reports.view_credit")
@require_POST
def decide_credit(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm(APPROVE):
        return HttpResponseForbidden("Deciding on credits needs the permission reports.approve_credit.")
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"credit {pk}: choose approve, reject or apply")
    else:
        try:
            credit = decide(pk, form.cleaned_data["decision"], request.user.get_username(),
                            form.cleaned_data["reason"])
            messages.success(request, f"credit {pk}: {credit.status}")
        except CreditError as e:
            messages.error(request, str(e))
    return redirect(reverse("reports:ledger") + f"#credit-{pk}")


