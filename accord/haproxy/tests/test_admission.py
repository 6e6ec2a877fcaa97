"""Priority admission on HAProxy: an admission action holds a pool's servers to its capacity (`maxconn`, set through
the Runtime API) and its callers wait in HAProxy's queue by their tier's rank (`set-priority-class`), up to the
action's max_wait, then 503; all of it switched on and off without a reload. Real HAProxy, a real upstream that
holds its requests until told, and the order the upstream saw them in."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
from accord.customers.models import Account, Tier
from accord.gateway.models import GatewayAction

from .conftest import EchoServer, wait_until
from .test_dataplane import Plane, get, rollups, start_plane

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ranked(upstreams: list[EchoServer]) -> dict[str, str]:
    """PLAT (platinum, rank 1) and BRON (bronze, rank 3); booking's one pool has capacity 1, on upstream a."""
    platinum, bronze = Tier.objects.create(name="platinum", rank=1), Tier.objects.create(name="bronze", rank=3)
    plat = Account.objects.create(name="Plat", external_id="PLAT", tier=platinum)
    bron = Account.objects.create(name="Bron", external_id="BRON", tier=bronze)
    svc = Service.objects.create(name="booking", base_path="/bookings")
    Endpoint.objects.create(pool=Pool.objects.create(service=svc, name="main", role="primary", capacity=1),
                            url=upstreams[0].url)
    return {"PLAT": ApiCredential.issue(plat)[1], "BRON": ApiCredential.issue(bron)[1]}


def queued(plane: Plane) -> int:
    """Requests waiting in booking.main's queues (the backend's and its server's), as HAProxy counts them."""
    rows = plane.runtime.command("show stat").splitlines()
    header = rows[0].lstrip("# ").split(",")
    total = 0
    for row in rows[1:]:
        values = dict(zip(header, row.split(","), strict=False))
        if values.get("pxname") == "booking.main" and values.get("qcur"):
            total += int(values["qcur"])
    return total


class Calls:
    """Requests sent from threads, each answer kept by its label."""

    def __init__(self, port: int, keys: dict[str, str]) -> None:
        self.port, self.keys = port, keys
        self.answers: dict[str, tuple[int, dict[str, Any], dict[str, str]]] = {}
        self.threads: list[threading.Thread] = []

    def send(self, label: str, account: str, path: str) -> None:
        def run() -> None:
            headers: dict[str, str] = {}
            status, body = get(self.port, path, self.keys[account], answer=headers)
            self.answers[label] = (status, body, headers)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(20)


def arrived(upstream: EchoServer, n: int) -> Callable[[], bool]:
    return lambda: len(upstream.order) >= n


def test_an_admission_action_queues_callers_by_tier_rank_and_refuses_past_max_wait_without_a_reload(
        haproxy_bin: str, ranked: dict[str, str], upstreams: list[EchoServer], tmp_path: Path) -> None:
    upstream = upstreams[0]
    with start_plane(tmp_path) as plane:
        pid = plane.worker_pid()
        # no admission action: nothing holds calls back (as in the gateway), two held calls are both upstream
        calls = Calls(plane.port, ranked)
        calls.send("x", "BRON", "/bookings/hold?x")
        calls.send("y", "BRON", "/bookings/hold?y")
        wait_until(arrived(upstream, 2), timeout=10, what="both calls at the upstream")
        upstream.release.set()
        calls.join()
        upstream.release.clear()
        # an admission action on every tier: the pool's capacity (1) is the server's maxconn, at run time
        action = GatewayAction.objects.create(name="admit", kind="admission", params={"retry_after": 2})
        entries = {"booking|PLAT": "2", "booking|BRON": "2", "booking|anonymous": "2"}  # every caller
        wait_until(lambda: plane.runtime.show_map(plane.directory / "admission.map") == entries, timeout=10,
                   what="the admission entries")
        assert "booking.main,main.1," in plane.runtime.command("show stat")
        upstream.order.clear()
        calls = Calls(plane.port, ranked)
        calls.send("first", "BRON", "/bookings/hold?first")  # takes the only slot until released
        wait_until(arrived(upstream, 1), timeout=10, what="the first call at the upstream")
        for i in range(3):  # bronze callers queue first ...
            calls.send(f"b{i}", "BRON", f"/bookings/hold?b{i}")
            time.sleep(0.03)
        for i in range(3):  # ... platinum ones after them
            calls.send(f"p{i}", "PLAT", f"/bookings/hold?p{i}")
            time.sleep(0.03)
        wait_until(lambda: queued(plane) == 6, timeout=0.8, what="six calls in the queue")
        assert len(upstream.order) == 1  # none got past the server's maxconn
        upstream.release.set()
        calls.join()
        order = [path.rpartition("?")[2] for path in upstream.order]
        # platinum (class 1) leaves the queue before bronze (class 3), each in the order it came
        assert order == ["first", "p0", "p1", "p2", "b0", "b1", "b2"], order
        assert {label: answer[0] for label, answer in calls.answers.items()} == dict.fromkeys(
            ["first", "b0", "b1", "b2", "p0", "p1", "p2"], 200)
        # held past max_wait (the action's default, 1 s): 503 in the API's shape, the action's Retry-After
        upstream.release.clear()
        calls = Calls(plane.port, ranked)
        calls.send("holder", "PLAT", "/bookings/hold?holder")
        wait_until(arrived(upstream, 8), timeout=10, what="the holder at the upstream")
        started = time.monotonic()
        status, body = get(plane.port, "/bookings/1", ranked["BRON"], answer=(headers := {}))
        waited = time.monotonic() - started
        assert status == 503 and body["error"]["code"] == "service_unavailable", (status, body)
        assert headers["retry-after"] == "2" and headers["x-request-id"]
        assert 0.9 <= waited < 3, waited
        upstream.release.set()
        calls.join()
        # switched off: no limit again, no queue
        action.active = False
        action.save()
        wait_until(lambda: not plane.runtime.show_map(plane.directory / "admission.map"), timeout=10,
                   what="the admission entries to go")
        upstream.release.clear()
        upstream.order.clear()
        calls = Calls(plane.port, ranked)
        calls.send("x", "BRON", "/bookings/hold?x")
        calls.send("y", "BRON", "/bookings/hold?y")
        wait_until(arrived(upstream, 2), timeout=10, what="both calls at the upstream")
        upstream.release.set()
        calls.join()
        assert plane.worker_pid() == pid  # maxconn and maps through the Runtime API: no reload
        plane.collector.send_signal(signal.SIGTERM)
        assert plane.collector.wait(30) == 0, plane.output("collector")
        outcomes = {outcome: n for (account, _pool, outcome), n in rollups().items() if account == "BRON"}
        assert outcomes == {"ok": 8, "queue_timeout": 1}, outcomes
