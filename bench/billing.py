#!/usr/bin/env python3
"""Benchmark `accord billing run`: a month's invoices for 10,000 accounts from a month of gateway rollups.

    python bench/billing.py [--accounts 10000] [--hours-per-day 6] [--reference 200] [--postgres URL]

A scratch database (bench/governance.py's: SQLite in a temporary directory, or a database of its own on
`--postgres`) gets the accounts in four tiers and four time zones (UTC, America/New_York, Europe/Berlin and
Asia/Kolkata, whose month starts at half past an hour, so its edges are read from minute rows), two services,
five meters and a plan per tier (flat fee, per-unit, graduated and volume prices, included quantities, a minimum
commitment). Rollups from 2026-10-31 to 2026-12-01 12:00 UTC: each account is active in `--hours-per-day` random
hours of each day, one minute in each, on a random service and operation; the flusher's own `rollup_rows` turns
those minutes into the minute, hour and all-accounts rows the gateway writes.

Then `accord billing run --period 2026-11` (in process, as the command runs it) is timed end to end, twice (the
second replaces the first's drafts), and the requests billed are checked against the requests generated in each
account's own month, exactly. The reference, in the same run on the same data: the first `--reference` accounts
billed one at a time (`invoicing.bills([account])`: each account's usage read on its own), scaled to all accounts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import governance  # noqa: E402  (its scratch database, Django setup and raw inserts)

ZONES = [("UTC", 0.70), ("America/New_York", 0.15), ("Europe/Berlin", 0.10), ("Asia/Kolkata", 0.05)]
TIERS = [("platinum", 1, 0.05), ("gold", 2, 0.15), ("silver", 3, 0.30), ("bronze", 4, 0.50)]
ROUTES = [("booking", "search"), ("booking", "search"), ("booking", "book"), ("payments", "charge")]
MANIFEST = """
services:
  - {name: booking, base_path: /bookings, operations: [{name: search, method: GET, path: /bookings},
     {name: book, method: POST, path: /bookings}]}
  - {name: payments, base_path: /payments, operations: [{name: charge, method: POST, path: /payments}]}
meters:
  - {name: api-calls, source: gateway.requests, unit: requests}
  - {name: bookings, source: gateway.requests, service: booking, operation: book, unit: requests}
  - {name: payments, source: gateway.requests, service: payments, unit: requests}
  - {name: traffic, source: gateway.bytes, unit: bytes}
  - {name: peak-hour, source: gateway.requests, aggregation: max, unit: requests}
plans:
  - name: platinum
    currency: EUR
    flat_fee: 5000
    minimum_commitment: 2000
    tiers: [platinum]
    prices:
      - {meter: api-calls, model: graduated, tiers: [{up_to: 100000, unit_price: 0.001}, {unit_price: 0.0005}]}
      - {meter: payments, unit_price: 0.01, included: 1000}
  - name: gold
    currency: EUR
    flat_fee: 1000
    tiers: [gold]
    prices:
      - {meter: api-calls, model: volume, tiers: [{up_to: 10000, unit_price: 0.002}, {unit_price: 0.0015}]}
      - {meter: bookings, unit_price: 0.05}
  - name: silver
    currency: EUR
    flat_fee: 200
    tiers: [silver]
    prices:
      - {meter: api-calls, unit_price: 0.003, included: 5000}
      - {meter: traffic, unit_price: 0.000001, included: 1000000}
  - name: bronze
    currency: USD
    tiers: [bronze]
    minimum_commitment: 20
    prices:
      - {meter: api-calls, unit_price: 0.004}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--hours-per-day", type=int, default=6)
    parser.add_argument("--reference", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="profile the first run (cProfile): the 15 functions "
                                                                "with the most time of their own")
    args = parser.parse_args()
    label, url, tmp = governance.scratch_database(args)
    try:
        governance.setup_django(url, tmp)
        run(args, label)
    finally:
        governance.drop_database(args, tmp)


def setup(args: argparse.Namespace, rng: random.Random) -> list[tuple[int, str, str, str]]:
    """(id, key, tier, zone) of every account, after the catalog, meters and plans."""
    from accord.customers.models import Account, Tier
    from accord.lib.manifest import apply_manifest

    tiers = {name: Tier.objects.create(name=name, rank=rank) for name, rank, _ in TIERS}
    apply_manifest(MANIFEST)
    rows = []
    for i in range(args.accounts):
        tier = rng.choices([t[0] for t in TIERS], [t[2] for t in TIERS])[0]
        zone = rng.choices([z[0] for z in ZONES], [z[1] for z in ZONES])[0]
        rows.append(Account(name=f"Account {i:05d}", external_id=f"ACC{i:05d}", tier=tiers[tier], timezone=zone))
    Account.objects.bulk_create(rows, batch_size=2000)
    return [(a.pk, a.external_id, a.tier.name, a.timezone) for a in Account.objects.select_related("tier")]


