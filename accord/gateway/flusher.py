"""Write in-memory rollups to the database every few seconds, off the event loop, merging with stored rows.

Each measured key adds to four rows (`rollup_rows`): its minute row, the hour row of its account, and the minute
and hour rows of all accounts (account `ALL_ACCOUNTS`), so that indicators over days read a few hour rows
instead of every minute of every account. The four are written in one transaction, so they always agree.

Several workers and hosts write the same keys: a flush first inserts any missing rows (ignoring conflicts, in
one key order for every writer), then locks the rows of its keys in primary-key order, adds its counts, merges
its sketches in Python, and commits. A flush that fails (database down, deadlock) is retried with the next one,
so a request is counted exactly once, in every row it adds to.

A failed commit does not say whether it happened: the connection can be cut after the database committed and
before its answer arrived. So every batch has an id (the flush's id and the batch's first key), inserted into
`FlushBatch` in the batch's own transaction; a batch retried after such a failure finds its id there and is
skipped instead of counted twice. A flush that failed keeps its rollups apart, as they were (not merged with
what was measured since, which would change its batches), and is retried whole, with its ids, before anything
newer is written.

The API keys' usage (requests per key and UTC day, `CredentialUsage`) is written after the rollups the same way:
one transaction under a batch id of its own, retried whole under that id after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from accord.catalog.models import ApiCredential, CredentialUsage
from accord.ops.heartbeat import Beat

from .measure import Accumulator, KeyUses, RollupKey, Sketch, Tally
from .models import ALL_ACCOUNTS, HOUR, FlushBatch, Rollup

BATCH = 500  # measured keys per transaction (each adds to up to four rows)
ATTEMPTS = 5
# Rollup keys a worker keeps while its database is away (about 1 KB each): beyond, the oldest are dropped.
BUFFER_KEYS = 100_000
# Batch ids kept this long (a retried batch is retried within the outage its worker waits out), then deleted.
BATCH_IDS_KEPT = dt.timedelta(days=1)

# A stored row: (window_seconds, window start in epoch seconds, account, service, operation, pool, outcome, tier)
RowKey = tuple[int, int, str, str, str, str, str, str]

_COLUMNS = ("window_start", "window_seconds", "account", "service", "operation", "pool", "outcome", "tier",
            "count", "errors", "bytes_in", "bytes_out", "latency_sum_ms", "latency_sketch", "updated_at")
_EMPTY = Sketch().encode()


def _when(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def rollup_rows(tallies: Mapping[RollupKey, Tally], window_seconds: int) -> dict[RowKey, Tally]:
    """The rows some tallies add to, each with what it gets: one pass over the tallies.

    Every tally goes to its own row, to the hour row of its key (when its window divides the hour) and to the
    all-accounts rows of its window and hour. A row that gets a single tally shares it (the tallies are only
    read); a row that gets several gets a new tally merging them.
    """
    hourly = window_seconds < HOUR and HOUR % window_seconds == 0
    parts: dict[RowKey, list[Tally]] = {}
    for (start, account, service, operation, pool, outcome, tier), tally in tallies.items():
        targets: list[RowKey] = [(window_seconds, start, ALL_ACCOUNTS, service, operation, pool, outcome, tier)]
        if account != ALL_ACCOUNTS:  # cannot happen (no account key is that long); never count a tally twice
            targets.append((window_seconds, start, account, service, operation, pool, outcome, tier))
        if hourly:
            hour = start - start % HOUR
            targets.append((HOUR, hour, ALL_ACCOUNTS, service, operation, pool, outcome, tier))
            if account != ALL_ACCOUNTS:
                targets.append((HOUR, hour, account, service, operation, pool, outcome, tier))
        for target in targets:
            got = parts.get(target)
            if got is None:
                parts[target] = [tally]
            else:
                got.append(tally)
    rows: dict[RowKey, Tally] = {}
    for target, got in parts.items():
        if len(got) == 1:
            rows[target] = got[0]
        else:
            merged = rows[target] = Tally()
            for tally in got:
                merged.merge(tally)
    return rows


def batch_id(flush: str, first: RollupKey) -> str:
    """The id of the batch of a flush that starts with a key: the same however often the flush is retried (its
    written batches removed, the rest split again from the same keys, in the same places)."""
    return f"{flush}:{hashlib.sha1(repr(first).encode()).hexdigest()[:20]}"


def write_rollups(tallies: dict[RollupKey, Tally], window_seconds: int, flush: str | None = None) -> None:
    """Add the tallies to the stored rollups (synchronous; call it from a thread). Raises DatabaseError.

    Written keys are removed from `tallies`, so after a failure it holds exactly what is still to be written:
    a batch of keys commits with its hour and all-accounts rows, or none of them. `flush` names the flush: called
    again with the same name and what is left of the same tallies, a batch already committed (its answer lost)
    is skipped. Without a name each call is a new flush.
    """
    flush = flush or uuid.uuid4().hex
    keys = sorted(tallies)
    for i in range(0, len(keys), BATCH):
        part = keys[i : i + BATCH]
        rows = rollup_rows({k: tallies[k] for k in part}, window_seconds)
        batch = batch_id(flush, part[0])
        for attempt in range(ATTEMPTS):
            try:
                _write_batch(rows, window_seconds, batch)
            except DatabaseError:
                if attempt == ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))  # a deadlock or a busy database: let the other writer finish
            else:
                for k in part:
                    del tallies[k]
                break


def give_back_key_uses(into: KeyUses, uses: KeyUses) -> None:
    """Merge counts of key uses back into an accumulator's (a write that was never tried)."""
    for key, (count, last) in uses.items():
        mine = into.get(key)
        if mine is None:
            into[key] = [count, last]
        else:
            mine[0] += count
            mine[1] = max(mine[1], last)


