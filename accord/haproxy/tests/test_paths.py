"""Hostile paths through HAProxy and through the Python gateway, on the same snapshot: both route and forward the
path as the gateway's protocol rules say (docs/gateway.md, "Paths"; the cases are those of
accord/gateway/tests/test_hostile.py), so a route by base path cannot be bypassed with `/svc/../other`; and both send
the upstream's Host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
from accord.customers.models import Account, Tier
from accord.gateway.snapshot import load_snapshot
from accord.gateway.tests.conftest import raw_request, start_gateway, stop_gateway
from accord.gateway.tests.test_hostile import NORMALISED_PATHS

from .conftest import EchoServer
from .test_dataplane import start_plane

pytestmark = pytest.mark.django_db(transaction=True)

# path sent -> (upstream, path it receives): normalised before routing, forwarded as normalised
NORMALISED = [
    *NORMALISED_PATHS,  # the gateway's own table
    (b"/bookings/a%2fb", "a", "/bookings/a%2Fb"),  # other encodings upper-cased
    (b"/bookings/.../x", "a", "/bookings/.../x"),  # not a dot-segment
]
# climbing above the root, or a dot-segment behind an encoded slash or backslash: 400, nothing forwarded
REFUSED = [b"/bookings/../../etc/passwd", b"/bookings/%2e%2e/%2E%2E/etc", b"/bookings/..%2f..%2fetc/passwd", b"/..",
           b"/bookings/..%5C..%5Cetc", b"/bookings/x/.%2F"]


@pytest.fixture
def key(upstreams: list[EchoServer]) -> str:
    """The gateway tests' routes: /bookings on a, /bookings/admin and the anonymous /fares on b."""
    tier = Tier.objects.create(name="platinum", rank=1)
    account = Account.objects.create(name="Globex", external_id="GLOBEX", tier=tier)
    for name, base, upstream, anonymous in (("booking", "/bookings", upstreams[0], False),
                                            ("booking-admin", "/bookings/admin", upstreams[1], False),
                                            ("fares", "/fares", upstreams[1], True)):
        svc = Service.objects.create(name=name, base_path=base, allow_anonymous=anonymous)
        Endpoint.objects.create(pool=Pool.objects.create(service=svc, name="main", capacity=10), url=upstream.url)
    return ApiCredential.issue(account)[1]


def send(port: int, path: bytes, key: str | None) -> tuple[int, dict[str, str]]:
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b""
    reply = raw_request(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"Connection: close\r\n\r\n")
    status = int(reply.split(b" ", 2)[1])
    body = reply.partition(b"\r\n\r\n")[2]
    return status, (json.loads(body) if status == 200 else {})


def test_hostile_paths_are_normalised_or_refused_by_haproxy_as_by_the_gateway(
        haproxy_bin: str, key: str, upstreams: list[EchoServer], tmp_path: Path) -> None:
    gateway = start_gateway(load_snapshot())
    try:
        with start_plane(tmp_path) as plane:
            for name, port in (("gateway", gateway.port), ("haproxy", plane.port)):
                for path, server, seen in NORMALISED:
                    status, echoed = send(port, path, key)
                    assert (status, echoed.get("server"), echoed.get("path")) == (200, server, seen), (name, path)
                    # Host: the upstream's own, not the client's `x`, from both
                    upstream = upstreams[0] if server == "a" else upstreams[1]
                    assert echoed["headers"]["host"] == upstream.url.removeprefix("http://"), (name, path)
                before = upstreams[0].count + upstreams[1].count
                for path in REFUSED:
                    assert send(port, path, key)[0] == 400, (name, path)
                assert upstreams[0].count + upstreams[1].count == before, name  # none was forwarded
                # out of the anonymous /fares into /bookings: routed where it lands, so the key is needed there
                assert send(port, b"/fares/../bookings/1", None)[0] == 401, name
                assert send(port, b"/fares/%2E%2E/bookings/1", None)[0] == 401, name
    finally:
        stop_gateway(gateway)
