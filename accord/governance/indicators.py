"""Service-level indicators from the gateway's measurements, and error budgets of agreement objectives.

Two sources: live signals (per second, per worker, no account: `LiveTraffic`, `LivePool`) for the last
minutes, and rollups (exact) for any window. Latency percentiles come from merged DDSketches, so they are within
1% of the exact value whatever the number of workers, hosts and windows.

Rollups come per minute and per hour, per account and for all accounts (`accord.gateway.flusher.rollup_rows`):
a query over days reads whole hours from the hour rows and only its ragged ends from minute rows, and without
an account filter it reads the all-accounts rows. Counts, errors and latency sums are a SQL aggregate; the
sketches are fetched and merged only when a percentile or a count above a latency threshold is asked for.

The SLI of an agreement's run-time objective counts events by the gateway's outcome of each request
(`objective_events`; the definitions and the outcomes table are in docs/governance.md, "Service-level
indicators"): a request refused by the customer's own rate limit (429) is not a valid event; one its client
abandoned (499) is bad when it had waited longer than the objective's latency threshold, else not a valid event;
availability and error rate count as bad every 5xx, from the upstream or the gateway (shed, queue timeout, no
endpoint), and every answer the upstream broke off; 4xx answers are the caller's doing and count as good;
latency counts as bad every valid event slower than its target. Budgets and burn rates are exact fractions of
these counts, and a zero budget (a 100 % objective) burns infinitely fast on any bad event.

Live signals for policy conditions (`live_traffic`, `Stats.metric`) carry no outcome and stay raw: availability
there is 1 - 5xx / all answers.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any

from django.conf import settings
from django.db.models import F, Max, Q, QuerySet, Sum, Value
from django.db.models.functions import Concat
from django.utils import timezone

from accord.agreements.models import Agreement, Objective
from accord.gateway.measure import Sketch
from accord.gateway.models import ALL_ACCOUNTS, HOUR, MINUTE, LivePool, LiveTraffic, Rollup
from accord.gateway.snapshot import account_key
from accord.lib import units
from accord.lib.units import json_number

from .expr import Signal, Values

RUNTIME_KINDS = (Objective.Kind.AVAILABILITY, Objective.Kind.LATENCY, Objective.Kind.ERROR_RATE)
class Stats:
    """Merged measurements of some traffic over a window.

    The latency sketch is merged on first use: `sketches` yields the encoded sketches of the rows to merge, so
    counts, availability and error rates never touch a sketch. (Read later than the counts, it may hold
    requests flushed in between; a caller that knows it needs a percentile asks for `sketch=True` up front,
    and gets counts and sketch from the same rows.)
    """

    __slots__ = ("_sketch", "_sketches", "count", "errors", "latency_sum")

    def __init__(self, count: int = 0, errors: int = 0, latency_sum: float = 0.0, sketch: Sketch | None = None,
                 sketches: Callable[[], Iterable[bytes | memoryview]] | None = None) -> None:
        self.count = count
        self.errors = errors
        self.latency_sum = latency_sum
        self._sketch = sketch
        self._sketches = sketches

    @property
    def sketch(self) -> Sketch:
        if self._sketch is None:
            self._sketch = Sketch.merged(self._sketches()) if self._sketches is not None else Sketch()
            self._sketches = None
        return self._sketch

    def __repr__(self) -> str:
        return f"Stats(count={self.count}, errors={self.errors}, latency_sum={self.latency_sum:g})"

    def metric(self, name: str, seconds: float) -> float | None:
        if name == "count":
            return float(self.count)
        if name == "errors":
            return float(self.errors)
        if name == "rps":
            return self.count / seconds if seconds > 0 else None
        if self.count == 0:
            return None
        if name == "error_rate":
            return self.errors / self.count
        if name == "availability":
            return (self.count - self.errors) / self.count  # one division: the nearest float, no noise
        if name == "mean_ms":
            return self.latency_sum / self.count
        if needs_sketch(name):
            return self.sketch.quantile(int(name[1:-3]) / 100)
        raise ValueError(f"unknown metric {name}")

    def as_dict(self, seconds: float) -> dict[str, float | None]:
        return {m: self.metric(m, seconds) for m in ("count", "rps", "availability", "error_rate", "p50_ms",
                                                     "p95_ms", "p99_ms")}


def _filtered(qs: QuerySet[Any], **filters: str | None) -> QuerySet[Any]:
    return qs.filter(**{k: v for k, v in filters.items() if v})


def needs_sketch(metric: str) -> bool:
    """Whether a traffic metric is a latency percentile (p50_ms, p95_ms, ...)."""
    return metric.startswith("p") and metric.endswith("_ms")


def live_traffic(now: dt.datetime, seconds: float, *, service: str | None = None, operation: str | None = None,
                 pool: str | None = None, tier: str | None = None, sketch: bool = False) -> Stats:
    """What the gateways served in the last `seconds` (live signals)."""
    rows = _filtered(LiveTraffic.objects.filter(at__gt=now - dt.timedelta(seconds=seconds), at__lte=now),
                     service=service, operation=operation, pool=pool, tier=tier)
    return _aggregate([rows], sketch)


def _aggregate(parts: list[QuerySet[Any]], sketch: bool = False) -> Stats:
    """Counts, errors and latency sum of the rows: with `sketch`, the rows themselves with their sketches
    merged; else SQL aggregates, and the sketches merged only if they are asked for later."""
    if sketch:
        stats = Stats(sketch=Sketch())
        merge = stats.sketch.merge_encoded
        for rows in parts:
            for count, errors, latency_sum, data in rows.order_by().values_list(
                    "count", "errors", "latency_sum_ms", "latency_sketch"):
                stats.count += count
                stats.errors += errors
                stats.latency_sum += latency_sum
                merge(data)
        return stats
    count = errors = 0
    latency_sum = 0.0
    found = []
    for rows in parts:
        totals = rows.order_by().aggregate(count=Sum("count"), errors=Sum("errors"),
                                           latency_sum=Sum("latency_sum_ms"))
        if totals["count"] is not None:  # some rows
            found.append(rows)
            count += int(totals["count"])
            errors += int(totals["errors"] or 0)
            latency_sum += float(totals["latency_sum"] or 0.0)

    def sketches() -> Iterable[bytes | memoryview]:
        for rows in found:
            yield from rows.order_by().values_list("latency_sketch", flat=True)

    return Stats(count, errors, latency_sum, sketches=sketches)


@dataclass
class PoolLoad:
    utilisation: float | None
    in_flight: int
    waiting: int


def slot_busy_ms(busy_ms: float, interval_ms: float, capacity: int) -> float:
    """The busy time of one `LivePool` row, at most its capacity x its interval.

    The gateway integrates the requests it has in flight to a pool, and those beyond the pool's capacity wait in
    the upstream's queue rather than occupy a slot: counted as busy time, a backlog of 400 requests on 4 slots
    read as 100 (10,000 %) utilisation. Past capacity every slot is busy, so the row counts capacity x interval;
    the backlog itself is the `in_flight` metric. (Within one interval of about a second the clamp cannot tell
    a half-interval at twice the capacity from a full interval at capacity: both read as fully busy.)
    """
    return min(busy_ms, interval_ms * capacity)


def live_pool(now: dt.datetime, seconds: float, service: str, pool: str) -> PoolLoad:
    """How busy the gateways kept a pool: busy time (at most capacity, see `slot_busy_ms`) over capacity time,
    summed over workers."""
    rows = list(
        LivePool.objects.filter(service=service, pool=pool, at__gt=now - dt.timedelta(seconds=seconds), at__lte=now)
        .order_by("at").values_list("worker", "busy_ms", "interval_ms", "capacity", "in_flight", "waiting")
    )
    if not rows:
        return PoolLoad(None, 0, 0)
    busy = sum(slot_busy_ms(r[1], r[2], r[3]) for r in rows)
    capacity_time = sum(r[2] * r[3] for r in rows)
    latest: dict[str, tuple[int, int]] = {}
    for worker, _b, _i, _c, in_flight, waiting in rows:
        latest[worker] = (in_flight, waiting)
    return PoolLoad(busy / capacity_time if capacity_time else None, sum(v[0] for v in latest.values()),
                    sum(v[1] for v in latest.values()))


def rollup_windows(start: dt.datetime, end: dt.datetime) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """The rollup windows that add up to exactly the minute windows starting in [start, end): a list of
    (window_seconds, from, to), each meaning the rows of that resolution whose window starts in [from, to).

    The range splits into a head of minute rows up to the first whole hour, the whole hours in between (hour
    rows), and a tail of minute rows from the last whole hour on (windows are aligned to the minute and the
    hour in UTC). A range of less than a whole hour reads minute rows only.
    """
    first = math.ceil(start.timestamp() / MINUTE) * MINUTE  # the first minute window starting in the range
    after = math.ceil(end.timestamp() / MINUTE) * MINUTE  # the first minute window starting after it
    hour_first = math.ceil(first / HOUR) * HOUR
    hour_after = after // HOUR * HOUR
    if hour_first >= hour_after:
        return [(MINUTE, start, end)] if first < after else []
    head, tail = _when(hour_first), _when(hour_after)
    windows = [(HOUR, head, tail)]
    if first < hour_first:
        windows.insert(0, (MINUTE, start, head))
    if hour_after < after:
        windows.append((MINUTE, tail, end))
    return windows


def _when(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def rollup_rows(start: dt.datetime, end: dt.datetime, *, account: str | None = None, tier: str | None = None,
                service: str | None = None, operation: str | None = None,
                pool: str | None = None) -> list[QuerySet[Rollup]]:
    """The coarsest rollup rows that hold exactly the traffic whose minute window starts in [start, end), one
    query per resolution (each an index range: account, window_seconds, window_start): hour rows for whole
    hours, minute rows for the rest; an account's own rows, else the all-accounts rows."""
    parts: list[QuerySet[Rollup]] = []
    for seconds, low, high in rollup_windows(start, end):
        rows = Rollup.objects.filter(account=account or ALL_ACCOUNTS, window_seconds=seconds, window_start__gte=low,
                                     window_start__lt=high)
        for name, value in (("tier", tier), ("service", service), ("operation", operation), ("pool", pool)):
            if value:
                # Compared as an expression, so that no database picks an index by it: without statistics
                # SQLite prefers the narrower (tier, window_start) index and would read every row of the tier.
                rows = rows.alias(**{f"{name}_": Concat(F(name), Value(""))}).filter(**{f"{name}_": value})
        parts.append(rows)
    return parts


