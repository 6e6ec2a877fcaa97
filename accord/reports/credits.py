"""The service-credit ledger: computed -> approved (finance) -> applied, or rejected with a reason.

`compute` judges each account's period (`builder.build`) and records one `Credit` per availability objective and
part of the period that earns one. Recomputing refreshes credits still `computed` (late data) and never touches
one finance has decided on. Every step is a `CreditStep` (who, when, why). The customer's claim window (the
schedule's `claim_days` after the period's end, else the end of the next month) is enforced: no credit is
computed, approved or applied once it has passed.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from accord.agreements.models import CreditSchedule
from accord.customers.models import Account
from accord.gateway.snapshot import account_key
from accord.lib.units import json_number

from .builder import CreditLine, Part, build
from .models import Credit, CreditStep
from .periods import Period


class CreditError(Exception):
    """A ledger step that is not allowed (wrong status, claim window passed, no reason)."""


def claim_until(part: Part, period: Period) -> dt.datetime:
    schedule = CreditSchedule.objects.filter(agreement=part.agreement).first()
    if schedule is not None and schedule.claim_days:
        return period.end + dt.timedelta(days=schedule.claim_days)
    return period.next_month_end()


def _step(credit: Credit, status: str, actor: str, at: dt.datetime, note: str = "") -> None:
    CreditStep.objects.create(credit=credit, status=status, actor=actor, at=at, note=note)


@transaction.atomic
def record(account: Account, period: Period, parts: list[Part], now: dt.datetime, actor: str) -> list[Credit]:
    """Store the credits of a built report: a new row per credit owed, computed rows refreshed; decided rows and
    credits whose claim window has passed stay as they are. Returns the account's credits for the period."""
    for part in parts:
        if part.agreement is None:
            continue
        deadline = claim_until(part, period)
        for line in part.credits:
            existing = Credit.objects.filter(account=account, agreement=part.agreement,
                                             objective=line.result.objective.name, start=part.start).first()
            if now >= deadline or (existing is not None and existing.status != Credit.Status.COMPUTED):
                continue
            values = _values(line, period, part, deadline, now)
            if existing is None:
                if line.amount <= 0:
                    continue
                credit = Credit.objects.create(account=account, agreement=part.agreement,
                                               objective=line.result.objective.name, start=part.start, **values)
                _step(credit, Credit.Status.COMPUTED, actor, now, f"{line.percent} % of the fee")
            elif line.amount <= 0:  # late data brought it back above every band
                _step(existing, Credit.Status.REJECTED, actor, now, "recomputed: no credit owed")
                existing.status, existing.reason = Credit.Status.REJECTED, "recomputed: no credit owed"
                existing.save(update_fields=["status", "reason"])
            elif any(getattr(existing, k) != v for k, v in values.items() if k != "computed_at"):
                Credit.objects.filter(pk=existing.pk).update(**values)
                _step(existing, Credit.Status.COMPUTED, actor, now, f"recomputed: {line.percent} % of the fee")
    return list(Credit.objects.filter(account=account, period=period.label))


def _values(line: CreditLine, period: Period, part: Part, deadline: dt.datetime, now: dt.datetime) -> dict[str, Any]:
    r = line.result
    return {"period": period.label, "end": part.end if part.end > part.start else part.start,
            "target": r.objective.target, "valid_events": r.valid, "bad_events": r.bad, "percent": line.percent,
            "amount": line.amount, "currency": line.currency, "claim_until": deadline, "computed_at": now}


def compute(accounts: list[Account], period: Period, *, now: dt.datetime | None = None, actor: str = "accord",
            store: bool = True) -> list[dict[str, Any]]:
    """The credit of every availability objective of these accounts for the period, as JSON rows (the fields of
    `accord credits compute --json`); stored in the ledger when `store`. A row without a credit has status
    "none" (no band reached, or no data)."""
    now = now or timezone.now()
    rows = []
    for account in accounts:
        report = build(account, period, now)
        stored: dict[tuple[int | None, str, dt.datetime], Credit] = {(c.agreement_id, c.objective, c.start): c
                  for c in (record(account, period, report.parts, now, actor) if store else [])}
        for part in report.parts:
            for line in part.credits:
                credit = stored.get((part.agreement.pk if part.agreement else None, line.result.objective.name,
                                     part.start))
                rows.append(row(account, part, line, credit))
    return rows


def row(account: Account, part: Part, line: CreditLine, credit: Credit | None) -> dict[str, Any]:
    r = line.result
    return {
        "account": account_key(account.external_id, account.pk),
        "agreement": part.agreement.name if part.agreement else None,
        "objective": r.objective.name,
        "target": json_number(r.objective.target),
        "attained": json_number(r.attained),
        "valid_events": r.valid, "bad_events": r.bad,
        "percent": json_number(line.percent),
        "amount": str(line.amount), "currency": line.currency,
        "status": credit.status if credit else "none",
    }


def credit_dict(credit: Credit) -> dict[str, Any]:
    """A ledger row with its audit trail, for the API and `accord credits list --json`."""
    return {
        "id": credit.pk, "account": account_key(credit.account.external_id, credit.account.pk),
        "agreement": credit.agreement.name, "objective": credit.objective, "period": credit.period,
        "from": credit.start.isoformat(), "to": credit.end.isoformat(), "target": json_number(credit.target),
        "valid_events": credit.valid_events, "bad_events": credit.bad_events,
        "percent": json_number(credit.percent), "amount": str(credit.amount), "currency": credit.currency,
        "status": credit.status, "reason": credit.reason, "claim_until": credit.claim_until.isoformat(),
        "steps": [{"status": s.status, "actor": s.actor, "at": s.at.isoformat(), "note": s.note}
                  for s in credit.steps.all()],
    }


ALLOWED = {
    Credit.Status.APPROVED: {Credit.Status.COMPUTED},
    Credit.Status.REJECTED: {Credit.Status.COMPUTED, Credit.Status.APPROVED},
    Credit.Status.APPLIED: {Credit.Status.APPROVED},
}


@transaction.atomic
def decide(credit_id: int, status: str, actor: str, reason: str = "", now: dt.datetime | None = None) -> Credit:
    """Move a credit on: approve (computed), reject with a reason (computed or approved), apply (approved).
    CreditError if the step is not allowed; the row is locked so two finance users cannot both decide."""
    now = now or timezone.now()
    credit = Credit.objects.select_for_update().filter(pk=credit_id).first()
    if credit is None:
        raise CreditError(f"no credit {credit_id}")
    if status not in ALLOWED:
        raise CreditError(f"{status!r} is not a step (approve, reject, apply)")
    if credit.status not in ALLOWED[Credit.Status(status)]:
        raise CreditError(f"credit {credit_id} is {credit.status}: it cannot be {status}")
    reason = reason.strip()
    if status == Credit.Status.REJECTED and not reason:
        raise CreditError("a rejection needs a reason")
    if status != Credit.Status.REJECTED and now >= credit.claim_until:
        raise CreditError(f"credit {credit_id}: the claim window ended {credit.claim_until.isoformat()}")
    credit.status = status
    if status == Credit.Status.REJECTED:
        credit.reason = reason
    credit.save(update_fields=["status", "reason"])
    _step(credit, status, actor, now, reason)
    return credit


def total(rows: list[dict[str, Any]]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for r in rows:
        out[r["currency"]] = out.get(r["currency"], Decimal(0)) + Decimal(r["amount"])
    return out
