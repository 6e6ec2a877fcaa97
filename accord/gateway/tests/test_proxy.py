"""The gateway on real loopback sockets: routing, identity, headers, streaming, keep-alive, failover, errors."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import random
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from accord.gateway.limits import Limits
from accord.gateway.snapshot import Identity, PoolTarget, Route, Snapshot, Upstream, load_snapshot

from .conftest import EchoServer, RunningGateway, raw_request, start_gateway, stop_gateway, wait_until

KEY = b"acc_test-key-of-globex"
KEY_HASH = hashlib.sha256(KEY).hexdigest()


def upstream_of(url: str) -> Upstream:
    host, port = url.removeprefix("http://").split(":")
    return Upstream(host, int(port), f"{host}:{port}".encode())


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def snapshot_for(upstreams: list[EchoServer], **extra_routes: list[Upstream]) -> Snapshot:
    a, b = (upstream_of(s.url) for s in upstreams)
    routes = [
        Route("booking", b"/bookings", False, {"primary": PoolTarget("primary", "primary", 10, (a,))},
              PoolTarget("primary", "primary", 10, (a,))),
        Route("booking-admin", b"/bookings/admin", False, {}, PoolTarget("primary", "primary", 10, (b,))),
        Route("fares", b"/fares", True, {}, PoolTarget("primary", "primary", 10, (b,))),
    ]
    for base, eps in extra_routes.items():
        routes.append(Route(base, f"/{base}".encode(), True, {}, PoolTarget("primary", "primary", 10, tuple(eps))))
    routes.sort(key=lambda r: len(r.base_path), reverse=True)
    return Snapshot(tuple(routes), {KEY_HASH: Identity(b"GLOBEX", b"platinum", 1)})


@pytest.fixture
def gw(upstreams: list[EchoServer]) -> Iterator[RunningGateway]:
    running = start_gateway(snapshot_for(upstreams), Limits(upstream_timeout=2.0, header_timeout=1.0))
    yield running
    stop_gateway(running)


def call(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         conn: http.client.HTTPConnection | None = None, timeout: float = 20, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {KEY.decode()}", **(headers or {})}, **kw)
    response = conn.getresponse()
    data = response.read()
    result = response.status, {k.lower(): v for k, v in response.getheaders()}, data
    if own:
        conn.close()
    return result


def test_it_routes_by_the_longest_base_path(gw: RunningGateway, upstreams: list[EchoServer]) -> None:
    status, _h, body = call(gw.port, "GET", "/bookings/42?x=1")
    assert status == 200 and json.loads(body)["server"] == "a" and json.loads(body)["path"] == "/bookings/42?x=1"
    assert json.loads(call(gw.port, "GET", "/bookings/admin/users")[2])["server"] == "b"
    assert json.loads(call(gw.port, "GET", "/bookings")[2])["server"] == "a"
    status, headers, body = call(gw.port, "GET", "/bookingsXYZ")
    assert status == 404 and headers["content-type"] == "application/json" and "error" in json.loads(body)


def test_it_identifies_the_caller_and_tells_the_upstream(gw: RunningGateway) -> None:
    echoed = json.loads(call(gw.port, "GET", "/bookings/1")[2])["headers"]
    assert (echoed["x-accord-account"], echoed["x-accord-tier"]) == ("GLOBEX", "platinum")
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    conn.request("GET", "/bookings/1", headers={"X-Api-Key": KEY.decode()})
    assert json.loads(conn.getresponse().read())["headers"]["x-accord-account"] == "GLOBEX"
    conn.request("GET", "/bookings/1", headers={"X-Api-Key": "acc_wrong"})
    response = conn.getresponse()
    assert response.status == 401 and json.loads(response.read())["error"]["message"].startswith("A valid API key")
    conn.request("GET", "/bookings/1")
    response = conn.getresponse()
    assert response.status == 401
    response.read()
    conn.request("GET", "/fares/search")  # anonymous calls allowed on this service
    assert json.loads(conn.getresponse().read())["headers"]["x-accord-account"] == "anonymous"
    conn.close()


def test_spoofed_accord_headers_are_stripped_and_forwarding_headers_added(gw: RunningGateway) -> None:
    echoed = json.loads(call(gw.port, "GET", "/bookings/1", headers={
        "X-Accord-Tier": "platinum-plus", "X-Accord-Account": "SOMEONE-ELSE", "X-Accord-Whatever": "1",
        "X-Request-Id": "req-123", "X-Forwarded-For": "203.0.113.9", "Proxy-Authorization": "secret",
        "TE": "trailers",
    })[2])["headers"]
    assert echoed["x-accord-account"] == "GLOBEX" and echoed["x-accord-tier"] == "platinum"
    assert "x-accord-whatever" not in echoed
    assert echoed["x-request-id"] == "req-123"
    assert echoed["x-forwarded-for"] == "203.0.113.9, 127.0.0.1" and echoed["x-forwarded-proto"] == "http"
    assert "proxy-authorization" not in echoed and "te" not in echoed
    bad_id = json.loads(call(gw.port, "GET", "/bookings/1", headers={"X-Request-Id": "bad id with spaces"})[2])
    made = bad_id["headers"]["x-request-id"]
    assert made != "bad id with spaces" and re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", made)
    _status, headers, _b = call(gw.port, "GET", "/bookings/1", headers={"X-Request-Id": "abc"})
    assert headers["x-request-id"] == "abc"


def test_repeated_headers_are_combined_or_taken_once_and_the_status_line_keeps_its_phrase(
        gw: RunningGateway) -> None:
    answer = raw_request(gw.port, (
        b"GET /bookings/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY + b"\r\n"
        b"X-Forwarded-For: 198.51.100.1\r\nx-forwarded-for: 203.0.113.9\r\n"
        b"X-Request-Id: not valid\r\nX-Request-Id: first-valid\r\nX-Request-Id: second-valid\r\n"
        b"x-ACCORD-tier: gold\r\nConnection: close\r\n\r\n"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert head.lower().count(b"\r\nx-request-id: first-valid") == 1
    echoed = json.loads(body)["headers"]
    assert echoed["x-forwarded-for"] == "198.51.100.1, 203.0.113.9, 127.0.0.1"
    assert echoed["x-request-id"] == "first-valid" and echoed["x-accord-tier"] == "platinum"


def test_head_204_and_interim_answers_keep_the_connection_in_step(gw: RunningGateway,
                                                                   upstreams: list[EchoServer]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    status, headers, body = call(gw.port, "HEAD", "/bookings/1", conn=conn)
    assert (status, headers["content-length"], body) == (200, "1234", b"")
    status, headers, body = call(gw.port, "GET", "/bookings/empty", conn=conn)
    assert (status, body) == (204, b"") and "transfer-encoding" not in headers
    status, _h, body = call(gw.port, "GET", "/bookings/early", conn=conn)  # 103 first: not the answer
    assert status == 200 and json.loads(body)["path"] == "/bookings/early"
    status, _h, body = call(gw.port, "GET", "/bookings/after", conn=conn)  # the same connection, still in step
    assert status == 200 and json.loads(body)["path"] == "/bookings/after"
    conn.close()
    assert upstreams[0].order[-4:] == ["/bookings/1", "/bookings/empty", "/bookings/early", "/bookings/after"]


def test_expect_100_continue_is_answered_by_the_gateway_before_the_body(gw: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(b"POST /bookings/new HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY + b"\r\n"
                     b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        answer = b""
        while b"}" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and json.loads(body)["body_length"] == 5
    assert "expect" not in json.loads(body)["headers"]


def test_a_large_body_streams_through(gw: RunningGateway) -> None:
    body = random.Random(1).randbytes(12 * 1024 * 1024)
    status, _h, data = call(gw.port, "POST", "/bookings/upload", body=body)
    echoed = json.loads(data)
    assert status == 200 and echoed["body_length"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_chunked_both_ways(gw: RunningGateway) -> None:
    parts = [b"alpha-" * 1000, b"beta-" * 3000, b"gamma"]
    status, _h, data = call(gw.port, "POST", "/bookings/stream", body=iter(parts), encode_chunked=True,
                            headers={"Transfer-Encoding": "chunked"})
    echoed = json.loads(data)
    assert status == 200 and echoed["headers"]["transfer-encoding"] == "chunked"
    assert echoed["body_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    status, headers, data = call(gw.port, "GET", "/bookings/big?size=3000000")
    assert status == 200 and len(data) == 3_000_000 and headers.get("transfer-encoding") == "chunked"


def test_keep_alive_is_reused_on_both_sides(gw: RunningGateway, upstreams: list[EchoServer]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    for i in range(25):
        status, _h, _b = call(gw.port, "GET", f"/bookings/{i}", conn=conn)
        assert status == 200
    conn.close()
    assert upstreams[0].count == 25
    assert len(upstreams[0].connections) == 1  # one upstream connection carried all 25 requests


def test_failover_to_the_next_endpoint_and_503_when_none_answers(upstreams: list[EchoServer]) -> None:
    dead = Upstream("127.0.0.1", dead_port(), b"dead")
    alive = upstream_of(upstreams[1].url)
    running = start_gateway(snapshot_for(upstreams, flaky=[dead, alive], gone=[dead]))
    try:
        for _ in range(4):
            status, _h, body = call(running.port, "GET", "/flaky/x")
            assert status == 200 and json.loads(body)["server"] == "b"
        status, _headers, body = call(running.port, "GET", "/gone/x")
        assert status == 503 and json.loads(body)["error"]["code"] == "service_unavailable"
    finally:
        stop_gateway(running)


def test_a_slow_upstream_gets_504(upstreams: list[EchoServer]) -> None:
    running = start_gateway(snapshot_for(upstreams), Limits(upstream_timeout=0.5))
    try:
        status, _h, body = call(running.port, "GET", "/bookings/slow?s=1.5")
        assert status == 504 and "did not answer in time" in json.loads(body)["error"]["message"]
        assert call(running.port, "GET", "/bookings/fine")[0] == 200
    finally:
        stop_gateway(running)


class GarbageServer(threading.Thread):
    """An upstream that answers every request with bytes that are not HTTP."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"SPEAKING NONSENSE \x00\xff\r\n\r\n")


