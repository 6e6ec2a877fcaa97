"""What an account owes for a month: the plans in force day by day, the meters' usage under each, priced
(docs/billing.md). Pure computation: nothing here writes (`actions` does).

A month is the account's own calendar month: from local midnight of its first day to local midnight of the next
month's first day, in the account's time zone (`Account.timezone`). A plan change mid-month splits the month into
parts by day; each part is billed as its own stretch: usage of those days, the flat fee, included quantities and
the minimum commitment prorated by days in force / days in the month; tier bounds are not prorated. A tier's plan
applies on the days the account had that tier, as the customers app recorded its changes (`TierChange`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from accord.customers.models import Account, TierChange

from .models import Meter, Plan
from .pricing import Price, cents
from .usage import account_key, measure_many

MONTH = re.compile(r"^(\d{4})-(\d{2})$")
SHARE_PLACES = Decimal("0.0001")


class BillingError(Exception):
    """A billing step that cannot be done, with what to do about it."""


def month_days(label: str) -> tuple[dt.date, dt.date]:
    """First and last day of a month 'YYYY-MM'; ValueError if it is not one."""
    m = MONTH.match(label or "")
    if not m or not 1 <= int(m[2]) <= 12 or int(m[1]) < 1970:
        raise ValueError(f"{label!r} is not a month like 2026-11")
    first = dt.date(int(m[1]), int(m[2]), 1)
    return first, (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)


def previous_month(label: str) -> str:
    first, _ = month_days(label)
    return f"{first - dt.timedelta(days=1):%Y-%m}"


def local_midnight(day: dt.date, zone: str) -> dt.datetime:
    """The instant a day starts in a time zone (a day that starts in a DST gap starts at its first real instant)."""
    naive = dt.datetime.combine(day, dt.time())
    aware = naive.replace(tzinfo=ZoneInfo(zone))
    return aware.astimezone(dt.UTC)


@dataclass(frozen=True)
class Part:
    """Days of a month under one plan (or none), both ends included."""

    plan: Plan | None
    first: dt.date
    last: dt.date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass
class Line:
    """A line before it is stored."""

    key: str
    for_period: str
    description: str
    amount: Decimal
    quantity: Decimal = Decimal(0)
    unit_price: Decimal | None = None
    meter_id: int | None = None


@dataclass
class Bill:
    """An account's month: its currency, the plans in force and the lines."""

    account: Account
    period: str
    currency: str
    plans: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


class PlanBook:
    """Every plan, indexed by account and by tier, to find the plan in force on a day."""

    def __init__(self) -> None:
        self.by_account: dict[int, list[Plan]] = defaultdict(list)
        self.by_tier: dict[int, list[Plan]] = defaultdict(list)
        # per month (its first day): account id -> its tier changes in and after that month, (local day, from, to)
        self.tier_changes: dict[dt.date, dict[int, list[tuple[dt.date, int | None, int | None]]]] = {}
        for plan in Plan.objects.prefetch_related("tiers", "accounts"):
            plan.price_list = [Price.from_dict(p) for p in plan.prices]  # type: ignore[attr-defined]
            for a in plan.accounts.all():
                self.by_account[a.pk].append(plan)
            for t in plan.tiers.all():
                self.by_tier[t.pk].append(plan)

    @staticmethod
    def _on(plans: list[Plan], day: dt.date) -> Plan | None:
        valid = [p for p in plans if (p.valid_from is None or p.valid_from <= day)
                 and (p.valid_until is None or day <= p.valid_until)]
        # The latest to start wins (a new plan from the 15th replaces an open-ended one), then the name.
        return max(valid, key=lambda p: (p.valid_from or dt.date.min, p.name), default=None)

    def load_tiers(self, accounts: list[Account], first: dt.date) -> None:
        """Read the tier changes the customers app recorded (`TierChange`) for these accounts from the local
        midnight of `first` on, so `parts` of a month starting then bills each day at the tier it had."""
        since = dt.datetime.combine(first, dt.time(), dt.UTC) - dt.timedelta(days=1)  # every zone's midnight is later
        zones = {a.pk: ZoneInfo(a.timezone or "UTC") for a in accounts}
        found: dict[int, list[tuple[dt.date, int | None, int | None]]] = defaultdict(list)
        ids = list(zones)
        for i in range(0, len(ids), 500):
            rows = (TierChange.objects.filter(account_id__in=ids[i:i + 500], at__gte=since).order_by("at", "id")
                    .values_list("account_id", "at", "from_tier_id", "to_tier_id"))
            for pk, at, before, after in rows:
                day = at.astimezone(zones[pk]).date()
                if day >= first:
                    found[pk].append((day, before, after))
        self.tier_changes[first] = dict(found)

    def tier_on(self, account: Account, first: dt.date, day: dt.date) -> int | None:
        """The account's tier on a day of the month starting `first`: the tier after the last change recorded on or
        before that day, the tier before the month's first change before it; the account's tier now when no change
        was recorded since the month began (or none was read: `load_tiers`)."""
        changes = self.tier_changes.get(first, {}).get(account.pk)
        if not changes:
            return account.tier_id
        tier = changes[0][1]
        for when, _before, after in changes:
            if when > day:
                break
            tier = after
        return tier

    def parts(self, account: Account, first: dt.date, last: dt.date) -> list[Part]:
        """The month split where the plan in force changes; an account's own plan wins over its tier's (the tier
        of each day, when its changes were read with `load_tiers`)."""
        own = self.by_account.get(account.pk, [])
        changed = bool(self.tier_changes.get(first, {}).get(account.pk))
        tiered = self.by_tier.get(account.tier_id, []) if account.tier_id else []
        if not changed and not any(p.valid_from or p.valid_until for p in own + tiered):  # the common case
            plan = self._on(own, first) or self._on(tiered, first)
            return [Part(plan, first, last)]
        out: list[Part] = []
        day = first
        while day <= last:
            if changed:
                tier = self.tier_on(account, first, day)
                tiered = self.by_tier.get(tier, []) if tier else []
            plan = self._on(own, day) or self._on(tiered, day)
            if out and out[-1].plan == plan:
                out[-1] = Part(plan, out[-1].first, day)
            else:
                out.append(Part(plan, day, day))
            day += dt.timedelta(days=1)
        return out


