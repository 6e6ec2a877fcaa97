"""Run-time objectives judged for many accounts at once.

The same SLI as `accord.governance.indicators.objective_events` (the outcomes that are not valid events, the
broken-off answers that are bad, the 5xx that are bad, abandoned requests judged by their sketches), read in
set-based queries: one per span and rollup resolution for all the accounts an objective judges, grouped by
account and outcome, instead of one per account and day. A report of 1,000 accounts reads a day of an objective
in one query, not 1,000.

Accounts with abandoned requests in a span are rare; their span is judged by `objective_events` itself (it needs
the sketches of those rows), so both paths agree by construction. Latency objectives read every row's sketch,
grouped by account in the same queries.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.db.models import F, QuerySet, Sum, Value
from django.db.models.functions import Concat

from accord.agreements.models import Objective
from accord.gateway.measure import Sketch
from accord.gateway.models import Rollup
from accord.governance.indicators import (
    ABANDONED,
    BROKEN_OFF_OUTCOMES,
    NOT_VALID_OUTCOMES,
    Events,
    abandon_threshold_ms,
    objective_events,
    objective_scope,
    rollup_windows,
)

CHUNK = 500  # accounts per IN list: far below every database's limit on query parameters


def _rows(keys: list[str], start: dt.datetime, end: dt.datetime, service: str | None,
          operation: str | None) -> Iterable[QuerySet[Rollup]]:
    """The rows of these accounts that hold exactly the traffic whose minute window starts in [start, end)
    (`indicators.rollup_rows` for several accounts)."""
    for seconds, low, high in rollup_windows(start, end):
        rows = Rollup.objects.filter(account__in=keys, window_seconds=seconds, window_start__gte=low,
                                     window_start__lt=high)
        for name, value in (("service", service), ("operation", operation)):
            if value:  # as an expression, like rollup_rows: no database picks an index by it
                rows = rows.alias(**{f"{name}_": Concat(F(name), Value(""))}).filter(**{f"{name}_": value})
        yield rows


def events_by_account(objective: Objective, start: dt.datetime, end: dt.datetime, keys: list[str], *,
                      threshold: float | None = None) -> dict[str, Events]:
    """`objective_events(objective, start, end, account=key)` for every key, in a few queries."""
    scope = objective_scope(objective)
    threshold = abandon_threshold_ms(objective) if threshold is None else threshold
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # requests, excluded, bad
    latencies: dict[str, Sketch] = defaultdict(Sketch)
    fallback: set[str] = set()
    latency = objective.kind == Objective.Kind.LATENCY
    for i in range(0, len(keys), CHUNK):
        chunk = keys[i:i + CHUNK]
        for rows in _rows(chunk, start, end, scope["service"], scope["operation"]):
            if latency:
                for key, outcome, count, data in rows.order_by().values_list("account", "outcome", "count",
                                                                              "latency_sketch"):
                    c = counts[key]
                    c[0] += count
                    if outcome in NOT_VALID_OUTCOMES:
                        c[1] += count
                    elif outcome == ABANDONED:
                        late = Sketch.decode(data).above(threshold)
                        latencies[key].merge(late)
                        c[1] += count - late.count
                    else:
                        latencies[key].merge_encoded(data)
                continue
            for key, outcome, count, errors in rows.order_by().values("account", "outcome").annotate(
                    n=Sum("count"), e=Sum("errors")).values_list("account", "outcome", "n", "e"):
                c = counts[key]
                c[0] += count
                if outcome in NOT_VALID_OUTCOMES:
                    c[1] += count
                elif outcome == ABANDONED:
                    fallback.add(key)
                elif outcome in BROKEN_OFF_OUTCOMES:
                    c[2] += count
                else:
                    c[2] += errors or 0
    out: dict[str, Events] = {}
    for key in keys:
        if key in fallback:
            out[key] = objective_events(objective, start, end, account=key)
            continue
        requests, excluded, bad = counts.get(key, (0, 0, 0))
        if latency:
            sketch = latencies.get(key, Sketch())
            out[key] = Events(requests, requests - excluded, sketch.count_above(threshold), threshold, sketch)
        else:
            out[key] = Events(requests, requests - excluded, bad, threshold)
    return out
