"""Rollups reach the database: merged with stored rows exactly, by several writers at once, losing nothing."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.db import DatabaseError, OperationalError, connections

from accord.gateway.flusher import Flusher, write_rollups
from accord.gateway.measure import Accumulator, RollupKey, Sketch, Tally
from accord.gateway.models import ALL_ACCOUNTS, FlushBatch, Rollup
from accord.lib.testing import run_in_thread

T0 = 1_800_000_000


def fill(acc: Accumulator, n: int, account: str = "GLOBEX", latency: float = 2.0, outcome: str = "ok") -> None:
    for i in range(n):
        acc.record(T0 + i % 90, account, "booking", "read", "primary", outcome, 503 if outcome != "ok" else 200,
                   5, 50, latency + i % 7)


def stored(**filters: str) -> tuple[int, int, int, Sketch]:
    """Totals of the per-account minute rows (what the gateway measured)."""
    rows = Rollup.objects.per_account_minutes().filter(**filters)
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
    assert Rollup.objects.per_account_minutes().count() == 3  # ok in two windows, server_error in one
    fill(acc, 100)
    for t in acc.tallies.values():
        expected.merge(t.sketch)
    write_rollups(acc.take(), 60)
    assert Rollup.objects.per_account_minutes().count() == 3
    count, errors, bytes_in, sketch = stored()
    assert (count, errors, bytes_in) == (210, 10, 1050)
    assert sketch == expected
    row = Rollup.objects.per_account_minutes().get(outcome="ok", window_start__second=0, window_start__minute=0)
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
    # one row per key, however many writers: the minute row and the hour row of GLOBEX, and per account the
    # all-accounts rows add up exactly
    assert Rollup.objects.filter(account="GLOBEX").count() == 2
    for seconds in (60, 3600):
        everyone = Rollup.objects.filter(window_seconds=seconds, account=ALL_ACCOUNTS)
        assert everyone.count() == 1
        assert everyone.get().count == 4 * 5 * 43
        assert Sketch.decode(everyone.get().latency_sketch) == stored()[3]


@pytest.mark.django_db(transaction=True)
def test_a_failed_flush_keeps_its_rollups_for_the_next_one() -> None:
    failures = [True]

    def flaky(tallies: dict[RollupKey, Tally], window: int, flush: str) -> None:
        if failures.pop(0) if failures else False:
            raise DatabaseError("the database is restarting")
        write_rollups(tallies, window, flush)

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


def rows_of(**filters: object) -> dict[tuple[int, str, str, str], tuple[int, int, int, Sketch]]:
    """(window seconds, window start as HH:MM, account, outcome) -> (count, errors, bytes_in, sketch)."""
    return {(r.window_seconds, f"{r.window_start:%H:%M}", r.account if r.account != ALL_ACCOUNTS else "*", r.outcome):
            (r.count, r.errors, r.bytes_in, Sketch.decode(r.latency_sketch))
            for r in Rollup.objects.filter(**filters)}


def sketch_of(*latencies: float) -> Sketch:
    sketch = Sketch()
    for v in latencies:
        sketch.add(v)
    return sketch


@pytest.mark.django_db
def test_each_key_adds_to_its_minute_row_its_hour_row_and_the_all_accounts_rows() -> None:
    acc = Accumulator()
    # 1_800_000_000 is 08:00:00 UTC; 08:59 and 09:00 fall in different hours
    acc.record(T0 + 10, "GLOBEX", "booking", "read", "primary", "ok", 200, 1, 0, 5.0)
    acc.record(T0 + 70, "GLOBEX", "booking", "read", "primary", "ok", 200, 2, 0, 6.0)
    acc.record(T0 + 80, "ACME", "booking", "read", "primary", "ok", 200, 4, 0, 7.0)
    acc.record(T0 + 3599, "ACME", "booking", "read", "primary", "server_error", 503, 8, 0, 8.0)
    acc.record(T0 + 3600, "ACME", "booking", "read", "primary", "ok", 200, 16, 0, 9.0)
    write_rollups(acc.take(), 60)
    assert rows_of() == {
        (60, "08:00", "GLOBEX", "ok"): (1, 0, 1, sketch_of(5.0)),
        (60, "08:01", "GLOBEX", "ok"): (1, 0, 2, sketch_of(6.0)),
        (60, "08:01", "ACME", "ok"): (1, 0, 4, sketch_of(7.0)),
        (60, "08:59", "ACME", "server_error"): (1, 1, 8, sketch_of(8.0)),
        (60, "09:00", "ACME", "ok"): (1, 0, 16, sketch_of(9.0)),
        (3600, "08:00", "GLOBEX", "ok"): (2, 0, 3, sketch_of(5.0, 6.0)),
        (3600, "08:00", "ACME", "ok"): (1, 0, 4, sketch_of(7.0)),
        (3600, "08:00", "ACME", "server_error"): (1, 1, 8, sketch_of(8.0)),
        (3600, "09:00", "ACME", "ok"): (1, 0, 16, sketch_of(9.0)),
        (60, "08:00", "*", "ok"): (1, 0, 1, sketch_of(5.0)),
        (60, "08:01", "*", "ok"): (2, 0, 6, sketch_of(6.0, 7.0)),
        (60, "08:59", "*", "server_error"): (1, 1, 8, sketch_of(8.0)),
        (60, "09:00", "*", "ok"): (1, 0, 16, sketch_of(9.0)),
        (3600, "08:00", "*", "ok"): (3, 0, 7, sketch_of(5.0, 6.0, 7.0)),
        (3600, "08:00", "*", "server_error"): (1, 1, 8, sketch_of(8.0)),
        (3600, "09:00", "*", "ok"): (1, 0, 16, sketch_of(9.0)),
    }


def test_no_account_key_can_be_the_all_accounts_value() -> None:
    from accord.customers.models import Account
    from accord.gateway.snapshot import ANONYMOUS, account_key

    longest = Account._meta.get_field("external_id").max_length
    assert longest is not None and len(ALL_ACCOUNTS) > longest
    assert len(ALL_ACCOUNTS) == Rollup._meta.get_field("account").max_length
    assert account_key("*", 7) == "*" != ALL_ACCOUNTS  # an external id may be "*": it is just an account
    assert ALL_ACCOUNTS not in ("", ANONYMOUS.account.decode(), account_key(None, 10**99))


@pytest.mark.django_db(transaction=True)
def test_a_flush_failing_after_the_minute_rows_writes_nothing_and_the_retry_counts_everything_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.gateway import flusher as flusher_module

    real_update = flusher_module._update_rows
    calls: list[int] = []
    broken = [True]

    def update_then_fail(updates: list[tuple[object, ...]]) -> None:
        real_update(updates)  # the minute rows are updated in the transaction ...
        calls.append(len(updates))
        if broken[0] and len(calls) % 2 == 0:  # ... and the database goes away before the hour rows commit
            raise DatabaseError("server closed the connection unexpectedly")

    monkeypatch.setattr(flusher_module, "_update_rows", update_then_fail)
    monkeypatch.setattr(flusher_module, "BATCH", 2)  # several batches: each commits whole or not at all

    async def scenario() -> tuple[bool, bool, int, int]:
        acc = Accumulator()
        flusher = Flusher(acc)
        for minute, account in enumerate(["A", "B", "C", "D", "E"]):
            acc.record(T0 + 60 * minute, account, "booking", "read", "primary", "ok", 200, 1, 0, 10.0 + minute)
        failed = await flusher.flush()
        pending = flusher.pending  # held for the retry, apart from new measurements
        left = await asyncio.get_running_loop().run_in_executor(flusher.executor, Rollup.objects.count)
        broken[0] = False
        retried = await flusher.flush()
        await flusher.close()
        return failed, retried, pending, left, flusher.flushed

    failed, retried, pending, left, flushed = run_in_thread(scenario())
    assert (failed, retried, pending, left, flushed) == (False, True, 5, 0, 5)  # nothing half-written
    assert Rollup.objects.per_account_minutes().count() == 5
    assert stored()[0] == 5
    everyone = Rollup.objects.get(window_seconds=3600, account=ALL_ACCOUNTS)
    assert everyone.count == 5 and Sketch.decode(everyone.latency_sketch) == sketch_of(10, 11, 12, 13, 14)
    assert sum(Rollup.objects.filter(window_seconds=60, account=ALL_ACCOUNTS).values_list("count", flat=True)) == 5


@pytest.mark.django_db(transaction=True)
def test_a_later_batch_failing_keeps_only_its_own_keys_for_the_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.gateway import flusher as flusher_module

    real_write = flusher_module._write_batch
    batches: list[int] = []

    def second_batch_fails(rows: dict[flusher_module.RowKey, Tally], window_seconds: int, batch: str) -> None:
        batches.append(len(rows))
        if len(batches) > 1:
            raise DatabaseError("deadlock detected")
        real_write(rows, window_seconds, batch)

    monkeypatch.setattr(flusher_module, "_write_batch", second_batch_fails)
    monkeypatch.setattr(flusher_module, "BATCH", 2)
    monkeypatch.setattr(flusher_module, "ATTEMPTS", 2)
    tallies: dict[RollupKey, Tally] = {}
    acc = Accumulator()
    for minute, account in enumerate(["A", "B", "C"]):
        acc.record(T0 + 60 * minute, account, "booking", "read", "primary", "ok", 200, 1, 0, 10.0)
    tallies = acc.take()
    with pytest.raises(DatabaseError):
        write_rollups(tallies, 60)
    assert [k[1] for k in tallies] == ["C"]  # A and B committed with their hour and all-accounts rows
    assert Rollup.objects.get(window_seconds=3600, account=ALL_ACCOUNTS).count == 2
    monkeypatch.setattr(flusher_module, "_write_batch", real_write)
    write_rollups(tallies, 60)
    assert Rollup.objects.get(window_seconds=3600, account=ALL_ACCOUNTS).count == 3
    assert stored()[0] == 3


@pytest.mark.django_db(transaction=True)
def test_the_migration_builds_the_same_hour_and_all_accounts_rows_from_stored_minute_rows() -> None:
    import importlib
    import random

    from django.apps import apps
    from django.db import connection

    rng = random.Random(5)
    for _ in range(4):
        acc = Accumulator()
        for _ in range(300):
            acc.record(T0 + rng.uniform(0, 3 * 3600), rng.choice(["A", "B", "C"]), rng.choice(["booking", "search"]),
                       "read", "primary", rng.choice(["ok", "ok", "server_error"]), 200, 1, 2,
                       rng.lognormvariate(3, 1))
        write_rollups(acc.take(), 60)

    def coarse() -> dict[tuple[object, ...], tuple[int, int, int, int, Sketch]]:
        return {(r.window_seconds, r.window_start, r.account, r.service, r.outcome):
                (r.count, r.errors, r.bytes_in, r.bytes_out, Sketch.decode(r.latency_sketch))
                for r in Rollup.objects.exclude(pk__in=Rollup.objects.per_account_minutes().values("pk"))}

    written = coarse()
    assert len(written) > 20
    Rollup.objects.filter(window_seconds=3600).update(count=0)  # whatever is there is replaced
    migration = importlib.import_module("accord.gateway.migrations.0003_rollup_hours_all_accounts")

    class Editor:
        pass

    editor = Editor()
    editor.connection = connection  # type: ignore[attr-defined]
    migration.build_hours_and_totals(apps, editor)
    assert coarse() == written


class CutAfterCommit:
    """Every database connection's commit goes through, then the connection is cut before the answer is read (as
    when a network drops between the database's commit and its reply): the caller gets an error, the rows stay."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, commits: set[int]) -> None:
        from django.db import connection

        self.cuts = 0
        self.seen = 0
        wrapper = type(connections["default"])
        real = wrapper._commit
        assert connection.vendor in ("sqlite", "postgresql")

        def commit(db: Any) -> None:
            real(db)
            self.seen += 1
            if self.seen in commits:
                self.cuts += 1
                db.connection.close()
                raise OperationalError("server closed the connection unexpectedly (after the commit)")

        monkeypatch.setattr(wrapper, "_commit", commit)


