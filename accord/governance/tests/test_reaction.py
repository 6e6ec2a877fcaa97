"""End to end on loopback: a pool fills up at the gateway, the governor reroutes platinum within 5 s, and back."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time

import pytest

from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
from accord.customers.models import Account, Tier
from accord.gateway.live import LiveReporter
from accord.gateway.models import LivePool, LiveTraffic
from accord.gateway.server import SnapshotKeeper
from accord.gateway.snapshot import load_snapshot
from accord.gateway.tests.conftest import EchoServer, start_gateway, stop_gateway, upstreams, wait_until
from accord.governance.engine import evaluate_policies
from accord.governance.models import AuditEvent
from accord.governance.policies import save_policy

__all__ = ["upstreams"]  # the fixture, shared with the gateway's tests


def ask(port: int, key: str, path: str = "/bookings/1") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        r = conn.getresponse()
        body = r.read()
        return r.status, json.loads(body).get("server", "") if r.status == 200 else ""
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_a_full_primary_pool_sends_platinum_to_standby_within_five_seconds(upstreams: list[EchoServer]) -> None:
    primary_up, standby_up = upstreams
    svc = Service.objects.create(name="booking", base_path="/bookings")
    primary = Pool.objects.create(service=svc, name="primary", role="primary", capacity=2)
    standby = Pool.objects.create(service=svc, name="standby", role="standby", capacity=2)
    Endpoint.objects.create(pool=primary, url=primary_up.url)
    Endpoint.objects.create(pool=standby, url=standby_up.url)
    platinum, bronze = Tier.objects.create(name="platinum", rank=1), Tier.objects.create(name="bronze", rank=4)
    _c, vip = ApiCredential.issue(Account.objects.create(name="Acme", external_id="ACME", tier=platinum))
    _c, low = ApiCredential.issue(Account.objects.create(name="Small", external_id="SMALL", tier=bronze))
    save_policy("platinum-standby", {
        "condition": "pool(booking, primary).utilisation[2s] > 0.8", "hold_seconds": 0, "clear_seconds": 1,
        "min_active_seconds": 0, "cooldown_seconds": 0, "tiers": ["platinum"], "action": "route",
        "params": {"pool": "standby"},
    })
    running = start_gateway(load_snapshot())
    keeper = SnapshotKeeper(running.gateway, poll=0.1, full_reload=3600)
    live = LiveReporter(running.gateway, interval=0.5)
    stopping = asyncio.Event()
    tasks = [asyncio.run_coroutine_threadsafe(keeper.run(stopping), running.loop),
             asyncio.run_coroutine_threadsafe(live.run(stopping), running.loop)]
    governing = threading.Event()

    def governor() -> None:
        from django.db import connection

        try:
            while not governing.is_set():
                evaluate_policies()
                time.sleep(0.25)
        finally:
            connection.close()

    gov = threading.Thread(target=governor)
    gov.start()
    holders: list[threading.Thread] = []
    try:
        assert ask(running.port, vip) == (200, "a")  # normal: platinum on primary
        # the pool's whole capacity is taken by two slow bronze requests
        for _ in range(2):
            t = threading.Thread(target=ask, args=(running.port, low, "/bookings/hold"))
            t.start()
            holders.append(t)
        wait_until(lambda: primary_up.order.count("/bookings/hold") == 2, what="the pool to fill")
        full_at = time.monotonic()
        wait_until(lambda: ask(running.port, vip)[1] == "b", timeout=30, what="platinum on standby")
        reaction = time.monotonic() - full_at
        assert reaction < 5.0, f"rerouted after {reaction:.2f} s"
        assert ask(running.port, low)[1] == "a"  # the scope is platinum only (and bronze waits on primary)
        event = AuditEvent.objects.get(kind="activated")
        assert event.values["signals"]["pool(booking, primary).utilisation[2s]"] > 0.8
        # the peak passes: the slow requests end, utilisation drops, platinum goes back to primary
        primary_up.release.set()
        for t in holders:
            t.join(30)
        wait_until(lambda: ask(running.port, vip)[1] == "a", timeout=30, what="platinum back on primary")
        assert AuditEvent.objects.filter(kind="deactivated").count() == 1
        assert LiveTraffic.objects.filter(tier="platinum", pool="standby").exists()
        assert LivePool.objects.filter(pool="primary", capacity=2).exists()
    finally:
        governing.set()
        gov.join(30)
        primary_up.release.set()
        running.loop.call_soon_threadsafe(stopping.set)
        for task in tasks:
            task.result(20)
        asyncio.run_coroutine_threadsafe(keeper.close(), running.loop).result(20)
        asyncio.run_coroutine_threadsafe(live.close(), running.loop).result(20)
        stop_gateway(running)
