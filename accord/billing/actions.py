"""The operations that change billing state: draft a month's invoices, finalise (number), mark paid, void.

Drafting is idempotent: a run replaces the period's drafts and never touches a finalised (or paid) invoice. A
finalised invoice is immutable (`Invoice.save` refuses); what changes after it (late usage) is corrected on the
next month's invoice, and what is owed back goes on a credit note.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accord.customers.models import Account
from accord.reports.credits import CreditError, decide
from accord.reports.models import Credit

from .invoicing import Bill, BillingError, Line, PlanBook, bills, month_days, previous_month
from .models import Invoice, InvoiceLine, InvoiceSequence, Meter

SETTLED = (Invoice.Status.FINALISED, Invoice.Status.PAID)
SERIES = {Invoice.Kind.INVOICE: "INV", Invoice.Kind.CREDIT_NOTE: "CN"}
# A run measures again this many finalised months before its own and bills what changed since (late usage).
CORRECTED_MONTHS = 3


@dataclass
class RunResult:
    """What `do_run` did: for the summary line and the tests."""

    period: str
    drafted: list[Invoice] = field(default_factory=list)
    credit_notes: list[Invoice] = field(default_factory=list)
    without_plan: list[Account] = field(default_factory=list)
    skipped_finalised: list[Account] = field(default_factory=list)
    finalised: int = 0

    def totals(self) -> dict[str, Decimal]:
        """Net total (invoices less their credit notes) per currency."""
        out: dict[str, Decimal] = defaultdict(Decimal)
        for inv in self.drafted:
            out[inv.currency] += inv.total
        for note in self.credit_notes:
            out[note.currency] -= note.total
        return dict(sorted(out.items()))

    def summary(self) -> str:
        money = ", ".join(f"{v:,.2f} {c}" for c, v in self.totals().items()) or "0.00"
        line = (f"billing {self.period}: drafted {len(self.drafted)} invoices and {len(self.credit_notes)} credit "
                f"notes, total {money}; accounts without plan {len(self.without_plan)}; skipped finalised "
                f"{len(self.skipped_finalised)}")
        if self.finalised:
            line += f"; finalised {self.finalised}"
        if self.without_plan:
            shown = ", ".join(a.external_id or str(a.pk) for a in self.without_plan[:10])
            more = f" and {len(self.without_plan) - 10} more" if len(self.without_plan) > 10 else ""
            line += f" (without plan, billed at zero: {shown}{more})"
        return line


def _billed(accounts: list[int], period: str) -> dict[int, dict[str, tuple[Decimal, Decimal, str]]]:
    """Per account and line key: (quantity, amount, description) billed for `period` by settled documents, credit
    notes counting against; service credits left out (they are not usage)."""
    out: dict[int, dict[str, tuple[Decimal, Decimal, str]]] = defaultdict(dict)
    rows = (InvoiceLine.objects.filter(invoice__account_id__in=accounts, invoice__status__in=SETTLED, for_period=period)
            .exclude(key__startswith="credit:").values_list("invoice__account_id", "invoice__kind", "key", "quantity",
                                                            "amount", "description"))
    for account, kind, key, q, amount, text in rows:
        sign = -1 if kind == Invoice.Kind.CREDIT_NOTE else 1
        was = out[account].get(key, (Decimal(0), Decimal(0), text))
        out[account][key] = (was[0] + sign * q, was[1] + sign * amount, was[2])
    return out


def corrections(now: Bill, billed: dict[str, tuple[Decimal, Decimal, str]]) -> list[Line]:
    """What a settled month's bill misses, measured again now: one line per charge whose amount changed, positive
    (owed) or negative (owed back)."""
    out = []
    fresh = {line.key: line for line in now.lines}
    for key in sorted(set(fresh) | set(billed)):
        line = fresh.get(key)
        q_was, amount_was, text_was = billed.get(key, (Decimal(0), Decimal(0), ""))
        amount = (line.amount if line else Decimal(0)) - amount_was
        if amount == 0:
            continue
        q = (line.quantity if line else Decimal(0)) - q_was
        text = line.description if line else text_was
        out.append(Line(key, now.period, f"correction for {now.period}: {text}", amount, q, None,
                        line.meter_id if line else None))
    return out


def _credit_lines(accounts: list[int], period: str) -> dict[int, list[tuple[Credit, Line]]]:
    """The period's approved service credits of the reports' ledger, as credit-note lines."""
    out: dict[int, list[tuple[Credit, Line]]] = defaultdict(list)
    for c in Credit.objects.filter(account_id__in=accounts, period=period, status=Credit.Status.APPROVED) \
            .select_related("agreement"):
        out[c.account_id].append((c, Line(
            f"credit:{c.pk}", period, f"service credit: {c.agreement.name} / {c.objective}, "
                                      f"{c.percent.normalize():f} % of the fee", c.amount)))
    return out


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def do_run(period: str, accounts: QuerySet[Account] | None = None, *, finalise: bool = False,
           progress: Any = None, actor: str = "accord") -> RunResult:
    """Draft (or re-draft) the month's invoices of the accounts (all real ones by default); with `finalise`, number
    them. Usage of an earlier month that changed after its invoice was finalised is corrected here."""
    month_days(period)  # ValueError early
    result = RunResult(period)
    qs = accounts if accounts is not None else Account.objects.filter(simulated=False)
    everyone = list(qs.select_related("tier").order_by("pk"))
    if progress is not None:
        progress.reset(total=len(everyone))
    settled = set()
    for part in _chunks([a.pk for a in everyone]):
        settled |= set(Invoice.objects.filter(account_id__in=part, period=period, kind=Invoice.Kind.INVOICE,
                                              status__in=SETTLED).values_list("account_id", flat=True))
    result.skipped_finalised = [a for a in everyone if a.pk in settled]
    todo = [a for a in everyone if a.pk not in settled]
    meters = list(Meter.objects.all())
    book = PlanBook()
    current = bills(todo, period, meters, book, progress)
    if progress is not None:
        progress.update(len(result.skipped_finalised))
    fixes: dict[int, list[Line]] = defaultdict(list)
    earlier = period
    for _ in range(CORRECTED_MONTHS):
        earlier = previous_month(earlier)
        for part in _chunks([a.pk for a in todo]):
            closed = set(Invoice.objects.filter(account_id__in=part, period=earlier, kind=Invoice.Kind.INVOICE,
                                                status__in=SETTLED).values_list("account_id", flat=True))
            if closed:
                again = bills([a for a in todo if a.pk in closed], earlier, meters, book)
                billed = _billed(list(closed), earlier)
                for pk, bill in again.items():
                    fixes[pk] += corrections(bill, billed.get(pk, {}))
    credits: dict[int, list[tuple[Credit, Line]]] = {}
    for part in _chunks([a.pk for a in todo]):
        credits.update(_credit_lines(part, period))

    with transaction.atomic():
        for part in _chunks([a.pk for a in todo]):
            drafts = Invoice.objects.filter(account_id__in=part, period=period, status=Invoice.Status.DRAFT)
            InvoiceLine.objects.filter(invoice__in=drafts).delete()
            drafts.filter(kind=Invoice.Kind.CREDIT_NOTE).delete()
            drafts.delete()
        invoices: list[Invoice] = []
        notes: dict[int, list[Line]] = {}
        lines: dict[int, list[Line]] = {}
        for a in todo:
            bill = current[a.pk]
            if not bill.plans:
                result.without_plan.append(a)
            fix = fixes.get(a.pk, [])
            owed = bill.lines + [f for f in fix if f.amount > 0]
            back = [Line(f.key, f.for_period, f.description, -f.amount, -f.quantity, None, f.meter_id)
                    for f in fix if f.amount < 0] + [line for _, line in credits.get(a.pk, [])]
            invoices.append(Invoice(kind=Invoice.Kind.INVOICE, account=a, period=period, currency=bill.currency,
                                    total=sum((x.amount for x in owed), Decimal(0)), plan_names=", ".join(bill.plans)))
            lines[a.pk], notes[a.pk] = owed, back
        Invoice.objects.bulk_create(invoices, batch_size=1000)
        credit_notes = [Invoice(kind=Invoice.Kind.CREDIT_NOTE, account=inv.account, period=period,
                                currency=inv.currency, invoice=inv, plan_names=inv.plan_names,
                                total=sum((x.amount for x in notes[inv.account_id]), Decimal(0)))
                        for inv in invoices if notes[inv.account_id]]
        Invoice.objects.bulk_create(credit_notes, batch_size=1000)
        rows = [InvoiceLine(invoice=doc, position=i, key=x.key, for_period=x.for_period, meter_id=x.meter_id,
                            description=x.description[:300], quantity=x.quantity, unit_price=x.unit_price,
                            amount=x.amount)
                for doc, source in [*((inv, lines) for inv in invoices), *((cn, notes) for cn in credit_notes)]
                for i, x in enumerate(source[doc.account_id])]
        InvoiceLine.objects.bulk_create(rows, batch_size=2000)
    result.drafted, result.credit_notes = invoices, credit_notes
    if finalise:
        for inv in invoices:
            do_finalise(inv.pk, actor)
            result.finalised += 1
    return result


def _next_number(kind: str, year: int) -> str:
    """The next number of a series and year, under a row lock held until the caller's transaction ends: two
    finalisations at once wait for each other, and a rolled-back one gives its number back (no gaps)."""
    series = SERIES[Invoice.Kind(kind)]
    InvoiceSequence.objects.get_or_create(series=series, year=year)
    seq = InvoiceSequence.objects.select_for_update().get(series=series, year=year)
    seq.last += 1
    seq.save(update_fields=["last"])
    return f"{series}-{year}-{seq.last:06d}"


def do_finalise(invoice_id: int, actor: str = "accord", now: dt.datetime | None = None) -> Invoice:
    """Number a draft invoice and its draft credit note and make them immutable; the service credits netted on the
    credit note become `applied` in the reports' ledger."""
    now = now or timezone.now()
    with transaction.atomic():
        inv = Invoice.objects.select_for_update().filter(pk=invoice_id).first()
        if inv is None:
            raise BillingError(f"no invoice {invoice_id}")
        if inv.status != Invoice.Status.DRAFT:
            raise BillingError(f"{inv} is {inv.status}: only a draft can be finalised")
        docs = [inv, *Invoice.objects.select_for_update().filter(invoice=inv, status=Invoice.Status.DRAFT)]
        for doc in docs:
            doc.number = _next_number(doc.kind, now.year)
            doc.status = Invoice.Status.FINALISED
            doc.finalised_at = now
            doc.save()
            for key in doc.lines.filter(key__startswith="credit:").values_list("key", flat=True):
                try:
                    decide(int(key.split(":")[1]), Credit.Status.APPLIED, actor, f"on {doc.number}", now)
                except CreditError as e:
                    raise BillingError(f"{doc}: {e}") from None
    return inv


def _move(invoice_id: int, to: str, allowed: tuple[str, ...], stamp: str, now: dt.datetime | None) -> Invoice:
    now = now or timezone.now()
    with transaction.atomic():
        inv = Invoice.objects.select_for_update().filter(pk=invoice_id).first()
        if inv is None:
            raise BillingError(f"no invoice {invoice_id}")
        if inv.status not in allowed:
            raise BillingError(f"{inv} is {inv.status}: it cannot be marked {to}")
        docs = [inv] + (list(inv.credit_notes.filter(status=Invoice.Status.FINALISED)) if to == "void" else [])
        for doc in docs:
            doc.status = to
            setattr(doc, stamp, now)
            doc.save()
    return inv


def do_mark_paid(invoice_id: int, now: dt.datetime | None = None) -> Invoice:
    return _move(invoice_id, Invoice.Status.PAID, (Invoice.Status.FINALISED,), "paid_at", now)


def do_void(invoice_id: int, now: dt.datetime | None = None) -> Invoice:
    """Void a finalised invoice (and its credit notes): its number stays used; re-running the period drafts anew."""
    return _move(invoice_id, Invoice.Status.VOID, (Invoice.Status.FINALISED,), "voided_at", now)
