#!/usr/bin/env python3
"""Benchmark period reports: build a month's reports (data, HTML, CSV, PDF) of every account.

    python bench/reports.py [--accounts 1000] [--jobs 2] [--rounds 1] [--reference 20] [--postgres URL]

A scratch database (as bench/governance.py: SQLite in a temporary directory, or a database of its own on
`--postgres`) gets 1,000 accounts in four tiers, an agreement per tier (availability 99.9 % on booking, a
credit schedule; platinum also p95 latency) and November 2026 of minute rollups, each account active in 3 random
minutes of every hour (with the hour and all-accounts rows the flusher writes: governance's own generator).

Then every account's files are built as `accord reports build --jobs N` builds them (`accord.reports.files`:
batches judged together, printed on N processes), timed end to end, with the seconds of each stage. The
reference, in the same run on the same data: the first `--reference` accounts built one at a time the way
`reports build` did before (each account's traffic read on its own, WeasyPrint printing the HTML page with the
page's stylesheet), CPU time per stage, medians. `--limit N` builds only the first N accounts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
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
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes building reports (default: one per CPU core, as `reports build`)")
    parser.add_argument("--rounds", type=int, default=1, help="builds of every report (the median is shown)")
    parser.add_argument("--reference", type=int, default=20,
                        help="accounts built one at a time the previous way, as the reference")
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
    from accord.reports.files import build_all
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
    # the reference: one account at a time, as `reports build` did before batches (build() reads the account's
    # traffic on its own; WeasyPrint prints the HTML page with the page's stylesheet)
    import weasyprint

    reference: dict[str, list[float]] = {"judge": [], "html": [], "pdf": []}
    for account in chosen[: args.reference]:
        t0 = time.process_time()
        report = build(account, period, now)
        t1 = time.process_time()
        page = render.html(report)
        t2 = time.process_time()
        weasyprint.HTML(string=page.decode()).write_pdf()
        t3 = time.process_time()
        for name, value in zip(reference, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            reference[name].append(value)
    ref_total = sum(statistics.median(v) for v in reference.values()) if args.reference else 0.0
    runs = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            seconds: dict[str, float] = {"judge_wall": 0.0}
            for batch in build_all(chosen, period, now, Path(out), jobs=args.jobs):
                for name, value in batch.seconds.items():
                    seconds[name] = seconds.get(name, 0.0) + value
                seconds["judge_wall"] += batch.judge_wall
            runs.append((time.perf_counter() - started, seconds))
    walls = [w for w, _s in runs]
    _wall, seconds = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    n = len(chosen)
    per_report = {name: value / n * 1000 for name, value in seconds.items()}
    print(f"{label}: {n} reports (HTML, CSV, PDF) on {args.jobs} process(es): median {statistics.median(walls):.1f} s "
          f"of {len(walls)} round(s) ({', '.join(f'{w:.1f}' for w in walls)})")
    print(f"{label}: reference, one account at a time on one process: {ref_total * 1000:.1f} ms per report "
          f"(median of {len(reference['judge'])}), {ref_total * n:.0f} s of CPU for {n}")
    print("| stage | reference: one at a time, median ms per report | batched, mean ms per report | ratio |")
    print("|---|---:|---:|---:|")
    for name in ("judge", "html", "pdf"):
        ref = statistics.median(reference[name]) * 1000
        print(f"| {name} | {ref:.1f} | {per_report[name]:.1f} | {ref / per_report[name]:.1f} x |")
    print(f"| csv | | {per_report['csv']:.1f} | |")
    print(f"judging's wall time (its process time plus waiting for the database): {per_report['judge_wall']:.1f} ms "
          f"per report; load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"wall per report: {statistics.median(walls) / n * 1000:.1f} ms; reference CPU per report / wall per "
          f"report: {ref_total * n / statistics.median(walls):.1f} x")


if __name__ == "__main__":
    main()