def rollup_stats(start: dt.datetime, end: dt.datetime, *, account: str | None = None, tier: str | None = None,
                 service: str | None = None, operation: str | None = None, pool: str | None = None,
                 sketch: bool = False) -> Stats:
    """Exact measurements from rollups whose window starts in [start, end).

    SQL aggregates for counts, errors and the latency sum; the sketches of the same rows are merged only when
    the result's `sketch` is used (a percentile, requests over a latency target), or read with the counts when
    `sketch` is true.
    """
    return _aggregate(rollup_rows(start, end, account=account, tier=tier, service=service, operation=operation,
                                  pool=pool), sketch)


# -- error budgets ----------------------------------------------------------------------------------------------


def objective_scope(objective: Objective) -> dict[str, str | None]:
    """Which rollups an objective is about: its agreement's tier or account, its service and operation."""
    agreement = objective.agreement
    return {
        "tier": agreement.tier.name if agreement.tier_id and agreement.tier else None,
        "account": account_key(agreement.account.external_id, agreement.account.pk) if agreement.account_id
        and agreement.account else None,
        "service": objective.service.name if objective.service_id and objective.service else None,
        "operation": objective.operation.name if objective.operation_id and objective.operation else None,
    }


def objective_window(objective: Objective, now: dt.datetime) -> tuple[dt.datetime, dt.datetime, float]:
    """The objective's current window (start, end) and its full length in days."""
    if objective.window == Objective.Window.ROLLING:
        days = float(objective.window_days or 30)
        return now - dt.timedelta(days=days), now, days
    local = timezone.localtime(now)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (start + dt.timedelta(days=32)).replace(day=1)
    return start, now, (nxt - start).total_seconds() / 86400