def write_key_uses(uses: KeyUses, name: str) -> None:
    """Add requests per (API key, UTC day) to `CredentialUsage` and move each key's `last_used_at` forward, in one
    transaction claimed under `name` (a retry of a commit whose answer was lost changes nothing). Uses of a key
    deleted since are left out. Raises DatabaseError."""
    if not uses:
        return
    ids = sorted({credential for credential, _day in uses})
    ops = connection.ops
    qn = ops.quote_name
    usage, credentials = qn(CredentialUsage._meta.db_table), qn(ApiCredential._meta.db_table)
    with transaction.atomic():
        if not _claim_batch(f"{name}:keys", ops.adapt_datetimefield_value(timezone.now())):
            return
        known = set(ApiCredential.objects.filter(pk__in=ids).values_list("pk", flat=True))
        rows = [(credential, dt.date(1970, 1, 1) + dt.timedelta(days=day), count)
                for (credential, day), (count, _last) in sorted(uses.items()) if credential in known]
        last: dict[int, int] = {}
        for (credential, _day), (_count, second) in uses.items():
            if credential in known:
                last[credential] = max(second, last.get(credential, 0))
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {usage} ({qn('credential_id')}, {qn('day')}, {qn('requests')}) VALUES (%s, %s, %s) "
                f"ON CONFLICT ({qn('credential_id')}, {qn('day')}) "
                f"DO UPDATE SET {qn('requests')} = {usage}.{qn('requests')} + excluded.{qn('requests')}",
                [(c, ops.adapt_datefield_value(d), n) for c, d, n in rows])
            cursor.executemany(
                f"UPDATE {credentials} SET {qn('last_used_at')} = %s WHERE id = %s "
                f"AND ({qn('last_used_at')} IS NULL OR {qn('last_used_at')} < %s)",
                [(at, credential, at) for credential, second in sorted(last.items())
                 for at in [ops.adapt_datetimefield_value(_when(second))]])


def _claim_batch(batch: str, now: Any) -> bool:
    """Record a batch's id in the current transaction; False if it is recorded already (committed before)."""
    qn = connection.ops.quote_name
    table = qn(FlushBatch._meta.db_table)
    ignore = "INSERT OR IGNORE INTO" if connection.vendor == "sqlite" else "INSERT INTO"
    conflict = "" if connection.vendor == "sqlite" else " ON CONFLICT DO NOTHING"
    with connection.cursor() as cursor:
        cursor.execute(f"{ignore} {table} ({qn('id')}, {qn('written_at')}) VALUES (%s, %s){conflict}", [batch, now])
        return cursor.rowcount == 1


def forget_batches(before: dt.datetime) -> int:
    """Delete the ids of batches written before an instant; returns how many."""
    return FlushBatch.objects.filter(written_at__lt=before).delete()[0]


