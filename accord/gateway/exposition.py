"""Per-account, per-route Prometheus series of a gateway worker, cumulative since it started.

They come from the rollups the accumulator already keeps (`Accumulator._fold` hands each per-second tally to
`AccountSeries.add` as it folds it into its minute), so the request path pays nothing for them: the work is per
rollup key and second, not per request. A tally says its account, tier, service, operation and outcome, how many
requests it counts, how many of them were answered with a 5xx (`errors`), their latency sum and their DDSketch;
the histogram's buckets are read from the sketch with `Sketch.count_above`'s rule (a sketch bucket counts as at
most `le` when its representative value is), so `_count - _bucket{le=T}` is exactly what Accord's latency SLI
counts as slower than T.

The bucket bounds are fixed for a worker's life (a histogram's buckets cannot change under a running counter):
DEFAULT_BOUNDS_MS, every latency objective's target and the abandon threshold (ACCORD_SLI_ABANDON_MS), read when
the worker starts (`latency_bounds_ms`). Series beyond `max_series` label sets are not kept; what they counted is
in `dropped` (docs/gateway.md, "Metrics").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .measure import GAMMA, RollupKey, Tally

REQUESTS = "accord_gateway_account_requests_total"
DURATION = "accord_gateway_account_request_duration_seconds"
DROPPED = "accord_gateway_account_series_dropped_requests_total"
SERIES = "accord_gateway_account_series"
# Bounds (ms) every gateway has, whatever its objectives: a classic spread from 5 ms to 30 s.
DEFAULT_BOUNDS_MS: tuple[int, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
MAX_SERIES = 10_000

# (account, tier, service, operation, outcome)
SeriesKey = tuple[str, str, str, str, str]


def le_label(ms: float | Decimal) -> str:
    """A bound in milliseconds as the `le` label in seconds, written as Prometheus 3 normalises it ("0.3",
    "1.0", "30.0"), so rules that name a bucket match it on every version."""
    seconds = (Decimal(str(ms)) / 1000).normalize()
    text = format(seconds, "f")
    return text if "." in text else f"{text}.0"


def latency_bounds_ms() -> list[float]:
    """The histogram's bounds: the defaults, every latency objective's target and the abandon threshold."""
    from django.conf import settings

    from accord.agreements.models import Objective

    bounds = {float(b) for b in DEFAULT_BOUNDS_MS}
    bounds.add(float(settings.ACCORD_SLI_ABANDON_MS))
    bounds.update(float(t) for t in Objective.objects.filter(kind=Objective.Kind.LATENCY)
                  .values_list("target", flat=True).distinct())
    return sorted(b for b in bounds if b > 0)


class AccountSeries:
    """Cumulative per-account series of one worker: requests by outcome and 5xx, and a latency histogram."""

    def __init__(self, bounds_ms: list[float], max_series: int = MAX_SERIES) -> None:
        self.bounds_ms = sorted(bounds_ms)
        self.max_series = max_series
        # key -> [requests, 5xx, latency sum in ms, bucket counts...]
        self.series: dict[SeriesKey, list[float]] = {}
        self.dropped = 0  # requests of label sets beyond max_series
        self._bucket_of: dict[int, int] = {}  # sketch bucket key -> index of the first bound it is under
        self.changed = False
        self._dirty: set[SeriesKey] = set()  # series added to since the last report

    def _index(self, key: int) -> int:
        index = self._bucket_of.get(key)
        if index is None:
            value = 2 * GAMMA**key / (GAMMA + 1)
            index = next((i for i, b in enumerate(self.bounds_ms) if value <= b), len(self.bounds_ms))
            self._bucket_of[key] = index
        return index

    def add(self, key: RollupKey, tally: Tally) -> None:
        """Count a tally of a rollup key (second, account, service, operation, pool, outcome, tier)."""
        _second, account, service, operation, _pool, outcome, tier = key
        if not account:  # refused before an account was known: only in the aggregate counters
            return
        skey = (account, tier, service, operation, outcome)
        row = self.series.get(skey)
        if row is None:
            if len(self.series) >= self.max_series:
                self.dropped += tally.count
                self.changed = True
                return
            row = self.series[skey] = [0, 0, 0.0] + [0] * len(self.bounds_ms)
        self._dirty.add(skey)
        row[0] += tally.count
        row[1] += tally.errors
        row[2] += tally.latency_sum
        sketch = tally.sketch
        n = len(self.bounds_ms)
        if sketch.zero and n:
            row[3] += sketch.zero
        for bucket, count in sketch.bins.items():
            index = self._index(bucket)
            if index < n:
                row[3 + index] += count  # per bound, not yet cumulative: report() adds them up
        self.changed = True

    def report(self, full: bool = True) -> dict[str, Any]:
        """What the worker sends the supervisor: bounds, and per series its counts with cumulative buckets; every
        series when `full`, else only those counted since the last report (the supervisor keeps the others)."""
        rows = []
        keys = self.series if full else self._dirty
        for skey in keys:
            row = self.series[skey]
            buckets, running = [], 0
            for n in row[3:]:
                running += int(n)
                buckets.append(running)
            rows.append([*skey, int(row[0]), int(row[1]), row[2], buckets])
        self.changed = False
        self._dirty = set()
        return {"bounds_ms": self.bounds_ms, "rows": rows, "dropped": self.dropped, "full": full}


def merge_report(kept: dict[str, Any] | None, report: dict[str, Any], pid: int) -> dict[str, Any]:
    """The supervisor's view of a worker's series after a report: a full report replaces it, a partial one (of the
    same worker process) updates the series it names."""
    rows = {tuple(row[:5]): row for row in report.get("rows", [])}
    if kept is not None and not report.get("full", True) and kept.get("pid") == pid:
        rows = {**kept["rows"], **rows}
    return {"pid": pid, "bounds_ms": report.get("bounds_ms", []), "rows": rows, "dropped": report.get("dropped", 0)}


def _labels(account: str, tier: str, service: str, operation: str, outcome: str) -> str:
    return (f'account="{_escape(account)}",tier="{_escape(tier)}",service="{_escape(service)}",'
            f'operation="{_escape(operation)}",outcome="{_escape(outcome)}"')


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_account_series(reports: list[dict[str, Any]]) -> list[str]:
    """Exposition lines of the workers' account series, summed over workers (whose bounds may differ: a bucket
    is only shown when every worker reporting the series has it)."""
    requests: dict[tuple[str, ...], list[int]] = {}  # key + code class -> count
    totals: dict[tuple[str, ...], list[float]] = {}  # key -> [count, sum ms, workers reporting it]
    buckets: dict[tuple[str, ...], dict[str, list[int]]] = {}  # key -> le -> [count, workers with that bound]
    dropped = series = 0
    for report in reports:
        bounds = [le_label(b) for b in report.get("bounds_ms", [])]
        dropped += int(report.get("dropped", 0))
        kept = report.get("rows", [])
        kept = list(kept.values()) if isinstance(kept, dict) else kept
        series += len(kept)
        for account, tier, service, operation, outcome, count, errors, latency_sum, counts in kept:
            key = (account, tier, service, operation, outcome)
            for code_class, n in (("5xx", errors), ("other", count - errors)):
                requests.setdefault((*key, code_class), [0])[0] += n
            total = totals.setdefault(key, [0, 0.0, 0])
            total[0] += count
            total[1] += latency_sum
            total[2] += 1
            mine = buckets.setdefault(key, {})
            for le, n in zip(bounds, counts, strict=False):
                got = mine.setdefault(le, [0, 0])
                got[0] += n
                got[1] += 1
    lines = [f"# HELP {REQUESTS} Requests answered per account, tier, route and outcome; code_class 5xx or other.",
             f"# TYPE {REQUESTS} counter"]
    for (account, tier, service, operation, outcome, code_class), (n,) in sorted(requests.items()):
        if n or code_class == "other":
            lines.append(f'{REQUESTS}{{{_labels(account, tier, service, operation, outcome)},'
                         f'code_class="{code_class}"}} {n}')
    lines += [f"# HELP {DURATION} Request latency per account, tier, route and outcome (from the DDSketch).",
              f"# TYPE {DURATION} histogram"]
    for series_key, (count, latency_sum, workers) in sorted(totals.items()):
        labels = _labels(*series_key)
        for le, (n, having) in sorted(buckets[series_key].items(), key=lambda item: float(item[0])):
            if having == workers:
                lines.append(f'{DURATION}_bucket{{{labels},le="{le}"}} {n}')
        lines.append(f'{DURATION}_bucket{{{labels},le="+Inf"}} {int(count)}')
        lines.append(f"{DURATION}_sum{{{labels}}} {latency_sum / 1000!r}")
        lines.append(f"{DURATION}_count{{{labels}}} {int(count)}")
    lines += [f"# HELP {DROPPED} Requests not in the account series because a worker held its maximum of label sets.",
              f"# TYPE {DROPPED} counter", f"{DROPPED} {dropped}",
              f"# HELP {SERIES} Account label sets held, summed over workers (bounded per worker by --metrics-series).",
              f"# TYPE {SERIES} gauge", f"{SERIES} {series}"]
    return lines