# -- service-level indicators of objectives ---------------------------------------------------------------------
#
# What each gateway outcome (`accord/gateway/proxy.py`, the `outcome` of a rollup) is for a run-time objective;
# the table is in docs/governance.md, "Service-level indicators".

# Refused by the customer's own contractual rate limit (429): not a valid event for any run-time objective.
NOT_VALID_OUTCOMES = frozenset({"rate_limited"})
# The client left before any answer came (recorded as 499): bad when it had waited longer than the objective's
# latency threshold, else not a valid event (nobody knows how it would have gone).
ABANDONED = "client_gone"
# The upstream failed the request even if a 2xx head had gone out (the answer broke off mid-body, which leaves
# the recorded status as it was): bad for availability and error rate whatever the status says. Every other
# outcome is bad when it was answered with a 5xx (the `errors` column): the upstream's 5xx, and the gateway's
# own 502, 503 (shed, queue_timeout, no_endpoint) and 504.
BROKEN_OFF_OUTCOMES = frozenset({"bad_gateway", "timeout"})


def abandon_threshold_ms(objective: Objective) -> float:
    """After how many milliseconds without an answer a request its client abandoned counts as bad.

    A latency objective's own target; for availability and error rate, the longest target of the agreement's
    latency objectives with the same scope (service and operation), else the setting ACCORD_SLI_ABANDON_MS
    (default 30 000 ms, the gateway's default upstream timeout).
    """
    if objective.kind == Objective.Kind.LATENCY:
        return float(objective.target)
    same_scope = Q(service__isnull=True) if objective.service_id is None else Q(service_id=objective.service_id)
    same_scope &= Q(operation__isnull=True) if objective.operation_id is None else Q(
        operation_id=objective.operation_id)
    longest = Objective.objects.filter(same_scope, agreement_id=objective.agreement_id,
                                       kind=Objective.Kind.LATENCY).aggregate(longest=Max("target"))["longest"]
    return float(longest) if longest is not None else float(settings.ACCORD_SLI_ABANDON_MS)