def _write_batch(rows: dict[RowKey, Tally], window_seconds: int, batch: str) -> None:
    ordered = sorted(rows)  # one order for every writer
    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    windows = {start: ops.adapt_datetimefield_value(_when(start)) for start in {k[1] for k in ordered}}
    with transaction.atomic():
        if not _claim_batch(batch, now):
            return  # committed by an earlier attempt whose answer was lost: counted already
        _insert_rows([(windows[k[1]], k[0], k[2], k[3], k[4], k[5], k[6], k[7], 0, 0, 0, 0, 0.0, _EMPTY, now)
                      for k in ordered])
        resolutions = Q()
        for seconds in sorted({k[0] for k in rows}):
            resolutions |= Q(window_seconds=seconds,
                             window_start__in=sorted({_when(k[1]) for k in rows if k[0] == seconds}))
        stored = (
            Rollup.objects.select_for_update()
            .filter(resolutions, account__in=sorted({k[2] for k in rows}), service__in=sorted({k[3] for k in rows}))
            .order_by("pk")
            .values_list("pk", "window_seconds", "window_start", "account", "service", "operation", "pool", "outcome",
                         "tier", "count", "errors", "bytes_in", "bytes_out", "latency_sum_ms", "latency_sketch")
        )
        fine: list[tuple[Any, ...]] = []
        coarse: list[tuple[Any, ...]] = []
        for (pk, seconds, start, account, service, operation, pool, outcome, tier, count, errors, bytes_in,
             bytes_out, latency_sum, sketch) in stored:
            tally = rows.get((seconds, int(start.timestamp()), account, service, operation, pool, outcome, tier))
            if tally is None:
                continue  # a row of another key that the filter also matched
            if sketch is None or bytes(sketch) == _EMPTY:
                merged = tally.sketch.encode()
            else:
                into = Sketch.decode(sketch)
                into.merge(tally.sketch)
                merged = into.encode()
            update = (count + tally.count, errors + tally.errors, bytes_in + tally.bytes_in,
                      bytes_out + tally.bytes_out, latency_sum + tally.latency_sum, merged, now, pk)
            (fine if seconds == window_seconds and account != ALL_ACCOUNTS else coarse).append(update)
        if len(fine) + len(coarse) != len(rows):
            raise DatabaseError(f"rollup rows missing after insert ({len(fine) + len(coarse)} of {len(rows)})")
        _update_rows(fine)  # the accounts' own rows first, then the hour and all-accounts rows: one transaction
        _update_rows(coarse)


# PostgreSQL types of the inserted columns (_COLUMNS) and of the updated ones (_UPDATED, then the id)
_INSERT_TYPES = ("timestamp with time zone", "integer", "text", "text", "text", "text", "text", "text", "bigint",
                 "bigint", "bigint", "bigint", "double precision", "bytea", "timestamp with time zone")
_UPDATED = ("count", "errors", "bytes_in", "bytes_out", "latency_sum_ms", "latency_sketch", "updated_at")
_UPDATE_TYPES = ("bigint", "bigint", "bigint", "bigint", "double precision", "bytea", "timestamp with time zone",
                 "bigint")


def _columns(rows: list[tuple[Any, ...]], types: tuple[str, ...]) -> tuple[str, list[list[Any]]]:
    """`unnest(%s::t1[], %s::t2[], ...)` and its parameters: one array per column, the rows in order."""
    return (f"unnest({', '.join(f'%s::{t}[]' for t in types)})",
            [list(column) for column in zip(*rows, strict=True)])


def _insert_rows(rows: list[tuple[Any, ...]]) -> None:
    """INSERT new rows (zero counts) in the given order (the same for every writer, so that two inserting the
    same new keys never wait for each other in a cycle), doing nothing for keys already stored."""
    qn = connection.ops.quote_name
    table, columns = qn(Rollup._meta.db_table), ", ".join(qn(c) for c in _COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":  # a prepared statement run in a C loop
            cursor.executemany(f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})",
                               rows)
        else:  # one statement with an array per column: binding row by row costs psycopg ~0.1 ms of Python
            source, params = _columns(rows, _INSERT_TYPES)
            names = [f"c{i}" for i in range(len(_COLUMNS))]
            cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {', '.join(names)} FROM {source} WITH ORDINALITY "
                           f"AS u({', '.join(names)}, n) ORDER BY n ON CONFLICT DO NOTHING", params)


