"""Rate limits per instance or shared between instances through HAProxy peers: two real HAProxy instances (on one
host, or on two loopback addresses standing for two hosts), a key sending alternately to both, and how many of its
requests each mode lets through, against the gateway's own TokenBucket on the same request times."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
from accord.customers.models import Account, Tier
from accord.gateway.models import GatewayAction
from accord.gateway.proxy import TokenBucket
from accord.haproxy.render import RATE_TABLE, Options
from accord.haproxy.run import DataPlane, instance_options, parse_peers
from accord.haproxy.runtime import Runtime
from accord.lib.ports import free_port
from accord.lib.testing import subprocess_env

from .conftest import EchoServer, wait_until
from .test_dataplane import get, spawn

pytestmark = pytest.mark.django_db(transaction=True)
RPS, BURST = 1, 4


@pytest.fixture
def limited(upstreams: list[EchoServer]) -> str:
    """ACME (gold) with a key, booking on upstream a, and a rate limit of RPS requests a second (burst BURST) on
    gold."""
    gold = Tier.objects.create(name="gold", rank=1)
    acme = Account.objects.create(name="Acme", external_id="ACME", tier=gold)
    svc = Service.objects.create(name="booking", base_path="/bookings")
    Endpoint.objects.create(pool=Pool.objects.create(service=svc, name="main", capacity=50), url=upstreams[0].url)
    GatewayAction.objects.create(name="slow-gold", kind="rate_limit", tiers=["gold"], params={"rps": RPS, "burst": BURST})
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
            if shared:
                wait_peered([plane.running[0].runtime for plane in planes])
            yield ports
            return
        finally:
            for plane in planes:
                plane.stop(grace=5)


_REMOTE = re.compile(r"id=(\S+)\(remote,(active|inactive)\) .*?last_status=(\S+) last_hdshk=(\S+)")
_SPAN = re.compile(r"(\d+)([dhms])")


def peer_sessions(runtime: Runtime) -> dict[str, float]:
    """`show peers`: each remote peer's session, as the seconds since its handshake when it is up now (active,
    established), absent when not. (`last_status=ESTA` alone is the last handshake's outcome, not a live session.)"""
    up = {}
    for name, state, status, since in _REMOTE.findall(runtime.command("show peers")):
        if state == "active" and status == "ESTA" and since != "<NEVER>":
            up[name] = sum(int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[unit] for n, unit in _SPAN.findall(since))
    return up


def wait_peered(runtimes: list[Runtime], steady: float = 2, timeout: float = 30) -> None:
    """Until every instance's peers session to every other has been up `steady` seconds, and an entry written on
    each instance is read on every other. At start the instances connect to each other at once; HAProxy drops one
    of the two colliding sessions and reconnects a second or so later (seen on 2.6: up at 0.5 s, down at 1 s, up
    again at 2 s), and until a session holds, each instance counts alone."""
    others = len(runtimes) - 1
    wait_until(lambda: all(len(s) == others and min(s.values()) >= steady for s in map(peer_sessions, runtimes)),
               timeout=timeout, what=f"every peers session to hold {steady} s")
    for i, runtime in enumerate(runtimes):
        key = f"peers-probe-{i}-{time.monotonic_ns()}"
        runtime.command(f"set table {RATE_TABLE} key {key} data.gpt0 {i + 1}")
        wait_until(lambda key=key, i=i: all(f"gpt0={i + 1}" in r.command(f"show table {RATE_TABLE} key {key}")
                                            for r in runtimes), timeout=5, what=f"{key} on every instance")


def alternate(ports: list[int], key: str, n: int = 16, pause: float = 0.04) -> tuple[list[int], list[float]]:
    """n requests of one key, one instance then the other, each on a new connection, `pause` apart (0.64 s in all:
    under one token refilled at RPS 1). The statuses, and when each request was sent."""
    statuses, times = [], []
    for i in range(n):
        times.append(time.monotonic())
        statuses.append(get(ports[i % 2], "/bookings/1", key, extra={"Connection": "close"})[0])
        time.sleep(pause)
    return statuses, times


def buckets(times: list[float], instances: int) -> list[int]:
    """What the gateway's TokenBucket lets through of requests sent at `times`, one instance after the other: one
    bucket per instance (per-instance limits), or one for all (instances=1: shared)."""
    live: dict[int, TokenBucket] = {}
    out = []
    for i, at in enumerate(times):
        bucket = live.setdefault(i % instances, TokenBucket(RPS, BURST, at))
        out.append(429 if bucket.take(at) else 200)
    return out


def test_rate_limits_are_per_instance_by_default_and_shared_through_peers_within_one_request(
        haproxy_bin: str, limited: str, tmp_path: Path) -> None:
    # per instance (the default): each instance has its own bucket, so the key gets twice the burst
    with two_instances(haproxy_bin, tmp_path / "alone", shared=False) as ports:
        statuses, times = alternate(ports, limited)
    assert statuses == buckets(times, 2), statuses
    assert statuses.count(200) == 2 * BURST
    # shared: the instances push their buckets' state (gpt0) to each other; the key gets one bucket over both, give
    # or take the one request whose update had not reached the other instance yet (the stated tolerance)
    with two_instances(haproxy_bin, tmp_path / "shared", shared=True) as ports:
        statuses, times = alternate(ports, limited)
    assert set(statuses) == {200, 429}
    assert BURST <= statuses.count(200) <= BURST + 1, statuses
    assert statuses[:BURST] == buckets(times, 1)[:BURST] == [200] * BURST  # the first BURST, on both instances


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
                          (["--peer-ports", "9001,9002"], "are for --rates shared")):
        with pytest.raises(CommandError, match=re.escape(message)) as refused:
            call_command("haproxy", "run", "--dir", str(tmp_path), "--instances", "2", *args)
        assert refused.value.returncode == 2
    with pytest.raises(ValueError, match="local peer"):
        Options(tmp_path, peers=(("accord1", "127.0.0.1:9001"),), local_peer="accord3")


