"""The SLA on the staff pages: the dashboard's, an account's and an agreement's (figures: reports/attainment.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import F

from accord.agreements.models import Agreement
from accord.customers.models import Account
from accord.desk.models import Ticket
from accord.lib.charts import Bar, attainment_bars
from accord.reports.attainment import account_lines, agreement_accounts, dashboard, day, month

__all__ = ["account_context", "agreement_context", "dashboard_context", "day", "month"]


def dashboard_context(now: dt.datetime) -> dict[str, Any]:
    sla = dashboard(now)
    sla["runtime_chart"] = attainment_bars("sla-runtime-chart", "Run-time objectives met this month per tier",
                                           [Bar(r.name, r.runtime.percent) for r in sla["tiers"]])
    sla["support_chart"] = attainment_bars("sla-support-chart", "Support clocks met this month per tier",
                                           [Bar(r.name, r.support.percent) for r in sla["tiers"]])
    return {"sla": sla}


def account_context(request: Any, account: Account, agreement: Agreement | None, now: dt.datetime) -> dict[str, Any]:
    from accord.reports.models import Credit

    tickets = Ticket.objects.filter(account=account)
    lines = account_lines(account, agreement, now) if agreement else []
    context: dict[str, Any] = {
        "tickets": list(tickets.select_related("assignee").order_by(
            "-is_open", F("next_due_at").asc(nulls_last=True), "-created_at", "-id")[:25]),
        "ticket_count": tickets.count(),
        "open_count": tickets.filter(is_open=True).count(),
        "lines": lines,
        "chart": attainment_bars("sla-account-chart", f"{account.name}: attainment this month per objective",
                                 [Bar(line.objective.name, line.percent, line.required) for line in lines]),
        "show_credits": request.user.has_perm("reports.view_credit"),
        "credits": [],
    }
    if context["show_credits"]:
        context["credits"] = list(Credit.objects.filter(account=account).select_related("agreement")
                                  .order_by("-period", "objective", "id")[:24])
    return {"sla": context}


ACCOUNT_ROWS = 50


def agreement_context(agreement: Agreement, now: dt.datetime) -> dict[str, Any]:
    totals, rows = agreement_accounts(agreement, now)
    # the per-account table has a column per objective that something was judged by this month
    columns = [t for t in totals if t.percent is not None] or [t for t in totals if not t.objective.is_support]
    return {"sla": {
        "totals": totals,
        "columns": [t.objective for t in columns],
        "rows": [{"row": r, "cells": [r.lines.get(t.objective.pk) for t in columns]} for r in rows[:ACCOUNT_ROWS]],
        "account_count": len(rows),
        "missing_count": sum(1 for r in rows if r.missed),
        "chart": attainment_bars("sla-agreement-chart", f"{agreement.name}: attainment this month across its "
                                 "accounts per objective",
                                 [Bar(t.objective.name, t.percent, t.required) for t in totals]),
    }}