def test_a_bad_upstream_response_is_502(upstreams: list[EchoServer]) -> None:
    garbage = GarbageServer()
    garbage.start()
    running = start_gateway(snapshot_for(upstreams, junk=[Upstream("127.0.0.1", garbage.port, b"junk")]))
    try:
        status, _h, body = call(running.port, "GET", "/junk/x")
        assert status == 502 and json.loads(body)["error"]["code"] == "bad_gateway"
    finally:
        stop_gateway(running)
        garbage.sock.close()


def test_limits_give_400_408_413_431(upstreams: list[EchoServer]) -> None:
    running = start_gateway(snapshot_for(upstreams), Limits(max_header_bytes=4096, max_body_bytes=1000, header_timeout=0.5))
    try:
        assert raw_request(running.port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        big_header = b"GET /bookings/1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n"
        assert raw_request(running.port, big_header).startswith(b"HTTP/1.1 431 ")
        too_big = b"POST /bookings/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000
        assert raw_request(running.port, too_big).startswith(b"HTTP/1.1 413 ")
        slow = raw_request(running.port, b"GET /bookings/1 HTTP/1.1\r\nHost: x\r\n", timeout=5)
        assert slow.startswith(b"HTTP/1.1 408 ")
        assert call(running.port, "GET", "/bookings/ok")[0] == 200
    finally:
        stop_gateway(running)


def test_malformed_and_adversarial_requests_never_take_it_down(gw: RunningGateway) -> None:
    rng = random.Random(7)
    templates = [
        b"GET /bookings/1 HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET /bookings/1 HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n0123456789",
        b"POST /bookings/1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n",
        b"GET /bookings/1 HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello
        b"GET /bookings/1 HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET /\x00\x01 HTTP/1.1\r\n\r\n",
        b"G" * 70000,
    ]
    for _ in range(120):
        if rng.random() < 0.5:
            data = rng.choice(templates)
        else:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        reply = raw_request(gw.port, data, timeout=3)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 "), reply[:80]
        # 5xx only for what a gateway answers by design: not implemented (upgrades, codings), upstream trouble,
        # unsupported versions; never a 500
        assert not reply.startswith(b"HTTP/1.1 5") or reply[9:12] in (b"501", b"502", b"503", b"504", b"505")
    assert call(gw.port, "GET", "/bookings/after-the-storm")[0] == 200


def _mutated(rng: random.Random, data: bytes, valid: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(0, 4)):
        op = rng.random()
        if op < 0.3 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif op < 0.5 and out:
            del out[rng.randrange(len(out))]
        elif op < 0.7:
            out.insert(rng.randrange(len(out) + 1), rng.choice(b"\r\n :0123456789abcdef"))
        elif op < 0.85 and out:
            at = rng.randrange(len(out))
            out[at:at] = out[at : at + rng.randrange(1, 40)]
        else:
            out += rng.choice(valid)  # pipelined
    return bytes(out)


@pytest.mark.slow
def test_mutated_split_and_pipelined_requests_leave_nothing_behind(gw: RunningGateway) -> None:
    """Valid requests of every kind the data plane handles, mutated a few bytes at a time, sent in random pieces,
    several on one connection, sometimes half-closed: every answer is HTTP, the event loop never sees an
    exception, nothing stays in flight, and the next good request is answered."""
    errors: list[dict[str, Any]] = []
    gw.loop.call_soon_threadsafe(gw.loop.set_exception_handler, lambda _loop, context: errors.append(context))
    auth = b"Authorization: Bearer " + KEY + b"\r\n"
    valid = [
        b"GET /bookings/1 HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n",
        b"POST /bookings/2 HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 11\r\n\r\nhello world",
        b"POST /bookings/3 HTTP/1.1\r\nHost: x\r\n" + auth
        + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HEAD /bookings/4 HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n",
        b"GET /bookings/empty HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n",
        b"GET /bookings/early HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n",
        b"POST /bookings/5 HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        b"GET /fares/x HTTP/1.0\r\n\r\n",
    ]
    rng = random.Random(11)
    for _ in range(60):
        data = b"".join(_mutated(rng, rng.choice(valid), valid) if rng.random() < 0.7 else rng.choice(valid)
                        for _ in range(rng.randrange(1, 4)))
        answer = b""
        try:
            with socket.create_connection(("127.0.0.1", gw.port), timeout=3) as sock:
                for at in range(0, len(data), step := rng.randrange(1, 120)):
                    sock.sendall(data[at : at + step])
                if rng.random() < 0.2:
                    # ENOTCONN when the gateway has already answered an error, closed, and been sent more
                    # (the kernel resets such a connection): nothing left to half-close
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                sock.settimeout(0.3)
                with contextlib.suppress(TimeoutError):
                    while chunk := sock.recv(65536):
                        answer += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:100]
    assert call(gw.port, "GET", "/bookings/after-the-mutations")[0] == 200
    wait_until(lambda: gw.gateway.in_flight == 0 and not gw.gateway.connections, what="every connection done")
    assert errors == []


