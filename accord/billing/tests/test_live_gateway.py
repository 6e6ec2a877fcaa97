"""Done when: known traffic through the real gateway (loopback, an upstream, API keys, the flusher writing
rollups) and tickets and replies through the desk, then `billing run`: the invoice lines are exactly the counts
sent. (The period edges in the account's zone are in test_run, with rollups written at chosen minutes.)"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from accord.billing.models import Invoice
from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
from accord.desk.actions import Inbound, do_open_ticket, do_reply
from accord.gateway.flusher import write_rollups
from accord.gateway.snapshot import load_snapshot
from accord.gateway.tests.conftest import on_loop, start_gateway, stop_gateway, wait_until
from accord.lab.loadgen import LoadResult, Phase, TrafficClass, run_load
from accord.lab.sim import SimSpec, start_sims_in_thread
from accord.lib.manifest import apply_manifest

from .conftest import account, lines

PLAN = """
meters:
  - {name: reads, source: gateway.requests, service: booking, operation: read, unit: requests}
plans:
  - name: metered
    currency: EUR
    tiers: [gold]
    prices:
      - {meter: api-calls, model: graduated, tiers: [{up_to: 100, unit_price: 0.05}, {unit_price: 0.01}]}
      - {meter: reads, unit_price: 0}
      - {meter: tickets, unit_price: 1.25}
      - {meter: inbound, unit_price: 0.10}
      - {meter: outbound, unit_price: 0.20}
"""


def send(port: int, key: str, count: int, path: str) -> LoadResult:
    return asyncio.run(run_load("127.0.0.1", port, [TrafficClass("c", 1, [key], [path])],
                                [Phase("p", count / 400, 400)], timeout=20))


@pytest.mark.django_db(transaction=True)
def test_requests_through_the_gateway_and_tickets_through_the_desk_are_billed_exactly(catalog: object) -> None:
    apply_manifest(PLAN)
    acme = account("ACME", catalog, "America/New_York")  # type: ignore[arg-type]
    globex = account("GLOBEX", catalog, "Asia/Tokyo")  # type: ignore[arg-type]
    keys = {a.external_id: ApiCredential.issue(a)[1] for a in (acme, globex)}
    months = {a.external_id: timezone.localtime(timezone=ZoneInfo(a.timezone))
              .strftime("%Y-%m") for a in (acme, globex)}
    with start_sims_in_thread([SimSpec("booking", 0, capacity=32, service_ms=1)]) as sims:
        pool = Pool.objects.create(service=Service.objects.get(name="booking"), name="primary", capacity=64)
        Endpoint.objects.create(pool=pool, url=f"http://127.0.0.1:{sims.ports[0]}")
        gateway = start_gateway(load_snapshot())
        try:
            results = [send(gateway.port, keys["ACME"], 300, "/bookings/1"),
                       send(gateway.port, keys["GLOBEX"], 120, "/bookings/2")]
            wait_until(lambda: on_loop(gateway, lambda: gateway.gateway.in_flight) == 0, what="every request")
            write_rollups(on_loop(gateway, gateway.gateway.accumulator.take), 60)
        finally:
            stop_gateway(gateway)
    for r in results:
        assert set(Counter(s.status for s in r.samples)) == {200}, Counter(s.status for s in r.samples)
    agent = User.objects.create(username="ann")
    for n in range(3):
        t = do_open_ticket(Inbound(channel="email", subject=f"q{n}", body_text="?", from_address="c@example.com"),
                           account=acme)
        if n:
            do_reply(t, agent, "answered")
    for ext in ("ACME", "GLOBEX"):
        out = io.StringIO()
        call_command("billing", "run", "--period", months[ext], "--account", ext, stdout=out)
        assert "drafted 1 invoices" in out.getvalue()
    assert lines("ACME", months["ACME"]) == {
        "usage:api-calls": (D(300), D("7.00")),  # 100 x 0.05 + 200 x 0.01
        "usage:reads": (D(300), D("0.00")),
        "usage:tickets": (D(3), D("3.75")),
        "usage:inbound": (D(3), D("0.30")),
        "usage:outbound": (D(2), D("0.40")),
    }
    assert lines("GLOBEX", months["GLOBEX"]) == {
        "usage:api-calls": (D(120), D("5.20")), "usage:reads": (D(120), D("0.00")),
        "usage:tickets": (D(0), D("0.00")), "usage:inbound": (D(0), D("0.00")), "usage:outbound": (D(0), D("0.00"))}
    assert Invoice.objects.get(account=acme).total == D("11.45")