def test_two_runners_on_two_hosts_share_one_bucket_through_the_peers_they_name(
        haproxy_bin: str, limited: str, tmp_path: Path) -> None:
    """`accord haproxy run --rates shared --peers a=HOST1:PORT,b=HOST2:PORT --peer-name a` on one host and `...
    --peer-name b` on the other; 127.0.0.1 and 127.0.0.2 stand for the two hosts (each runner listens, and its
    HAProxy takes peers connections, on its own address only)."""
    hosts = ("127.0.0.1", "127.0.0.2")
    for attempt in range(1, 4):
        ports = [free_port(host) for host in hosts]
        peers = ",".join(f"{name}={host}:{free_port(host)}" for name, host in zip("ab", hosts, strict=True))
        with contextlib.ExitStack() as stack:
            runners = [stack.enter_context(spawn(
                ["haproxy", "run", "--dir", str(tmp_path / name), "--listen", f"{host}:{port}",
                 "--collector", f"127.0.0.1:{free_port(kind=socket.SOCK_DGRAM)}", "--log-transport", "udp",
                 "--poll", "0.1", "--live", "0",
                 "--rates", "shared", "--peers", peers, "--peer-name", name], tmp_path / f"{name}-{attempt}.log"))
                for name, host, port in zip("ab", hosts, ports, strict=True)]
            logs = [tmp_path / f"{name}-{attempt}.log" for name in "ab"]

            def up(runners: list[subprocess.Popen[bytes]] = runners, logs: list[Path] = logs,
                   ports: list[int] = ports) -> bool:
                for runner, log in zip(runners, logs, strict=True):
                    if runner.poll() is not None:
                        raise AssertionError(log.read_text(errors="replace")[-3000:])
                with contextlib.suppress(OSError):
                    return all(get(port, "/probe", host=host)[0] == 404 for host, port in zip(hosts, ports,
                                                                                               strict=True))
                return False

            try:
                wait_until(up, timeout=30, what="both runners to serve")
            except AssertionError as e:
                if attempt < 3 and "cannot bind socket" in str(e):
                    continue  # a port taken between the choice and the bind: new ports
                raise
            sockets = [Runtime(tmp_path / name / "admin.sock") for name in "ab"]
            wait_peered(sockets)
            assert f"addr={hosts[1]}:" in sockets[0].command("show peers")  # a's remote peer is b, on host 2
            statuses, times = [], []
            for i in range(16):
                times.append(time.monotonic())
                statuses.append(get(ports[i % 2], "/bookings/1", limited, extra={"Connection": "close"},
                                    host=hosts[i % 2])[0])
                time.sleep(0.04)
            assert BURST <= statuses.count(200) <= BURST + 1, statuses  # one bucket over both hosts
            assert statuses[:BURST] == buckets(times, 1)[:BURST] == [200] * BURST
            return