@pytest.mark.django_db
def test_the_snapshot_comes_from_the_catalog_and_live_credentials() -> None:
    from accord.catalog.models import ApiCredential
    from accord.customers.models import Account, Tier
    from accord.lib.manifest import apply_manifest

    apply_manifest("""
tiers: [{name: platinum, rank: 1}]
services:
  - name: booking
    base_path: /bookings
    pools:
      - {name: main, role: primary, capacity: 5, endpoints: [{url: "http://127.0.0.1:9201", weight: 2}, {url: "http://127.0.0.1:9203", enabled: false}]}
      - {name: spare, role: standby, capacity: 2, endpoints: [{url: "http://127.0.0.1:9202"}]}
""")
    acct = Account.objects.create(name="Globex", external_id="GLOBEX", tier=Tier.objects.get())
    live, key = ApiCredential.issue(acct)
    revoked, old_key = ApiCredential.issue(acct)
    revoked.revoke()
    snap = load_snapshot()
    route = snap.route(b"/bookings/7")
    assert route is not None and route.primary is not None and route.primary.name == "main"
    assert [e.port for e in route.primary.endpoints] == [9201, 9201]  # weight 2; the disabled one left out
    assert route.pools["spare"].role == "standby"
    assert snap.credentials[hashlib.sha256(key.encode()).hexdigest()] == Identity(b"GLOBEX", b"platinum", 1,
                                                                                  live.pk)
    assert hashlib.sha256(old_key.encode()).hexdigest() not in snap.credentials