@pytest.mark.django_db(transaction=True)
def test_a_batch_committed_whose_answer_was_lost_is_skipped_on_retry_not_counted_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import accord.gateway.flusher as flusher

    monkeypatch.setattr(flusher, "BATCH", 2)  # 3 keys: two batches, the second cut after its commit
    acc = Accumulator()
    fill(acc, 100)  # two minutes of ok
    fill(acc, 7, outcome="server_error")
    taken = acc.take()
    assert len(taken) == 3
    cut = CutAfterCommit(monkeypatch, commits={2})
    write_rollups(taken, 60)
    assert cut.cuts == 1 and taken == {}
    assert stored()[:2] == (107, 7)
    assert FlushBatch.objects.count() == 2  # each batch's id, recorded with it


@pytest.mark.django_db(transaction=True)
def test_a_failed_flush_whose_commit_went_through_is_retried_with_its_ids_and_counted_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import accord.gateway.flusher as flusher

    monkeypatch.setattr(flusher, "ATTEMPTS", 1)  # the failure reaches the flusher, which retries with its next flush
    cut = CutAfterCommit(monkeypatch, commits={1})

    async def scenario() -> tuple[bool, bool, int, int]:
        acc = Accumulator()
        flusher = Flusher(acc)
        fill(acc, 30)
        first = await flusher.flush()
        held = flusher.pending
        fill(acc, 12)  # measured meanwhile, into the same keys as the failed flush
        second = await flusher.flush()
        await flusher.close()
        return first, second, held, flusher.flushed

    first, second, held, flushed = run_in_thread(scenario())
    assert cut.cuts == 1
    assert (first, second, held) == (False, True, 30)
    assert stored()[0] == 42  # not 72: the retried batch was found committed and skipped
    assert flushed == 42  # the retried batch once (found committed), the new measurements once


@pytest.mark.django_db
def test_old_batch_ids_are_forgotten() -> None:
    import datetime as dt

    from django.utils import timezone

    from accord.gateway.flusher import forget_batches

    now = timezone.now()
    FlushBatch.objects.create(id="old:1", written_at=now - dt.timedelta(days=2))
    FlushBatch.objects.create(id="new:1", written_at=now)
    assert forget_batches(now - dt.timedelta(days=1)) == 1
    assert list(FlushBatch.objects.values_list("id", flat=True)) == ["new:1"]
