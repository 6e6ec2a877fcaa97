"""The SLA as it stands this month: attainment per tier, per account and per agreement.

Run-time objectives (availability, latency, error rate) are judged by the governance code (`budget_status`,
`judge`, `objective_events_by_account`: the same SLI and budgets as `accord slo status`). Support objectives
(first response, next response, resolution) are judged from the desk's clocks: a clock *comes due* this month
when it was reached (stopped) or breached this month; its attainment is the share of those that were reached in
time. Every figure is a fixed number of queries whatever the number of accounts and tickets (aggregates grouped
by tier, account or objective), and exact fractions until shown. Read by the staff pages (`accord/web/sla.py`)
and the customer portal.
"""


from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from accord.agreements.models import Agreement, Objective
from accord.customers.models import Account
from accord.desk.models import SlaClock, Ticket
from accord.gateway.snapshot import account_key
from accord.governance.indicators import (
    BudgetStatus,
    Events,
    budget_status,
    burn_rate,
    judge,
    objective_events,
    objective_events_by_account,
    objective_window,
    runtime_objectives,
)
from accord.lib import units

# An error budget is "burning" when less than this share of it is left, or when the last hour spent it faster
# than the window allows (burn rate 1: the whole budget gone exactly at the window's end).
BUDGET_LOW = 0.25
BURN_HIGH = 1.0
BURN_SECONDS = 3600
DUE_SOON = dt.timedelta(hours=1)
NO_TIER = "no tier"