@pytest.mark.django_db(transaction=True)
def test_the_gateway_command_serves_reloads_and_stops_on_sigterm(upstreams: list[EchoServer]) -> None:
    import signal
    import subprocess
    import time

    from accord.catalog.models import Endpoint, Pool, Service
    from accord.lib.testing import accord_command, subprocess_env

    svc = Service.objects.create(name="booking", base_path="/bookings", allow_anonymous=True)
    pool = Pool.objects.create(service=svc, name="primary", role="primary", capacity=10)
    Endpoint.objects.create(pool=pool, url=upstreams[0].url)
    port = dead_port()
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below; a pipe nobody reads could fill and block
    proc = subprocess.Popen([*accord_command(), "gateway", "--listen", f"127.0.0.1:{port}", "--workers", "2",
                             "--reload", "0.2"], env=subprocess_env(), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _h, body = call(port, "GET", "/bookings/1", headers={"Authorization": ""}, timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the gateway did not come up"
                time.sleep(0.1)
        assert status == 200 and json.loads(body)["server"] == "a"
        # A change in the catalog reaches every worker within a second.
        Endpoint.objects.filter(pool=pool).update(url=upstreams[1].url)
        deadline = time.monotonic() + 15
        seen: set[str] = set()
        while seen != {"b"}:  # both workers, reached by new connections, must have reloaded
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
            seen = {json.loads(call(port, "GET", f"/bookings/{i}", headers={"Authorization": ""})[2])["server"]
                    for i in range(8)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -1
        log.close()
    assert code == 0
