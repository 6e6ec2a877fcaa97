#!/usr/bin/env python3
"""Benchmark governance: how fast a policy reacts at the gateway, and how fast indicators read 30 days of rollups.

    python bench/governance.py [--runs 10] [--fast-runs 10] [--accounts 1000] [--minutes-per-hour 3]
                               [--postgres postgres://127.0.0.1:5432/test] [--only reaction|indicators] [--write-docs]

Everything runs in a scratch database of its own: a SQLite file in a temporary directory by default, or with
`--postgres URL` a database `accord_bench_gov_<pid>` created on that server (and dropped afterwards).

1. Reaction time. A real gateway in this process (its own event loop in a thread, `SnapshotKeeper` polling the
   snapshot version every 0.25 s and `LiveReporter` writing live signals every 1 s, the production defaults),
   a governor loop in a thread (`evaluate_policies` every 1 s, the `accord governor` default), two threaded
   upstreams (primary "a", standby "b"), the service `booking` with a primary pool of capacity 2 and a standby
   pool, a platinum and a bronze account with API keys, and the policy
   "pool(booking, primary).utilisation[2s] > 0.8 -> route platinum to standby" (hold 0, clear after 1 s,
   min active 0, cooldown 0). Each run: two held bronze requests fill the primary pool; T0 is the moment both
   are in flight at the upstream; a platinum request every 20 ms until one is answered by the standby upstream
   at T1; reaction = T1 - T0. Then the held requests are released and the run waits until platinum is back on
   primary and the utilisation window is idle again. Reference, interleaved with the runs: the floor of the
   path, the same route action set by hand (`do_set_action`) at T0 and probed the same way (the snapshot
   reload alone), cleared after. A second series runs with faster settings (live 0.5 s, governor 0.5 s,
   poll 0.1 s). Aim: at most 5 s.
2. Indicator queries over 30 days of rollups of 1,000 accounts (50 platinum, 150 gold, 300 silver, 500 bronze),
   each active in 3 random minutes per hour (about 2.2 million `Rollup` rows with lognormal latency sketches,
   inserted with executemany in batches), plus 15 minutes of live rows of 2 gateway workers. Timed, median of
   `--repeats` after a warm-up: one account's availability and p95, one tier's availability, one tier's p95,
   the budget status of a platinum availability and a latency objective, and the live indicators of a policy
   evaluation. Reference, side by side: the same row selections as a bare SQL aggregate (COUNT, SUM(count),
   SUM(errors) with the same WHERE): the floor of reading those rows. The slowest query is profiled.

`--write-docs` writes the figures of the database it ran on into the "## Governance" section of
docs/benchmarks.md (its "### Results on SQLite" or "### Results on PostgreSQL" part), leaving the rest alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import http.client
import io
import json
import math
import os
import pstats
import random
import re
import shutil
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIERS = [("platinum", 1, 0.05), ("gold", 2, 0.15), ("silver", 3, 0.30), ("bronze", 4, 0.50)]
POLICY = "pool(booking, primary).utilisation[2s] > 0.8"
WINDOW = 2.0  # the policy's utilisation window, seconds
PROBE_EVERY = 0.020


# -- setup ------------------------------------------------------------------------------------------------------


def scratch_database(args: argparse.Namespace) -> tuple[str, str, str]:
    """(label, DATABASE_URL, temporary directory) of a fresh database."""
    tmp = tempfile.mkdtemp(prefix="accord-bench-gov-")
    if not args.postgres:
        return "SQLite", f"sqlite:///{tmp}/bench.sqlite3", tmp
    import psycopg

    name = f"accord_bench_gov_{os.getpid()}"
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return "PostgreSQL", f"{args.postgres.rsplit('/', 1)[0]}/{name}", tmp


def drop_database(args: argparse.Namespace, tmp: str) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    if args.postgres:
        import psycopg

        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS accord_bench_gov_{os.getpid()} WITH (FORCE)")


def setup_django(url: str, tmp: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["ACCORD_VAR_DIR"] = tmp
    os.environ["ACCORD_EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accord.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return {"median": statistics.median(ordered), "p90": p90, "max": ordered[-1], "min": ordered[0]}


# -- part 1: reaction time ----------------------------------------------------------------------------------------


class HoldHandler(BaseHTTPRequestHandler):
    """Answers {"server": name}; /bookings/hold waits until the server releases the current batch."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else the body waits for the ACK of the headers (40 ms delayed ACK)
    server: HoldServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        if self.path.startswith("/bookings/hold"):
            with srv.lock:
                release = srv.release
                srv.holding += 1
                if srv.holding == 2:  # the pool (capacity 2) is full at the upstream: the condition is true
                    srv.full_at, srv.full_wall = time.monotonic(), time.time()
                    srv.full.set()
            release.wait(60)
            with srv.lock:
                srv.holding -= 1
        body = json.dumps({"server": srv.name}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class HoldServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), HoldHandler)
        self.name = name
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.holding = 0
        self.full = threading.Event()
        self.full_at = self.full_wall = 0.0

    def arm(self) -> None:
        with self.lock:
            self.release = threading.Event()
            self.full = threading.Event()

    def release_all(self) -> None:
        with self.lock:
            self.release.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def ask(port: int, key: str, path: str = "/bookings/1", timeout: float = 60) -> str:
    """Which upstream answered ("a" primary, "b" standby; "" for anything but a 200)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        r = conn.getresponse()
        body = r.read()
        return str(json.loads(body).get("server", "")) if r.status == 200 else ""
    finally:
        conn.close()


def probe_until(port: int, key: str, server: str, every: float, timeout: float = 30) -> float:
    """Probe on a fixed cadence until `server` answers; returns time.monotonic() of that answer."""
    deadline = time.monotonic() + timeout
    tick = time.monotonic()
    while True:
        if ask(port, key) == server:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"no answer from upstream {server!r} after {timeout} s")
        tick += every
        time.sleep(max(0.0, tick - time.monotonic()))


class Rig:
    """The upstreams, a gateway with its snapshot keeper and live reporter, and a governor thread."""

    def __init__(self, live: float, governor: float, poll: float) -> None:
        from accord.gateway.live import LiveReporter
        from accord.gateway.proxy import Gateway, serve
        from accord.gateway.server import SnapshotKeeper
        from accord.gateway.snapshot import load_snapshot

        self.live_interval, self.governor_interval, self.poll = live, governor, poll
        self.upstreams = [HoldServer("a"), HoldServer("b")]
        for s in self.upstreams:
            threading.Thread(target=s.serve_forever, daemon=True).start()
        self.loop = asyncio.new_event_loop()
        self.gateway = Gateway(load_snapshot())
        started = threading.Event()
        holder: dict[str, Any] = {}

        def run_loop() -> None:
            asyncio.set_event_loop(self.loop)

            async def start() -> None:
                holder["server"] = await serve(self.gateway, "127.0.0.1", 0)
                started.set()

            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run_loop, daemon=True)
        self.thread.start()
        if not started.wait(10):
            raise SystemExit("the gateway did not start")
        self.server = holder["server"]
        self.port = int(self.server.sockets[0].getsockname()[1])
        self.keeper = SnapshotKeeper(self.gateway, poll=poll, full_reload=3600)
        self.reporter = LiveReporter(self.gateway, interval=live)
        self.stopping = asyncio.Event()
        self.tasks = [asyncio.run_coroutine_threadsafe(self.keeper.run(self.stopping), self.loop),
                      asyncio.run_coroutine_threadsafe(self.reporter.run(self.stopping), self.loop)]
        self.governing = threading.Event()
        self.governor_errors: list[str] = []
        self.governor = threading.Thread(target=self._govern, daemon=True)
        self.governor.start()

    def _govern(self) -> None:
        """As `accord governor` does: evaluate every policy, then sleep the rest of the interval."""
        from django.db import DatabaseError, connections

        from accord.governance.engine import evaluate_policies

        try:
            while not self.governing.is_set():
                started = time.monotonic()
                try:
                    evaluate_policies()
                except DatabaseError as e:
                    self.governor_errors.append(f"{type(e).__name__}: {e}")
                    connections.close_all()
                self.governing.wait(max(0.0, self.governor_interval - (time.monotonic() - started)))
        finally:
            connections.close_all()

    def close(self) -> None:
        self.governing.set()
        self.governor.join(30)
        for s in self.upstreams:
            s.release_all()
        self.loop.call_soon_threadsafe(self.stopping.set)
        for task in self.tasks:
            task.result(20)
        asyncio.run_coroutine_threadsafe(self.keeper.close(), self.loop).result(20)
        asyncio.run_coroutine_threadsafe(self.reporter.close(), self.loop).result(20)

        async def shutdown() -> None:
            self.server.close()
            for conn in list(self.gateway.connections):
                conn._close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.gateway.pool.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        for s in self.upstreams:
            s.shutdown()
            s.server_close()


def reaction_setup() -> tuple[str, str]:
    """The service, pools, accounts and the policy; returns the platinum and bronze API keys."""
    from accord.catalog.models import ApiCredential, Pool, Service
    from accord.customers.models import Account, Tier
    from accord.governance.policies import save_policy

    svc = Service.objects.create(name="booking", base_path="/bookings")
    Pool.objects.create(service=svc, name="primary", role="primary", capacity=2)
    Pool.objects.create(service=svc, name="standby", role="standby", capacity=2)
    platinum = Tier.objects.get_or_create(name="platinum", defaults={"rank": 1})[0]
    bronze = Tier.objects.get_or_create(name="bronze", defaults={"rank": 4})[0]
    _c, vip = ApiCredential.issue(Account.objects.create(name="Acme", external_id="R-ACME", tier=platinum))
    _c, low = ApiCredential.issue(Account.objects.create(name="Small", external_id="R-SMALL", tier=bronze))
    save_policy("platinum-standby", {
        "condition": POLICY, "hold_seconds": 0, "clear_seconds": 1, "min_active_seconds": 0, "cooldown_seconds": 0,
        "tiers": ["platinum"], "action": "route", "params": {"pool": "standby"},
    })
    return vip, low


def point_endpoints(rig: Rig) -> None:
    from accord.catalog.models import Endpoint, Pool

    Endpoint.objects.all().delete()
    for pool, upstream in zip(("primary", "standby"), rig.upstreams, strict=True):
        Endpoint.objects.create(pool=Pool.objects.get(service__name="booking", name=pool), url=upstream.url)


def reaction_series(label: str, runs: int, live: float, governor: float, poll: float, vip: str, low: str,
                    rng: random.Random) -> dict[str, Any]:
    from accord.gateway.actions import do_clear_action, do_set_action
    from accord.governance.models import AuditEvent

    rig = Rig(live, governor, poll)
    point_endpoints(rig)
    primary = rig.upstreams[0]
    policy_runs: list[float] = []
    detect: list[float] = []
    floors: list[float] = []
    back: list[float] = []
    try:
        probe_until(rig.port, vip, "a", 0.05)  # the new endpoints are in the snapshot
        time.sleep(WINDOW + live + 0.5)
        for n in range(runs):
            # the policy, end to end
            time.sleep(rng.uniform(0, max(live, governor)))  # a random phase against the live and governor ticks
            primary.arm()
            activations = AuditEvent.objects.filter(kind="activated").count()
            holders = [threading.Thread(target=ask, args=(rig.port, low, "/bookings/hold"), daemon=True)
                       for _ in range(2)]
            for t in holders:
                t.start()
            if not primary.full.wait(10):
                raise SystemExit("the primary pool did not fill")
            t0, t0_wall = primary.full_at, primary.full_wall
            t1 = probe_until(rig.port, vip, "b", PROBE_EVERY)
            reaction = t1 - t0
            policy_runs.append(reaction)
            event = AuditEvent.objects.filter(kind="activated").order_by("-at", "-id").first()
            if event is None or AuditEvent.objects.filter(kind="activated").count() != activations + 1:
                raise SystemExit("platinum reached standby without one activation of the policy")
            detect.append(event.at.timestamp() - t0_wall)
            released = time.monotonic()
            primary.release_all()
            for t in holders:
                t.join(30)
            back.append(probe_until(rig.port, vip, "a", 0.05) - released)
            # the utilisation window is idle again once the sample that saw the release has left it
            time.sleep(max(0.0, released + WINDOW + live + 0.2 - time.monotonic()))
            # the floor: the same action set by hand, enforced by the snapshot reload alone
            time.sleep(rng.uniform(0, max(live, governor)))
            f0 = time.monotonic()
            do_set_action("bench-by-hand", "route", params={"pool": "standby"}, tiers=["platinum"],
                          reason="bench/governance.py: the floor", set_by="bench")
            floors.append(probe_until(rig.port, vip, "b", PROBE_EVERY) - f0)
            do_clear_action("bench-by-hand")
            probe_until(rig.port, vip, "a", 0.05)
            print(f"  {label} run {n + 1:2}/{runs}: policy {reaction:5.2f} s (governor switched at "
                  f"{detect[-1]:5.2f} s, back on primary {back[-1]:4.2f} s after the release); "
                  f"by hand {floors[-1]:5.3f} s", flush=True)
    finally:
        rig.close()
    if rig.governor_errors:
        print(f"  governor errors: {rig.governor_errors[:3]}")
    s, f = summary(policy_runs), summary(floors)
    return {"label": label, "live": live, "governor": governor, "poll": poll, "runs": policy_runs, "floor": floors,
            "policy": s, "floor_s": f, "detect": summary(detect), "back": summary(back),
            "above_floor": (s["median"] - f["median"]) / s["median"]}


def bench_reaction(args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = random.Random(args.seed)
    vip, low = reaction_setup()
    out = []
    series = [("defaults", args.runs, 1.0, 1.0, 0.25)]
    if args.fast_runs:
        series.append(("fast", args.fast_runs, 0.5, 0.5, 0.1))
    for label, runs, live, governor, poll in series:
        print(f"Reaction time, {label}: live signals every {live:g} s, governor every {governor:g} s, "
              f"snapshot poll {poll:g} s, {runs} runs", flush=True)
        out.append(reaction_series(label, runs, live, governor, poll, vip, low, rng))
    for r in out:
        print_reaction(r)
    return out


def print_reaction(r: dict[str, Any]) -> None:
    s, f = r["policy"], r["floor_s"]
    print(f"Reaction ({r['label']}: live {r['live']:g} s, governor {r['governor']:g} s, poll {r['poll']:g} s), "
          f"{len(r['runs'])} runs:")
    print(f"  policy end to end : median {s['median']:.2f} s, p90 {s['p90']:.2f} s, max {s['max']:.2f} s "
          f"(aim: at most 5 s) [{', '.join(f'{v:.2f}' for v in r['runs'])}]")
    print(f"  of which detection: median {r['detect']['median']:.2f} s (T0 to the governor's activation)")
    print(f"  floor, by hand    : median {f['median']:.3f} s, p90 {f['p90']:.3f} s, max {f['max']:.3f} s "
          f"[{', '.join(f'{v:.3f}' for v in r['floor'])}]")
    print(f"  above the floor   : {100 * r['above_floor']:.0f}% of the median; back on primary "
          f"{r['back']['median']:.2f} s (median) after the peak ended")
    print(f"  the condition's own lag: with two of two slots busy from T0, utilisation[{WINDOW:g}s] measured exactly "
          f"passes 0.8 at T0 + {0.8 * WINDOW:.1f} s; the median is {s['median'] - 0.8 * WINDOW:.2f} s after that")


# -- part 2: indicator queries --------------------------------------------------------------------------------------


def sketch_pool(rng: random.Random, n: int, median_count: float, median_ms: float, sigma: float,
                slow_share: float) -> list[tuple[int, float, bytes]]:
    """(count, latency sum, encoded sketch) of n minutes of one account's traffic, lognormal latencies."""
    from accord.gateway.measure import Sketch

    out = []
    for _ in range(n):
        count = max(1, min(400, round(rng.lognormvariate(math.log(median_count), 0.7))))
        slow = rng.random() < slow_share
        mu = math.log(median_ms * (4 if slow else 1))
        sketch, total = Sketch(), 0.0
        for _ in range(count):
            v = rng.lognormvariate(mu, sigma)
            sketch.add(v)
            total += v
        out.append((count, total, sketch.encode()))
    return out


