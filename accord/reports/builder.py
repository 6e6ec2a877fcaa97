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

from django.db.models import Prefetch, Q
from django.urls import reverse
from django.utils import timezone

from accord.agreements.models import Agreement, CreditSchedule, MaintenanceWindow, Objective
from accord.catalog.models import Pool, Service
from accord.customers.models import Account
from accord.desk.clocks import _pauses, engine
from accord.desk.models import SlaClock
from accord.gateway.measure import Sketch
from accord.gateway.snapshot import account_key
from accord.governance.indicators import RUNTIME_KINDS, abandon_threshold_ms, allowed_bad, burn, rollup_stats
from accord.governance.models import AuditEvent
from accord.lib import units

from .measure import CHUNK, events_by_account
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
    maintenance: list[MaintenanceWindow] = field(default_factory=list)  # declared windows left out of the part

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
    maintenance: list[MaintenanceWindow] = field(default_factory=list)  # declared windows left out of the part


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


def in_force(agreements: list[Agreement], account: Account, day: dt.date) -> Agreement | None:
    """`Agreement.for_account` on agreements already read: the account's own beats its tier's, newest start
    wins."""
    live = [a for a in agreements
            if (a.account_id == account.pk or (account.tier_id is not None and a.tier_id == account.tier_id))
            and a.effective_from <= day and (a.effective_to is None or a.effective_to >= day)]
    ranked = sorted(live, key=lambda a: (a.account_id is None, -a.effective_from.toordinal(), a.name))
    return ranked[0] if ranked else None


def parts_of(account: Account, period: Period, now: dt.datetime,
             agreements: list[Agreement] | None = None) -> list[Part]:
    """Consecutive days under one agreement, each a part; the last measured up to `now` while the period runs."""
    days = period.days()
    runs: list[tuple[Agreement | None, dt.date, dt.date]] = []
    for day in days:
        agreement = (Agreement.for_account(account, day) if agreements is None
                     else in_force(agreements, account, day))
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


def windows_of(agreement: Agreement, start: dt.datetime, end: dt.datetime) -> list[MaintenanceWindow]:
    """The agreement's declared maintenance windows that overlap [start, end) (read with the agreement)."""
    return [w for w in agreement.maintenance_windows.all() if w.start < end and w.end > start]


def measured_spans(start: dt.datetime, end: dt.datetime,
                   windows: list[MaintenanceWindow]) -> list[tuple[dt.datetime, dt.datetime]]:
    """[start, end) less the maintenance windows: the spans whose minutes count."""
    spans = []
    cursor = start
    for w in sorted(windows, key=lambda w: w.start):
        if w.start > cursor:
            spans.append((cursor, min(w.start, end)))
        cursor = max(cursor, w.end)
        if cursor >= end:
            break
    if cursor < end:
        spans.append((cursor, end))
    return [(a, b) for a, b in spans if a < b]


def judge_many(objective: Objective, part: Part, keys: list[str]) -> dict[str, ObjectiveResult]:
    """A run-time objective over a part, day by day, for each of several accounts' traffic under the same
    terms: one set of queries per day for all of them (`measure.events_by_account`). The minutes of declared
    maintenance windows are left out."""
    threshold = abandon_threshold_ms(objective)
    windows = windows_of(objective.agreement, part.start, part.end)
    days: dict[str, list[Day]] = {k: [] for k in keys}
    requests = dict.fromkeys(keys, 0)
    latency = objective.kind == Objective.Kind.LATENCY
    sketches = {k: Sketch() for k in keys} if latency else {}
    day = part.first_day
    while day <= part.last_day:
        span = Period("", day, day)
        start, end = span.start, min(span.end, part.end)
        if start < end:
            valid = dict.fromkeys(keys, 0)
            bad = dict.fromkeys(keys, 0)
            for a, b in measured_spans(start, end, windows):
                for key, events in events_by_account(objective, a, b, keys, threshold=threshold).items():
                    requests[key] += events.requests
                    valid[key] += events.valid
                    bad[key] += events.bad
                    if latency and events.latencies is not None:
                        sketches[key].merge(events.latencies)
            for key in keys:
                days[key].append(Day(day, valid[key], bad[key]))
        day += dt.timedelta(days=1)
    out = {}
    for key in keys:
        total = sum(d.valid for d in days[key])
        result = ObjectiveResult(objective, total, sum(d.bad for d in days[key]), requests[key], days[key])
        result.maintenance = windows
        if latency and total:
            result.percentile_ms = units.significant(
                sketches[key].quantile(float(objective.percentile or 95) / 100))
        out[key] = result
    return out


def judge(objective: Objective, part: Part, key: str) -> ObjectiveResult:
    """A run-time objective over a part, day by day, for one account's traffic."""
    return judge_many(objective, part, [key])[key]


def schedule_of(agreement: Agreement) -> CreditSchedule | None:
    try:
        return agreement.credit_schedule
    except CreditSchedule.DoesNotExist:
        return None


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
    schedule = schedule_of(agreement) if agreement else None
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


