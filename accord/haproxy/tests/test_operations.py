"""Actions scoped to one operation of a service, on HAProxy: the operation is named per request from the method and
path (as the gateway names it), and the action applies to that operation only; switched at run time, no reload."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest

from accord.catalog.models import ApiCredential, Endpoint, Operation, Pool, Service
from accord.customers.models import Account, Tier
from accord.gateway.models import GatewayAction

from .conftest import EchoServer, wait_until
from .test_dataplane import start_plane

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def key(upstreams: list[EchoServer]) -> str:
    """ACME (gold); booking on upstream a with operations book (POST /bookings) and view (GET /bookings/{id})."""
    gold = Tier.objects.create(name="gold", rank=1)
    acme = Account.objects.create(name="Acme", external_id="ACME", tier=gold)
    svc = Service.objects.create(name="booking", base_path="/bookings")
    Endpoint.objects.create(pool=Pool.objects.create(service=svc, name="main", capacity=10), url=upstreams[0].url)
    Operation.objects.create(service=svc, name="book", method="POST", path_pattern="/bookings")
    Operation.objects.create(service=svc, name="view", method="GET", path_pattern="/bookings/{id}")
    return ApiCredential.issue(acme)[1]


def call(port: int, method: str, path: str, key: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=b"{}" if method == "POST" else None, headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_a_shed_action_scoped_to_one_operation_sheds_that_operation_only(
        haproxy_bin: str, key: str, tmp_path: Path) -> None:
    with start_plane(tmp_path) as plane:
        pid = plane.worker_pid()
        assert call(plane.port, "POST", "/bookings", key) == 200
        action = GatewayAction.objects.create(name="shed-booking", kind="shed", operations=["book"],
                                              params={"retry_after": 3})
        started = time.monotonic()
        wait_until(lambda: call(plane.port, "POST", "/bookings", key) == 503, timeout=10, what="book to be shed")
        assert time.monotonic() - started < 5
        assert call(plane.port, "POST", "/bookings/", key) == 503  # the pattern's optional trailing slash
        assert call(plane.port, "POST", "/bookings/../bookings", key) == 503  # named on the normalised path
        assert call(plane.port, "GET", "/bookings/7", key) == 200  # view: another operation
        assert call(plane.port, "GET", "/bookings", key) == 200  # GET /bookings: no operation
        assert call(plane.port, "POST", "/bookings/7", key) == 200  # POST on view's path: no operation either
        action.active = False
        action.save()
        wait_until(lambda: call(plane.port, "POST", "/bookings", key) == 200, timeout=10, what="book to be served")
        assert plane.worker_pid() == pid  # map changes only, no reload