@dataclass
class Events:
    """What an objective's SLI counts over a window (docs/governance.md, "Service-level indicators").

    `requests` is everything the gateway measured in the objective's scope; `valid` of them count, `bad` of
    those are bad and the rest good; the others are excluded. `latencies` is the sketch of the valid events
    (latency objectives only).
    """

    requests: int
    valid: int
    bad: int
    threshold_ms: float
    latencies: Sketch | None = None

    @property
    def good(self) -> int:
        return self.valid - self.bad

    @property
    def excluded(self) -> int:
        return self.requests - self.valid


def _only(rows: QuerySet[Rollup], outcome: str) -> QuerySet[Rollup]:
    # Compared as an expression, like the filters of rollup_rows, so that no database picks an index by it.
    return rows.alias(outcome_=Concat(F("outcome"), Value(""))).filter(outcome_=outcome)


def objective_events(objective: Objective, start: dt.datetime, end: dt.datetime, *,
                     account: str | None = None) -> Events:
    """The valid, good and bad events of a run-time objective among the rollups whose window starts in
    [start, end); with `account` (its rollup key), only that account's share of them (one account under a
    tier's agreement: whatever its tier was when it called).

    Availability and error rate read SQL sums per outcome, and the sketches of abandoned requests only when
    there are some; latency reads every row's sketch, as its percentile needs them.
    """
    scope = objective_scope(objective)
    if account is not None:
        scope.update(account=account, tier=None)
    parts = rollup_rows(start, end, **scope)
    threshold = abandon_threshold_ms(objective)
    requests = excluded = bad = 0
    if objective.kind == Objective.Kind.LATENCY:
        latencies = Sketch()
        for rows in parts:
            for outcome, count, data in rows.order_by().values_list("outcome", "count", "latency_sketch"):
                requests += count
                if outcome in NOT_VALID_OUTCOMES:
                    excluded += count
                elif outcome == ABANDONED:
                    late = Sketch.decode(data).above(threshold)
                    latencies.merge(late)
                    excluded += count - late.count
                else:
                    latencies.merge_encoded(data)
        return Events(requests, requests - excluded, latencies.count_above(threshold), threshold, latencies)
    abandoned: list[QuerySet[Rollup]] = []
    for rows in parts:
        for outcome, count, errors in rows.order_by().values("outcome").annotate(
                n=Sum("count"), e=Sum("errors")).values_list("outcome", "n", "e"):
            requests += count
            if outcome in NOT_VALID_OUTCOMES:
                excluded += count
            elif outcome == ABANDONED:
                excluded += count  # until the sketches say how many waited past the threshold
                abandoned.append(rows)
            elif outcome in BROKEN_OFF_OUTCOMES:
                bad += count
            else:
                bad += errors or 0
    if abandoned:
        late = Sketch.merged(data for rows in abandoned
                             for data in _only(rows, ABANDONED).order_by().values_list("latency_sketch", flat=True))
        n = late.count_above(threshold)
        bad += n
        excluded -= n
    return Events(requests, requests - excluded, bad, threshold)