def generate(args: argparse.Namespace, accounts: list[tuple[int, str, str, str]], rng: random.Random
             ) -> tuple[dict[str, int], dict[str, int], float]:
    """Rollup rows as the flusher writes them; (rows per kind, requests per account in its own November, s)."""
    from django.db import connection, transaction
    from tqdm import tqdm

    from accord.billing.invoicing import local_midnight
    from accord.gateway.flusher import rollup_rows
    from accord.gateway.measure import Sketch, Tally
    from accord.gateway.models import ALL_ACCOUNTS, Rollup

    adapt = connection.ops.adapt_datetimefield_value
    first = int(dt.datetime(2026, 10, 31, tzinfo=dt.UTC).timestamp())
    last = int(dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC).timestamp())
    month = {key: (int(local_midnight(dt.date(2026, 11, 1), zone).timestamp()),
                   int(local_midnight(dt.date(2026, 12, 1), zone).timestamp())) for _, key, _, zone in accounts}
    sketch = Sketch()
    for v in (20.0, 35.0, 80.0):
        sketch.add(v)
    blob = sketch.encode()
    updated = adapt(dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC))
    expected: dict[str, int] = {key: 0 for _, key, _, _ in accounts}
    kinds = {"minute": 0, "hour": 0, "all-accounts minute": 0, "all-accounts hour": 0}
    table = Rollup._meta.db_table
    batch: list[tuple[Any, ...]] = []
    started = time.perf_counter()
    days = (last - first + 86399) // 86400
    # Each account's active hours of each day, drawn up front so the rows can be written hour by hour.
    active: dict[int, list[str]] = {}
    for _, key, _, _ in accounts:
        for d in range(days):
            for h in rng.sample(range(24), args.hours_per_day):
                active.setdefault(first + d * 86400 + h * 3600, []).append(key)
    hours = sorted(h for h in active if h < last)
    print(f"Generating rollups: {len(accounts):,} accounts x {days} days x {args.hours_per_day} active hours a day "
          f"(one minute each): {sum(len(active[h]) for h in hours):,} account-minutes, with the hour and "
          f"all-accounts rows the flusher writes", flush=True)
    with tqdm(total=len(hours), unit=" hours", mininterval=2, file=sys.stdout) as bar:
        for base in hours:
            tallies = {}
            for key in active[base]:
                when = base + 60 * rng.randrange(60)
                service, op = ROUTES[rng.randrange(len(ROUTES))]
                t = Tally()
                t.count = rng.randint(1, 60)
                t.bytes_in, t.bytes_out, t.latency_sum, t.sketch = 300 * t.count, 2000 * t.count, 40.0 * t.count, sketch
                tallies[(when, key, service, op, "primary", "ok", "")] = t
                start, end = month[key]
                if start <= when < end:
                    expected[key] += t.count
            for (seconds, when, account, service, op, pool, outcome, tier), t in sorted(rollup_rows(tallies, 60).items()):
                batch.append((adapt(dt.datetime.fromtimestamp(when, tz=dt.UTC)), seconds, account, service, op, pool,
                              outcome, tier, t.count, t.errors, t.bytes_in, t.bytes_out, t.latency_sum, blob, updated))
                kinds[("all-accounts " if account == ALL_ACCOUNTS else "") + ("hour" if seconds == 3600 else "minute")] += 1
            if len(batch) >= args.batch:
                with transaction.atomic():
                    governance.raw_insert(table, governance.ROLLUP_COLUMNS, batch)
                batch = []
            bar.update(1)
        if batch:
            with transaction.atomic():
                governance.raw_insert(table, governance.ROLLUP_COLUMNS, batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as c:
            c.execute(f"ANALYZE {table}")
    return kinds, expected, time.perf_counter() - started


def billing_run(profile: bool = False) -> tuple[float, str]:
    import cProfile
    import pstats

    from django.core.management import call_command

    out = io.StringIO()
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    call_command("billing", "run", "--period", "2026-11", stdout=out)
    if profiler:
        profiler.disable()
    took = time.perf_counter() - started
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    return took, out.getvalue().strip()


def run(args: argparse.Namespace, label: str) -> None:
    from accord.billing.invoicing import PlanBook, bills
    from accord.billing.models import Invoice, InvoiceLine
    from accord.customers.models import Account

    rng = random.Random(args.seed)
    accounts = setup(args, rng)
    kinds, expected, seconds = generate(args, accounts, rng)
    print(f"{label}: {sum(kinds.values()):,} rollup rows ({kinds}) in {seconds:.0f} s", flush=True)
    first, summary = billing_run(args.profile)
    print(f"{label}: billing run, first: {first:.1f} s\n  {summary}", flush=True)
    again, summary = billing_run()
    print(f"{label}: billing run, again (replacing the drafts): {again:.1f} s\n  {summary}", flush=True)
    billed = dict(InvoiceLine.objects.filter(key__startswith="usage:api-calls:")
                  .values_list("invoice__account__external_id", "quantity"))
    included = {"platinum": 0, "gold": 0, "silver": 5000, "bronze": 0}
    tiers = {key: tier for _, key, tier, _ in accounts}
    wrong = [k for k, n in expected.items() if billed.get(k, Decimal(0)) != max(0, n - included[tiers[k]])]
    print(f"{label}: {Invoice.objects.count():,} invoices; requests billed = requests generated in each account's own "
          f"month for {len(expected) - len(wrong):,} of {len(expected):,} accounts", flush=True)
    if wrong:
        raise SystemExit(f"{label}: billed requests differ from those generated for {len(wrong)} accounts: {wrong[:5]}")
    sample = list(Account.objects.select_related("tier").order_by("pk")[: args.reference])
    book = PlanBook()
    started = time.perf_counter()
    for a in sample:
        bills([a], "2026-11", book=book)
    each = (time.perf_counter() - started) / max(1, len(sample))
    print(f"{label}: reference, one account at a time ({len(sample)} accounts, usage only, nothing written): "
          f"{each * 1000:.1f} ms per account, {each * args.accounts:.0f} s for {args.accounts:,}", flush=True)


if __name__ == "__main__":
    main()
