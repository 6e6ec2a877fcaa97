"""One account's report for one period, built from the same definitions the live views use.

Run-time objectives are judged by `accord.governance.indicators.objective_events` (the SLI definitions of
docs/governance.md), day by day: valid and bad events add up over disjoint windows, so the period's figures are
the sum of its days and the daily chart cannot disagree with the total. Support objectives are judged by the
desk's clocks (met, breached, business time from the desk's own business-time engine). Nothing is rounded
until it is shown: attainment is a fraction of whole counts.

A period may be judged by several agreements: each day belongs to the agreement in force for the account that
day (`Agreement.for_account`), and consecutive days of one agreement form a `Part`, judged by its terms only.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from accord.agreements.models import Agreement, CreditSchedule, Objective
from accord.catalog.models import Pool, Service
from accord.customers.models import Account
from accord.desk.clocks import _pauses, engine
from accord.desk.models import SlaClock
from accord.gateway.measure import Sketch
from accord.gateway.snapshot import account_key
from accord.governance.indicators import RUNTIME_KINDS, allowed_bad, burn, objective_events, rollup_stats
from accord.governance.models import AuditEvent
from accord.lib import units

from .partners import parallel, serial
from .periods import Period

NO_DATA = "no data"


@dataclass
class Day:
    """One day of an objective: its valid and bad events."""

    day: dt.date
    valid: int
    bad: int


@dataclass
class ObjectiveResult:
    """A run-time objective judged over a part of the period."""

    objective: Objective
    valid: int
    bad: int
    requests: int
    days: list[Day]
    percentile_ms: float | None = None  # latency objectives: the measured percentile

    @property
    def kind(self) -> str:
        return str(self.objective.kind)

    @property
    def allowed(self) -> Fraction:
        return allowed_bad(self.objective)

    @property
    def share_bad(self) -> Fraction | None:
        return Fraction(self.bad, self.valid) if self.valid else None

    @property
    def attained(self) -> Fraction | None:
        """% good (availability, latency: share of valid events within the target), % bad (error rate), exact;
        None without a valid event ("no data", never 100 %)."""
        share = self.share_bad
        if share is None:
            return None
        return share * 100 if self.kind == Objective.Kind.ERROR_RATE else (1 - share) * 100

    @property
    def met(self) -> bool | None:
        share = self.share_bad
        return None if share is None else share <= self.allowed

    @property
    def budget_used(self) -> float | None:
        return burn(self.bad, self.valid, self.allowed)

    def attained_label(self) -> str:
        """As people read it, never better than the exact value (availability rounded down, errors up)."""
        if self.attained is None:
            return NO_DATA
        if self.kind == Objective.Kind.LATENCY and self.percentile_ms is not None:
            pct = units.number(self.objective.percentile or Decimal(95))
            return f"p{pct} {units.latency_ms(self.percentile_ms)}"
        return percent_label(self.attained, worse_up=self.kind == Objective.Kind.ERROR_RATE)

    def attained_of(self, day: Day) -> Fraction:
        """One day's attainment (a day with valid events)."""
        share = Fraction(day.bad, day.valid)
        return share * 100 if self.kind == Objective.Kind.ERROR_RATE else (1 - share) * 100

    def breaches(self) -> list[Day]:
        """The days whose own bad share went over the objective's allowance (the days that spent the budget)."""
        return [d for d in self.days if d.valid and Fraction(d.bad, d.valid) > self.allowed]


def percent_label(value: Fraction, *, worse_up: bool = False, places: int = 3) -> str:
    """A percentage of an exact fraction, rounded so it never looks better: down for a level, up for errors."""
    scale = 10**places
    scaled = value * scale
    whole = math.ceil(scaled) if worse_up else math.floor(scaled)
    return units.percent(Decimal(whole) / scale, places)


@dataclass
class CreditLine:
    """What one availability objective of a part earns under its agreement's credit schedule."""

    result: ObjectiveResult
    percent: Decimal
    amount: Decimal
    currency: str
    note: str = ""


@dataclass
class SupportRow:
    """Support clocks of one group (a priority, a channel, a team) over the period."""

    key: str
    first_response_met: int = 0
    first_response_judged: int = 0
    resolution_met: int = 0
    resolution_judged: int = 0
    first_response_minutes: list[float] = field(default_factory=list)
    resolution_minutes: list[float] = field(default_factory=list)

    @staticmethod
    def share(met: int, judged: int) -> str:
        return percent_label(Fraction(met, judged), places=1) if judged else NO_DATA

    @staticmethod
    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    @staticmethod
    def p90(values: list[float]) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]  # nearest rank


@dataclass
class Part:
    """The days of the period one agreement judged (or none was in force)."""

    agreement: Agreement | None
    first_day: dt.date
    last_day: dt.date
    start: dt.datetime
    end: dt.datetime  # measured up to here (the period's end, or now while it runs)
    share: Fraction  # of the period's days
    objectives: list[ObjectiveResult] = field(default_factory=list)
    credits: list[CreditLine] = field(default_factory=list)


@dataclass
class PartnerLine:
    partner: str
    service: str
    promised: Decimal
    measured: Fraction | None  # availability of the service's traffic (5xx and broken-off answers are bad)