def objective_events_by_account(objective: Objective, start: dt.datetime, end: dt.datetime) -> dict[str, Events]:
    """`objective_events` for every account at once, by rollup key: the accounts whose traffic the objective
    judges (a tier's agreement: those that called while in the tier; an account's agreement: that account).

    A fixed number of queries whatever the number of accounts (per rollup resolution: one grouped sum, and one
    read of the abandoned requests' sketches; latency reads every row's sketch, grouped in Python)."""
    scope = objective_scope(objective)
    threshold = abandon_threshold_ms(objective)
    parts: list[QuerySet[Rollup]] = []
    for seconds, low, high in rollup_windows(start, end):
        rows: QuerySet[Rollup] = Rollup.objects.filter(window_seconds=seconds, window_start__gte=low,
                                                       window_start__lt=high)
        rows = rows.filter(account=scope["account"]) if scope["account"] else rows.exclude(account=ALL_ACCOUNTS)
        for name in ("tier", "service", "operation"):
            if scope[name]:
                rows = rows.filter(**{name: scope[name]})
        parts.append(rows)
    counts: dict[str, list[int]] = {}  # account -> [requests, excluded, bad]
    if objective.kind == Objective.Kind.LATENCY:
        sketches: dict[str, Sketch] = {}
        for rows in parts:
            for key, outcome, count, data in rows.order_by().values_list("account", "outcome", "count",
                                                                        "latency_sketch"):
                c = counts.setdefault(key, [0, 0, 0])
                latencies = sketches.setdefault(key, Sketch())
                c[0] += count
                if outcome in NOT_VALID_OUTCOMES:
                    c[1] += count
                elif outcome == ABANDONED:
                    late = Sketch.decode(data).above(threshold)
                    latencies.merge(late)
                    c[1] += count - late.count
                else:
                    latencies.merge_encoded(data)
        return {key: Events(c[0], c[0] - c[1], sketches[key].count_above(threshold), threshold, sketches[key])
                for key, c in counts.items()}
    for rows in parts:
        for key, outcome, count, errors in rows.order_by().values("account", "outcome").annotate(
                n=Sum("count"), e=Sum("errors")).values_list("account", "outcome", "n", "e"):
            c = counts.setdefault(key, [0, 0, 0])
            c[0] += count
            if outcome in NOT_VALID_OUTCOMES or outcome == ABANDONED:
                c[1] += count  # abandoned: until the sketches say how many waited past the threshold
            elif outcome in BROKEN_OFF_OUTCOMES:
                c[2] += count
            else:
                c[2] += errors or 0
        waited: dict[str, Sketch] = {}
        for key, data in _only(rows, ABANDONED).order_by().values_list("account", "latency_sketch"):
            waited.setdefault(key, Sketch()).merge_encoded(data)
        for key, sketch in waited.items():
            n = sketch.count_above(threshold)
            counts[key][2] += n
            counts[key][1] -= n
    return {key: Events(c[0], c[0] - c[1], c[2], threshold) for key, c in counts.items()}


