"""Finalising at once from several threads (each its own database connection): every number is given once, in
one run with no gap, because the sequence row is locked until each finalisation commits."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import close_old_connections, connection

from accord.billing.actions import do_finalise, do_run
from accord.billing.models import Invoice

from .conftest import account, plan

THREADS = 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_finalisations_neither_skip_nor_duplicate_a_number(catalog: object) -> None:
    plan("""
  - name: gold
    currency: EUR
    flat_fee: 10
    tiers: [gold]
""")
    for i in range(THREADS * 3):
        account(f"A{i:02d}", catalog)  # type: ignore[arg-type]
    ids = [inv.pk for inv in do_run("2026-11").drafted]
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def work(mine: list[int]) -> None:
        try:
            start.wait()
            for pk in mine:
                do_finalise(pk, now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC))
        except BaseException as e:  # reported below
            failures.append(e)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=work, args=(ids[i::THREADS],)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, THREADS * 3 + 1)]
