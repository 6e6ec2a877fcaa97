"""Live signals: each worker writes, every second, what it served and how busy it kept each pool.

Governance reads the last few seconds of these rows to decide within seconds (rollups, with their one-minute
windows, stay the exact record for reports and error budgets). A live write that fails is dropped, not
retried: a signal that arrives late is worth nothing, and the rollups already hold every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from django.db import connections

from .measure import LiveKey, Tally
from .models import LivePool, LiveTraffic

if TYPE_CHECKING:
    from .proxy import Gateway

RETENTION_SECONDS = 15 * 60
PRUNE_EVERY = 60.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:80]


def _when(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def pool_rows(gateway: Gateway, worker: str, now: float, interval: float) -> list[LivePool]:
    """A sample of every pool gate of the gateway (call it on the event loop's thread)."""
    rows = []
    for (service, pool), gate in gateway.gates.items():
        busy, peak = gate.sample()
        rows.append(LivePool(at=_when(now), worker=worker, service=service, pool=pool,
                             interval_ms=max(1, round(interval * 1000)), busy_ms=busy * 1000.0,
                             capacity=gate.capacity, in_flight=gate.in_flight, waiting=gate.waiting, peak=peak))
    return rows


def traffic_rows(live: dict[LiveKey, Tally], worker: str) -> list[LiveTraffic]:
    return [
        LiveTraffic(at=_when(second), worker=worker, service=service, operation=operation, pool=pool, tier=tier,
                    count=t.count, errors=t.errors, latency_sum_ms=t.latency_sum, latency_sketch=t.sketch.encode())
        for (second, service, operation, pool, tier), t in live.items()
    ]


def write_live(traffic: list[LiveTraffic], pools: list[LivePool], prune_before: float | None, *,
               prune: tuple[str, ...] = ("traffic", "pools")) -> None:
    """Insert one interval's rows (synchronous; call it from a thread); `prune_before` deletes the rows before it of
    the tables `prune` names (a writer prunes what it writes: HAProxy's runner the pools, its collector the traffic,
    each by the clock its rows carry)."""
    try:
        if traffic:
            LiveTraffic.objects.bulk_create(traffic, batch_size=500)
        if pools:
            LivePool.objects.bulk_create(pools, batch_size=500)
        if prune_before is not None:
            if "traffic" in prune:
                LiveTraffic.objects.filter(at__lt=_when(prune_before)).delete()
            if "pools" in prune:
                LivePool.objects.filter(at__lt=_when(prune_before)).delete()
    except Exception:
        connections.close_all()  # a broken connection is replaced on the next attempt
        raise


class LiveReporter:
    """Writes a worker's live signals every `interval` seconds, off the event loop."""

    def __init__(self, gateway: Gateway, interval: float = 1.0) -> None:
        self.gateway = gateway
        self.interval = interval
        self.worker = worker_name()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="gateway-live")
        self.written = 0
        self.dropped = 0
        self._last_sample = time.monotonic()
        self._last_prune = 0.0

    async def report(self) -> None:
        loop = asyncio.get_running_loop()
        now_mono, now = time.monotonic(), time.time()
        interval, self._last_sample = now_mono - self._last_sample, now_mono
        # everything so far, the current second too: rows are additive, so a second may arrive in two parts
        traffic = traffic_rows(self.gateway.accumulator.take_live(int(now) + 1), self.worker)
        pools = pool_rows(self.gateway, self.worker, now, interval)
        prune = None
        if now_mono - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now_mono
            prune = now - RETENTION_SECONDS
        try:
            await loop.run_in_executor(self.executor, write_live, traffic, pools, prune)
        except Exception as e:
            self.dropped += 1
            print(f"gateway: live signals dropped: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        else:
            self.written += 1

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)
            if not stopping.is_set():
                await self.report()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, connections.close_all)
        self.executor.shutdown(wait=True)