def _quantity(q: Decimal) -> str:
    return f"{int(q):,}" if q == q.to_integral_value() else f"{q.normalize():f}"


def bills(accounts: list[Account], period: str, meters: list[Meter] | None = None,
          book: PlanBook | None = None, progress: object | None = None) -> dict[int, Bill]:
    """Each account's bill for the month `period` ('YYYY-MM'), measured now."""
    from django.conf import settings

    first, last = month_days(period)
    days_in_month = Decimal((last - first).days + 1)
    meters = list(Meter.objects.all()) if meters is None else meters
    by_name = {m.name: m for m in meters}
    book = book or PlanBook()
    book.load_tiers(accounts, first)
    parts = {a.pk: book.parts(a, first, last) for a in accounts}
    # Usage is measured per window of instants; accounts in the same time zone with the same parts share queries.
    windows: dict[tuple[dt.datetime, dt.datetime], dict[int, str]] = defaultdict(dict)
    bounds: dict[tuple[int, dt.date], tuple[dt.datetime, dt.datetime]] = {}
    for a in accounts:
        for part in parts[a.pk]:
            w = (local_midnight(part.first, a.timezone), local_midnight(part.last + dt.timedelta(days=1), a.timezone))
            windows[w][a.pk] = account_key(a.external_id, a.pk)
            bounds[(a.pk, part.first)] = w
    used: dict[tuple[dt.datetime, dt.datetime, int], dict[int, Decimal]] = {}
    for (start, end), members in windows.items():
        for meter_id, found in measure_many(meters, members, start, end).items():
            used[(start, end, meter_id)] = found

    out: dict[int, Bill] = {}
    for a in accounts:
        planned = [p.plan for p in parts[a.pk] if p.plan is not None]
        currencies = {p.currency for p in planned}
        if len(currencies) > 1:
            raise BillingError(f"account {a}: plans in {', '.join(sorted(currencies))} in one month; "
                               f"give its plans one currency")
        bill = Bill(a, period, currencies.pop() if currencies else settings.ACCORD_CURRENCY,
                    sorted({p.name for p in planned}))
        for part in parts[a.pk]:
            start, end = bounds[(a.pk, part.first)]
            share = Decimal(part.days) / days_in_month
            whole = part.days == int(days_in_month)
            where = "" if whole else f" ({part.first:%d %b} to {part.last:%d %b}, {part.days} days)"
            plan = part.plan
            if plan is None:
                for meter in meters:
                    q = used[(start, end, meter.pk)].get(a.pk, Decimal(0))
                    if q:
                        bill.lines.append(Line(f"usage:{meter.name}:-:{part.first}", period,
                                               f"{meter.title or meter.name}: {_quantity(q)} {meter.unit}".rstrip()
                                               + f"{where}, no plan: not charged", Decimal(0), q, Decimal(0), meter.pk))
                continue
            tag = f"{plan.name}:{part.first}"
            if plan.flat_fee:
                bill.lines.append(Line(f"fee:{tag}", period, f"{plan.title or plan.name}: monthly fee{where}",
                                       cents(plan.flat_fee * share), share.quantize(SHARE_PLACES), plan.flat_fee))
            usage_total = Decimal(0)
            for price in plan.price_list:  # type: ignore[attr-defined]
                priced = by_name.get(price.meter)
                if priced is None:
                    continue
                meter = priced
                q = used[(start, end, meter.pk)].get(a.pk, Decimal(0))
                billable, amount, unit = price.charge(q, share)
                included = price.included * share
                text = f"{meter.title or meter.name}: {_quantity(q)} {meter.unit}".rstrip()
                if included:
                    text += f", {_quantity(included.quantize(SHARE_PLACES))} included"
                bill.lines.append(Line(f"usage:{meter.name}:{tag}", period, text + where, amount, billable, unit,
                                       meter.pk))
                usage_total += amount
            minimum = cents(plan.minimum_commitment * share)
            if usage_total < minimum:
                bill.lines.append(Line(f"minimum:{tag}", period,
                                       f"minimum commitment {minimum} {plan.currency}{where}: top-up",
                                       minimum - usage_total))
        out[a.pk] = bill
        if progress is not None:
            progress.update(1)  # type: ignore[attr-defined]
    return out
