#!/usr/bin/env python3
"""Benchmark period reports: build a month's reports (data, HTML, CSV, PDF) of every account.

    python bench/reports.py [--accounts 1000] [--minutes-per-hour 3] [--limit N] [--postgres URL]

A scratch database (as bench/governance.py: SQLite in a temporary directory, or a database of its own on
`--postgres`) gets 1,000 accounts in four tiers, an agreement per tier (availability 99.9 % on booking, a
credit schedule) and November 2026 of minute rollups, each account active in 3 random minutes of every hour
(with the hour and all-accounts rows the flusher writes: governance's own generator). Then every account's
report is built as `accord reports build` builds it, timed per stage: judging the period (the SLI
queries, day by day), the HTML, the CSV, the PDF. The reference, in the same run: WeasyPrint printing one
fixed page of the same size (the floor of a PDF) and the HTML alone. `--limit N` builds only the first N
accounts' reports (the total is then extrapolated and marked so).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import governance  # noqa: E402  (its scratch database, Django setup and rollup generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--minutes-per-hour", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--limit", type=int, default=0, help="build only this many reports")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.days = 30
    label, url, tmp = governance.scratch_database(args)
    try:
        governance.setup_django(url, tmp)
        run(args, label)
    finally:
        governance.drop_database(args, tmp)


def run(args: argparse.Namespace, label: str) -> None:
    from accord.agreements.models import Agreement, CreditBand, CreditSchedule, Objective
    from accord.customers.models import Tier
    from accord.reports import render
    from accord.reports.builder import accounts_for, build
    from accord.reports.periods import parse_period

    end = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    accounts = governance.indicator_setup(args, end)
    for tier in Tier.objects.exclude(name="platinum"):  # every account under an agreement with credits
        a = Agreement.objects.create(name=f"{tier.name}-sla", tier=tier, calendar_id=Agreement.objects.first().calendar_id,
                                     effective_from=dt.date(2026, 1, 1), monthly_fee=Decimal(1000))
        Objective.objects.create(agreement=a, name="availability", kind="availability", target=Decimal("99.9"),
                                 service_id=Objective.objects.first().service_id)
    for a in Agreement.objects.filter(tier__isnull=False):
        s = CreditSchedule.objects.create(agreement=a)
        CreditBand.objects.create(schedule=s, below_percent=Decimal("99.9"), credit_percent=Decimal(10))
        CreditBand.objects.create(schedule=s, below_percent=Decimal("99.0"), credit_percent=Decimal(25))
    kinds, seconds = governance.generate_rollups(args, end, accounts, random.Random(args.seed))
    print(f"{label}: {sum(kinds.values()):,} rollup rows ({dict(kinds)}) in {seconds:.0f} s")
    period = parse_period("2026-11")
    chosen = accounts_for(None)
    if args.limit:
        chosen = chosen[: args.limit]
    now = end + dt.timedelta(days=2)
    stages: dict[str, list[float]] = {"judge": [], "html": [], "csv": [], "pdf": []}
    started = time.perf_counter()
    page = b""
    for account in chosen:
        t0 = time.perf_counter()
        report = build(account, period, now)
        t1 = time.perf_counter()
        page = render.html(report)
        t2 = time.perf_counter()
        render.csv_bytes(report)
        t3 = time.perf_counter()
        render.pdf(report, document=page)
        t4 = time.perf_counter()
        for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[name].append(value)
    total = time.perf_counter() - started
    import weasyprint

    floor = []
    for _ in range(5):
        t = time.perf_counter()
        weasyprint.HTML(string=page.decode()).write_pdf()
        floor.append(time.perf_counter() - t)
    n = len(chosen)
    scale = args.accounts / n if args.limit else 1
    print(f"{label}: {n} reports (HTML, CSV, PDF) in {total:.1f} s"
          + (f", {total * scale:.0f} s extrapolated to {args.accounts}" if args.limit else ""))
    print("| stage | median ms per account | share of the time |")
    print("|---|---:|---:|")
    for name, values in stages.items():
        print(f"| {name} | {statistics.median(values) * 1000:.1f} | {sum(values) / total * 100:.0f} % |")
    print(f"| reference: WeasyPrint alone on the same page | {statistics.median(floor) * 1000:.1f} | |")


if __name__ == "__main__":
    main()
