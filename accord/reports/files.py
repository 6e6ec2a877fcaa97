"""`accord reports build`: every account's HTML, CSV and PDF for a period, in batches, on several processes.

Accounts go in batches (`BATCH` accounts): a batch's reports are judged together (`builder.build_many`: one query
per objective and day for the whole batch) and printed one by one. With `jobs` > 1 the batches are shared by a
pool of forked processes: the database connections are closed before the fork, so each process opens its own.
The files do not depend on the number of processes or on the batches: a report is the same bytes either way.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connections

from accord.customers.models import Account

from . import render
from .builder import build_many
from .freeze import file_name
from .periods import Period

BATCH = 25


@dataclass
class BatchResult:
    """What one batch wrote: the all-accounts CSV rows in account order, files, and seconds per stage."""

    rows: list[list[str]] = field(default_factory=list)
    files: int = 0
    provisional: bool = False
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("judge", "html", "csv", "pdf"), 0.0))
    accounts: int = 0
    judge_wall: float = 0.0  # judging's wall time: its process time plus the wait for the database server


def build_batch(account_ids: list[int], period: Period, now: dt.datetime, out: Path, want_pdf: bool) -> BatchResult:
    """Judge a batch of accounts together, then write each one's HTML, CSV and (with `want_pdf`) PDF."""
    result = BatchResult(accounts=len(account_ids))
    t0, w0 = time.process_time(), time.perf_counter()
    by_pk = Account.objects.select_related("tier").in_bulk(account_ids)
    reports = build_many([by_pk[pk] for pk in account_ids], period, now)
    result.seconds["judge"] += time.process_time() - t0
    result.judge_wall += time.perf_counter() - w0
    for report in reports:
        t1 = time.process_time()
        page = render.html(report)
        t2 = time.process_time()
        rows = render.csv_rows(report)
        stem = file_name(report.account, period, 0, "x").removesuffix("-v0.x")
        (out / f"{stem}.csv").write_bytes(render.write_csv(rows))
        (out / f"{stem}.html").write_bytes(page)
        t3 = time.process_time()
        result.rows.extend(rows)
        result.files += 2
        result.provisional = result.provisional or report.provisional
        if want_pdf:
            (out / f"{stem}.pdf").write_bytes(render.pdf(report))
            result.files += 1
        t4 = time.process_time()
        for name, seconds in (("html", t2 - t1), ("csv", t3 - t2), ("pdf", t4 - t3)):
            result.seconds[name] += seconds
    return result


def _run(job: tuple[list[int], Period, dt.datetime, Path, bool]) -> BatchResult:
    return build_batch(*job)


def _child_start() -> None:
    connections.close_all()  # never share the parent's socket or file handle: open one of our own


def build_all(accounts: list[Account], period: Period, now: dt.datetime, out: Path, *, want_pdf: bool = True,
              jobs: int = 1, progress: Callable[[int], None] = lambda _n: None) -> Iterator[BatchResult]:
    """Every account's files, batch by batch in account order; `progress(n)` after each batch of n accounts."""
    out.mkdir(parents=True, exist_ok=True)
    ids = [a.pk for a in accounts]
    work = [(ids[i:i + BATCH], period, now, out, want_pdf) for i in range(0, len(ids), BATCH)]
    if jobs <= 1 or len(work) <= 1:
        for job in work:
            result = _run(job)
            progress(result.accounts)
            yield result
        return
    connections.close_all()  # before the fork: each process opens its own connection
    with multiprocessing.get_context("fork").Pool(min(jobs, len(work)), initializer=_child_start) as pool:
        for result in pool.imap(_run, work):
            progress(result.accounts)
            yield result