def _update_rows(updates: list[tuple[Any, ...]]) -> None:
    """New totals of locked rows, each (count, errors, bytes_in, bytes_out, latency_sum_ms, latency_sketch,
    updated_at, pk): an executemany on SQLite, one UPDATE ... FROM unnest(arrays) on PostgreSQL (Django's
    bulk_update would build a CASE per column and row, about a millisecond of Python per row)."""
    if not updates:
        return
    qn = connection.ops.quote_name
    table = qn(Rollup._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.executemany(f"UPDATE {table} SET {', '.join(f'{qn(c)} = %s' for c in _UPDATED)} WHERE id = %s",
                               updates)
        else:
            source, params = _columns(updates, _UPDATE_TYPES)
            names = [f"v{i}" for i in range(len(_UPDATE_TYPES))]
            assignments = ", ".join(f"{qn(c)} = v.{n}" for c, n in zip(_UPDATED, names, strict=False))
            cursor.execute(f"UPDATE {table} AS r SET {assignments} FROM {source} AS v({', '.join(names)}) "
                           f"WHERE r.id = v.{names[-1]}", params)


class Flusher:
    """Moves an accumulator's rollups to the database every `interval` seconds without blocking requests.

    While the database is away (a failed write) or slow (a write still waiting when the next is due), the rollups
    stay in memory and are written with the next write that succeeds, each request once. What stays is bounded:
    beyond `max_keys` rollup keys the oldest windows are dropped, counted in `dropped` and logged. A failed flush
    is kept apart as it was (its batches may have committed with their answer lost) and retried with its ids first.

    `writer(tallies, window_seconds, flush)` writes and removes what it wrote (`write_rollups`); `flush` names the
    flush, the same on each retry of it.
    """

    def __init__(self, accumulator: Accumulator, interval: float = 2.0,
                 writer: Callable[[dict[RollupKey, Tally], int, str], None] = write_rollups,
                 max_keys: int = BUFFER_KEYS,
                 key_writer: Callable[[KeyUses, str], None] | None = None) -> None:
        self.accumulator = accumulator
        self.key_writer = key_writer or write_key_uses
        self.interval = interval
        self.writer = writer
        self.max_keys = max_keys
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="gateway-flush")
        self.flushed = 0  # requests written
        self.failures = 0
        self.dropped = 0  # requests measured but dropped because the buffer was full
        self.last_error = ""
        self.failing_since: float | None = None  # time.monotonic() of the first failed write in a row
        # How long the slowest recent write took from its tick to its commit (monotonic seconds, forgotten slowly)
        self.span = 0.0
        self._lock = asyncio.Lock()
        self._writing: asyncio.Task[None] | None = None
        self._taken: dict[RollupKey, Tally] = {}  # the rollups of the write under way
        self._retry: tuple[str, dict[RollupKey, Tally]] | None = None  # a failed flush: its name, what is left
        self._key_retry: tuple[str, KeyUses] | None = None  # a failed write of key usage: its name, its counts
        self._writes = 0
        self.heartbeat = Beat("gateway", interval=max(10.0, interval))

    @property
    def pending(self) -> int:
        """Requests measured and not yet written: in the accumulator, in the write under way or a failed one."""
        retry = self._retry[1] if self._retry is not None else {}
        return (self.accumulator.pending + sum(t.count for t in list(self._taken.values()))
                + sum(t.count for t in list(retry.values())))

    @property
    def keys(self) -> int:
        """Rollup keys held in memory: in the accumulator, in the write under way or a failed one."""
        return self.accumulator.keys + len(self._taken) + (len(self._retry[1]) if self._retry is not None else 0)

    def bound(self) -> int:
        """Drop the oldest buffered rollups beyond `max_keys`; returns the requests dropped (and logs them)."""
        dropped = self.accumulator.trim(self.max_keys)
        if dropped:
            self.dropped += dropped
            away = time.monotonic() - self.failing_since if self.failing_since is not None else 0.0
            print(f"gateway: measurement buffer full ({self.max_keys} rollup keys, database unwritable for "
                  f"{away:.0f} s): dropped {dropped} measured requests of the oldest minutes, {self.dropped} in all",
                  file=sys.stderr, flush=True)
        return dropped

    async def flush(self) -> bool:
        """Write what has accumulated (a failed flush first), then the API keys' usage; on failure keep it for the
        next flush. Returns whether everything was written."""
        async with self._lock:
            if not await self._flush_rollups() or not await self._flush_key_uses():
                return False
            if self.failing_since is not None:
                print(f"gateway: rollups written again after {time.monotonic() - self.failing_since:.1f} s of "
                      f"failed writes", file=sys.stderr, flush=True)
                self.failing_since = None
            return True

    def _failed(self, e: Exception, what: str) -> None:
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_error = f"{type(e).__name__}: {e}"
        print(f"gateway: flushing {what} failed, will retry: {self.last_error}", file=sys.stderr, flush=True)

    async def _flush_rollups(self) -> bool:
        batches: list[tuple[str, dict[RollupKey, Tally]]] = []
        if self._retry is not None:
            batches.append(self._retry)
            self._retry = None
        if taken := self.accumulator.take():
            batches.append((uuid.uuid4().hex, taken))
        loop = asyncio.get_running_loop()
        for i, (name, taken) in enumerate(batches):
            self._taken = taken
            try:
                await loop.run_in_executor(self.executor, self._write, taken, name)
            except Exception as e:  # the database may be restarting: retry with the next flush
                self._retry = (name, taken)  # what is left of it, kept as it is with its name
                for _later, untried in batches[i + 1:]:
                    self.accumulator.give_back(untried)  # never tried: nothing of it can be committed
                self._failed(e, "rollups")
                self.bound()
                return False
            finally:
                self._taken = {}
        return True

    async def _flush_key_uses(self) -> bool:
        """The keys' usage counts, after the rollups they came with: a failed write is retried whole, under its
        name (so a commit whose answer was lost is not counted twice), before newer counts."""
        batches: list[tuple[str, KeyUses]] = []
        if self._key_retry is not None:
            batches.append(self._key_retry)
            self._key_retry = None
        if uses := self.accumulator.take_key_uses():
            batches.append((uuid.uuid4().hex, uses))
        loop = asyncio.get_running_loop()
        for i, (name, uses) in enumerate(batches):
            try:
                await loop.run_in_executor(self.executor, self._write_key_uses, uses, name)
            except Exception as e:
                self._key_retry = (name, uses)
                for _later, untried in batches[i + 1:]:
                    give_back_key_uses(self.accumulator.key_uses, untried)
                self._failed(e, "key usage")
                return False
        return True

    def _write_key_uses(self, uses: KeyUses, name: str) -> None:
        try:
            self.key_writer(uses, name)
        except Exception:
            connections.close_all()
            raise

    def _write(self, taken: dict[RollupKey, Tally], name: str) -> None:
        total = sum(t.count for t in taken.values())
        try:
            self.writer(taken, self.accumulator.window_seconds, name)
        except Exception:
            self.flushed += total - sum(t.count for t in taken.values())
            connections.close_all()  # a broken connection is replaced on the next attempt
            raise
        self.flushed += total
        self._writes += 1
        if self._writes % 1000 == 1:  # now and then: the ids of batches nobody will retry any more
            with contextlib.suppress(DatabaseError):
                forget_batches(timezone.now() - BATCH_IDS_KEPT)

    async def _flush_and_beat(self, tick: float) -> None:
        loop = asyncio.get_running_loop()
        if await self.flush():  # a failed write (the database away) says nothing of how long writes take
            self.span = max(loop.time() - tick, self.span * 0.9)
        # Alive is said by the thread that writes: a worker whose database writes hang goes silent too.
        await loop.run_in_executor(self.executor, self.heartbeat.beat)

    @property
    def lead(self) -> float:
        """How much earlier than `interval` after the last one a write starts: the time recent writes took from
        their tick to their commit, plus 50 ms, at most half the interval."""
        return min(self.interval / 2, self.span + 0.05)

    async def run(self, stopping: asyncio.Event) -> None:
        """Start a write every interval until `stopping` is set (the final flush is the caller's, after requests
        end). The writes start on a fixed cadence (a slow write does not push the next ones later, which would
        leave more unwritten for a `kill -9` to lose), early by `lead`: a write commits what was measured up to
        its start, so what a hard kill loses (measured since the start of the last committed write) stays within
        one interval as long as a write takes no longer than recent ones did. While one still waits on the
        database, the next is skipped and what piles up is bounded instead."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval - self.lead
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), max(0.0, due - loop.time()))
            if stopping.is_set():
                break
            tick = due
            due = max(due + self.interval - self.lead, loop.time())  # a late tick brings no burst of catching up
            if self._writing is not None and not self._writing.done():
                self.bound()
                continue
            self._writing = loop.create_task(self._flush_and_beat(tick))

    async def close(self, attempts: int = 10) -> bool:
        """Final flushes until everything is written (or attempts run out); then release the thread."""
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing  # the write under way finishes (or gives its rollups back) first
        ok = False
        for attempt in range(attempts):
            ok = await self.flush()
            if ok:
                break
            await asyncio.sleep(min(2.0, 0.2 * (attempt + 1)))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.heartbeat.stop)
        await loop.run_in_executor(self.executor, connections.close_all)
        self.executor.shutdown(wait=True)
        return ok
