"""Done when: real traffic from the load generator through a real gateway to `accord upstream-sim --error-rate`,
and `accord credits compute --json` reports exactly the counts the load generator saw, and the band they earn,
including 99.0 % exactly (which is not below the 99.0 band)."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from accord.agreements.models import CreditSchedule
from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
from accord.customers.models import Account
from accord.gateway.flusher import write_rollups
from accord.gateway.snapshot import load_snapshot
from accord.gateway.tests.conftest import on_loop, start_gateway, stop_gateway, wait_until
from accord.lab.loadgen import LoadResult, Phase, TrafficClass, run_load
from accord.lab.sim import SimSpec, start_sims_in_thread

from .conftest import make_agreement

ROOT = Path(__file__).resolve().parents[3]


def setup_account(upstream_url: str) -> str:
    """GLOBEX under its own agreement on booking (99.9 %, bands at 99.9 / 99.0 / 95.0); its API key."""
    account = Account.objects.create(name="Globex", external_id="GLOBEX")
    make_agreement("globex-sla", account, start=timezone.localdate() - dt.timedelta(days=400))
    service = Service.objects.get(name="booking")
    pool = Pool.objects.create(service=service, name="primary", role="primary", capacity=64)
    Endpoint.objects.create(pool=pool, url=upstream_url)
    return ApiCredential.issue(account)[1]


def send(port: int, key: str, count: int, rate: float = 400) -> LoadResult:
    return asyncio.run(run_load("127.0.0.1", port, [TrafficClass("globex", 1, [key], ["/bookings/x"])],
                                [Phase("p", count / rate, rate)], timeout=20))


def statuses(result: LoadResult) -> Counter[int]:
    return Counter(s.status for s in result.samples)


def credits_now() -> dict[str, Any]:
    """`accord credits compute --json` for GLOBEX over the month the traffic went into."""
    out = io.StringIO()
    month = timezone.localtime().strftime("%Y-%m")
    call_command("credits", "compute", "--period", month, "--account", "GLOBEX", "--json", stdout=out)
    [row] = json.loads(out.getvalue())
    return dict(row)


def band(attained: Fraction) -> Decimal:
    """The credit the schedule of `make_agreement` gives, worked out here on its own: strictly below a band."""
    if attained < 95:
        return Decimal(100)
    if attained < 99:
        return Decimal(25)
    if attained < Fraction(999, 10):
        return Decimal(10)
    return Decimal(0)


@pytest.mark.django_db(transaction=True)
def test_the_upstream_sim_command_error_rate_through_the_gateway_gives_the_load_generators_counts() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sim = subprocess.Popen([sys.executable, "-m", "accord", "upstream-sim", "--service",
                            "booking=127.0.0.1:0:16:1", "--error-rate", "0.03", "--seed", "15"],
                           cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline()
        assert "listening on 127.0.0.1:" in line, line + (sim.stderr.read() if sim.poll() is not None else "")
        port = int(line.split("127.0.0.1:")[1].split()[0])
        key = setup_account(f"http://127.0.0.1:{port}")
        gateway = start_gateway(load_snapshot())
        try:
            result = send(gateway.port, key, 800)
            wait_until(lambda: on_loop(gateway, lambda: gateway.gateway.in_flight) == 0, what="every request")
            write_rollups(on_loop(gateway, gateway.gateway.accumulator.take), 60)
        finally:
            stop_gateway(gateway)
    finally:
        sim.terminate()
        sim.communicate(timeout=20)
    seen = statuses(result)
    assert set(seen) <= {200, 500} and sum(seen.values()) == 800, seen  # nothing dropped or timed out
    assert seen[500] > 0, seen
    row = credits_now()
    attained = Fraction(seen[200], 800) * 100
    assert (row["valid_events"], row["bad_events"]) == (800, seen[500])
    assert row["attained"] == float(attained)
    assert Decimal(str(row["percent"])) == band(attained)
    fee = Decimal(1000)
    assert Decimal(row["amount"]) == fee * band(attained) / 100
    assert row["status"] == ("computed" if band(attained) else "none")


@pytest.mark.django_db(transaction=True)
def test_exactly_99_percent_through_the_gateway_is_the_99_9_band_and_one_more_error_the_99_0_band() -> None:
    with start_sims_in_thread([SimSpec("booking", 0, capacity=16, service_ms=1, error_rate=1.0)]) as sims:
        key = setup_account(f"http://127.0.0.1:{sims.ports[0]}")
        gateway = start_gateway(load_snapshot())
        try:
            failing = send(gateway.port, key, 10)
            sims.configure("booking", error_rate=0.0)
            healthy = send(gateway.port, key, 990)
            wait_until(lambda: on_loop(gateway, lambda: gateway.gateway.in_flight) == 0, what="every request")
            write_rollups(on_loop(gateway, gateway.gateway.accumulator.take), 60)
            assert (statuses(failing), statuses(healthy)) == ({500: 10}, {200: 990})
            row = credits_now()
            assert (row["valid_events"], row["bad_events"], row["attained"]) == (1000, 10, 99.0)
            assert (row["percent"], row["amount"], row["status"]) == (10, "100.00", "computed")
            # one more failure: 98.9 %, below 99.0, the next band
            sims.configure("booking", error_rate=1.0)
            assert statuses(send(gateway.port, key, 1)) == {500: 1}
            wait_until(lambda: on_loop(gateway, lambda: gateway.gateway.in_flight) == 0, what="every request")
            write_rollups(on_loop(gateway, gateway.gateway.accumulator.take), 60)
        finally:
            stop_gateway(gateway)
    row = credits_now()
    assert (row["valid_events"], row["bad_events"]) == (1001, 11)
    assert Fraction(990, 1001) * 100 < 99
    assert (row["percent"], row["amount"], row["status"]) == (25, "250.00", "computed")
    assert CreditSchedule.objects.get().credit_percent(Decimal("98.9")) == 25  # the model's own rule agrees
