"""Store rollups in tests the way the gateway does: through the flusher, so the hour and all-accounts rows
that indicators read are written with the minute row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from accord.gateway.flusher import write_rollups
from accord.gateway.measure import Tally


def add_rollup(start: dt.datetime, *, count: int, errors: int = 0, latencies: Iterable[float] = (),
               latency_sum: float | None = None, account: str = "ACME", tier: str = "platinum",
               service: str = "booking", operation: str = "", pool: str = "primary", outcome: str | None = None,
               bytes_in: int = 0, bytes_out: int = 0) -> None:
    """Add `count` requests (`errors` of them 5xx) with these latencies to the minute of `start`."""
    tally = Tally()
    for v in latencies:
        tally.sketch.add(v)
        tally.latency_sum += v
    if latency_sum is not None:
        tally.latency_sum = latency_sum
    tally.count, tally.errors, tally.bytes_in, tally.bytes_out = count, errors, bytes_in, bytes_out
    epoch = int(start.timestamp())
    key = (epoch - epoch % 60, account, service, operation, pool,
           outcome if outcome is not None else ("server_error" if errors else "ok"), tier)
    tallies = {key: tally}
    write_rollups(tallies, 60)
    assert not tallies