@dataclass
class Report:
    account: Account
    period: Period
    provisional: bool
    parts: list[Part]
    support_by_priority: list[SupportRow]
    support_by_channel: list[SupportRow]
    support_by_team: list[SupportRow]
    support_breaches: list[dict[str, Any]]
    activations: list[dict[str, Any]]
    partners: list[PartnerLine]
    composites: list[dict[str, Any]]

    @property
    def credit_total(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for part in self.parts:
            for c in part.credits:
                totals[c.currency] += c.amount
        return dict(sorted(totals.items()))


def parts_of(account: Account, period: Period, now: dt.datetime) -> list[Part]:
    """Consecutive days under one agreement, each a part; the last measured up to `now` while the period runs."""
    days = period.days()
    runs: list[tuple[Agreement | None, dt.date, dt.date]] = []
    for day in days:
        agreement = Agreement.for_account(account, day)
        if runs and (runs[-1][0].pk if runs[-1][0] else None) == (agreement.pk if agreement else None):
            runs[-1] = (runs[-1][0], runs[-1][1], day)
        else:
            runs.append((agreement, day, day))
    parts = []
    for agreement, first, last in runs:
        start = Period("", first, last).start
        end = min(Period("", first, last).end, max(now, start))
        parts.append(Part(agreement, first, last, start, end, Fraction((last - first).days + 1, len(days))))
    return parts


def judge(objective: Objective, part: Part, key: str) -> ObjectiveResult:
    """A run-time objective over a part, day by day, for one account's traffic."""
    days: list[Day] = []
    requests = 0
    latencies = Sketch() if objective.kind == Objective.Kind.LATENCY else None
    day = part.first_day
    while day <= part.last_day:
        span = Period("", day, day)
        start, end = span.start, min(span.end, part.end)
        if start < end:
            events = objective_events(objective, start, end, account=key)
            requests += events.requests
            days.append(Day(day, events.valid, events.bad))
            if latencies is not None and events.latencies is not None:
                latencies.merge(events.latencies)
        day += dt.timedelta(days=1)
    valid = sum(d.valid for d in days)
    result = ObjectiveResult(objective, valid, sum(d.bad for d in days), requests, days)
    if latencies is not None and valid:
        result.percentile_ms = units.significant(latencies.quantile(float(objective.percentile or 95) / 100))
    return result


def credit_percent(schedule: CreditSchedule, attained: Fraction) -> Decimal:
    """The credit of the largest band the exact attainment falls strictly below, capped: 99.0 % exactly is not
    below a 99.0 band (`CreditSchedule.credit_percent`, on exact fractions instead of rounded decimals)."""
    owed = Decimal(0)
    for band in schedule.bands.all():
        if attained < Fraction(band.below_percent):
            owed = max(owed, band.credit_percent)
    return min(owed, schedule.cap_percent)


def credits_of(part: Part) -> list[CreditLine]:
    """Credits of a part's availability objectives: the band's share of the fee for the part's days, the total
    held under the cap; a credit below the schedule's minimum amount is not issued. No valid event: no credit."""
    agreement = part.agreement
    schedule = CreditSchedule.objects.filter(agreement=agreement).first() if agreement else None
    if agreement is None or schedule is None:
        return []
    fee = agreement.monthly_fee * Decimal(part.share.numerator) / Decimal(part.share.denominator)
    room = fee * schedule.cap_percent / 100
    lines = []
    for result in part.objectives:
        if result.kind != Objective.Kind.AVAILABILITY:
            continue
        if result.attained is None:
            lines.append(CreditLine(result, Decimal(0), Decimal("0.00"), agreement.currency, NO_DATA))
            continue
        percent = credit_percent(schedule, result.attained)
        amount = min(fee * percent / 100, room).quantize(Decimal("0.01"))
        note = ""
        if amount and amount < schedule.minimum_amount:
            amount, note = Decimal("0.00"), f"below the minimum of {units.money(schedule.minimum_amount)}"
        room -= amount
        lines.append(CreditLine(result, percent, amount, agreement.currency, note))
    return lines


def support(account: Account, period: Period, now: dt.datetime) -> tuple[list[SupportRow], list[SupportRow],
                                                                          list[SupportRow], list[dict[str, Any]]]:
    """First response and resolution clocks started in the period: met (stopped in time) of judged (stopped or
    breached; a clock still running in time is not judged yet), and business minutes to stop."""
    clocks = (SlaClock.objects.filter(ticket__account=account, started_at__gte=period.start,
                                      started_at__lt=min(period.end, max(now, period.start)),
                                      kind__in=[SlaClock.Kind.FIRST_RESPONSE, SlaClock.Kind.RESOLUTION])
              .exclude(status=SlaClock.Status.CANCELLED)
              .select_related("ticket__group", "calendar").order_by("started_at", "id"))
    groups: dict[str, dict[str, SupportRow]] = {"priority": {}, "channel": {}, "team": {}}
    breaches = []
    for clock in clocks:
        ticket = clock.ticket
        keys = {"priority": ticket.priority, "channel": ticket.channel,
                "team": ticket.group.name if ticket.group_id and ticket.group else "(no team)"}
        judged = clock.breached_at is not None or clock.status == SlaClock.Status.MET
        met = judged and clock.breached_at is None
        minutes = (engine(clock.calendar).elapsed(clock.started_at, clock.stopped_at, _pauses(clock))
                   if clock.stopped_at else None)
        for group, key in keys.items():
            row = groups[group].setdefault(key, SupportRow(key))
            if clock.kind == SlaClock.Kind.FIRST_RESPONSE:
                row.first_response_judged += judged
                row.first_response_met += met
                if minutes is not None:
                    row.first_response_minutes.append(minutes)
            else:
                row.resolution_judged += judged
                row.resolution_met += met
                if minutes is not None:
                    row.resolution_minutes.append(minutes)
        if clock.breached_at is not None:
            breaches.append({"ticket": ticket.pk, "subject": ticket.subject, "kind": clock.kind,
                             "priority": ticket.priority, "target_minutes": clock.target_minutes,
                             "breached_at": clock.breached_at, "url": reverse("desk:ticket", args=[ticket.pk])})
    order = {p: i for i, p in enumerate(("urgent", "high", "normal", "low"))}
    by_priority = sorted(groups["priority"].values(), key=lambda r: (order.get(r.key, 9), r.key))
    return (by_priority, sorted(groups["channel"].values(), key=lambda r: r.key),
            sorted(groups["team"].values(), key=lambda r: r.key), breaches)


def activations(account: Account, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    """Policy activations in the period whose policy reaches the account (its tier, itself, or everyone)."""
    tier = account.tier.name if account.tier_id and account.tier else None
    out = []
    for event in (AuditEvent.objects.filter(kind=AuditEvent.Kind.ACTIVATED, at__gte=start, at__lt=end)
                  .select_related("policy").order_by("at", "id")):
        policy = event.policy
        if policy is not None and (policy.tiers or policy.accounts) and not (
                (tier and tier in policy.tiers) or account.external_id in policy.accounts):
            continue
        out.append({"at": event.at, "subject": event.subject, "reason": event.reason})
    return out


def partners(services: list[Service], start: dt.datetime, end: dt.datetime) -> tuple[list[PartnerLine],
                                                                                     list[dict[str, Any]]]:
    """Each partner of the account's services: promised against measured; per service the composite promise of
    its partners (serial: all are needed) and, with a standby pool, the parallel availability of its pools."""
    lines = []
    composites = []
    for service in services:
        stats = rollup_stats(start, end, service=service.name)
        measured = Fraction(stats.count - stats.errors, stats.count) * 100 if stats.count else None
        promised = []
        for partner in service.partners.all():
            lines.append(PartnerLine(partner.name, service.name, partner.promised_availability, measured))
            promised.append(Fraction(partner.promised_availability) / 100)
        pools = list(Pool.objects.filter(service=service).order_by("name"))
        pool_levels = []
        for pool in pools:
            s = rollup_stats(start, end, service=service.name, pool=pool.name)
            if s.count:
                pool_levels.append(Fraction(s.count - s.errors, s.count))
        composites.append({
            "service": service.name,
            "partners_serial": serial(promised) * 100 if promised else None,
            "pools_parallel": parallel(pool_levels) * 100
            if len(pool_levels) > 1 and any(p.role == Pool.Role.STANDBY for p in pools) else None,
        })
    return lines, composites


def build(account: Account, period: Period, now: dt.datetime | None = None) -> Report:
    """The report of an account for a period; provisional while the period runs (measured up to `now`)."""
    now = now or timezone.now()
    key = account_key(account.external_id, account.pk)
    parts = parts_of(account, period, now)
    services: dict[int, Service] = {}
    for part in parts:
        if part.agreement is None:
            continue
        objectives = (part.agreement.objectives.filter(kind__in=RUNTIME_KINDS)
                      .select_related("agreement__tier", "agreement__account", "service", "operation"))
        part.objectives = [judge(o, part, key) for o in objectives]
        part.credits = credits_of(part)
        for s in part.agreement.services.prefetch_related("partners"):
            services.setdefault(s.pk, s)
    end = min(period.end, max(now, period.start))
    by_priority, by_channel, by_team, support_breaches = support(account, period, now)
    lines, composites = partners(sorted(services.values(), key=lambda s: s.name), period.start, end)
    return Report(account, period, not period.ended(now), parts, by_priority, by_channel, by_team,
                  support_breaches, activations(account, period.start, end), lines, composites)


def accounts_for(external_id: str | None) -> list[Account]:
    """The accounts a command reports on: one by external id (LookupError if unknown), else every account with an
    agreement of its own or of its tier."""
    if external_id:
        account = Account.objects.filter(Q(external_id=external_id)).select_related("tier").first()
        if account is None:
            raise LookupError(f"no account with external id {external_id!r}")
        return [account]
    tiers = Agreement.objects.filter(tier__isnull=False).values("tier_id")
    return list(Account.objects.filter(Q(agreements__isnull=False) | Q(tier_id__in=tiers)).distinct()
                .select_related("tier").order_by("external_id", "pk"))