def allowed_bad(objective: Objective) -> Fraction:
    """The share of valid events the objective allows to be bad (its error budget as a fraction), exactly:
    99.9 % availability allows 1/1000."""
    target = Fraction(objective.target)
    if objective.kind == Objective.Kind.AVAILABILITY:
        return max(Fraction(0), 1 - target / 100)
    if objective.kind == Objective.Kind.ERROR_RATE:
        return target / 100
    if objective.kind == Objective.Kind.LATENCY:
        return max(Fraction(0), 1 - Fraction(objective.percentile or Decimal(95)) / 100)
    raise ValueError(f"{objective.kind} is not a run-time objective")


def burn(bad: int, valid: int, allowed: Fraction) -> float | None:
    """How fast `bad` of `valid` events spend a budget allowing the share `allowed`: 1.0 spends it exactly over
    the objective's window. None without a valid event; with a zero budget (a 100 % objective) any bad event
    burns it infinitely fast (math.inf), and none burns nothing (0.0)."""
    if valid == 0:
        return None
    if allowed == 0:
        return math.inf if bad else 0.0
    return float(Fraction(bad, valid) / allowed)


def burn_rate(objective: Objective, now: dt.datetime, seconds: float) -> float | None:
    """How fast the budget burns over the last `seconds` (see `burn`)."""
    events = objective_events(objective, now - dt.timedelta(seconds=seconds), now)
    return burn(events.bad, events.valid, allowed_bad(objective))


@dataclass
class BudgetStatus:
    """An objective's SLI and error budget over its current window, computed exactly: shares are fractions of
    whole counts, turned into the nearest float only when shown (`as_dict`)."""

    objective: Objective
    start: dt.datetime
    end: dt.datetime
    events: Events
    sli: float | None  # % good, % bad (error rate), or the percentile's latency in ms; None without valid events
    met: bool | None
    allowed: Fraction
    consumed: float | None  # share of the budget spent (may exceed 1; math.inf for a spent zero budget)

    @property
    def requests(self) -> int:
        return self.events.requests

    @property
    def valid(self) -> int:
        return self.events.valid

    @property
    def bad(self) -> int:
        return self.events.bad

    @property
    def excluded(self) -> int:
        return self.events.excluded

    @property
    def remaining(self) -> float | None:
        if self.consumed is None:
            return None
        if math.isinf(self.consumed):
            return -math.inf
        if self.allowed == 0:
            return 1.0  # a zero budget with no bad event: nothing of it spent
        return float(1 - Fraction(self.events.bad, self.events.valid) / self.allowed)

    def sli_label(self) -> str:
        """The measured level as people read it: "99.950 %", "0.020 % errors", "p95 412 ms"; a dash without a valid
        event. Availability is rounded down and error rate up, so a rounded figure never looks better than the
        exact one (one bad request in a million is "99.999 %", not "100.000 %")."""
        if self.sli is None:
            return units.MISSING
        o = self.objective
        if o.kind == Objective.Kind.LATENCY:
            return f"p{units.number(o.percentile or Decimal(95))} {units.latency_ms(self.sli)}"
        rounding = ROUND_FLOOR if o.kind == Objective.Kind.AVAILABILITY else ROUND_CEILING
        shown = units.percent(Decimal(repr(self.sli)).quantize(Decimal("0.001"), rounding=rounding), 3)
        return shown if o.kind == Objective.Kind.AVAILABILITY else f"{shown} errors"

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: numbers as the nearest float to the exact value, infinity as "Infinity" (`json_number`)."""
        o = self.objective
        return {
            "agreement": o.agreement.name, "objective": o.name, "kind": o.kind, "target": json_number(o.target),
            "percentile": json_number(o.percentile),
            "window_start": self.start.isoformat(), "window_end": self.end.isoformat(),
            "requests": self.requests, "valid": self.valid, "good": self.events.good, "bad": self.bad,
            "excluded": self.excluded, "abandon_threshold_ms": json_number(self.events.threshold_ms),
            "sli": json_number(self.sli), "met": self.met, "budget": json_number(self.allowed),
            "consumed": json_number(self.consumed), "remaining": json_number(self.remaining),
        }


def budget_status(objective: Objective, now: dt.datetime | None = None) -> BudgetStatus:
    """An objective's SLI and budget over its current window (calendar month, or rolling N days)."""
    now = now or timezone.now()
    start, end, _days = objective_window(objective, now)
    return judge(objective, start, end, objective_events(objective, start, end))


