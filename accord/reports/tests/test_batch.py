"""Reports of many accounts built together (`build_many`: one query per objective and day for all of them) judge
exactly as the governance SLI does for each account alone (`objective_events`, day by day)."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command

from accord.agreements.models import Agreement, Objective
from accord.customers.models import Account, Tier
from accord.governance.indicators import objective_events
from accord.governance.tests.rollups import add_rollup
from accord.reports.builder import build, build_many
from accord.reports.periods import Period, parse_period

from .conftest import make_agreement, need_pdf

NOV = parse_period("2026-11")
AFTER = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def many(db: None) -> list[Account]:
    gold = Tier.objects.create(name="gold", rank=1)
    accounts = [Account.objects.create(name=f"A{i}", external_id=f"A{i}", tier=gold) for i in range(4)]
    shared = make_agreement("gold-sla", accounts[0], start=dt.date(2026, 1, 1))
    shared.account, shared.tier = None, gold  # the tier's agreement
    shared.save()
    Objective.objects.create(agreement=shared, name="p95", kind="latency", target=Decimal(100),
                             percentile=Decimal(95), service=shared.objectives.get().service)
    make_agreement("a3-own", accounts[3], start=dt.date(2026, 11, 10), target=Decimal(99))  # mid-period
    for i, key in enumerate(("A0", "A1", "A2", "A3")):
        for day in (1, 9, 10, 17, 30):
            at = dt.datetime(2026, 11, day, 10 + i, 7 * i, tzinfo=dt.UTC)
            add_rollup(at, count=100 + day, errors=i + day % 3, account=key, tier="gold",
                       latencies=[40.0 + 30 * (j % 5) for j in range(20)])
            add_rollup(at + dt.timedelta(minutes=1), count=3, account=key, tier="gold", outcome="rate_limited")
            add_rollup(at + dt.timedelta(minutes=2), count=2, account=key, tier="gold", outcome="timeout")
        # abandoned requests, some waiting past the latency target: read through their sketches
        add_rollup(dt.datetime(2026, 11, 17, 23, 59, tzinfo=dt.UTC), count=4, account=key, tier="gold",
                   outcome="client_gone", latencies=[50.0, 150.0, 250.0, 90.0][: i + 1] * 1)
    add_rollup(dt.datetime(2026, 11, 9, 12, tzinfo=dt.UTC), count=50, errors=50, account="OTHER", tier="gold")
    return accounts


@time_machine.travel(AFTER, tick=False)
def test_reports_built_together_count_each_day_as_the_sli_does_alone(many: list[Account]) -> None:
    together = build_many(many, NOV)
    checked = 0
    for account, report in zip(many, together, strict=True):
        assert [(p.agreement, p.first_day) for p in report.parts] == \
               [(p.agreement, p.first_day) for p in build(account, NOV).parts]
        for part in report.parts:
            assert part.agreement is not None
            for result in part.objectives:
                for d in result.days:
                    day = Period("", d.day, d.day)
                    alone = objective_events(result.objective, day.start, day.end, account=account.external_id)
                    assert (d.valid, d.bad) == (alone.valid, alone.bad), (account.external_id, d.day)
                    checked += d.valid > 0
                whole = objective_events(result.objective, part.start, part.end, account=account.external_id)
                assert (result.valid, result.bad, result.requests) == (whole.valid, whole.bad, whole.requests)
                if result.kind == Objective.Kind.LATENCY:
                    assert result.percentile_ms is not None
    assert checked >= 4 * 5
    # the tier's agreement judged the first nine days of A3, its own agreement the rest
    assert [p.agreement.name for p in together[3].parts if p.agreement] == ["gold-sla", "a3-own"]
    assert Agreement.objects.count() == 2


@pytest.mark.django_db(transaction=True)  # the forked processes read what the test wrote: it must be committed
def test_build_on_two_processes_writes_the_same_bytes_as_on_one(tmp_path: Path) -> None:
    pdftotext = need_pdf()
    gold = Tier.objects.create(name="gold", rank=1)
    accounts = [Account.objects.create(name=f"Customer {i}", external_id=f"C{i:02d}", tier=gold) for i in range(30)]
    make_agreement("c00-sla", accounts[0], start=dt.date(2026, 1, 1))
    tier_sla = make_agreement("gold-sla", accounts[1], start=dt.date(2026, 1, 1))
    tier_sla.account, tier_sla.tier = None, gold
    tier_sla.save()
    for i, account in enumerate(accounts):
        for day in (2, 9, 16):
            at = dt.datetime(2026, 11, day, 8 + i % 10, tzinfo=dt.UTC)
            add_rollup(at, count=1000, errors=i % 7 + day % 5, account=account.external_id, tier="gold")
    with time_machine.travel(AFTER, tick=False):
        for jobs in ("1", "2"):
            out = io.StringIO()
            call_command("reports", "build", "--period", "2026-11", "--out", str(tmp_path / jobs), "--jobs", jobs,
                         stdout=out)
            assert f"built 30 reports for 2026-11: 91 files in {tmp_path / jobs}" in out.getvalue()
            assert f"on {jobs} process(es)" in out.getvalue() and "pdf " in out.getvalue()
    one = {p.name: p.read_bytes() for p in (tmp_path / "1").iterdir()}
    two = {p.name: p.read_bytes() for p in (tmp_path / "2").iterdir()}
    assert len(one) == 91 and one == two
    every = one["all-accounts-2026-11.csv"].decode().splitlines()
    assert [line.split(",")[0] for line in every[1:] if ",objective," in line] == [a.external_id for a in accounts]
    # C13: 13 % 7 + 16 % 5 = 7 bad of 1,000 on the 16th, 99.300 %: a day over its share, in the PDF's text
    text = subprocess.run([pdftotext, "-layout", str(tmp_path / "2" / "C13-2026-11.pdf"), "-"], check=True,
                          capture_output=True, text=True).stdout
    assert "Service report: Customer 13 (C13), 2026-11" in text
    assert "2026-11-16: 99.300 %, 7 of 1,000" in text, text
    assert "01 Nov" in text and "page 1 of" in text


def test_jobs_must_be_a_positive_number(tmp_path: Path) -> None:
    for bad in ("0", "two"):
        with pytest.raises(CommandError, match="--jobs"):
            call_command("reports", "build", "--period", "2026-11", "--out", str(tmp_path), "--jobs", bad)
