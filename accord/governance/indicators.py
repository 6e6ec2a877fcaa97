"""Service-level indicators from the gateway's measurements, and error budgets of agreement objectives.

Two sources: live signals (per second, per worker, no account: `LiveTraffic`, `LivePool`) for the last
minutes, and rollups (exact) for any window. Latency percentiles come from merged DDSketches, so they are within
1% of the exact value whatever the number of workers, hosts and windows.

Rollups come per minute and per hour, per account and for all accounts (`accord.gateway.flusher.rollup_rows`):
a query over days reads whole hours from the hour rows and only its ragged ends from minute rows, and without
an account filter it reads the all-accounts rows. Counts, errors and latency sums are a SQL aggregate; the
sketches are fetched and merged only when a percentile or a count above a latency threshold is asked for.

Availability is good / total where bad means answered with a 5xx (by the upstream or by the gateway, e.g. a
shed request); 4xx answers are the caller's doing and count as good.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import F, Q, QuerySet, Sum, Value
from django.db.models.functions import Concat
from django.utils import timezone

from accord.agreements.models import Agreement, Objective
from accord.gateway.measure import Sketch
from accord.gateway.models import ALL_ACCOUNTS, HOUR, MINUTE, LivePool, LiveTraffic, Rollup
from accord.gateway.snapshot import account_key

from .expr import Signal, Values

RUNTIME_KINDS = (Objective.Kind.AVAILABILITY, Objective.Kind.LATENCY, Objective.Kind.ERROR_RATE)
# Multiwindow, multi-burn-rate alerts for a 30-day objective (Google SRE workbook): severity, burn rate,
# long window, short window; the windows scale with the objective's own window. ACCORD_BURN_RULES overrides
# them with JSON like [["page", 14.4, 3600, 300], ...].
DEFAULT_BURN_RULES: list[tuple[str, float, int, int]] = [
    ("page", 14.4, 3600, 300),
    ("page", 6.0, 6 * 3600, 1800),
    ("ticket", 1.0, 3 * 86400, 6 * 3600),
]


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
            return 1 - self.errors / self.count
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


def allowed_bad(objective: Objective) -> float:
    """The share of requests the objective allows to be bad (its error budget as a fraction)."""
    target = float(objective.target)
    if objective.kind == Objective.Kind.AVAILABILITY:
        return max(0.0, 1 - target / 100)
    if objective.kind == Objective.Kind.ERROR_RATE:
        return target / 100
    if objective.kind == Objective.Kind.LATENCY:
        return max(0.0, 1 - float(objective.percentile or Decimal(95)) / 100)
    raise ValueError(f"{objective.kind} is not a run-time objective")


def bad_of(objective: Objective, stats: Stats) -> int:
    if objective.kind == Objective.Kind.LATENCY:
        return stats.sketch.count_above(float(objective.target))
    return stats.errors


def burn_rate(objective: Objective, now: dt.datetime, seconds: float) -> float | None:
    """How fast the budget burns over the last `seconds`: 1.0 spends it exactly over the objective's window."""
    stats = rollup_stats(now - dt.timedelta(seconds=seconds), now, **objective_scope(objective),
                         sketch=objective.kind == Objective.Kind.LATENCY)
    allowed = allowed_bad(objective)
    if stats.count == 0 or allowed <= 0:
        return None
    return (bad_of(objective, stats) / stats.count) / allowed


@dataclass
class BudgetStatus:
    objective: Objective
    start: dt.datetime
    end: dt.datetime
    total: int
    bad: int
    sli: float | None
    met: bool | None
    allowed: float
    consumed: float | None  # share of the budget spent (may exceed 1)

    @property
    def remaining(self) -> float | None:
        return None if self.consumed is None else 1 - self.consumed

    def as_dict(self) -> dict[str, Any]:
        o = self.objective
        return {
            "agreement": o.agreement.name, "objective": o.name, "kind": o.kind, "target": float(o.target),
            "percentile": float(o.percentile) if o.percentile is not None else None,
            "window_start": self.start.isoformat(), "window_end": self.end.isoformat(), "requests": self.total,
            "bad": self.bad, "sli": self.sli, "met": self.met, "budget": self.allowed, "consumed": self.consumed,
            "remaining": self.remaining,
        }


def budget_status(objective: Objective, now: dt.datetime | None = None) -> BudgetStatus:
    now = now or timezone.now()
    start, end, _days = objective_window(objective, now)
    stats = rollup_stats(start, end, **objective_scope(objective), sketch=objective.kind == Objective.Kind.LATENCY)
    bad = bad_of(objective, stats)
    allowed = allowed_bad(objective)
    sli: float | None
    if stats.count == 0:
        sli, met, consumed = None, None, None
    else:
        share_bad = bad / stats.count
        if objective.kind == Objective.Kind.AVAILABILITY:
            sli = (1 - share_bad) * 100
        elif objective.kind == Objective.Kind.ERROR_RATE:
            sli = share_bad * 100
        else:
            sli = stats.sketch.quantile(float(objective.percentile or 95) / 100)
        met = share_bad <= allowed
        consumed = share_bad / allowed if allowed > 0 else (0.0 if bad == 0 else float("inf"))
    return BudgetStatus(objective, start, end, stats.count, bad, sli, met, allowed, consumed)


def burn_rules(window_days: float) -> list[tuple[str, float, float, float]]:
    """The alert rules for an objective window: (severity, rate, long seconds, short seconds)."""
    raw = os.environ.get("ACCORD_BURN_RULES")
    rules = [tuple(r) for r in json.loads(raw)] if raw else DEFAULT_BURN_RULES
    scale = window_days / 30
    return [(str(sev), float(rate), float(long) * scale, float(short) * scale) for sev, rate, long, short in rules]


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
