"""WebSockets through the gateway, on real loopback sockets with the `websockets` library on both ends: the
handshake is routed, identified and governed like any request, becomes a tunnel only when the upstream answers
101, carries frames both ways with flow control, and is measured once, by its handshake, when it ends."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Response
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

from accord.gateway.limits import Limits
from accord.gateway.snapshot import Identity, PoolTarget, Route, Snapshot, Upstream

from .conftest import (
    EchoServer,
    RunningGateway,
    on_loop,
    raw_request,
    start_gateway,
    stop_gateway,
    wait_until,
)
from .test_proxy import KEY, KEY_HASH, upstream_of

AUTH = {"Authorization": f"Bearer {KEY.decode()}"}


class EchoSockets:
    """A WebSocket server that echoes every message, closes on "bye", and remembers each handshake's headers;
    a path under /ws/forbidden is refused with 403."""

    def __init__(self) -> None:
        self.handshakes: list[dict[str, str]] = []
        self.messages: list[str | bytes] = []
        self.server: Server = serve(self.handle, "127.0.0.1", 0, process_request=self.check, max_size=None)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def check(self, connection: ServerConnection, request: Any) -> Response | None:
        self.handshakes.append({k.lower(): v for k, v in request.headers.raw_items()} | {"path": request.path})
        if request.path.startswith("/ws/forbidden"):
            return connection.respond(403, "not for you\n")
        return None

    def handle(self, websocket: ServerConnection) -> None:
        for message in websocket:
            self.messages.append(message)
            if message == "bye":
                websocket.close(1000, "asked to")
                return
            websocket.send(message)

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def sockets() -> Iterator[EchoSockets]:
    server = EchoSockets()
    yield server
    server.close()


def snapshot(sockets: EchoSockets, http: EchoServer) -> Snapshot:
    ws = Upstream("127.0.0.1", sockets.port, f"127.0.0.1:{sockets.port}".encode())
    pool = PoolTarget("primary", "primary", 10, (ws,))
    plain = PoolTarget("primary", "primary", 10, (upstream_of(http.url),))
    routes = (Route("chat", b"/ws", False, {"primary": pool}, pool),
              Route("plain", b"/plain", True, {"primary": plain}, plain))
    return Snapshot(routes, {KEY_HASH: Identity(b"GLOBEX", b"platinum", 1, 7)})


def start(sockets: EchoSockets, upstreams: list[EchoServer], **limits: Any) -> RunningGateway:
    return start_gateway(snapshot(sockets, upstreams[0]), Limits(upstream_timeout=5.0, header_timeout=2.0, **limits))


def tallies(gw: RunningGateway) -> list[tuple[tuple[Any, ...], int, int, int, float]]:
    """(key, count, bytes in, bytes out, latency sum ms) of every rollup so far."""
    return on_loop(gw, lambda: [(k, t.count, t.bytes_in, t.bytes_out, t.latency_sum)
                                for k, t in gw.gateway.accumulator.tallies.items()])


def test_a_websocket_goes_through_as_the_caller_and_is_measured_once_by_its_handshake(
        sockets: EchoSockets, upstreams: list[EchoServer]) -> None:
    gw = start(sockets, upstreams)
    try:
        big = os.urandom(256 * 1024)
        with connect(f"ws://127.0.0.1:{gw.port}/ws/room?x=1", additional_headers=AUTH, max_size=None,
                     open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(10) == "hello"
            ws.send(big)  # larger than any socket buffer: flow control both ways
            assert ws.recv(10) == big
            assert on_loop(gw, lambda: (gw.gateway.in_flight, gw.gateway.requests)) == (1, 0)  # open: in flight
            time.sleep(1.0)  # it stays open a while: its latency is still the handshake's
            ws.send("bye")
            with pytest.raises(ConnectionClosed):
                ws.recv(10)
        wait_until(lambda: on_loop(gw, lambda: gw.gateway.requests) == 1, what="the tunnel to be counted")
        handshake = sockets.handshakes[-1]
        # the upstream sees who calls (the gateway's headers), not the caller's key
        assert handshake["x-accord-account"] == "GLOBEX" and handshake["x-accord-tier"] == "platinum"
        assert "authorization" not in handshake and handshake["path"] == "/ws/room?x=1"
        assert handshake["upgrade"].lower() == "websocket" and "upgrade" in handshake["connection"].lower()
        assert sockets.messages == ["hello", big, "bye"]
        [(key, count, bytes_in, bytes_out, latency)] = tallies(gw)
        assert key[1:] == ("GLOBEX", "chat", "", "primary", "ok", "platinum") and count == 1
        assert bytes_in > len(big) and bytes_out > len(big)
        assert latency < 1000.0, latency  # the handshake, not the second it stayed open
        assert on_loop(gw, lambda: (gw.gateway.in_flight, gw.gateway.outcomes)) == (0, {"ok": 1})
        assert on_loop(gw, lambda: gw.gateway.accumulator.key_uses)  # counted under its key (id 7)
    finally:
        stop_gateway(gw)


def test_a_handshake_without_a_key_gets_one_401_and_never_reaches_the_upstream(
        sockets: EchoSockets, upstreams: list[EchoServer]) -> None:
    gw = start(sockets, upstreams)
    try:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{gw.port}/ws/room", open_timeout=10)
        assert refused.value.response.status_code == 401
        assert sockets.handshakes == []
    finally:
        stop_gateway(gw)


def test_an_upstream_refusing_the_handshake_is_relayed_and_bytes_sent_early_never_reach_it(
        sockets: EchoSockets, upstreams: list[EchoServer]) -> None:
    gw = start(sockets, upstreams)
    try:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{gw.port}/ws/forbidden", additional_headers=AUTH, open_timeout=10)
        assert refused.value.response.status_code == 403 and refused.value.response.body == b"not for you\n"
        # an HTTP upstream that ignores the upgrade answers 200: relayed, the connection then ends, and what the
        # client sent after its head (a request, here) is dropped, never forwarded as one
        smuggled = b"GET /plain/SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n"
        reply = raw_request(gw.port, b"GET /plain/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" + smuggled)
        assert re.findall(rb"HTTP/1\.1 (\d{3}) ", reply) == [b"200"], reply
        assert b"Connection: close" in reply.partition(b"\r\n\r\n")[0]
        assert not [p for p in upstreams[0].order if "SMUGGLED" in p]
        assert on_loop(gw, lambda: gw.gateway.in_flight) == 0
    finally:
        stop_gateway(gw)


def _frame(text: bytes) -> bytes:
    """A masked text frame, as a client sends it (RFC 6455 section 5.2), for payloads under 126 bytes."""
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text))


def test_frames_sent_with_the_handshake_wait_for_the_switch_and_then_flow(
        sockets: EchoSockets, upstreams: list[EchoServer]) -> None:
    gw = start(sockets, upstreams)
    try:
        key = base64.b64encode(os.urandom(16))
        head = (b"GET /ws/early HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY + b"\r\nConnection: Upgrade\r\n"
                b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(head + _frame(b"early bird"))  # one write: the frame comes before the upstream switched
            data = b""
            while b"early bird" not in data:
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
        status, _, rest = data.partition(b"\r\n")
        assert status == b"HTTP/1.1 101 Switching Protocols", data
        headers = rest.partition(b"\r\n\r\n")[0].lower()
        assert b"upgrade: websocket" in headers and b"connection: upgrade" in headers and b"x-request-id: " in headers
        assert data.endswith(b"\x81\x0aearly bird")  # the server's echo: unmasked
        assert sockets.messages == ["early bird"]
    finally:
        stop_gateway(gw)


def test_other_upgrades_connect_and_bad_handshakes_are_refused_once(
        sockets: EchoSockets, upstreams: list[EchoServer]) -> None:
    gw = start(sockets, upstreams)
    try:
        auth = b"Authorization: Bearer " + KEY + b"\r\n"
        for request, status in (
            (b"GET /ws/x HTTP/1.1\r\nHost: x\r\n" + auth + b"Connection: Upgrade\r\nUpgrade: foo/2\r\n\r\n", b"501"),
            (b"POST /ws/x HTTP/1.1\r\nHost: x\r\n" + auth + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
             b"Content-Length: 2\r\n\r\nhi", b"400"),
            (b"GET /ws/x HTTP/1.0\r\nHost: x\r\n" + auth + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
             b"400"),
            (b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n", b"501"),
        ):
            reply = raw_request(gw.port, request)
            assert re.findall(rb"HTTP/1\.1 (\d{3}) ", reply) == [status], reply  # one answer, then the end
            assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["message"]
        assert sockets.handshakes == []
    finally:
        stop_gateway(gw)


def test_a_silent_tunnel_is_closed_after_the_idle_timeout_and_draining_closes_open_ones(
        sockets: EchoSockets, upstreams: list[EchoServer]) -> None:
    gw = start(sockets, upstreams, tunnel_idle_timeout=0.5)
    try:
        with connect(f"ws://127.0.0.1:{gw.port}/ws/quiet", additional_headers=AUTH, open_timeout=10,
                     ping_interval=None) as ws:
            ws.send("ping?")
            assert ws.recv(10) == "ping?"
            with pytest.raises(ConnectionClosed):
                ws.recv(10)  # nothing for 0.5 s: the gateway closed it
        wait_until(lambda: on_loop(gw, lambda: gw.gateway.requests) == 1, what="the tunnel to be counted")
        assert on_loop(gw, lambda: gw.gateway.outcomes) == {"ok": 1}  # a quiet end is not an error
    finally:
        stop_gateway(gw)
    gw = start(sockets, upstreams)
    try:
        with connect(f"ws://127.0.0.1:{gw.port}/ws/drain", additional_headers=AUTH, open_timeout=10) as ws:
            ws.send("still here")
            assert ws.recv(10) == "still here"
            on_loop(gw, gw.gateway.start_draining)
            with pytest.raises(ConnectionClosed):
                ws.recv(10)
        wait_until(lambda: on_loop(gw, lambda: (gw.gateway.in_flight, gw.gateway.requests)) == (0, 1),
                   what="the drained tunnel to be counted")
    finally:
        stop_gateway(gw)
