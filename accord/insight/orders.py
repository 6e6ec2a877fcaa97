"""Orders: `accord import orders FILE.csv` (docs/csv.md), and the orders as the models read them.

One row per order line; the lines of one `order_id` form the order. Lines are upserted by (order_id, sku) in one
transaction, with the same reading rules as the account import (accord/lib/csvio.py): every rejected row is
reported with its line number and a reason, and `--strict` writes nothing if any row is rejected.

A refund is a line with a negative amount on the order it refunds (with a sku of its own, e.g. `FL-1:refund`,
since (order_id, sku) names one line); the order's value is the net of its lines. A negative amount on an order
with nothing to refund is rejected, and so are refunds larger than the order.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q, Sum

from accord.customers.models import Account
from accord.lib.csvio import ImportReport, RowError, decode, progress_bar, rows
from accord.lib.db import bulk_update_rows

from .models import ExchangeRate, OrderLine

COLUMNS = ["order_id", "account", "ordered_at", "amount", "currency", "sku", "quantity"]
REQUIRED = {"order_id", "account", "ordered_at", "amount"}
CHUNK = 900  # SQLite binds at most 999 parameters per query
BATCH = 1000
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LIMIT = Decimal("1e12")


def base_currency() -> str:
    """The currency insight reports money in (settings.ACCORD_CURRENCY)."""
    return str(getattr(settings, "ACCORD_CURRENCY", "EUR"))


@dataclass
class Line:
    """A parsed row: everything stored for one order line."""

    line: int
    order_id: str
    sku: str
    account: int
    ordered_at: dt.datetime
    ordered_on: dt.date
    amount: Decimal
    currency: str
    quantity: int


def _text(row: dict[str, str], name: str, limit: int = 100, required: bool = False) -> str:
    value = row.get(name, "")
    if required and not value:
        raise RowError(f"{name} is required")
    if len(value) > limit:
        raise RowError(f"{name} is {len(value)} characters long; at most {limit}")
    return value


def parse_instant(raw: str, zone: ZoneInfo) -> dt.datetime:
    """An ISO date (midnight in the account's zone) or date-time (in the account's zone unless it has an offset)."""
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise RowError(f"ordered_at '{raw[:40]}' is not an ISO date or date-time (2026-03-01 or "
                       "2026-03-01T14:30:00+01:00)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(dt.UTC)


def parse_amount(raw: str) -> Decimal:
    """A decimal with at most 2 decimals; thousands separators allowed; negative for a refund."""
    text = raw.replace(",", "").replace("_", "")
    if not text:
        raise RowError("amount is required")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise RowError(f"amount '{raw[:40]}' is not a number") from None
    if not value.is_finite() or abs(value) >= LIMIT:
        raise RowError(f"amount '{raw[:40]}' is not a finite amount below 1e12")
    if value != value.quantize(Decimal("0.01")):
        raise RowError(f"amount '{raw[:40]}' has more than 2 decimals")
    return value.quantize(Decimal("0.01"))


def _parse(line: int, row: dict[str, str], accounts: dict[str, tuple[int, ZoneInfo]]) -> Line:
    if "__error__" in row:
        raise RowError(row["__error__"])
    order_id = _text(row, "order_id", required=True)
    account_ext = _text(row, "account", required=True)
    found = accounts.get(account_ext)
    if found is None:
        raise RowError(f"account '{account_ext[:60]}' is not an account (give its external id)")
    account, zone = found
    raw_at = _text(row, "ordered_at", limit=64, required=True)
    at = parse_instant(raw_at, zone)
    amount = parse_amount(row.get("amount", ""))
    currency = (row.get("currency") or base_currency()).upper()
    if not _CURRENCY.match(currency):
        raise RowError(f"currency '{row.get('currency', '')[:20]}' is not a currency code like EUR")
    raw_quantity = row.get("quantity", "")
    try:
        quantity = int(raw_quantity) if raw_quantity else (1 if amount >= 0 else 0)
    except ValueError:
        raise RowError(f"quantity '{raw_quantity[:20]}' is not a whole number") from None
    if abs(quantity) > 1_000_000_000:
        raise RowError(f"quantity {quantity} is too large")
    if amount < 0 and quantity > 0:
        raise RowError(f"amount {amount} is negative but quantity {quantity} is not: a refund line has a "
                       "quantity of 0 or less")
    if amount >= 0 and quantity < 0:
        raise RowError(f"quantity {quantity} is negative but amount {amount} is not: only a refund line "
                       "(negative amount) returns items")
    return Line(line, order_id, _text(row, "sku"), account, at, at.astimezone(zone).date(), amount, currency, quantity)


def import_orders(data: bytes, *, strict: bool = False, encoding: str = "utf-8", progress: bool = False) -> ImportReport:
    """Upsert order lines by (order_id, sku); see docs/csv.md for the columns and the refund rules."""
    text = decode(data, encoding)
    report = ImportReport()
    all_rows = list(rows(text, COLUMNS, REQUIRED))
    bar = progress_bar(len(all_rows) * 2, progress)
    wanted = list({r.get("account", "") for _l, r in all_rows} - {""})
    accounts: dict[str, tuple[int, ZoneInfo]] = {}
    zones: dict[str, ZoneInfo] = {}
    for i in range(0, len(wanted), CHUNK):
        for ext, pk, tz in Account.objects.filter(external_id__in=wanted[i : i + CHUNK]).values_list(
            "external_id", "pk", "timezone"
        ):
            accounts[ext or ""] = (pk, zones.setdefault(tz, ZoneInfo(tz)))
    parsed: dict[tuple[str, str], Line] = {}
    for line, row in all_rows:
        bar.update()
        try:
            item = _parse(line, row, accounts)
            key = (item.order_id, item.sku)
            if key in parsed:
                raise RowError(f"order '{item.order_id[:60]}' has sku '{item.sku[:60]}' twice (first on line "
                               f"{parsed[key].line}); a refund line needs a sku of its own, e.g. "
                               f"'{(item.sku or 'item')[:40]}:refund'")
        except RowError as e:
            report.rejected.append((line, str(e)))
            continue
        parsed[key] = item

    with transaction.atomic():
        order_ids = list({k[0] for k in parsed})
        stored: dict[tuple[str, str], tuple[int, int, dt.datetime, Decimal, str, int]] = {}
        for i in range(0, len(order_ids), CHUNK):
            for pk, oid, sku, account, at, amount, currency, quantity in OrderLine.objects.filter(
                order_id__in=order_ids[i : i + CHUNK]
            ).values_list("pk", "order_id", "sku", "account_id", "ordered_at", "amount", "currency", "quantity"):
                stored[(oid, sku)] = (pk, account, at, amount, currency, quantity)
        _check_orders(parsed, stored, report)
        if report.refused(strict):
            bar.close()
            return report
        create: list[OrderLine] = []
        update: list[tuple[Any, ...]] = []
        for key, item in parsed.items():
            bar.update()
            values = (item.account, item.ordered_at, item.amount, item.currency, item.quantity)
            old = stored.get(key)
            if old is None:
                create.append(OrderLine(order_id=item.order_id, sku=item.sku, account_id=item.account,
                                        ordered_at=item.ordered_at, ordered_on=item.ordered_on, amount=item.amount,
                                        currency=item.currency, quantity=item.quantity))
            elif old[1:] == values:
                report.unchanged += 1
            else:
                update.append((*values, item.ordered_on, old[0]))
        OrderLine.objects.bulk_create(create, batch_size=BATCH)
        bulk_update_rows(OrderLine, ["account", "ordered_at", "amount", "currency", "quantity", "ordered_on"], update)
        report.created, report.updated = len(create), len(update)
    bar.close()
    return report


def _check_orders(parsed: dict[tuple[str, str], Line], stored: dict[tuple[str, str], tuple[Any, ...]],
                  report: ImportReport) -> None:
    """Rules across the lines of an order (in the file and stored): one account, one currency, refunds that
    refund something and no more than the order's value. A line that breaks one is rejected (and dropped)."""
    by_order: dict[str, list[tuple[str, int, int, Decimal, str]]] = defaultdict(list)  # sku, line, account...
    reference: dict[str, tuple[int, str, str]] = {}  # order -> (account, currency, where): its first stored line
    for (oid, sku), (_pk, account, _at, amount, currency, _q) in sorted(stored.items(), key=lambda kv: kv[1][0]):
        reference.setdefault(oid, (account, currency, "already stored"))
        if (oid, sku) not in parsed:
            by_order[oid].append((sku, 0, account, amount, currency))
    for (oid, sku), item in sorted(parsed.items(), key=lambda kv: kv[1].line):
        reference.setdefault(oid, (item.account, item.currency, f"line {item.line}"))
        by_order[oid].append((sku, item.line, item.account, item.amount, item.currency))
    for oid, lines in by_order.items():
        ref_account, ref_currency, where = reference[oid]
        kept = []
        for sku, line, account, amount, currency in lines:
            if line and account != ref_account:
                report.rejected.append((line, f"order '{oid[:60]}' belongs to another account ({where})"))
            elif line and currency != ref_currency:
                report.rejected.append((line, f"order '{oid[:60]}' is in {ref_currency} ({where}); this line is in "
                                              f"{currency}: one order has one currency"))
            else:
                kept.append((sku, line, amount))
                continue
            del parsed[(oid, sku)]
        positive = sum((a for _s, _l, a in kept if a >= 0), Decimal(0))
        refunds = [(s, line, a) for s, line, a in kept if a < 0]
        refunded = sum((a for _s, _l, a in refunds), Decimal(0))
        if refunds and positive == 0:
            for sku, line, amount in refunds:
                if line:
                    report.rejected.append((line, f"negative amount {amount} where there is nothing to refund: order "
                                                  f"'{oid[:60]}' has no line with a positive amount"))
                    del parsed[(oid, sku)]
        elif refunds and positive + refunded < 0:
            for sku, line, _amount in refunds:
                if line:
                    report.rejected.append((line, f"refunds of {-refunded} exceed order '{oid[:60]}''s value of "
                                                  f"{positive}"))
                    del parsed[(oid, sku)]