def raw_insert(table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """executemany through the raw driver (the caller holds a transaction)."""
    from django.db import connection

    mark = "%s" if connection.vendor == "postgresql" else "?"
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    cursor = connection.connection.cursor()
    try:
        cursor.executemany(sql, rows)
    finally:
        cursor.close()


ROLLUP_COLUMNS = ["window_start", "window_seconds", "account", "service", "operation", "pool", "outcome", "tier",
                  "count", "errors", "bytes_in", "bytes_out", "latency_sum_ms", "latency_sketch", "updated_at"]


def generate_rollups(args: argparse.Namespace, now: dt.datetime, accounts: list[tuple[str, str]],
                     rng: random.Random) -> tuple[dict[str, int], float]:
    """Minute rows of every account, and the hour and all-accounts rows the flusher writes with them.

    Each UTC hour's minute rows become tallies that `flusher.rollup_rows` (the flusher's own code) turns into
    the minute, hour and all-accounts rows, encoded and inserted with executemany. Returns rows per kind.
    """
    from django.db import connection, transaction
    from tqdm import tqdm

    from accord.gateway.flusher import rollup_rows
    from accord.gateway.measure import Sketch, Tally
    from accord.gateway.models import ALL_ACCOUNTS, Rollup

    adapt = connection.ops.adapt_datetimefield_value
    start = now - dt.timedelta(days=args.days)
    first_hour = int(start.timestamp()) // 3600 * 3600
    hours = math.ceil((now.timestamp() - first_hour) / 3600)
    low, high = int(start.timestamp()), int(now.timestamp())
    updated = adapt(now)
    counts = {"platinum": 20, "gold": 14, "silver": 9, "bronze": 5}

    def decoded(pool: list[tuple[int, float, bytes]]) -> list[tuple[int, float, Sketch]]:
        return [(count, total, Sketch.decode(data)) for count, total, data in pool]

    raw_pools = {tier: sketch_pool(rng, 512, counts[tier], 80, 0.5, 0.01) for tier in counts}
    raw_errors = sketch_pool(rng, 128, 1.5, 25, 0.4, 0.0)
    pools = {tier: decoded(pool) for tier, pool in raw_pools.items()}
    errors_pool = decoded(raw_errors)
    encoded = {id(s): data for (_c, _t, s), (_c2, _t2, data) in
               zip([*(e for p in pools.values() for e in p), *errors_pool],
                   [*(e for p in raw_pools.values() for e in p), *raw_errors], strict=True)}
    operations = ["search"] * 6 + ["book"] * 3 + ["cancel"]
    expected = len(accounts) * args.days * 24 * args.minutes_per_hour
    print(f"Generating rollups: {len(accounts):,} accounts x {args.days} days x {args.minutes_per_hour} active "
          f"minutes per hour, about {expected * 1.02:,.0f} minute rows (2% of active minutes add a server_error "
          f"row), with the hour and all-accounts rows the flusher writes", flush=True)
    table = Rollup._meta.db_table
    kinds = {"minute": 0, "hour": 0, "all-accounts minute": 0, "all-accounts hour": 0}
    batch: list[tuple[Any, ...]] = []
    started = time.perf_counter()
    per_hour = list(range(60))

    def tally(count: int, errors: int, bytes_in: int, bytes_out: int, total: float, sketch: Sketch) -> Tally:
        t = Tally()
        t.count, t.errors, t.bytes_in, t.bytes_out, t.latency_sum, t.sketch = (count, errors, bytes_in, bytes_out,
                                                                              total, sketch)
        return t

    # In time order, as the gateways' flushers write them (and so that most index inserts append).
    with tqdm(total=expected, unit=" minutes", unit_scale=True, mininterval=2, file=sys.stdout) as bar:
        for h in range(hours):
            base = first_hour + h * 3600
            tallies = {}
            for key, tier in accounts:
                for m in rng.sample(per_hour, args.minutes_per_hour):
                    when = base + 60 * m
                    if not low <= when < high:
                        continue
                    count, total, sketch = pools[tier][rng.randrange(512)]
                    op = operations[rng.randrange(10)]
                    tallies[(when, key, "booking", op, "primary", "ok", tier)] = tally(
                        count, 0, 300 * count, 2000 * count, total, sketch)
                    if rng.random() < 0.02:
                        ecount, etotal, esketch = errors_pool[rng.randrange(128)]
                        tallies[(when, key, "booking", op, "primary", "server_error", tier)] = tally(
                            ecount, ecount, 300 * ecount, 120 * ecount, etotal, esketch)
            for (seconds, when, account, service, op, pool, outcome, tier), t in sorted(rollup_rows(tallies, 60).items()):
                data = encoded.get(id(t.sketch))
                batch.append((adapt(dt.datetime.fromtimestamp(when, tz=dt.UTC)), seconds, account, service, op, pool,
                              outcome, tier, t.count, t.errors, t.bytes_in, t.bytes_out, t.latency_sum,
                              data if data is not None else t.sketch.encode(), updated))
                kinds[("all-accounts " if account == ALL_ACCOUNTS else "") + ("hour" if seconds == 3600 else "minute")] += 1
            bar.update(sum(1 for k in tallies if k[5] == "ok"))
            if len(batch) >= args.batch:
                with transaction.atomic():
                    raw_insert(table, ROLLUP_COLUMNS, batch)
                batch = []
        if batch:
            with transaction.atomic():
                raw_insert(table, ROLLUP_COLUMNS, batch)
    return kinds, time.perf_counter() - started


def generate_live(now: dt.datetime, rng: random.Random) -> tuple[int, int]:
    """15 minutes of live rows of 2 gateway workers: traffic per (operation, pool, tier) and pool samples."""
    from django.db import connection, transaction

    from accord.gateway.models import LivePool, LiveTraffic

    adapt = connection.ops.adapt_datetimefield_value
    shares = {"platinum": 0.1, "gold": 0.2, "silver": 0.3, "bronze": 0.4}
    pools = {tier: sketch_pool(rng, 128, 60 * shares[tier] / 2, 80, 0.5, 0.01) for tier in shares}
    traffic, samples = [], []
    top = int(now.timestamp())
    for worker in ("gw-1:101", "gw-2:102"):
        for back in range(900):
            at = adapt(dt.datetime.fromtimestamp(top - back, tz=dt.UTC))
            for tier in shares:
                for op in ("search", "book", "cancel"):
                    count, total, sketch = pools[tier][rng.randrange(128)]
                    errors = 1 if rng.random() < 0.01 else 0
                    traffic.append((at, worker, "booking", op, "primary", tier, count, errors, total, sketch))
                if tier == "platinum" and back < 300:  # the last 5 minutes, platinum partly on standby
                    count, total, sketch = pools[tier][rng.randrange(128)]
                    traffic.append((at, worker, "booking", "search", "standby", tier, count, 0, total, sketch))
            for pool, capacity in (("primary", 40), ("standby", 10)):
                busy = rng.uniform(0.3, 0.7) * capacity * 1000
                samples.append((at, worker, "booking", pool, 1000, busy, capacity, round(busy / 1000), 0,
                                round(busy / 1000) + 2))
    with transaction.atomic():
        raw_insert(LiveTraffic._meta.db_table, ["at", "worker", "service", "operation", "pool", "tier", "count",
                                                "errors", "latency_sum_ms", "latency_sketch"], traffic)
        raw_insert(LivePool._meta.db_table, ["at", "worker", "service", "pool", "interval_ms", "busy_ms", "capacity",
                                             "in_flight", "waiting", "peak"], samples)
    return len(traffic), len(samples)


def time_it(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of `repeats` calls after one warm-up call, and the last result.

    A call slower than a second is its own warm-up (the rows were just written, so they are in the page cache)
    and is repeated to 3 calls in all, to keep the run short; one slower than 10 s is not repeated.
    """
    t = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t
    if first > 10:
        return first, result
    times = [first] if first > 1 else []
    if first > 1:
        repeats = min(repeats, 3) - 1
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def floor_query(table: str, time_column: str, lower: str, start: dt.datetime, end: dt.datetime,
                sums: str = "SUM(count), SUM(errors)", minute_rows: bool = False,
                **filters: str) -> Callable[[], tuple[int, int, int]]:
    """COUNT(*), SUM(count), SUM(errors) of the rows a query reads, with the same WHERE, via connection.cursor().

    minute_rows: only the per-account minute rows (what the previous path read), not the hour and all-accounts
    rows.
    """
    from django.db import connection

    from accord.gateway.models import ALL_ACCOUNTS

    where = [f"{time_column} {lower} %s", f"{time_column} < %s" if lower == ">=" else f"{time_column} <= %s"]
    params: list[Any] = [connection.ops.adapt_datetimefield_value(start), connection.ops.adapt_datetimefield_value(end)]
    if minute_rows:
        where += ["window_seconds = 60", "account <> %s"]
        params.append(ALL_ACCOUNTS)
    for column, value in filters.items():
        where.append(f"{column} = %s")
        params.append(value)
    sql = f"SELECT COUNT(*), {sums} FROM {table} WHERE {' AND '.join(where)}"

    def run() -> tuple[int, int, int]:
        with connection.cursor() as cur:
            cur.execute(sql, params)
            n, count, errors = cur.fetchone()
        return int(n), int(count or 0), int(errors or 0)

    return run


def indicator_setup(args: argparse.Namespace, now: dt.datetime) -> list[tuple[str, str]]:
    """Tiers, accounts, the service, and the platinum agreement with an availability and a latency objective."""
    from accord.agreements.models import Agreement, BusinessCalendar, Objective
    from accord.catalog.models import Service
    from accord.customers.models import Account, Tier
    from accord.governance.models import Policy
    from accord.governance.policies import save_policy

    tiers = {name: Tier.objects.get_or_create(name=name, defaults={"rank": rank})[0] for name, rank, _s in TIERS}
    accounts: list[tuple[str, str]] = []
    for name, _rank, share in TIERS:
        accounts += [(f"ACC{len(accounts) + i:05d}", name) for i in range(round(args.accounts * share))]
    Account.objects.bulk_create([Account(name=f"Account {key}", external_id=key, tier=tiers[tier])
                                 for key, tier in accounts])
    service = Service.objects.get_or_create(name="booking", defaults={"base_path": "/bookings"})[0]
    calendar = BusinessCalendar.objects.create(name="always", timezone="UTC", hours={
        d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    agreement = Agreement.objects.create(name="platinum-sla", tier=tiers["platinum"], calendar=calendar,
                                         effective_from=(now - dt.timedelta(days=90)).date())
    Objective.objects.create(agreement=agreement, name="availability", kind="availability", target=Decimal("99.9"),
                             window="rolling", window_days=args.days, service=service)
    Objective.objects.create(agreement=agreement, name="p95", kind="latency", target=Decimal(300),
                             percentile=Decimal(95), window="rolling", window_days=args.days, service=service)
    key = next(key for key, tier in accounts if tier == "gold")  # one account's own agreement
    own = Agreement.objects.create(name="account-sla", account=Account.objects.get(external_id=key), calendar=calendar,
                                   effective_from=(now - dt.timedelta(days=90)).date())
    Objective.objects.create(agreement=own, name="p95", kind="latency", target=Decimal(300), percentile=Decimal(95),
                             window="rolling", window_days=args.days, service=service)
    save_policy("platinum-latency", {
        "condition": "pool(booking, primary).utilisation[10s] > 0.8 or tier(platinum, service=booking).p95_ms[30s] > 250",
        "hold_seconds": 3, "clear_seconds": 20, "tiers": ["platinum"], "action": "route",
        "params": {"pool": "standby"},
    })
    Policy.objects.exclude(name="platinum-latency").delete()  # the reaction part's policy, if it ran
    return accounts


def previous_rollup_stats(start: dt.datetime, end: dt.datetime, *, account: str | None = None,
                          tier: str | None = None, service: str | None = None, operation: str | None = None,
                          pool: str | None = None, sketch: bool = True) -> Any:
    """The previous path, kept as the reference: `rollup_stats` before hour and all-accounts rows.

    Every per-account minute row whose window starts in [start, end), and every sketch decoded into a Sketch of
    its own and merged in Python, whether or not a percentile is asked for (`sketch` is ignored).
    """
    from accord.gateway.measure import Sketch
    from accord.gateway.models import Rollup
    from accord.governance.indicators import Stats

    filters = {k: v for k, v in {"account": account, "tier": tier, "service": service, "operation": operation,
                                 "pool": pool}.items() if v}
    rows = Rollup.objects.per_account_minutes().filter(window_start__gte=start, window_start__lt=end, **filters)
    count = errors = 0
    latency = 0.0
    merged = Sketch()
    for c, e, lat, data in rows.values_list("count", "errors", "latency_sum_ms", "latency_sketch"):
        count += c
        errors += e
        latency += lat
        merged.merge(Sketch.decode(data))
    return Stats(count, errors, latency, sketch=merged)


def previous_rollup_rows(start: dt.datetime, end: dt.datetime, *, account: str | None = None,
                         tier: str | None = None, service: str | None = None, operation: str | None = None,
                         pool: str | None = None) -> list[Any]:
    """The rows of the previous path for the error budgets (`objective_events`): every per-account minute row
    whose window starts in [start, end)."""
    from accord.gateway.models import Rollup

    filters = {k: v for k, v in {"account": account, "tier": tier, "service": service, "operation": operation,
                                 "pool": pool}.items() if v}
    return [Rollup.objects.per_account_minutes().filter(window_start__gte=start, window_start__lt=end, **filters)]


def previous_live_traffic(now: dt.datetime, seconds: float, *, service: str | None = None,
                          operation: str | None = None, pool: str | None = None, tier: str | None = None,
                          sketch: bool = True) -> Any:
    """The previous live path: every live row's sketch decoded and merged, whatever the metric (`sketch` is
    ignored)."""
    from accord.gateway.measure import Sketch
    from accord.gateway.models import LiveTraffic
    from accord.governance.indicators import Stats

    filters = {k: v for k, v in {"service": service, "operation": operation, "pool": pool, "tier": tier}.items() if v}
    rows = LiveTraffic.objects.filter(at__gt=now - dt.timedelta(seconds=seconds), at__lte=now, **filters)
    stats = Stats(sketch=Sketch())
    for c, e, lat, data in rows.values_list("count", "errors", "latency_sum_ms", "latency_sketch"):
        stats.count += c
        stats.errors += e
        stats.latency_sum += lat
        stats.sketch.merge(Sketch.decode(data))
    return stats


@contextlib.contextmanager
def previous_path() -> Iterator[None]:
    """Indicators (budget_status, signal_values, the engine) computed the previous way while inside."""
    from accord.governance import indicators

    saved = indicators.rollup_stats, indicators.rollup_rows, indicators.live_traffic
    indicators.rollup_stats, indicators.rollup_rows, indicators.live_traffic = (
        previous_rollup_stats, previous_rollup_rows, previous_live_traffic)
    try:
        yield
    finally:
        indicators.rollup_stats, indicators.rollup_rows, indicators.live_traffic = saved


def the_previous_way(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with previous_path():
            return fn()

    return run


def same_answer(new: Any, old: Any) -> bool:
    """Whether the new path answered what the previous one did (counts exactly, percentiles from equal sketches)."""
    from accord.governance.indicators import BudgetStatus

    if isinstance(new, BudgetStatus):
        return (new.valid, new.bad, new.sli) == (old.valid, old.bad, old.sli)
    if isinstance(new, dict):
        return {k: v for k, v in new.items() if k != "when"} == {k: v for k, v in old.items() if k != "when"}
    return bool(new == old)


def codec_bench(repeats: int = 3) -> dict[str, Any]:
    """Decoding and merging stored sketches, µs per sketch: format 1 the previous way, format 2 the new way."""
    from accord.gateway.measure import Sketch, _encode_varints
    from accord.gateway.models import ALL_ACCOUNTS, Rollup

    out: dict[str, Any] = {}
    samples = {
        "minute rows of accounts": list(Rollup.objects.per_account_minutes().order_by("pk")
                                        .values_list("latency_sketch", flat=True)[:20_000]),
        "all-accounts hour rows": list(Rollup.objects.filter(window_seconds=3600, account=ALL_ACCOUNTS).order_by("pk")
                                       .values_list("latency_sketch", flat=True)[:2_000]),
    }
    for label, raw in samples.items():
        new = [bytes(b) for b in raw]
        sketches = [Sketch.decode(b) for b in new]
        old = [_encode_varints(s) for s in sketches]

        def previous(data: list[bytes]) -> Sketch:
            merged = Sketch()
            for b in data:
                merged.merge(Sketch.decode(b))
            return merged

        timings = {}
        for name, fn, data in (("format 1, a Sketch per row (previous)", previous, old),
                               ("format 2, a Sketch per row", previous, new),
                               ("format 2, merged straight (new)", Sketch.merged, new)):
            best = []
            for _ in range(repeats):
                t = time.perf_counter()
                result = fn(data)
                best.append(time.perf_counter() - t)
            timings[name] = statistics.median(best) / len(data) * 1e6
            assert result == previous(new)
        out[label] = {"sketches": len(new), "buckets": statistics.mean(len(s.bins) for s in sketches),
                      "bytes_1": statistics.mean(map(len, old)), "bytes_2": statistics.mean(map(len, new)),
                      "us": timings}
    return out


def bench_indicators(args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from accord.gateway.models import ALL_ACCOUNTS, LivePool, LiveTraffic, Rollup
    from accord.governance import indicators
    from accord.governance.engine import evaluate_policies, parsed
    from accord.governance.expr import signals
    from accord.governance.models import Policy

    rng = random.Random(args.seed + 1)
    LiveTraffic.objects.all().delete()
    LivePool.objects.all().delete()
    Rollup.objects.all().delete()
    now = timezone.now().replace(second=0, microsecond=0)
    accounts = indicator_setup(args, now)
    kinds, insert_s = generate_rollups(args, now, accounts, rng)
    rows = sum(kinds.values())
    print(f"Inserted {rows:,} rollup rows ({', '.join(f'{v:,} {k}' for k, v in kinds.items())}) in {insert_s:.1f} s "
          f"({rows / insert_s:,.0f} rows/s with the aggregation, executemany in batches of about {args.batch:,})",
          flush=True)
    live_now = timezone.now()
    live_rows, pool_rows = generate_live(live_now, rng)
    print(f"Inserted {live_rows:,} LiveTraffic and {pool_rows:,} LivePool rows (2 workers, 15 minutes)", flush=True)
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("ANALYZE")  # what autovacuum does after a load like this
    start = now - dt.timedelta(days=args.days)
    rollup_table, live_table = Rollup._meta.db_table, LiveTraffic._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"SELECT tier, COUNT(*) FROM {rollup_table} WHERE window_seconds = 60 AND account <> %s "
                    "GROUP BY tier ORDER BY tier", [ALL_ACCOUNTS])
        per_tier = dict(cur.fetchall())
    account = next(key for key, tier in accounts if tier == "platinum")
    tier = args.tier
    big = max(per_tier, key=lambda t: per_tier[t])
    avail = indicators.find_objective("platinum-sla", "availability")
    latency = indicators.find_objective("platinum-sla", "p95")
    own = indicators.find_objective("account-sla", "p95")
    assert avail is not None and latency is not None and own is not None
    own_account = indicators.objective_scope(own)["account"]
    policy = Policy.objects.get(name="platinum-latency")
    condition = parsed(policy.condition)
    wanted = list(dict.fromkeys(signals(condition)))
    seconds = args.days * 86400

    def signal_floor() -> tuple[int, int, int]:
        a = floor_query(LivePool._meta.db_table, "at", ">", live_now - dt.timedelta(seconds=10), live_now,
                        "SUM(busy_ms), SUM(interval_ms * capacity)", service="booking", pool="primary")()
        b = floor_query(live_table, "at", ">", live_now - dt.timedelta(seconds=30), live_now, service="booking",
                        tier="platinum")()
        return a[0] + b[0], a[1] + b[1], a[2] + b[2]

    def minute_floor(**filters: str) -> Callable[[], tuple[int, int, int]]:
        return floor_query(rollup_table, "window_start", ">=", start, now, minute_rows=True, **filters)

    def rows_read(**filters: str | None) -> Callable[[], int]:
        return lambda: sum(rows.count() for rows in indicators.rollup_rows(start, now, **filters))

    def live_rows_read(**filters: str) -> Callable[[], int]:
        return lambda: LiveTraffic.objects.filter(at__gt=live_now - dt.timedelta(seconds=30), at__lte=live_now,
                                                  **filters).count()

    # key, what, the query, its floor, rows the new path reads
    cases: list[tuple[str, str, Callable[[], Any], Callable[[], tuple[int, int, int]], Callable[[], int] | None]] = [
        ("a", f"one account ({account}): availability and p95, {args.days} days",
         lambda: indicators.rollup_stats(start, now, account=account).as_dict(seconds),
         minute_floor(account=account), rows_read(account=account)),
        ("b", f"one tier ({tier}): availability, {args.days} days",
         lambda: indicators.rollup_stats(start, now, tier=tier).metric("availability", 1),
         minute_floor(tier=tier), rows_read(tier=tier)),
        ("c", f"one tier ({tier}): p95, {args.days} days",
         lambda: indicators.rollup_stats(start, now, tier=tier).metric("p95_ms", 1),
         minute_floor(tier=tier), rows_read(tier=tier)),
        ("c2", f"the biggest tier ({big}): p95, {args.days} days",
         lambda: indicators.rollup_stats(start, now, tier=big).metric("p95_ms", 1),
         minute_floor(tier=big), rows_read(tier=big)),
        ("d1", "budget_status: platinum availability 99.9 %, rolling 30 days",
         lambda: indicators.budget_status(avail, now),
         minute_floor(tier="platinum", service="booking"), rows_read(tier="platinum", service="booking")),
        ("d2", "budget_status: platinum p95 <= 300 ms, rolling 30 days",
         lambda: indicators.budget_status(latency, now),
         minute_floor(tier="platinum", service="booking"), rows_read(tier="platinum", service="booking")),
        ("d3", f"budget_status: one account's ({own_account}) p95 <= 300 ms, rolling 30 days",
         lambda: indicators.budget_status(own, now),
         minute_floor(account=str(own_account), service="booking"),
         rows_read(account=own_account, service="booking")),
        ("e1", "live: live_traffic of platinum over 30 s (2 workers), all metrics",
         lambda: indicators.live_traffic(live_now, 30, service="booking", tier="platinum").as_dict(30),
         floor_query(live_table, "at", ">", live_now - dt.timedelta(seconds=30), live_now, service="booking",
                     tier="platinum"), live_rows_read(service="booking", tier="platinum")),
        ("e2", "live: live_traffic of the service over 30 s (all tiers), all metrics",
         lambda: indicators.live_traffic(live_now, 30, service="booking").as_dict(30),
         floor_query(live_table, "at", ">", live_now - dt.timedelta(seconds=30), live_now, service="booking"),
         live_rows_read(service="booking")),
        ("e3", "live: the policy's signals (pool utilisation[10s], tier p95[30s])",
         lambda: indicators.signal_values(wanted, live_now), signal_floor, None),
        ("e4", "live: evaluate_policies() with that policy (state saved)",
         lambda: evaluate_policies(live_now), signal_floor, None),
    ]
    results = []
    print(f"\nIndicator queries over {rows:,} rollup rows (minute rows per tier: "
          f"{', '.join(f'{t} {per_tier.get(t, 0):,}' for t, *_r in TIERS)}); median of {args.repeats} after a warm-up "
          f"(3 calls for those over 1 s, one for those over 10 s); previous = minute rows only, every sketch decoded "
          f"(previous_rollup_stats); floor = COUNT/SUM of those minute rows with the same WHERE:")
    print(f"  {'query':71} {'new':>10} {'previous':>10} {'floor':>10} {'prev/new':>9} {'new/floor':>9} "
          f"{'rows new / previous':>22}")
    for key, what, query, floor, new_rows in cases:
        new_s, new_result = time_it(query, args.repeats)
        old_s, old_result = time_it(the_previous_way(query), args.repeats)
        floor_s, (n, _count, _errors) = time_it(floor, args.repeats)
        if key != "e4" and not same_answer(new_result, old_result):
            raise SystemExit(f"{key}: the new path answered {new_result!r}, the previous one {old_result!r}")
        read = new_rows() if new_rows is not None else None
        r = {"key": key, "what": what, "new": new_s, "previous": old_s, "floor": floor_s, "rows": n, "rows_new": read,
             "speedup": old_s / new_s, "vs_floor": new_s / floor_s}
        results.append(r)
        print(f"  ({key:2}) {what:66} {fmt_s(new_s):>10} {fmt_s(old_s):>10} {fmt_s(floor_s):>10} "
              f"{r['speedup']:8.1f}x {r['vs_floor']:8.2f}x {'-' if read is None else f'{read:,}':>10} / {n:>9,}",
              flush=True)
    codec = codec_bench()
    print("\nSketches, decoded and merged into one (µs per sketch):")
    for label, c in codec.items():
        print(f"  {label}: {c['sketches']:,} sketches, {c['buckets']:.0f} buckets, {c['bytes_1']:.0f} bytes in format 1, "
              f"{c['bytes_2']:.0f} in format 2: " + ", ".join(f"{k} {v:.1f}" for k, v in c["us"].items()))
    # Where the time of the slowest new query goes
    slowest = max(results, key=lambda r: r["new"])
    fn = next(c[2] for c in cases if c[0] == slowest["key"])
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(8)
    top = profile_table(stats, 8)
    print(f"\nProfile of ({slowest['key']}) {slowest['what']}, the slowest new query, top by own time:")
    for line in top:
        print(f"  {line['tottime']:7.3f} s own {line['cumtime']:7.3f} s cum {line['calls']:>10,} calls  {line['where']}")
    per_row = {r["key"]: (r["previous"] - r["floor"]) / r["rows"] * 1e6
               for r in results if r["key"] in ("a", "b", "c", "c2", "d1", "d2", "d3") and r["rows"] >= 1000}
    cost = statistics.median(per_row.values()) if per_row else float("nan")
    c2 = next(r for r in results if r["key"] == "c2")
    print(f"\nThe previous path spent about {cost:.1f} us per minute row above the floor (decoding and merging every "
          f"sketch in Python): the {big} tier's p95 ({c2['rows']:,} minute rows) took {fmt_s(c2['previous'])} that way "
          f"and takes {fmt_s(c2['new'])} now ({c2['rows_new']:,} rows read), {c2['speedup']:.0f}x less.")
    return {"rows": rows, "kinds": kinds, "insert_s": insert_s, "per_tier": per_tier, "live_rows": live_rows,
            "pool_rows": pool_rows, "results": results, "profile": top, "slowest": slowest, "cost_us": cost,
            "big": big, "codec": codec, "repeats": args.repeats, "accounts": len(accounts), "days": args.days,
            "minutes_per_hour": args.minutes_per_hour}


def profile_table(stats: pstats.Stats, n: int) -> list[dict[str, Any]]:
    entries = []
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{re.sub(r'^.*/(site-packages|lib/python3[.0-9]*)/', '', filename).replace(str(ROOT) + '/', '')}:{line}({func})"
        where = re.sub(r" at 0x[0-9a-f]+", "", where)
        entries.append({"where": where, "calls": calls, "tottime": tottime, "cumtime": cumtime})
    entries.sort(key=lambda e: e["tottime"], reverse=True)
    return entries[:n]


# -- docs -----------------------------------------------------------------------------------------------------------

INTRO = """
## Governance

    python bench/governance.py [--runs 10] [--postgres postgres://127.0.0.1:5432/test] [--write-docs]

Two measurements in a scratch database (a SQLite file, or `accord_bench_gov_<pid>` created and dropped on the
PostgreSQL server), each beside its floor in the same run.

**Reaction time**: from a condition becoming true at the gateway to the gateway enforcing the action. A real
gateway in-process (snapshot poll 0.25 s, live signals every 1 s: the production defaults), a governor loop
(`evaluate_policies` every 1 s, the `accord governor` default), a primary pool of capacity 2 and a standby pool
on two threaded upstreams, and the policy `pool(booking, primary).utilisation[2s] > 0.8` → route platinum to
standby (hold 0, clear after 1 s, min active 0, cooldown 0). Each run fills the primary pool with two held
bronze requests (T0: both in flight at the upstream), then sends a platinum request every 20 ms until the
standby upstream answers one (T1); then releases them and waits until platinum is back on primary and the
utilisation window is idle, and starts again at a random phase against the live and governor ticks. The floor,
interleaved with the runs: the same route action set by hand (`do_set_action`) at T0, probed the same way, so
the snapshot reload alone. Aim: at most 5 s.

**Indicator queries**: 30 days of rollups of 1,000 accounts (50 platinum, 150 gold, 300 silver, 500 bronze),
each active in 3 random minutes per hour, with lognormal latency sketches: the per-account minute rows and the
hour and all-accounts rows the flusher writes with them (each UTC hour's minute tallies go through
`flusher.rollup_rows`, the flusher's own code), inserted with `executemany` in batches; plus 15 minutes of
`LiveTraffic` and `LivePool` rows of 2 workers. Each query is timed (median after a warm-up) three ways in the
same run: **new**, the code as it is; **previous**, the same call with `rollup_stats` and `live_traffic`
replaced by `previous_rollup_stats` / `previous_live_traffic` in the bench (every per-account minute row, every
sketch decoded into a `Sketch` of its own and merged, as before hour rows existed); and the **floor**,
`COUNT(*), SUM(count), SUM(errors)` of those minute rows with the same `WHERE` through `connection.cursor()`,
the least the previous design could take. Every new answer is checked equal to the previous one (counts
exactly, percentiles from sketches equal bucket for bucket). The stored sketches are in the new format, so the
previous column already has the faster decoder; the sketch table below separates the two effects on a sample
of the stored rows.
"""


def docs_part(label: str, args: argparse.Namespace, reaction: list[dict[str, Any]] | None,
              ind: dict[str, Any] | None) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    flag = f" --postgres {args.postgres}" if args.postgres else ""
    lines = [f"### Results on {label}", "",
             f"`python bench/governance.py{flag} --runs {args.runs} --fast-runs {args.fast_runs}"
             f"{'' if args.accounts == 1000 else f' --accounts {args.accounts}'}` on "
             f"{dt.date.today().isoformat()}, {os.cpu_count()} shared cores ({cpu}).", ""]
    if reaction:
        lines += ["| settings (live / governor / poll) | runs | policy median | p90 | max | floor median | floor max "
                  "| above the floor | detection median | back on primary |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in reaction:
            s, f = r["policy"], r["floor_s"]
            lines.append(f"| {r['live']:g} s / {r['governor']:g} s / {r['poll']:g} s | {len(r['runs'])} "
                         f"| **{s['median']:.2f} s** | {s['p90']:.2f} s | {s['max']:.2f} s | {f['median']:.3f} s "
                         f"| {f['max']:.3f} s | {100 * r['above_floor']:.0f}% | {r['detect']['median']:.2f} s "
                         f"| {r['back']['median']:.2f} s |")
        lines.append("")
        for r in reaction:
            lines.append(f"Runs, {r['label']}: policy {', '.join(f'{v:.2f}' for v in r['runs'])} s; by hand "
                         f"{', '.join(f'{v:.3f}' for v in r['floor'])} s.")
        lines += ["", "Detection is T0 to the governor's activation (its audit event); the rest is the snapshot "
                  "reload. Back on primary: from the release of the held requests.", ""]
    if ind:
        tiers = ", ".join(f"{t} {ind['per_tier'].get(t, 0):,}" for t, *_r in TIERS)
        kinds = ", ".join(f"{v:,} {k}" for k, v in ind["kinds"].items())
        lines += [f"Indicators over {ind['rows']:,} rollup rows ({kinds}; {ind['accounts']:,} accounts, {ind['days']} "
                  f"days, {ind['minutes_per_hour']} active minutes per hour; minute rows per tier {tiers}), generated "
                  f"and inserted in {ind['insert_s']:.0f} s; live: {ind['live_rows']:,} `LiveTraffic` and "
                  f"{ind['pool_rows']:,} `LivePool` rows. Median of {ind['repeats']} calls after a warm-up (3 calls "
                  "for those over 1 s, one for those over 10 s):", "",
                  "| query | new | previous | floor (SQL over the minute rows) | previous / new | new / floor "
                  "| rows read: new / previous |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in ind["results"]:
            read = "-" if r["rows_new"] is None else f"{r['rows_new']:,}"
            lines.append(f"| ({r['key']}) {r['what']} | **{fmt_s(r['new'])}** | {fmt_s(r['previous'])} "
                         f"| {fmt_s(r['floor'])} | {r['speedup']:,.1f}x | {r['vs_floor']:,.2f}x | {read} / {r['rows']:,} |")
        lines += ["", "Sketches decoded and merged into one, µs per sketch (a sample of the stored rows):", "",
                  "| rows | sketches | buckets | bytes, format 1 / 2 | "
                  + " | ".join(next(iter(ind["codec"].values()))["us"]) + " |", "|---|---:|---:|---:|---:|---:|---:|"]
        for label, c in ind["codec"].items():
            lines.append(f"| {label} | {c['sketches']:,} | {c['buckets']:.0f} | {c['bytes_1']:.0f} / {c['bytes_2']:.0f} | "
                         + " | ".join(f"{v:.1f}" for v in c["us"].values()) + " |")
        s = ind["slowest"]
        lines += ["", f"Profile of ({s['key']}), the slowest new query, one call, top entries by own time:", "",
                  "| own s | cumulative s | calls | function |", "|---:|---:|---:|---|"]
        for p in ind["profile"]:
            lines.append(f"| {p['tottime']:.3f} | {p['cumtime']:.3f} | {p['calls']:,} | `{p['where']}` |")
        c2 = next(r for r in ind["results"] if r["key"] == "c2")
        lines += ["", f"The previous path spent about {ind['cost_us']:.1f} µs per minute row above the floor (decoding "
                  f"and merging every sketch in Python): the {ind['big']} tier's p95 ({c2['rows']:,} minute rows) took "
                  f"{fmt_s(c2['previous'])} that way; it takes {fmt_s(c2['new'])} now, reading {c2['rows_new']:,} rows.",
                  ""]
    wrapped = [line if line.startswith(("|", "    ")) or not line else textwrap.fill(line, 110, break_on_hyphens=False)
               for line in lines]
    return "\n".join(wrapped) + "\n"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{1000 * seconds:.1f} ms"


def write_docs(part: str, label: str, path: Path) -> None:
    """Put `part` into the Governance section (created at the end if missing) in place of its earlier version."""
    text = path.read_text()
    start = text.find("\n## Governance\n")
    if start < 0:
        text = text.rstrip("\n") + "\n" + INTRO
        start = text.find("\n## Governance\n")
    nxt = text.find("\n## ", start + 1)
    end = len(text) if nxt < 0 else nxt + 1
    section = text[start:end]
    at = section.find(f"\n### Results on {label}\n")
    if at >= 0:
        later = section.find("\n### ", at + 1)
        section = section[:at + 1] + part + ("\n" + section[later + 1:] if later >= 0 else "")
    else:
        findings = section.find("\n### Findings\n")
        if findings >= 0:
            section = section[:findings + 1] + part + "\n" + section[findings + 1:]
        else:
            section = section.rstrip("\n") + "\n\n" + part
    if end < len(text):
        section = section.rstrip("\n") + "\n\n"
    path.write_text(text[:start] + section + text[end:])
    print(f"wrote the {label} results into the Governance section of {path}")


# -- main -----------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", help="a PostgreSQL server URL (e.g. postgres://127.0.0.1:5432/test): run "
                        "there in a scratch database instead of SQLite")
    parser.add_argument("--only", choices=["reaction", "indicators"])
    parser.add_argument("--runs", type=int, default=10, help="reaction runs with the default settings")
    parser.add_argument("--fast-runs", type=int, default=10, help="reaction runs with the faster settings (0: none)")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--minutes-per-hour", type=int, default=3, help="active minutes per account and hour")
    parser.add_argument("--batch", type=int, default=20_000, help="rows per executemany")
    parser.add_argument("--tier", default="platinum", help="the tier of queries (b) and (c)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per indicator query (median)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/benchmarks.md")
    parser.add_argument("--docs-file", default=str(ROOT / "docs" / "benchmarks.md"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.minutes_per_hour <= 60:
        parser.error("--minutes-per-hour must be 1-60")
    label, url, tmp = scratch_database(args)
    print(f"Database: {label} ({url})", flush=True)
    began = time.monotonic()
    try:
        setup_django(url, tmp)
        reaction = bench_reaction(args) if args.only in (None, "reaction") else None
        ind = bench_indicators(args) if args.only in (None, "indicators") else None
        from django.db import connections

        connections.close_all()
    finally:
        drop_database(args, tmp)
    print(f"\nTotal {time.monotonic() - began:.0f} s on {label}")
    if args.write_docs:
        write_docs(docs_part(label, args, reaction, ind), label, Path(args.docs_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
