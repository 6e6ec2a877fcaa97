"""Rollups reach the database: merged with stored rows exactly, by several writers at once, losing nothing."""

from __future__ import annotations

import threading

import pytest
from django.db import DatabaseError, connections

from accord.gateway.flusher import Flusher, write_rollups
from accord.gateway.measure import Accumulator, RollupKey, Sketch, Tally
from accord.gateway.models import Rollup
from accord.lib.testing import run_in_thread

T0 = 1_800_000_000


def fill(acc: Accumulator, n: int, account: str = "GLOBEX", latency: float = 2.0, outcome: str = "ok") -> None:
    for i in range(n):
        acc.record(T0 + i % 90, account, "booking", "read", "primary", outcome, 503 if outcome != "ok" else 200,
                   5, 50, latency + i % 7)


def stored(**filters: str) -> tuple[int, int, int, Sketch]:
    rows = Rollup.objects.filter(**filters)
    sketch = Sketch()
    for row in rows:
        sketch.merge(Sketch.decode(row.latency_sketch))
    return sum(r.count for r in rows), sum(r.errors for r in rows), sum(r.bytes_in for r in rows), sketch


@pytest.mark.django_db
def test_a_flush_writes_rows_and_a_second_merges_into_them() -> None:
    acc = Accumulator()
    fill(acc, 100)
    fill(acc, 10, outcome="server_error")
    first = acc.take()
    expected = Sketch()
    for t in first.values():
        expected.merge(t.sketch)
    write_rollups(first, 60)
    assert first == {}  # everything written
    assert Rollup.objects.count() == 3  # ok in two windows, server_error in one
    fill(acc, 100)
    for t in acc.tallies.values():
        expected.merge(t.sketch)
    write_rollups(acc.take(), 60)
    assert Rollup.objects.count() == 3
    count, errors, bytes_in, sketch = stored()
    assert (count, errors, bytes_in) == (210, 10, 1050)
    assert sketch == expected
    row = Rollup.objects.get(outcome="ok", window_start__second=0, window_start__minute=0)
    assert row.account == "GLOBEX" and row.service == "booking" and row.operation == "read" and row.pool == "primary"


@pytest.mark.django_db(transaction=True)
def test_several_writers_at_once_merge_exactly() -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def writer(seed: int) -> None:
        try:
            barrier.wait(30)
            for _ in range(5):
                acc = Accumulator()
                fill(acc, 40, latency=1.0 + seed)
                fill(acc, 3, account=f"ACME-{seed}")
                write_rollups(acc.take(), 60)
        except BaseException as e:
            errors.append(e)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert stored(account="GLOBEX")[0] == 4 * 5 * 40
    assert stored()[0] == 4 * 5 * 43
    assert stored()[3].count == 4 * 5 * 43
    assert Rollup.objects.filter(account="GLOBEX").count() == 1  # one row per key, however many writers


@pytest.mark.django_db(transaction=True)
def test_a_failed_flush_keeps_its_rollups_for_the_next_one() -> None:
    failures = [True]

    def flaky(tallies: dict[RollupKey, Tally], window: int) -> None:
        if failures.pop(0) if failures else False:
            raise DatabaseError("the database is restarting")
        write_rollups(tallies, window)

    async def scenario() -> tuple[bool, bool, bool, int, int]:
        acc = Accumulator()
        flusher = Flusher(acc, writer=flaky)
        fill(acc, 30)
        first = await flusher.flush()
        fill(acc, 12)
        second = await flusher.flush()
        closed = await flusher.close()
        return first, second, closed, flusher.failures, flusher.flushed

    first, second, closed, failures, flushed = run_in_thread(scenario())
    assert (first, second, closed, failures, flushed) == (False, True, True, 1, 42)
    assert stored()[0] == 42