# -- orders as the models read them -----------------------------------------------------------------------


class CurrencyError(ValueError):
    """Orders in a currency with no exchange rate: they are not summed with the others."""


def rates() -> dict[str, Decimal]:
    """Base-currency units per unit of each currency with a rate; the base currency is 1."""
    table = dict(ExchangeRate.objects.values_list("currency", "rate"))
    table[base_currency()] = Decimal(1)
    return table


@dataclass
class Order:
    """An order as the models see it: its account, its day, its net value in the base currency."""

    order_id: str
    account: int
    day: dt.date
    value: Decimal


def orders(until: dt.date | None = None, accounts: list[int] | None = None) -> list[Order]:
    """Net orders in the base currency; orders refunded in full are left out (they were no purchase).

    Raises CurrencyError, naming them, when some currencies have no rate.
    """
    qs = OrderLine.objects.all()
    if until is not None:
        qs = qs.filter(ordered_on__lte=until)
    if accounts is not None:
        qs = qs.filter(account_id__in=accounts)
    grouped = qs.values("order_id", "account_id", "currency").annotate(
        net=Sum("amount"), day=Min("ordered_on", filter=Q(amount__gte=0)), lowest=Min("amount")
    ).order_by()
    table = rates()
    out: list[Order] = []
    missing: dict[str, int] = defaultdict(int)
    for g in grouped:
        if g["day"] is None or g["net"] < 0 or (g["net"] == 0 and g["lowest"] < 0):
            continue
        rate = table.get(g["currency"])
        if rate is None:
            missing[g["currency"]] += 1
            continue
        out.append(Order(g["order_id"], g["account_id"], g["day"], (g["net"] * rate).quantize(Decimal("0.01"))))
    if missing:
        listed = ", ".join(f"{c} ({n} order{'s' if n > 1 else ''})" for c, n in sorted(missing.items()))
        raise CurrencyError(f"no exchange rate to {base_currency()} for {listed}: add the rates (admin, "
                            "Exchange rates) or the orders would be summed across currencies")
    return out
