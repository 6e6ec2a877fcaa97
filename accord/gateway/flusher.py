"""Write in-memory rollups to the database every few seconds, off the event loop, merging with stored rows.

Several workers and hosts write the same keys: a flush first inserts any missing rows (ignoring conflicts),
then locks the rows of its keys in primary-key order, adds its counts and merges its sketches in Python, and
commits. A flush that fails (database down, deadlock) hands its rollups back to the accumulator to be retried
with the next one, so a request is counted exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.db import DatabaseError, connections, transaction

from .measure import Accumulator, RollupKey, Sketch, Tally
from .models import Rollup

BATCH = 500
ATTEMPTS = 5


def _when(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def write_rollups(tallies: dict[RollupKey, Tally], window_seconds: int) -> None:
    """Add the tallies to the stored rollups (synchronous; call it from a thread). Raises DatabaseError.

    Written keys are removed from `tallies`, so after a failure it holds exactly what is still to be written.
    """
    keys = sorted(tallies)
    for i in range(0, len(keys), BATCH):
        part = keys[i : i + BATCH]
        for attempt in range(ATTEMPTS):
            try:
                _write_batch({k: tallies[k] for k in part}, window_seconds)
            except DatabaseError:
                if attempt == ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))  # a deadlock or a busy database: let the other writer finish
            else:
                for k in part:
                    del tallies[k]
                break


def _write_batch(tallies: dict[RollupKey, Tally], window_seconds: int) -> None:
    empty = Sketch().encode()
    with transaction.atomic():
        Rollup.objects.bulk_create(
            [Rollup(window_start=_when(k[0]), window_seconds=window_seconds, account=k[1], service=k[2],
                    operation=k[3], pool=k[4], outcome=k[5], tier=k[6], latency_sketch=empty) for k in tallies],
            ignore_conflicts=True,
        )
        windows = {_when(k[0]) for k in tallies}
        accounts = {k[1] for k in tallies}
        services = {k[2] for k in tallies}
        rows = (
            Rollup.objects.select_for_update()
            .filter(window_start__in=windows, window_seconds=window_seconds, account__in=accounts,
                    service__in=services)
            .order_by("pk")
        )
        changed = []
        for row in rows:
            key = (int(row.window_start.timestamp()), row.account, row.service, row.operation, row.pool, row.outcome,
                   row.tier)
            tally = tallies.get(key)
            if tally is None:
                continue
            row.count += tally.count
            row.errors += tally.errors
            row.bytes_in += tally.bytes_in
            row.bytes_out += tally.bytes_out
            row.latency_sum_ms += tally.latency_sum
            sketch = Sketch.decode(row.latency_sketch)
            sketch.merge(tally.sketch)
            row.latency_sketch = sketch.encode()
            changed.append(row)
        if len(changed) != len(tallies):
            raise DatabaseError(f"rollup rows missing after insert ({len(changed)} of {len(tallies)})")
        Rollup.objects.bulk_update(
            changed, ["count", "errors", "bytes_in", "bytes_out", "latency_sum_ms", "latency_sketch", "updated_at"]
        )


class Flusher:
    """Moves an accumulator's rollups to the database every `interval` seconds without blocking requests."""

    def __init__(self, accumulator: Accumulator, interval: float = 2.0,
                 writer: Callable[[dict[RollupKey, Tally], int], None] = write_rollups) -> None:
        self.accumulator = accumulator
        self.interval = interval
        self.writer = writer
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="gateway-flush")
        self.flushed = 0  # requests written
        self.failures = 0
        self.last_error = ""
        self._lock = asyncio.Lock()

    async def flush(self) -> bool:
        """Write what has accumulated; on failure keep it for the next flush. Returns whether it was written."""
        async with self._lock:
            taken = self.accumulator.take()
            if not taken:
                return True
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self.executor, self._write, taken)
            except Exception as e:  # the database may be restarting: retry with the next flush
                self.accumulator.give_back(taken)
                self.failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
                print(f"gateway: flushing rollups failed, will retry: {self.last_error}", file=sys.stderr, flush=True)
                return False
            return True

    def _write(self, taken: dict[RollupKey, Tally]) -> None:
        total = sum(t.count for t in taken.values())
        try:
            self.writer(taken, self.accumulator.window_seconds)
        except Exception:
            self.flushed += total - sum(t.count for t in taken.values())
            connections.close_all()  # a broken connection is replaced on the next attempt
            raise
        self.flushed += total

    async def run(self, stopping: asyncio.Event) -> None:
        """Flush every interval until `stopping` is set (the final flush is the caller's, after requests end)."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)
            if not stopping.is_set():
                await self.flush()

    async def close(self, attempts: int = 10) -> bool:
        """Final flushes until everything is written (or attempts run out); then release the thread."""
        ok = False
        for attempt in range(attempts):
            ok = await self.flush()
            if ok:
                break
            await asyncio.sleep(min(2.0, 0.2 * (attempt + 1)))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, connections.close_all)
        self.executor.shutdown(wait=True)
        return ok
