"""Rate limits on HAProxy as the gateway's token buckets (GCRA in the stick table's gpt0), end to end: a real
`accord haproxy run` and `accord collector` in front of real upstreams, every answer compared with what the
gateway's own `TokenBucket` decides on the same request times."""

from __future__ import annotations

import math
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from accord.catalog.models import Endpoint, Pool, Service
from accord.gateway.models import GatewayAction
from accord.gateway.proxy import TokenBucket
from accord.haproxy.render import TICKS_PER_SECOND, Options
from accord.haproxy.run import DataPlane
from accord.lib.ports import free_port

from .conftest import EchoServer, wait_until
from .test_dataplane import Plane, get, keys, rollups, start_plane

__all__ = ["keys"]  # the fixture

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Client:
    """Sends as ACME (gold), notes each answer (status, Retry-After) and the moment it was sent, and what the
    collector should count."""

    plane: Plane
    key: str
    sent: Counter[tuple[str, str, str]] = field(default_factory=lambda: Counter({("", "", "not_found"): 1}))
    log: list[tuple[str, float, int, str]] = field(default_factory=list)  # (path, sent at, status, Retry-After)

    def call(self, path: str) -> int:
        answer: dict[str, str] = {}
        at = time.monotonic()
        status, body = get(self.plane.port, path, self.key, answer=answer)
        self.log.append((path, at, status, answer.get("retry-after", "")))
        if status == 429:
            assert body["error"]["code"] == "throttled"
            self.sent["ACME", "", "rate_limited"] += 1
        else:
            assert status == 200, (status, body)
            self.sent["ACME", "main", "ok"] += 1
        return status

    def calls(self, path: str, n: int) -> list[int]:
        return [self.call(path) for _ in range(n)]


def gateway_answers(log: list[tuple[str, float, int, str]], buckets: dict[str, tuple[str, float, float]]
                    ) -> list[tuple[int, str]]:
    """What the gateway's TokenBucket answers to the same requests at the same times: path prefix -> (action,
    rps, burst); one bucket per action, as the gateway keys them (action, account)."""
    live: dict[str, TokenBucket] = {}
    out = []
    for path, at, _status, _retry in log:
        name, rps, burst = next(v for prefix, v in buckets.items() if path.startswith(prefix))
        bucket = live.setdefault(name, TokenBucket(rps, burst, at))
        wait = bucket.take(at)
        out.append((429, str(max(1, math.ceil(wait)))) if wait else (200, ""))
    return out


@pytest.fixture
def bucketed(keys: dict[str, str], upstreams: list[EchoServer], haproxy_bin: str, tmp_path: Path
             ) -> Iterator[Client]:
    """booking (upstream a) under `fast` (2 a second, burst 5) for gold; trips and fares (upstream b) under one
    action `slow` (0.2 a second, burst 2) for gold: HAProxy running with both before the first request."""
    for name in ("trips", "fares"):
        svc = Service.objects.create(name=name, base_path=f"/{name}")
        Endpoint.objects.create(pool=Pool.objects.create(service=svc, name="main", capacity=50), url=upstreams[1].url)
    GatewayAction.objects.create(name="fast", kind="rate_limit", tiers=["gold"], services=["booking"],
                                 params={"rps": 2, "burst": 5})
    GatewayAction.objects.create(name="slow", kind="rate_limit", tiers=["gold"], services=["trips", "fares"],
                                 params={"rps": 0.2, "burst": 2})
    with start_plane(tmp_path) as plane:
        yield Client(plane, keys["ACME"])