def judge(objective: Objective, start: dt.datetime, end: dt.datetime, events: Events) -> BudgetStatus:
    """The SLI, verdict and budget of an objective from events counted over [start, end) (all its traffic, or
    one account's share of it)."""
    allowed = allowed_bad(objective)
    sli: float | None = None
    met: bool | None = None
    consumed: float | None = None
    if events.valid:
        share_bad = Fraction(events.bad, events.valid)
        if objective.kind == Objective.Kind.AVAILABILITY:
            sli = float((1 - share_bad) * 100)
        elif objective.kind == Objective.Kind.ERROR_RATE:
            sli = float(share_bad * 100)
        elif events.latencies is not None:
            sli = units.significant(events.latencies.quantile(float(objective.percentile or 95) / 100))
        met = share_bad <= allowed
        consumed = burn(events.bad, events.valid, allowed)
    return BudgetStatus(objective, start, end, events, sli, met, allowed, consumed)


def rule_label(rule: tuple[str, float, float, float]) -> str:
    from .expr import _fmt_window

    sev, rate, long, short = rule
    return f"{sev} {rate:g}x {_fmt_window(round(long))}/{_fmt_window(round(short))}"


def runtime_objectives() -> QuerySet[Objective]:
    today = timezone.localdate()
    return (
        Objective.objects.filter(kind__in=RUNTIME_KINDS)
        .filter(Q(agreement__effective_to__isnull=True) | Q(agreement__effective_to__gte=today),
                agreement__effective_from__lte=today)
        .select_related("agreement__tier", "agreement__account", "service", "operation")
    )


def find_objective(agreement: str, objective: str) -> Objective | None:
    return (
        Objective.objects.filter(agreement__name=agreement, name=objective)
        .select_related("agreement__tier", "agreement__account", "service", "operation").first()
    )


# -- policy signals ---------------------------------------------------------------------------------------------


def signal_value(signal: Signal, now: dt.datetime) -> float | None:
    """The current value of one signal of a policy condition."""
    seconds = signal.seconds
    if signal.subject == "budget":
        objective = find_objective(signal.args[0], signal.args[1])
        if objective is None:
            raise LookupError(f"no objective {signal.args[1]!r} in agreement {signal.args[0]!r}")
        if signal.metric == "burn_rate":
            return burn_rate(objective, now, seconds)
        status = budget_status(objective, now)
        return status.consumed if signal.metric == "consumed" else status.remaining
    if signal.subject == "pool" and signal.metric in ("utilisation", "in_flight", "waiting"):
        load = live_pool(now, seconds, signal.args[0], signal.args[1])
        return {"utilisation": load.utilisation, "in_flight": float(load.in_flight),
                "waiting": float(load.waiting)}[signal.metric]
    stats = live_traffic(now, seconds, service=signal.arg("service") or None,
                         operation=signal.arg("operation") or None, pool=signal.arg("pool") or None,
                         tier=signal.arg("tier") or None, sketch=needs_sketch(signal.metric))
    return stats.metric(signal.metric, seconds)


def signal_values(signals: Iterable[Signal], now: dt.datetime) -> Values:
    return {s: signal_value(s, now) for s in signals}


def objectives_of(agreements: Iterable[Agreement]) -> list[Objective]:
    return [o for a in agreements for o in a.objectives.all() if o.kind in RUNTIME_KINDS]
