#!/usr/bin/env python3
"""Benchmark the service desk: due dates per second, e-mail import per second, the agent queue with 100k tickets.

    python bench/desk.py [--due 200000] [--mails 2000] [--runs 3] [--tickets 100000] [--postgres postgres://127.0.0.1:5432/postgres]

1. Due dates: BusinessTime.add() on a London calendar with two windows a day and English holidays, for random
   starts and SLA targets of 30 minutes to 5 days; the reference, in the same run, is a naive engine that
   steps minute by minute (run on a subset, reported per call). Median of 5 runs.
2. E-mail import of generated messages (a third are replies that thread onto earlier tickets) into a fresh
   database: the first half one by one with mail.store() (the IMAP path, one commit per message), the second
   half with mail.store_many() as `desk import-mime` runs it (its default batch per commit). The reference is
   parsing the same bytes with the standard library's email parser alone. Median of --runs fresh imports
   (default 3). Aim: 200 messages/s.
3. Agent queue: GET /desk/ (first page, 50 rows, ordered by next due clock) with 100,000 open tickets, through
   Django's test client in-process (template rendering included), 60 requests; p50 and p95. Also with a
   filter (tier) and deep in the pages. Aim: p95 under 200 ms. SQLite and PostgreSQL.
4. Full-text search: --tickets tickets with --per-ticket messages each (default 100,000 x 10 = 1,000,000
   messages; words drawn from a 5,000-word vocabulary with Zipf frequencies), loaded with COPY on PostgreSQL and
   executemany on SQLite with the search index dropped, then the index built (its time reported). 60 searches
   (GET /desk/?search=...) of words from the most frequent to absent, through the test client rendering the
   queue page; p50 and p95 overall and per word. Aim: p95 under 300 ms on PostgreSQL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup_django(database_url: str, var_dir: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["ACCORD_VAR_DIR"] = var_dir
    os.environ["ACCORD_EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    os.environ["ALLOWED_HOSTS"] = "testserver,localhost"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accord.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


HOURS = {"mon": ["09:00-12:30", "13:30-17:30"], "tue": ["09:00-12:30", "13:30-17:30"], "wed": ["09:00-12:30", "13:30-17:30"],
         "thu": ["09:00-12:30", "13:30-17:30"], "fri": ["09:00-12:30", "13:30-17:00"]}


def bench_due(n: int) -> None:
    import holidays

    from accord.agreements.businesstime import BusinessTime

    table = holidays.country_holidays("GB", subdiv="ENG", years=range(2026, 2029))
    engine = BusinessTime("Europe/London", HOURS, lambda d: d in table)
    rng = random.Random(1)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cases = [(base + dt.timedelta(minutes=rng.randrange(0, 700 * 1440)), rng.choice([30, 60, 120, 240, 480, 960, 2400]))
             for _ in range(n)]
    runs = []
    for _ in range(5):
        engine = BusinessTime("Europe/London", HOURS, lambda d: d in table)  # cold caches each run
        t = time.perf_counter()
        for start, minutes in cases:
            engine.add(start, minutes)
        runs.append(n / (time.perf_counter() - t))

    def naive(start: dt.datetime, minutes: int) -> dt.datetime:
        t, counted = start, 0
        while True:
            if engine.is_working(t):
                counted += 1
                if counted == minutes:
                    return t + dt.timedelta(minutes=1)
            t += dt.timedelta(minutes=1)

    subset = cases[:300]
    t = time.perf_counter()
    for start, minutes in subset:
        assert naive(start, minutes) == engine.add(start, minutes)
    ref = len(subset) / (time.perf_counter() - t)
    print(f"RESULT\tdue\t{statistics.median(runs):.0f}\t{ref:.0f}\t{','.join(f'{r:.0f}' for r in runs)}")


def make_mails(n: int) -> list[bytes]:
    rng = random.Random(2)
    out = []
    for i in range(n):
        msg = EmailMessage()
        msg["From"] = f"Client {i % 400} <client{i % 400}@corp{i % 50}.example>"
        msg["To"] = "support@voyager.example"
        msg["Message-ID"] = f"<bench{i}@corp.example>"
        msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
        if i > 10 and rng.random() < 0.33:
            parent = rng.randrange(0, i)
            msg["Subject"] = f"Re: booking {parent}"
            msg["In-Reply-To"] = f"<bench{parent}@corp.example>"
        else:
            msg["Subject"] = f"Booking {i} needs a change"
        msg.set_content("Hello,\n\n" + "Please move our team's flights to Thursday. " * rng.randint(2, 40))
        if rng.random() < 0.1:
            msg.add_attachment(b"%PDF-1.4 fake itinerary" * 200, maintype="application", subtype="pdf", filename="itinerary.pdf")
        out.append(msg.as_bytes())
    return out


def bench_mail(n: int) -> None:
    from email import policy
    from email.parser import BytesParser

    from accord.customers import tiers
    from accord.customers.models import Account, Contact, ContactPoint
    from accord.desk import mail
    from accord.lib.manifest import apply_manifest

    apply_manifest((ROOT / "accord/agreements/fixtures/demo.yaml").read_text())
    accounts = Account.objects.bulk_create([Account(name=f"Corp {i}", external_id=f"C{i}", revenue_12m=i * 50_000) for i in range(50)])
    for i in range(400):
        c = Contact.objects.create(name=f"Client {i}", account=accounts[i % 50])
        ContactPoint.objects.create(contact=c, kind="email", value=f"client{i}@corp{i % 50}.example")
    tiers.recompute()
    raws = make_mails(n)
    parser = BytesParser(policy=policy.default)
    t = time.perf_counter()
    for raw in raws:
        msg = parser.parsebytes(raw)
        msg.get_body(preferencelist=("plain",))
    ref = n / (time.perf_counter() - t)
    half = n // 2
    t = time.perf_counter()
    for raw in raws[:half]:
        mail.store(raw, source="bench")
    one_by_one = half / (time.perf_counter() - t)
    t = time.perf_counter()
    for _source, _result in mail.store_many(("bench", raw) for raw in raws[half:]):  # as `desk import-mime` does
        pass
    batched = (n - half) / (time.perf_counter() - t)
    print(f"RESULT\tmail\t{batched:.0f}\t{ref:.0f}\t{one_by_one:.0f}\t{getattr(mail, 'BATCH_MESSAGES', 100)}")


def bench_queue(n: int) -> None:
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from django.test import Client

    from accord.access.roles import grant
    from accord.customers.models import Account, Tier
    from accord.desk.models import Ticket

    tier_objs = [Tier.objects.get_or_create(name=name, defaults={"rank": r})[0] for r, name in enumerate(["platinum", "gold", "silver", "standard"], 1)]
    accounts = Account.objects.bulk_create([Account(name=f"Account {i}", external_id=f"Q{i}", tier=tier_objs[i % 4]) for i in range(2000)])
    rng = random.Random(3)
    now = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
    statuses = ["new", "open", "open", "open", "pending", "on_hold"]
    with transaction.atomic():
        batch = []
        for i in range(n):
            due = now + dt.timedelta(minutes=rng.randrange(-600, 6000))
            status = statuses[i % len(statuses)]
            running = status in ("new", "open")
            batch.append(Ticket(
                account=accounts[i % len(accounts)], channel=rng.choice(["email", "web", "phone", "social"]),
                subject=f"Ticket {i} about booking {rng.randrange(10**6)}", status=status,
                priority=rng.choice(["urgent", "high", "normal", "low"]),
                next_due_at=due if running else None, queue_due=due if running else dt.datetime(9999, 1, 1, tzinfo=dt.UTC),
                sla_state="on_track" if running else "paused", created_at=now,
            ))
            if len(batch) == 5000:
                Ticket.objects.bulk_create(batch)
                batch = []
        Ticket.objects.bulk_create(batch)
        # Closed history beside the open queue, as a real desk has.
        Ticket.objects.bulk_create([Ticket(account=accounts[i % 2000], channel="email", subject=f"Old {i}", status="closed",
                                           created_at=now) for i in range(n // 2)])
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
    user = User.objects.create_user("agent", is_staff=True)
    grant(user, "agent")
    client = Client()
    client.force_login(user)

    def measure(url: str, params: dict[str, str], count: int = 60) -> tuple[float, float]:
        times = []
        for _ in range(count):
            t = time.perf_counter()
            response = client.get(url, params)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200
        times.sort()
        return statistics.median(times), times[int(len(times) * 0.95) - 1]

    client.get("/desk/")  # warm up
    for label, params in [("first page", {}), ("filter tier=gold", {"tier": "gold"}), ("page 500", {"page": "500"})]:
        p50, p95 = measure("/desk/", params)
        print(f"RESULT\tqueue\t{label}\t{p50:.1f}\t{p95:.1f}")
    # Reference: the page's one query alone, without counting, rendering or the request cycle.
    times = []
    for _ in range(60):
        t = time.perf_counter()
        list(Ticket.objects.filter(is_open=True).select_related("account__tier", "assignee")
             .order_by("queue_due", "id")[:50])
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(f"RESULT\tqueue\treference: the rows query alone\t{statistics.median(times):.1f}\t{times[56]:.1f}")


SYLLABLES = ["ka", "lo", "mi", "ner", "pa", "qui", "ros", "ta", "ven", "wu", "zel", "bri", "cho", "dex", "fa", "gor"]


def vocabulary(n: int = 5000) -> list[str]:
    rng = random.Random(5)
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) + "x")  # x: no stemming apart
    return sorted(words)


def bench_search(n: int, per_ticket: int) -> None:
    import importlib

    from django.db import connection, transaction

    from accord.desk.models import Message, Ticket

    fts = importlib.import_module("accord.desk.migrations.0009_saved_filter_search")
    vocab = vocabulary()
    weights = [1 / (rank + 1) for rank in range(len(vocab))]  # Zipf: the r-th word is 1/r as frequent
    cum = list(__import__("itertools").accumulate(weights))
    rng = random.Random(4)
    now = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
    pg = connection.vendor == "postgresql"
    if REUSE and Message.objects.count() >= n * per_ticket:  # loaded by an earlier --reuse run: index again
        t0 = time.perf_counter()
        with connection.cursor() as cur:
            for sql in [*(fts.FTS_POSTGRES_DROP if pg else fts.FTS_SQLITE_DROP), *(fts.FTS_POSTGRES if pg else fts.FTS_SQLITE)]:
                cur.execute(sql)
            if pg:
                cur.execute("ANALYZE")
        print(f"RESULT\tsearch-build\t{Message.objects.count()}\t0\t{time.perf_counter() - t0:.0f}")
        return measure_search(vocab, n, per_ticket)
    with connection.cursor() as cur:  # load without the search index; built (and timed) afterwards
        for sql in (fts.FTS_POSTGRES_DROP if pg else fts.FTS_SQLITE_DROP):
            cur.execute(sql)
    t0 = time.perf_counter()
    statuses = ["new", "open", "open", "pending", "solved", "closed"]
    with transaction.atomic():
        batch = []
        for i in range(n):
            status = statuses[i % len(statuses)]
            due = now + dt.timedelta(minutes=rng.randrange(-600, 6000))
            running = status in ("new", "open")
            batch.append(Ticket(
                channel="email", subject=f"Ticket {i} about {' '.join(rng.choices(vocab, cum_weights=cum, k=3))}",
                status=status, next_due_at=due if running else None,
                queue_due=due if running else dt.datetime(9999, 1, 1, tzinfo=dt.UTC),
                sla_state="on_track" if running else "paused", created_at=now))
            if len(batch) == 10000:
                Ticket.objects.bulk_create(batch)
                batch = []
        Ticket.objects.bulk_create(batch)
    first = Ticket.objects.order_by("id").values_list("id", flat=True).first() or 1
    columns = ("ticket_id", "kind", "channel", "from_address", "to_addresses", "cc_addresses", "subject", "body_text",
               "body_html", "in_reply_to", "references", "flagged", "flag_reason", "auto_generated", "meta", "created_at")

    def rows():  # type: ignore[no-untyped-def]
        for i in range(n):
            for _ in range(per_ticket):
                body = "Hello, " + " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(15, 45))) + "."
                yield (first + i, "inbound", "email", "c@example.com", "[]", "[]", "", body, "", "", "", False, "",
                       False, "{}", now)

    if pg:
        raw = connection.connection
        with raw.cursor() as cur, cur.copy(f"COPY desk_message ({', '.join(chr(34) + c + chr(34) for c in columns)}) FROM STDIN") as copy:
            for row in rows():
                copy.write_row(row)
        raw.commit()
    else:
        quoted = ", ".join(f'"{c}"' for c in columns)
        with transaction.atomic(), connection.cursor() as cur:
            chunk = []
            for row in rows():
                chunk.append(row)
                if len(chunk) == 20000:
                    cur.executemany(f"INSERT INTO desk_message ({quoted}) VALUES ({', '.join(['%s'] * len(columns))})", chunk)
                    chunk = []
            if chunk:
                cur.executemany(f"INSERT INTO desk_message ({quoted}) VALUES ({', '.join(['%s'] * len(columns))})", chunk)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    with connection.cursor() as cur:
        for sql in (fts.FTS_POSTGRES if pg else fts.FTS_SQLITE):
            cur.execute(sql)
        if pg:
            cur.execute("ANALYZE")
    index = time.perf_counter() - t0
    messages = Message.objects.count()
    print(f"RESULT\tsearch-build\t{messages}\t{load:.0f}\t{index:.0f}")
    measure_search(vocab, n, per_ticket)


def measure_search(vocab: list[str], n: int, per_ticket: int) -> None:
    import json

    from django.contrib.auth.models import User
    from django.test import Client

    from accord.access.roles import grant
    from accord.desk import search
    from accord.desk.models import Ticket

    user = User.objects.get_or_create(username="agent", defaults={"is_staff": True})[0]
    grant(user, "agent")
    client = Client()
    client.force_login(user)
    # Words from the most frequent to rare, two-word searches, and a word that occurs nowhere.
    queries = [vocab[0], vocab[3], vocab[30], vocab[300], vocab[1500], vocab[4900], f"{vocab[0]} {vocab[10]}",
               f"{vocab[50]} {vocab[700]}", "nowherexyz", f'"{vocab[2]} {vocab[1]}"']
    client.get("/desk/", {"search": queries[0]})  # warm up
    times: list[float] = []
    per: dict[str, list[float]] = {}
    for i in range(60):
        q = queries[i % len(queries)]
        t = time.perf_counter()
        response = client.get("/desk/", {"search": q})
        ms = (time.perf_counter() - t) * 1000
        assert response.status_code == 200
        times.append(ms)
        per.setdefault(q, []).append(ms)
    times.sort()
    print(f"RESULT\tsearch\tall 60 searches\t{statistics.median(times):.1f}\t{times[int(len(times) * 0.95) - 1]:.1f}")
    base = []
    for _ in range(60):  # the same page without a search, on the same database: the reference
        t = time.perf_counter()
        assert client.get("/desk/").status_code == 200
        base.append((time.perf_counter() - t) * 1000)
    base.sort()
    print(f"RESULT\tsearch\treference: the queue page without a search\t{statistics.median(base):.1f}\t{base[56]:.1f}")
    for q, ts in per.items():
        hits = len(search.search(Ticket.objects.filter(is_open=True), q).ids)
        print(f"RESULT\tsearch\t{json.dumps(q)} ({hits} open tickets found)\t{statistics.median(ts):.1f}\t{max(ts):.1f}")


REUSE = False


def child(args: argparse.Namespace) -> None:
    global REUSE
    REUSE = args.reuse
    url, var_dir, part = args.child
    setup_django(url, var_dir)
    if part == "mail":
        bench_mail(args.mails)
    elif part == "search":
        bench_search(args.tickets, args.per_ticket)
    else:
        bench_queue(args.tickets)


def run_child(part: str, url: str, var_dir: str, args: argparse.Namespace) -> list[list[str]]:
    proc = subprocess.run(
        [sys.executable, __file__, "--mails", str(args.mails), "--tickets", str(args.tickets),
         "--per-ticket", str(args.per_ticket), *(["--reuse"] if args.reuse else []), "--child", url, var_dir, part],
        capture_output=True, text=True, cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{part} on {url} failed:\n{proc.stdout}\n{proc.stderr}")
    return [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("RESULT")]


def fresh_databases(args: argparse.Namespace, tag: str) -> list[tuple[str, str, str]]:
    tmp = tempfile.mkdtemp(prefix="accord-bench-desk-")
    targets = [("SQLite", f"sqlite:///{tmp}/{tag}.sqlite3", tmp)] if args.sqlite else []
    if args.postgres:
        import psycopg

        name = f"{args.db_prefix}_{tag}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not (args.reuse and exists):
                conn.execute(f"DROP DATABASE IF EXISTS {name}")
                conn.execute(f"CREATE DATABASE {name}")
        targets.append(("PostgreSQL", f"{args.postgres.rsplit('/', 1)[0]}/{name}", tmp))
    return targets


def drop(args: argparse.Namespace, tag: str) -> None:
    if args.postgres:
        import psycopg

        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {args.db_prefix}_{tag}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--due", type=int, default=200_000)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--postgres", default="postgres://127.0.0.1:5432/postgres")
    parser.add_argument("--runs", type=int, default=3, help="fresh e-mail imports per database (median)")
    parser.add_argument("--db-prefix", default="accord_bench_desk", help="PostgreSQL databases made (and dropped)")
    parser.add_argument("--reuse", action="store_true",
                        help="search: keep the PostgreSQL database, and reuse it if it is already loaded")
    parser.add_argument("--per-ticket", type=int, default=10, help="messages per ticket in the search case")
    parser.add_argument("--only", choices=["due", "mail", "queue", "search"])
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    if args.only in (None, "due"):
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accord.settings")
        os.environ.setdefault("ACCORD_VAR_DIR", tempfile.mkdtemp())
        import django

        django.setup()
        import io
        from contextlib import redirect_stdout

        buf = io.StringIO()
        with redirect_stdout(buf):
            bench_due(args.due)
        _r, _k, rate, ref, runs = buf.getvalue().strip().split("\t")
        print(f"Due dates: {float(rate):,.0f} per second (median of 5 runs: {runs}); naive minute stepping: "
              f"{float(ref):,.0f} per second; {float(rate) / float(ref):,.0f}x faster (aim: 50,000/s)")
    if args.only in (None, "mail"):
        runs: dict[str, list[tuple[float, float, float]]] = {}
        per_commit = ""
        for _run in range(args.runs):
            for label, url, tmp in fresh_databases(args, "mail"):
                (_r, _k, rate, ref, single, per_commit), = run_child("mail", url, tmp, args)
                runs.setdefault(label, []).append((float(rate), float(single), float(ref)))
        drop(args, "mail")
        for label, results in runs.items():
            batched, single, ref = (statistics.median(r[i] for r in results) for i in range(3))
            print(f"E-mail import on {label} ({args.mails} messages, median of {len(results)} runs): "
                  f"import-mime, {per_commit} per commit: {batched:,.0f}/s "
                  f"({', '.join(f'{r[0]:.0f}' for r in results)}); one commit per message (IMAP): {single:,.0f}/s "
                  f"({', '.join(f'{r[1]:.0f}' for r in results)}); {batched / single:.1f}x; "
                  f"parsing alone {ref:,.0f}/s (aim: 200/s)")
    if args.only in (None, "queue"):
        for label, url, tmp in fresh_databases(args, "queue"):
            for _r, _k, what, p50, p95 in run_child("queue", url, tmp, args):
                print(f"Agent queue on {label}, {args.tickets:,} open tickets, {what}: p50 {p50} ms, p95 {p95} ms"
                      f"{' (aim: p95 < 200 ms)' if what == 'first page' else ''}")
        drop(args, "queue")
    if args.only in (None, "search"):
        for label, url, tmp in fresh_databases(args, "search"):
            for result in run_child("search", url, tmp, args):
                if result[1] == "search-build":
                    print(f"Search on {label}: {int(result[2]):,} messages loaded in {result[3]} s; "
                          f"search index built in {result[4]} s")
                else:
                    print(f"Search on {label}, {result[2]}: p50 {result[3]} ms, "
                          f"{'max' if result[2].startswith(chr(34)) else 'p95'} {result[4]} ms")
        if not args.reuse:
            drop(args, "search")
    return 0


if __name__ == "__main__":
    sys.exit(main())
