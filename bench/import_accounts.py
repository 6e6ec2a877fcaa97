#!/usr/bin/env python3
"""Benchmark: CSV import of 100k accounts on SQLite and PostgreSQL, beside a raw-driver reference.

For each database it creates a fresh database, migrates it, then runs, REPEATS times:
  - accord (first import): `accord import accounts` of N new rows, timed in-process around the importer;
  - accord (re-import, every row changed): the same rows with a new name, so all are updates;
  - reference: csv.reader + executemany INSERT with the raw driver into a table of the same shape
    (the floor of what the database can do, with no validation and no upsert).
It prints rows/s (median of the repeats) and the ratio accord/reference.

    python bench/import_accounts.py [--rows 100000] [--repeats 3] [--postgres postgres://127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZONES = ["Europe/London", "Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"]


def make_csv(rows: int, suffix: str = "") -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["external_id", "name", "kind", "timezone", "revenue_12m", "cost_to_serve_12m", "owner"])
    for i in range(rows):
        w.writerow([f"B{i:07d}", f"Company {i}{suffix}", "organisation", ZONES[i % 5], f"{i * 7 % 100000}.50", f"{i % 5000}.00", ""])
    return out.getvalue().encode()


def run_child(database_url: str, var_dir: str, rows: int, repeats: int) -> None:
    """Runs inside a subprocess with DATABASE_URL set: migrate, then time the imports."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["ACCORD_VAR_DIR"] = var_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accord.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from accord.customers.csvio import import_accounts
    from accord.customers.models import Account

    call_command("migrate", verbosity=0)
    first, second = make_csv(rows), make_csv(rows, " (renamed)")
    results: dict[str, list[float]] = {"accord first import": [], "accord re-import (all updated)": [], "reference executemany": []}
    for _ in range(repeats):
        Account.objects.all().delete()
        t = time.perf_counter()
        report = import_accounts(first)
        results["accord first import"].append(time.perf_counter() - t)
        assert report.created == rows, report.summary()
        t = time.perf_counter()
        report = import_accounts(second)
        results["accord re-import (all updated)"].append(time.perf_counter() - t)
        assert report.updated == rows, report.summary()
        # Reference: the raw driver, same columns, no validation, no upsert.
        with connection.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench_raw_accounts")
            cur.execute(
                "CREATE TABLE bench_raw_accounts (external_id varchar(100) UNIQUE, name varchar(200), kind varchar(12),"
                " timezone varchar(64), revenue_12m numeric(14,2), cost_to_serve_12m numeric(14,2))"
            )
        raw = connection.connection  # the DB-API connection underneath Django
        t = time.perf_counter()
        reader = csv.reader(io.StringIO(first.decode()))
        next(reader)
        params = [tuple(r[:6]) for r in reader]
        placeholder = "%s" if connection.vendor == "postgresql" else "?"
        cursor = raw.cursor()
        cursor.executemany(f"INSERT INTO bench_raw_accounts VALUES ({', '.join([placeholder] * 6)})", params)
        raw.commit()
        results["reference executemany"].append(time.perf_counter() - t)
    for name, times in results.items():
        print(f"RESULT\t{name}\t{statistics.median(times):.3f}\t{','.join(f'{x:.3f}' for x in times)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", default="postgres://127.0.0.1:5432/postgres",
                        help="server to create the benchmark database on ('' to skip PostgreSQL)")
    parser.add_argument("--child", nargs=2, metavar=("DATABASE_URL", "VAR_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child[0], args.child[1], args.rows, args.repeats)
        return 0
    targets = []
    tmp = tempfile.mkdtemp(prefix="accord-bench-")
    targets.append(("SQLite", f"sqlite:///{tmp}/bench.sqlite3"))
    if args.postgres:
        import psycopg

        base = args.postgres.rsplit("/", 1)[0]
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS accord_bench_import")
            conn.execute("CREATE DATABASE accord_bench_import")
        targets.append(("PostgreSQL", f"{base}/accord_bench_import"))
    print(f"CSV import of {args.rows:,} accounts, median of {args.repeats} runs (seconds, rows/s)\n")
    print(f"{'database':<11} {'path':<32} {'median s':>9} {'rows/s':>10} {'vs reference':>13}")
    for label, url in targets:
        print(f"... {label}: migrating and importing", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--rows", str(args.rows), "--repeats", str(args.repeats), "--child", url, tmp],
            capture_output=True, text=True, cwd=ROOT,
        )
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr, file=sys.stderr)
            return 1
        lines = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("RESULT")]
        medians = {name: float(median) for _r, name, median, _all in lines}
        ref = medians["reference executemany"]
        for name, median in medians.items():
            ratio = f"{median / ref:.2f}x time" if name != "reference executemany" else "1.00x"
            print(f"{label:<11} {name:<32} {median:>9.2f} {args.rows / median:>10,.0f} {ratio:>13}")
    if args.postgres:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS accord_bench_import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
