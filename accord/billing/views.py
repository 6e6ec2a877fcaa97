"""The staff pages: a month's invoices, and one invoice (HTML, CSV, PDF) with its steps for finance."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accord.lib.views import needs, staff_required
from accord.reports.freeze import pdf_available

from . import render as formats
from .actions import do_finalise, do_mark_paid, do_void
from .invoicing import BillingError, month_days, previous_month
from .models import Invoice

CHANGE = "billing.change_invoice"


@staff_required
@needs("billing.view_invoice")
def index(request: HttpRequest) -> HttpResponse:
    period = request.GET.get("period") or previous_month(timezone.localtime().strftime("%Y-%m"))
    error = ""
    try:
        month_days(period)
    except ValueError as e:
        error, period = str(e), previous_month(timezone.localtime().strftime("%Y-%m"))
    invoices = Invoice.objects.filter(period=period).select_related("account")
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for inv in invoices:
        if inv.status != Invoice.Status.VOID:
            totals[inv.currency] += -inv.total if inv.kind == Invoice.Kind.CREDIT_NOTE else inv.total
    return render(request, "billing/index.html", {"period": period, "error": error, "invoices": invoices,
                                                  "totals": sorted(totals.items())})


@staff_required
@needs("billing.view_invoice")
def invoice(request: HttpRequest, pk: int) -> HttpResponse:
    inv = get_object_or_404(Invoice.objects.select_related("account", "invoice"), pk=pk)
    output = request.GET.get("output", "")
    if output in ("csv", "html", "pdf"):
        if output == "pdf" and not pdf_available():
            return HttpResponse("PDF output needs WeasyPrint (with Pango) on the server", status=503,
                                content_type="text/plain")
        data = {"csv": formats.csv_bytes, "html": formats.html, "pdf": formats.pdf}[output](inv)
        kind = {"csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8", "pdf": "application/pdf"}
        response = HttpResponse(data, content_type=kind[output])
        response["Content-Disposition"] = f'attachment; filename="{inv.number or f"draft-{inv.pk}"}.{output}"'
        return response
    return render(request, "billing/invoice.html", {**formats.context(inv), "pdf": pdf_available(),
                                                    "can_change": request.user.has_perm(CHANGE)})


@staff_required
@needs("billing.view_invoice", CHANGE)
@require_POST
def step(request: HttpRequest, pk: int) -> HttpResponse:
    steps = {"finalise": lambda: do_finalise(pk, request.user.get_username()), "pay": lambda: do_mark_paid(pk),
             "void": lambda: do_void(pk)}
    chosen = steps.get(request.POST.get("step", ""))
    if chosen is None:
        messages.error(request, "choose finalise, pay or void")
    else:
        try:
            chosen()
            messages.success(request, f"invoice {pk}: {Invoice.objects.get(pk=pk).status}")
        except BillingError as e:
            messages.error(request, str(e))
    return redirect(reverse("billing:invoice", args=[pk]))