def month(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The current calendar month in the server's time zone: [start, start of next month)."""
    local = timezone.localtime(now)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, (start + dt.timedelta(days=32)).replace(day=1)


def day(now: dt.datetime) -> dt.datetime:
    """The start of today in the server's time zone."""
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Share:
    """`met` of `judged` (clocks, objectives or events)."""

    met: int = 0
    judged: int = 0

    @property
    def fraction(self) -> Fraction | None:
        return Fraction(self.met, self.judged) if self.judged else None

    @property
    def percent(self) -> float | None:
        f = self.fraction
        return float(f * 100) if f is not None else None


def _came_due(start: dt.datetime, end: dt.datetime) -> tuple[Q, Q]:
    """Clocks reached in time within [start, end), and clocks breached within it."""
    met = Q(status=SlaClock.Status.MET, breached_at__isnull=True, stopped_at__gte=start, stopped_at__lt=end)
    missed = Q(breached_at__gte=start, breached_at__lt=end)
    return met, missed


def support_shares(clocks: QuerySet[SlaClock], by: str, now: dt.datetime) -> dict[Any, Share]:
    """Support clocks that came due this month, grouped by a field path: met of judged, one query."""
    start, end = month(now)
    met, missed = _came_due(start, end)
    rows = (clocks.filter(met | missed).order_by().values(by)
            .annotate(met=Count("id", filter=met), judged=Count("id")))
    return {r[by]: Share(r["met"], r["judged"]) for r in rows}


@dataclass
class TierRow:
    name: str
    runtime: Share = field(default_factory=Share)
    support: Share = field(default_factory=Share)
    breaches_today: int = 0


@dataclass
class Burning:
    status: BudgetStatus
    rate: float | None

    @property
    def why(self) -> str:
        parts = []
        if self.status.remaining is not None and self.status.remaining < BUDGET_LOW:
            parts.append("budget below 25 %")
        if self.rate is not None and self.rate >= BURN_HIGH:
            parts.append("burning fast" if math.isinf(self.rate) else f"last hour burns {units.times(self.rate)}")
        return ", ".join(parts)


def _tier_of(agreement: Agreement) -> str:
    if agreement.tier_id and agreement.tier:
        return agreement.tier.name
    if agreement.account_id and agreement.account and agreement.account.tier:
        return agreement.account.tier.name
    return NO_TIER


def dashboard(now: dt.datetime) -> dict[str, Any]:
    """The dashboard's SLA: per tier, this month's run-time and support attainment and today's breaches; the
    open tickets due within the hour; the error budgets burning."""
    from accord.customers.models import Tier

    tiers: dict[str, TierRow] = {t: TierRow(t) for t in Tier.objects.order_by("rank").values_list("name", flat=True)}

    def row(name: str | None) -> TierRow:
        return tiers.setdefault(name or NO_TIER, TierRow(name or NO_TIER))

    statuses = [budget_status(o, now) for o in runtime_objectives().filter(agreement__simulated=False)
                .select_related("agreement__account__tier")]
    burning = []
    for s in statuses:
        r = row(_tier_of(s.objective.agreement))
        if s.met is not None:
            r.runtime.judged += 1
            r.runtime.met += s.met
        rate = burn_rate(s.objective, now, BURN_SECONDS)
        b = Burning(s, rate)
        if b.why:
            burning.append(b)
    real = SlaClock.objects.filter(ticket__account__simulated=False)
    for name, share in support_shares(real, "ticket__account__tier__name", now).items():
        row(name).support = share
    breached = (real.filter(breached_at__gte=day(now), breached_at__lte=now).order_by()
             .values("ticket__account__tier__name").annotate(n=Count("id")))
    for counted in breached:
        row(counted["ticket__account__tier__name"]).breaches_today = counted["n"]
    due = Ticket.objects.filter(is_open=True, next_due_at__gte=now, next_due_at__lt=now + DUE_SOON)
    rows = [r for r in tiers.values() if r.runtime.judged or r.support.judged or r.breaches_today
            or r.name != NO_TIER]
    return {
        "tiers": rows,
        "breaches_today": sum(r.breaches_today for r in rows),
        "due_soon": list(due.select_related("account__tier").order_by("next_due_at", "id")[:20]),
        "due_soon_count": due.count(),
        "burning": sorted(burning, key=lambda b: (b.status.remaining if b.status.remaining is not None else 1.0)),
        "objective_count": len(statuses),
    }


@dataclass
class ObjectiveLine:
    """One objective of an agreement as one account (or all its accounts) attained it this month."""

    objective: Objective
    status: BudgetStatus | None = None  # run-time objectives
    support: Share | None = None  # support objectives

    @property
    def percent(self) -> float | None:
        """Good events (or clocks met) in percent of the valid ones (of those that came due)."""
        if self.support is not None:
            return self.support.percent
        if self.status is None or not self.status.valid:
            return None
        return float(Fraction(self.status.events.good, self.status.valid) * 100)

    @property
    def required(self) -> float | None:
        """The share of good events the objective requires, in percent (run-time objectives)."""
        if self.status is None:
            return None
        return float((1 - self.status.allowed) * 100)

    @property
    def met(self) -> bool | None:
        if self.support is not None:
            return None if not self.support.judged else self.support.met == self.support.judged
        return self.status.met if self.status is not None else None

    @property
    def measured(self) -> str:
        if self.support is not None:
            return f"{self.support.met} of {self.support.judged} met" if self.support.judged else units.MISSING
        return self.status.sli_label() if self.status is not None else units.MISSING


def _runtime(objectives: list[Objective]) -> list[Objective]:
    return [o for o in objectives if not o.is_support]


def account_lines(account: Account, agreement: Agreement, now: dt.datetime) -> list[ObjectiveLine]:
    """The agreement's objectives as this account attained them this month: its share of the run-time
    traffic (SLI and budget, `objective_events` for one account) and its support clocks (met of those due)."""
    objectives = list(agreement.objectives.select_related("agreement__tier", "agreement__account", "service",
                                                          "operation").order_by("id"))
    key = account_key(account.external_id, account.pk)
    lines = []
    for o in _runtime(objectives):
        start, end, _days = objective_window(o, now)
        lines.append(ObjectiveLine(o, status=judge(o, start, end, objective_events(o, start, end, account=key))))
    shares = support_shares(SlaClock.objects.filter(ticket__account=account, objective__agreement=agreement),
                            "objective_id", now)
    lines += [ObjectiveLine(o, support=shares.get(o.pk, Share())) for o in objectives if o.is_support]
    return lines


@dataclass
class AccountRow:
    account: Account | None
    key: str
    lines: dict[int, ObjectiveLine]

    @property
    def missed(self) -> int:
        return sum(1 for line in self.lines.values() if line.met is False)

    @property
    def worst(self) -> float:
        values = [p for line in self.lines.values() if (p := line.percent) is not None]
        return min(values) if values else 101.0


def agreement_accounts(agreement: Agreement, now: dt.datetime) -> tuple[list[ObjectiveLine], list[AccountRow]]:
    """Per objective, this month's attainment across the agreement's accounts (their events or clocks added
    up), and per account its own, worst accounts first (most objectives missed, then lowest attainment).

    Queries: a fixed number per objective, none per account."""
    objectives = list(agreement.objectives.select_related("agreement__tier", "agreement__account", "service",
                                                          "operation").order_by("id"))
    per_key: dict[str, dict[int, ObjectiveLine]] = {}
    totals = []
    for o in _runtime(objectives):
        start, end, _days = objective_window(o, now)
        by_account = objective_events_by_account(o, start, end)
        for key, events in by_account.items():
            per_key.setdefault(key, {})[o.pk] = ObjectiveLine(o, status=judge(o, start, end, events))
        total = Events(sum(e.requests for e in by_account.values()), sum(e.valid for e in by_account.values()),
                       sum(e.bad for e in by_account.values()), 0.0)
        if o.kind == Objective.Kind.LATENCY:
            # a percentile of everyone is not a sum of percentiles: the all-accounts SLI comes from its own rows
            totals.append(ObjectiveLine(o, status=budget_status(o, now)))
        else:
            totals.append(ObjectiveLine(o, status=judge(o, start, end, total)))
    support = [o for o in objectives if o.is_support]
    by_account_id: dict[int, dict[int, ObjectiveLine]] = {}
    if support:
        clocks = SlaClock.objects.filter(objective__agreement=agreement, ticket__account__isnull=False)
        start, end = month(now)
        met, missed = _came_due(start, end)
        rows = (clocks.filter(met | missed).order_by().values("ticket__account_id", "objective_id")
                .annotate(met=Count("id", filter=met), judged=Count("id")))
        sums: dict[int, Share] = {}
        by_objective = {o.pk: o for o in support}
        for r in rows:
            share = Share(r["met"], r["judged"])
            by_account_id.setdefault(r["ticket__account_id"], {})[r["objective_id"]] = ObjectiveLine(
                by_objective[r["objective_id"]], support=share)
            s = sums.setdefault(r["objective_id"], Share())
            s.met += share.met
            s.judged += share.judged
        totals += [ObjectiveLine(o, support=sums.get(o.pk, Share())) for o in support]
    # the rollup keys are external ids, else ids: one query finds their accounts
    digits = [int(k) for k in per_key if k.isdigit()]
    accounts = Account.objects.filter(Q(external_id__in=list(per_key)) | Q(pk__in=digits + list(by_account_id)))
    by_key: dict[str, Account] = {}
    by_pk: dict[int, Account] = {}
    for a in accounts.select_related("tier"):
        by_pk[a.pk] = a
        by_key[account_key(a.external_id, a.pk)] = a
    rows_by_account: dict[str, AccountRow] = {}
    for key, lines in per_key.items():
        acct = by_key.get(key)
        rows_by_account[f"pk:{acct.pk}" if acct else key] = AccountRow(acct, key, dict(lines))
    for pk, lines in by_account_id.items():
        acct = by_pk.get(pk)
        key = account_key(acct.external_id, acct.pk) if acct else str(pk)
        row = rows_by_account.setdefault(f"pk:{pk}", AccountRow(acct, key, {}))
        row.lines.update(lines)
    ordered = sorted(rows_by_account.values(), key=lambda r: (-r.missed, r.worst, r.key))
    return totals, ordered


# -- what the pages get ------------------------------------------------------------------------------------------