def clocks_of(accounts: list[Account], period: Period, now: dt.datetime) -> dict[int, list[SlaClock]]:
    """First response and resolution clocks started in the period, per account, in one query."""
    out: dict[int, list[SlaClock]] = defaultdict(list)
    ids = [a.pk for a in accounts]
    for i in range(0, len(ids), CHUNK):
        for clock in (SlaClock.objects.filter(ticket__account_id__in=ids[i:i + CHUNK], started_at__gte=period.start,
                                              started_at__lt=min(period.end, max(now, period.start)),
                                              kind__in=[SlaClock.Kind.FIRST_RESPONSE, SlaClock.Kind.RESOLUTION])
                      .exclude(status=SlaClock.Status.CANCELLED)
                      .select_related("ticket__group", "calendar").order_by("started_at", "id")):
            if clock.ticket.account_id is not None:
                out[clock.ticket.account_id].append(clock)
    return out


def support(account: Account, period: Period, now: dt.datetime, clocks: list[SlaClock] | None = None) -> tuple[
        list[SupportRow], list[SupportRow], list[SupportRow], list[dict[str, Any]]]:
    """First response and resolution clocks started in the period: met (stopped in time) of judged (stopped or
    breached; a clock still running in time is not judged yet), and business minutes to stop."""
    if clocks is None:
        clocks = clocks_of([account], period, now).get(account.pk, [])
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


def activation_events(start: dt.datetime, end: dt.datetime) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(kind=AuditEvent.Kind.ACTIVATED, at__gte=start, at__lt=end)
                .select_related("policy").order_by("at", "id"))


def activations(account: Account, start: dt.datetime, end: dt.datetime,
                events: list[AuditEvent] | None = None) -> list[dict[str, Any]]:
    """Policy activations in the period whose policy reaches the account (its tier, itself, or everyone)."""
    tier = account.tier.name if account.tier_id and account.tier else None
    out = []
    for event in activation_events(start, end) if events is None else events:
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


def agreements_with_terms() -> list[Agreement]:
    """Every agreement with what judging needs, read once for a batch of reports."""
    runtime = Objective.objects.filter(kind__in=RUNTIME_KINDS).select_related("service", "operation")
    return list(Agreement.objects.select_related("calendar", "tier", "account").prefetch_related(
        Prefetch("objectives", queryset=runtime, to_attr="runtime_objectives"), "credit_schedule__bands",
        "services__partners", "maintenance_windows"))


def build_many(accounts: list[Account], period: Period, now: dt.datetime | None = None) -> list[Report]:
    """The reports of several accounts for a period, reading what they share once: the agreements and their
    terms, each objective's traffic for all the accounts it judges (one query per day, not per account and day),
    the support clocks, the policy activations and the partner services."""
    now = now or timezone.now()
    agreements = agreements_with_terms()
    end = min(period.end, max(now, period.start))
    parts = {a.pk: parts_of(a, period, now, agreements) for a in accounts}
    keys = {a.pk: account_key(a.external_id, a.pk) for a in accounts}
    groups: dict[tuple[int, dt.datetime, dt.datetime], list[Account]] = defaultdict(list)
    for account in accounts:
        for part in parts[account.pk]:
            if part.agreement is not None:
                groups[(part.agreement.pk, part.start, part.end)].append(account)
    judged: dict[tuple[int, int, dt.datetime], ObjectiveResult] = {}
    for (_agreement, part_start, _end), members in groups.items():
        part = next(p for p in parts[members[0].pk] if p.start == part_start)
        assert part.agreement is not None
        for objective in part.agreement.runtime_objectives:  # type: ignore[attr-defined]
            objective.agreement = part.agreement
            results = judge_many(objective, part, [keys[m.pk] for m in members])
            for m in members:
                judged[(m.pk, objective.pk, part_start)] = results[keys[m.pk]]
    clocks = clocks_of(accounts, period, now)
    events = activation_events(period.start, end)
    partner_cache: dict[tuple[int, ...], tuple[list[PartnerLine], list[dict[str, Any]]]] = {}
    reports = []
    for account in accounts:
        services: dict[int, Service] = {}
        for part in parts[account.pk]:
            if part.agreement is None:
                continue
            part.objectives = [judged[(account.pk, o.pk, part.start)]
                               for o in part.agreement.runtime_objectives]  # type: ignore[attr-defined]
            part.credits = credits_of(part)
            part.maintenance = windows_of(part.agreement, part.start, part.end)
            for s in part.agreement.services.all():
                services.setdefault(s.pk, s)
        chosen = sorted(services.values(), key=lambda s: s.name)
        signature = tuple(s.pk for s in chosen)
        if signature not in partner_cache:
            partner_cache[signature] = partners(chosen, period.start, end)
        lines, composites = partner_cache[signature]
        by_priority, by_channel, by_team, support_breaches = support(account, period, now,
                                                                     clocks.get(account.pk, []))
        reports.append(Report(account, period, not period.ended(now), parts[account.pk], by_priority, by_channel,
                              by_team, support_breaches, activations(account, period.start, end, events),
                              lines, composites))
    return reports


def build(account: Account, period: Period, now: dt.datetime | None = None) -> Report:
    """The report of an account for a period; provisional while the period runs (measured up to `now`)."""
    return build_many([account], period, now)[0]


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