def test_a_token_bucket_lets_its_burst_through_refills_at_its_rate_and_refused_requests_take_no_token(
        bucketed: Client) -> None:
    client, plane = bucketed, bucketed.plane
    pid = plane.worker_pid()
    assert client.calls("/bookings/1", 8) == [200] * 5 + [429] * 3  # the burst, back to back
    assert client.calls("/bookings/1", 6) == [429] * 6  # hammering while empty takes nothing ...
    time.sleep(1.0)
    assert client.calls("/bookings/1", 3) == [200, 200, 429]  # ... so a second later 2 tokens are there (2/s)
    # one action on two services is one bucket (per action and account, as the gateway keys it); booking's bucket,
    # empty, is another action's and leaves trips alone
    assert client.calls("/trips/1", 1) + client.calls("/fares/1", 1) + client.calls("/trips/1", 1) == [200, 200, 429]
    assert client.log[-1][3] == "5"  # the next token of 0.2 a second is about 5 s away: Retry-After 5
    assert client.calls("/bookings/1", 1) == [429]
    # HAProxy answered as the gateway's TokenBucket answers the same requests at the same times (Retry-After too)
    seen = [(status, retry) for _path, _at, status, retry in client.log]
    assert seen == gateway_answers(client.log, {"/bookings": ("fast", 2, 5), "/trips": ("slow", 0.2, 2),
                                                "/fares": ("slow", 0.2, 2)})
    # burst changed at run time: a map edit, the same worker; the bucket starts anew and full, as the gateway's
    GatewayAction.objects.filter(name="slow").update(params={"rps": 0.2, "burst": 4})
    GatewayAction.objects.get(name="slow").save()  # moves the snapshot version
    changed = time.monotonic()
    wait_until(lambda: client.call("/trips/1") == 200, timeout=10, what="the new burst")
    assert time.monotonic() - changed < 5
    assert client.calls("/trips/1", 4) == [200, 200, 200, 429]  # 4 in all, the first one in the wait above
    assert plane.worker_pid() == pid  # no reload
    plane.collector.send_signal(signal.SIGTERM)
    assert plane.collector.wait(30) == 0, plane.output("collector")
    assert rollups() == client.sent  # `rate_limited` exactly where the client got a 429


def test_the_buckets_hold_across_the_wrap_of_haproxy_s_32_bit_tick_clock(
        haproxy_bin: str, keys: dict[str, str], tmp_path: Path) -> None:
    """The TAT is kept modulo 2**32 ticks of 10 µs (it wraps every 11.9 h): HAProxy's clock moved (tick_offset_us)
    so that it wraps half a second after the burst is drained; the refill a second later is the gateway's."""
    GatewayAction.objects.create(name="fast", kind="rate_limit", tiers=["gold"], params={"rps": 2, "burst": 5})
    period_us = 2**32 * (1_000_000 // TICKS_PER_SECOND)
    # HAProxy's clock is the host's, never moved (ACCORD_TEST_CLOCK_SHIFT moves this process's): the kernel's time
    # of a file just written says how far apart they are
    (tmp_path / "now").write_text("")
    moved = time.time() - (tmp_path / "now").stat().st_mtime
    for attempt in range(1, 4):
        wrap_at = time.time() - moved + 8  # on HAProxy's clock; HAProxy starts well within that
        port = free_port()
        options = Options(tmp_path / str(attempt), listen=f"127.0.0.1:{port}",
                          collector=f"127.0.0.1:{free_port(kind=socket.SOCK_DGRAM)}",
                          tick_offset_us=(period_us - round(wrap_at * 1_000_000) % period_us) % period_us)
        plane = DataPlane(options, haproxy=haproxy_bin, log=tmp_path / f"haproxy-{attempt}.log")
        try:
            try:
                plane.start()
            except RuntimeError:
                if attempt < 3 and "cannot bind socket" in (tmp_path / f"haproxy-{attempt}.log").read_text():
                    continue
                raise
            assert time.time() - moved < wrap_at - 1, "HAProxy took too long to start"
            time.sleep(wrap_at - 0.5 - (time.time() - moved))
            client = Client(Plane(port, options.directory, None, None, tmp_path), keys["ACME"])  # type: ignore[arg-type]
            assert client.calls("/bookings/1", 8) == [200] * 5 + [429] * 3  # the TAT now beyond the wrap
            time.sleep(1.0)
            assert time.time() - moved > wrap_at + 0.3  # HAProxy's ticks have wrapped
            assert client.calls("/bookings/1", 3) == [200, 200, 429]
            seen = [(status, retry) for _path, _at, status, retry in client.log]
            assert seen == gateway_answers(client.log, {"/bookings": ("fast", 2, 5)})
            return
        finally:
            plane.stop(grace=5)
