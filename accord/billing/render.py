"""An invoice (or credit note) as data, CSV, HTML (the page body and a standalone document) and PDF.

The PDF is the reports' WeasyPrint set-up (`accord.reports.printing`) printing the standalone HTML: one print
stylesheet and font configuration per process for reports and invoices alike.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from django.template.loader import render_to_string

from accord.lib.units import money

from .models import Invoice
from .usage import account_key


def invoice_dict(inv: Invoice) -> dict[str, Any]:
    """JSON: amounts and quantities as exact decimal strings."""
    return {
        "id": inv.pk, "number": inv.number, "kind": inv.kind, "status": inv.status,
        "account": account_key(inv.account.external_id, inv.account.pk), "period": inv.period,
        "currency": inv.currency, "total": f"{inv.total:.2f}", "net_total": f"{inv.net_total():.2f}",
        "plans": inv.plan_names, "invoice": inv.invoice_id,
        "credit_notes": [n.pk for n in inv.credit_notes.all()],
        "finalised_at": inv.finalised_at.isoformat() if inv.finalised_at else None,
        "paid_at": inv.paid_at.isoformat() if inv.paid_at else None,
        "voided_at": inv.voided_at.isoformat() if inv.voided_at else None,
        "lines": [{"description": x.description, "meter": x.meter.name if x.meter else None,
                   "for_period": x.for_period, "quantity": f"{x.quantity.normalize():f}",
                   "unit_price": None if x.unit_price is None else f"{x.unit_price.normalize():f}",
                   "amount": f"{x.amount:.2f}"} for x in inv.lines.select_related("meter")],
    }


def csv_bytes(inv: Invoice) -> bytes:
    """One row per line, with the document's number, account and period on each."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(["number", "kind", "status", "account", "period", "for_period", "description", "meter", "quantity",
                "unit_price", "amount", "currency"])
    d = invoice_dict(inv)
    for x in d["lines"]:
        w.writerow([d["number"] or "", d["kind"], d["status"], d["account"], d["period"], x["for_period"],
                    x["description"], x["meter"] or "", x["quantity"], x["unit_price"] or "", x["amount"],
                    d["currency"]])
    w.writerow([d["number"] or "", d["kind"], d["status"], d["account"], d["period"], "", "total", "", "", "",
                d["total"], d["currency"]])
    return out.getvalue().encode()


def context(inv: Invoice) -> dict[str, Any]:
    notes = list(inv.credit_notes.exclude(status=Invoice.Status.VOID))
    return {"invoice": inv, "lines": list(inv.lines.select_related("meter")), "notes": notes,
            "total": money(inv.total, inv.currency),
            "net": money(inv.net_total(), inv.currency) if inv.kind == Invoice.Kind.INVOICE else None}


def html(inv: Invoice) -> bytes:
    """A standalone document (the PDF prints it)."""
    return render_to_string("billing/document.html", context(inv)).encode()


def pdf(inv: Invoice) -> bytes:
    """ImportError (or OSError) when WeasyPrint or Pango is missing: check `pdf_available()` first."""
    from accord.reports import printing

    rendered = printing.render(html(inv).decode())
    rendered.metadata.title = f"{inv.get_kind_display().capitalize()} {inv.number or 'draft'} {inv.period}"
    return bytes(rendered.write_pdf())