@pytest.mark.django_db
def test_peers_on_several_hosts_are_named_and_bad_ones_are_refused_with_exit_2(tmp_path: Path) -> None:
    listed, local = parse_peers("a=10.0.0.1:10001, b=10.0.0.2:10001,c=[::1]:10002", "b")
    assert listed == (("a", "10.0.0.1:10001"), ("b", "10.0.0.2:10001"), ("c", "[::1]:10002")) and local == ("b",)
    (options,) = instance_options(Options(tmp_path), 1, peers=listed, local_peers=local)
    assert (options.peers, options.local_peer) == (listed, "b")
    two = instance_options(Options(tmp_path), 2, peers=listed, local_peers=("a", "c"))
    assert [o.local_peer for o in two] == ["a", "c"] and two[0].socket != two[1].socket
    good = "a=10.0.0.1:10001,b=10.0.0.2:10001"
    for args, message in (
            (["--peers", good, "--peer-name", "z"], "--peer-name z is not one of the peers (a, b)"),
            (["--peers", "a=10.0.0.1:10001,a=10.0.0.2:10001", "--peer-name", "a"], "the name a more than once"),
            (["--peers", "a=10.0.0.1:10001,b=10.0.0.1:10001", "--peer-name", "a"],
             "the address 10.0.0.1:10001 more than once"),
            (["--peers", "a=10.0.0.1,b=10.0.0.2:10001", "--peer-name", "a"], "'10.0.0.1' is not HOST:PORT"),
            (["--peers", "a=10.0.0.1:x,b=10.0.0.2:10001", "--peer-name", "a"], "port 'x' is not between 1 and 65535"),
            (["--peers", "a=10.0.0.1:70000,b=10.0.0.2:1", "--peer-name", "a"], "port '70000' is not between 1"),
            (["--peers", "a=10.0.0.1:0,b=10.0.0.2:1", "--peer-name", "a"], "port '0' is not between 1"),
            (["--peers", "10.0.0.1:1", "--peer-name", "a"], "is not NAME=HOST:PORT"),
            (["--peers", "a b=10.0.0.1:1", "--peer-name", "a b"], "is not NAME=HOST:PORT"),
            (["--peers", good], "needs --peer-name"),
            (["--peer-name", "a"], "--peer-name needs --peers"),
            (["--peers", good, "--peer-name", "a,b"], "names 2 instance(s) for --instances 1"),
            (["--peers", good, "--peer-name", "a", "--peer-ports", "9001"], "not both")):
        with pytest.raises(CommandError, match=re.escape(message)) as refused:
            call_command("haproxy", "run", "--dir", str(tmp_path), "--rates", "shared", *args)
        assert refused.value.returncode == 2
    with pytest.raises(CommandError, match="are for --rates shared"):
        call_command("haproxy", "run", "--dir", str(tmp_path), "--peers", good, "--peer-name", "a")
    # from the shell: the message on stderr, exit status 2, nothing started
    done = subprocess.run([sys.executable, "-m", "accord", "haproxy", "run", "--dir", str(tmp_path), "--rates",
                           "shared", "--peers", good, "--peer-name", "c"], env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--peer-name c is not one of the peers (a, b)" in done.stderr, done
    assert not (tmp_path / "haproxy.cfg").exists()
