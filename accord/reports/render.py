"""A report in its three formats: HTML (a page of its own, also the staff page's body), PDF (WeasyPrint, from
the same HTML and the same SVG charts) and CSV (one row per objective and per breach).

Every format is byte-stable: built twice from the same data, it is the same bytes. Nothing of "now" goes in
(the provisional mark says the period had not ended, not when it was built), the PDF's dates are fixed to the
period's end and its identifier derives from the content.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from typing import Any

from django.template.loader import render_to_string

from accord.agreements.models import MaintenanceWindow
from accord.gateway.snapshot import account_key
from accord.lib import units
from accord.lib.csvio import escape_cell
from accord.lib.units import json_number

from . import charts
from .builder import NO_DATA, Report, SupportRow, percent_label

CSV_COLUMNS = ["account", "period", "provisional", "row", "agreement", "terms_from", "terms_to", "objective",
               "kind", "target", "attained", "valid_events", "bad_events", "budget_used", "met", "day",
               "credit_percent", "credit_amount", "currency"]


def minutes_within(window: MaintenanceWindow, start: dt.datetime, end: dt.datetime) -> int:
    """The whole minutes of a maintenance window inside [start, end): the minutes left out of the part."""
    seconds = (min(window.end, end) - max(window.start, start)).total_seconds()
    return max(0, int(seconds // 60))


def _minutes(value: float | None) -> str:
    return units.minutes(value, largest="h") if value is not None else units.MISSING


def support_rows(rows: list[SupportRow]) -> list[dict[str, str]]:
    return [{
        "key": r.key,
        "first_response": SupportRow.share(r.first_response_met, r.first_response_judged),
        "first_response_n": str(r.first_response_judged),
        "first_response_median": _minutes(SupportRow.median(r.first_response_minutes)),
        "first_response_p90": _minutes(SupportRow.p90(r.first_response_minutes)),
        "resolution": SupportRow.share(r.resolution_met, r.resolution_judged),
        "resolution_n": str(r.resolution_judged),
        "resolution_median": _minutes(SupportRow.median(r.resolution_minutes)),
        "resolution_p90": _minutes(SupportRow.p90(r.resolution_minutes)),
    } for r in rows]


def context(report: Report, *, version: int | None = None, charts_on: bool = True,
            printed: bool = False) -> dict[str, Any]:
    """Everything the templates show, as text: the HTML page, the staff page and the PDF read the same."""
    parts = []
    for part in report.parts:
        credits = {id(c.result): c for c in part.credits}
        objectives = []
        for r in part.objectives:
            credit = credits.get(id(r))
            objectives.append({
                "name": r.objective.name, "kind": r.kind, "target": r.objective.target_label(),
                "attained": r.attained_label(), "valid": units.number(r.valid), "bad": units.number(r.bad),
                "budget_used": units.share(r.budget_used, 1) if r.budget_used is not None else NO_DATA,
                "met": "no data" if r.met is None else ("met" if r.met else "missed"),
                "credit": (f"{units.percent(credit.percent)}: {units.money(credit.amount, credit.currency)}"
                           + (f" ({credit.note})" if credit.note else "")) if credit else "",
                "breaches": [{"day": d.day.isoformat(), "valid": units.number(d.valid), "bad": units.number(d.bad),
                              "attained": percent_label(r.attained_of(d), worse_up=r.kind == "error_rate")}
                             for d in r.breaches()],
                "attainment_chart": charts.attainment(r, printed=printed) if charts_on and r.days else "",
                "burn_chart": charts.burn_down(r, printed=printed) if charts_on and r.days and r.allowed else "",
            })
        agreement = part.agreement
        parts.append({
            "agreement": agreement.name if agreement else None,
            "title": (agreement.title or agreement.name) if agreement else "",
            "from": part.first_day.isoformat(), "to": part.last_day.isoformat(),
            "whole": part.share == 1, "objectives": objectives,
            "maintenance": [{"start": units.instant(w.start, "UTC"), "end": units.instant(w.end, "UTC"),
                             "minutes": units.number(minutes_within(w, part.start, part.end)),
                             "reason": w.reason} for w in part.maintenance],
        })
    return {
        "account": report.account, "account_key": account_key(report.account.external_id, report.account.pk),
        "period": report.period, "provisional": report.provisional, "version": version, "parts": parts,
        "credit_total": [units.money(v, c) for c, v in report.credit_total.items()] or [units.money(0)],
        "support_by_priority": support_rows(report.support_by_priority),
        "support_by_channel": support_rows(report.support_by_channel),
        "support_by_team": support_rows(report.support_by_team),
        "support_breaches": [{**b, "target": units.minutes(b["target_minutes"], largest="h"),
                              "breached": units.instant(b["breached_at"], "UTC")} for b in report.support_breaches],
        "activations": [{**a, "when": units.instant(a["at"], "UTC")} for a in report.activations],
        "partners": [{"partner": p.partner, "service": p.service, "promised": units.percent(p.promised),
                      "measured": percent_label(p.measured) if p.measured is not None else NO_DATA,
                      "kept": None if p.measured is None else p.measured >= p.promised}
                     for p in report.partners],
        "composites": [{"service": c["service"],
                        "serial": percent_label(c["partners_serial"]) if c["partners_serial"] is not None else "",
                        "parallel": percent_label(c["pools_parallel"]) if c["pools_parallel"] is not None else ""}
                       for c in report.composites],
    }


def html(report: Report, *, version: int | None = None) -> bytes:
    """The report as a page of its own (its CSS inline, no asset to fetch)."""
    return render_to_string("reports/document.html", context(report, version=version)).encode()


def print_document(report: Report, *, version: int | None = None) -> bytes:
    """The page WeasyPrint prints: the same body as the HTML page, under a stylesheet made for print
    (`printing.PRINT_CSS`: fixed table layout, one font, few rules: WeasyPrint's time grows with each) and the
    same charts drawn for print (no hover titles, axis labels as HTML over the drawing)."""
    return render_to_string("reports/print.html", context(report, version=version, printed=True)).encode()


def pdf(report: Report, *, version: int | None = None) -> bytes:
    """The report printed by WeasyPrint, with fixed dates (the period's end) and an identifier from the content,
    so the same report is the same bytes. ImportError when WeasyPrint (or Pango) is missing."""
    from . import printing  # WeasyPrint, set up once per process and thread

    source = print_document(report, version=version)
    stamp = report.period.end.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    rendered = printing.render(source.decode())
    rendered.metadata.created = rendered.metadata.modified = stamp
    rendered.metadata.title = f"Service report {account_key(report.account.external_id, report.account.pk)} " \
                              f"{report.period.label}"
    identifier = hashlib.sha256(source).hexdigest()[:32].encode()
    return bytes(rendered.write_pdf(pdf_identifier=identifier))


def csv_rows(report: Report) -> list[list[str]]:
    """One row per objective and per breach (a day that spent more than its share, or a support clock)."""
    key = account_key(report.account.external_id, report.account.pk)
    base = [key, report.period.label, "yes" if report.provisional else "no"]
    out = []
    for part in report.parts:
        name = part.agreement.name if part.agreement else ""
        credits = {id(c.result): c for c in part.credits}
        for r in part.objectives:
            c = credits.get(id(r))
            attained = json_number(r.attained) if r.kind != "latency" else json_number(r.percentile_ms)
            used = json_number(r.budget_used)
            out.append([*base, "objective", name, part.first_day.isoformat(), part.last_day.isoformat(),
                        r.objective.name, r.kind, str(json_number(r.objective.target)),
                        NO_DATA if r.attained is None else str(attained), str(r.valid), str(r.bad),
                        "" if used is None else str(used), "" if r.met is None else ("yes" if r.met else "no"), "",
                        str(c.percent) if c else "", str(c.amount) if c else "", c.currency if c else ""])
            for d in r.breaches():
                out.append([*base, "breach", name, part.first_day.isoformat(), part.last_day.isoformat(),
                            r.objective.name, r.kind, str(json_number(r.objective.target)),
                            str(json_number(r.attained_of(d))), str(d.valid), str(d.bad), "", "no",
                            d.day.isoformat(), "", "", ""])
    for b in report.support_breaches:
        out.append([*base, "breach", "", "", "", f"ticket {b['ticket']}", b["kind"],
                    str(json_number(b["target_minutes"])),
                    "", "", "", "", "no", b["breached_at"].date().isoformat(), "", "", ""])
    return out


def write_csv(rows: list[list[str]], header: bool = True) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([escape_cell(v) for v in r])
    return buffer.getvalue().encode()


def csv_bytes(report: Report) -> bytes:
    return write_csv(csv_rows(report))


def as_dict(report: Report) -> dict[str, Any]:
    """The report as JSON (the API): exact shares as the nearest float, "no data" as null."""
    parts = []
    for part in report.parts:
        credits = {id(c.result): c for c in part.credits}
        objectives = []
        for r in part.objectives:
            c = credits.get(id(r))
            objectives.append({
                "objective": r.objective.name, "kind": r.kind, "target": json_number(r.objective.target),
                "attained": json_number(r.attained), "percentile_ms": r.percentile_ms,
                "valid_events": r.valid, "bad_events": r.bad, "budget_used": json_number(r.budget_used),
                "met": r.met, "breaches": [d.day.isoformat() for d in r.breaches()],
                "credit": None if c is None else {"percent": json_number(c.percent), "amount": str(c.amount),
                                                  "currency": c.currency, "note": c.note},
            })
        parts.append({"agreement": part.agreement.name if part.agreement else None,
                      "from": part.first_day.isoformat(), "to": part.last_day.isoformat(),
                      "objectives": objectives,
                      "maintenance": [{"start": w.start.isoformat(), "end": w.end.isoformat(), "reason": w.reason,
                                       "declared_at": w.declared_at.isoformat(),
                                       "minutes": minutes_within(w, part.start, part.end)}
                                      for w in part.maintenance]})
    return {
        "account": account_key(report.account.external_id, report.account.pk), "period": report.period.label,
        "provisional": report.provisional, "parts": parts,
        "credit_total": {c: str(v) for c, v in report.credit_total.items()},
        "support": {"by_priority": support_rows(report.support_by_priority),
                    "by_channel": support_rows(report.support_by_channel),
                    "by_team": support_rows(report.support_by_team),
                    "breaches": [{"ticket": b["ticket"], "kind": b["kind"], "url": b["url"]}
                                 for b in report.support_breaches]},
        "partners": [{"partner": p.partner, "service": p.service, "promised": json_number(p.promised),
                      "measured": json_number(p.measured)} for p in report.partners],
        "activations": [{"at": a["at"].isoformat(), "policy": a["subject"], "reason": a["reason"]}
                        for a in report.activations],
    }
