"""Rate limits per instance or shared between instances through HAProxy peers: two real HAProxy instances, a key
sending alternately to both, and how many of its requests each mode lets through."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
from accord.customers.models import Account, Tier
from accord.gateway.models import GatewayAction
from accord.haproxy.render import Options
from accord.haproxy.run import DataPlane, instance_options
from accord.lib.ports import free_port

from .conftest import EchoServer, wait_until
from .test_dataplane import get

pytestmark = pytest.mark.django_db(transaction=True)
RPS = 4


@pytest.fixture
def limited(upstreams: list[EchoServer]) -> str:
    """ACME (gold) with a key, booking on upstream a, and a rate limit of RPS requests a second on gold."""
    gold = Tier.objects.create(name="gold", rank=1)
    acme = Account.objects.create(name="Acme", external_id="ACME", tier=gold)
    svc = Service.objects.create(name="booking", base_path="/bookings")
    Endpoint.objects.create(pool=Pool.objects.create(service=svc, name="main", capacity=50), url=upstreams[0].url)
    GatewayAction.objects.create(name="slow-gold", kind="rate_limit", tiers=["gold"], params={"rps": RPS})
    return ApiCredential.issue(acme)[1]


@contextlib.contextmanager
def two_instances(haproxy: str, directory: Path, shared: bool, attempts: int = 3) -> Iterator[list[int]]:
    """Two HAProxy instances, each on a port of its own (so the test chooses which one a request goes to), rate
    table shared through peers or not. Yields the two listen ports. A port taken between the choice and HAProxy's
    bind (another run on the machine) fails the start: tried again on new ports."""
    for attempt in range(1, attempts + 1):
        ports = [free_port(), free_port()]
        peers = (("accord1", f"127.0.0.1:{free_port()}"), ("accord2", f"127.0.0.1:{free_port()}")) if shared else ()
        planes = []
        try:
            try:
                for i, port in enumerate(ports, start=1):
                    options = Options(directory / str(i), listen=f"127.0.0.1:{port}",
                                      collector=f"127.0.0.1:{free_port()}", peers=peers,
                                      local_peer=f"accord{i}" if shared else "")
                    plane = DataPlane(options, haproxy=haproxy, log=directory / f"haproxy-{i}.log")
                    planes.append(plane)
                    plane.start()
            except RuntimeError:
                said = "".join(p.read_text(errors="replace") for p in directory.glob("haproxy-*.log"))
                if attempt < attempts and "cannot bind socket" in said:
                    for log in directory.glob("haproxy-*.log"):
                        log.unlink()
                    continue
                raise
            if shared:  # each has the other connected (`show peers`: the remote peer's line says so)
                for plane in planes:
                    wait_until(lambda p=plane: "ESTA" in p.running[0].runtime.command("show peers"), timeout=10,
                               what="the peers to connect")
            yield ports
            return
        finally:
            for plane in planes:
                plane.stop(grace=5)


def alternate(ports: list[int], key: str, n: int = 16, pause: float = 0.04) -> list[int]:
    """n requests of one key, one instance then the other, each on a new connection, `pause` apart (all within the
    one-second window the rate counts)."""
    statuses = []
    for i in range(n):
        statuses.append(get(ports[i % 2], "/bookings/1", key, extra={"Connection": "close"})[0])
        time.sleep(pause)
    return statuses


def test_rate_limits_are_per_instance_by_default_and_shared_through_peers_within_one_request(
        haproxy_bin: str, limited: str, tmp_path: Path) -> None:
    # per instance (the default): each instance lets RPS through, so the key gets twice the rate
    with two_instances(haproxy_bin, tmp_path / "alone", shared=False) as ports:
        statuses = alternate(ports, limited)
    assert set(statuses) == {200, 429}
    assert statuses.count(200) == 2 * RPS, statuses
    # shared: the instances push their counts to each other; the key gets the rate over both, give or take the one
    # request whose count had not reached the other instance yet (the stated tolerance)
    with two_instances(haproxy_bin, tmp_path / "shared", shared=True) as ports:
        statuses = alternate(ports, limited)
    assert set(statuses) == {200, 429}
    assert RPS <= statuses.count(200) <= RPS + 1, statuses
    assert statuses[:RPS] == [200] * RPS  # the first RPS requests, on both instances, went through


@pytest.mark.django_db
def test_run_takes_shared_rates_with_one_peer_port_per_instance_and_refuses_anything_else(
        tmp_path: Path, haproxy_bin: str) -> None:
    base = Options(tmp_path, listen="0.0.0.0:8080")
    one, two = instance_options(base, 2, (9001, 9002))
    assert one.peers == two.peers == (("accord1", "127.0.0.1:9001"), ("accord2", "127.0.0.1:9002"))
    assert (one.local_peer, two.local_peer) == ("accord1", "accord2")
    assert instance_options(base, 2)[0].peers == ()  # per instance unless asked
    for args, message in ((["--rates", "shared"], "needs --peer-ports with 2"),
                          (["--rates", "shared", "--peer-ports", "9001"], "needs --peer-ports with 2"),
                          (["--rates", "shared", "--peer-ports", "9001,9001"], "2 different port"),
                          (["--rates", "shared", "--peer-ports", "9001,x"], "not a list of ports"),
                          (["--peer-ports", "9001,9002"], "--peer-ports is for --rates shared")):
        with pytest.raises(CommandError, match=re.escape(message)):
            call_command("haproxy", "run", "--dir", str(tmp_path), "--instances", "2", *args)
    with pytest.raises(ValueError, match="local peer"):
        Options(tmp_path, peers=(("accord1", "127.0.0.1:9001"),), local_peer="accord3")
