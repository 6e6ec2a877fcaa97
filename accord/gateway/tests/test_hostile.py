"""Hostile input at the gateway, on real loopback sockets: each request's fate decided once (upgrades, CONNECT),
RFC 9112's rules (Host, Transfer-Encoding, versions), underscore headers, dot-segments, and the client's key."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from accord.gateway.limits import Limits
from accord.gateway.snapshot import Identity, PoolTarget, Route, Snapshot

from .conftest import EchoServer, RunningGateway, raw_request, start_gateway, stop_gateway
from .test_proxy import KEY, KEY_HASH, call, snapshot_for, upstream_of

AUTH = b"Authorization: Bearer " + KEY + b"\r\n"


@pytest.fixture
def gw(upstreams: list[EchoServer]) -> Iterator[RunningGateway]:
    running = start_gateway(snapshot_for(upstreams), Limits(upstream_timeout=5.0, header_timeout=2.0))
    yield running
    stop_gateway(running)


def responses(data: bytes) -> list[bytes]:
    """The status lines in what a connection received (bodies here are JSON, never holding one)."""
    return re.findall(rb"HTTP/1\.[01] \d{3} [^\r]*", data)


def test_an_upgrade_to_another_protocol_than_websocket_gets_one_501_and_is_never_forwarded(
        gw: RunningGateway, upstreams: list[EchoServer]) -> None:
    """WebSockets are tunnelled (test_websocket.py); any other protocol is refused before anything goes upstream."""
    before = upstreams[0].count
    reply = raw_request(gw.port, b"GET /bookings/ws HTTP/1.1\r\nHost: x\r\n" + AUTH
                        + b"Connection: Upgrade\r\nUpgrade: IRC/6.9\r\n\r\n"
                        b"GET /bookings/SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n")
    assert responses(reply) == [b"HTTP/1.1 501 Not Implemented"], reply  # one answer, then the connection ended
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and json.loads(body)["error"]["code"] == "not_implemented"
    assert upstreams[0].count == before


def test_connect_gets_one_501(gw: RunningGateway, upstreams: list[EchoServer]) -> None:
    before = upstreams[0].count + upstreams[1].count
    reply = raw_request(gw.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
                        b"GET /bookings/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert responses(reply) == [b"HTTP/1.1 501 Not Implemented"], reply
    assert upstreams[0].count + upstreams[1].count == before


def test_upgrade_h2c_is_ignored_and_the_next_request_on_the_connection_is_answered(
        gw: RunningGateway, upstreams: list[EchoServer]) -> None:
    """What `curl --http2` sends over plain HTTP: answered as HTTP/1.1, and the connection stays in step."""
    h2c = (b"GET /bookings/first HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Connection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    second = b"GET /bookings/second HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(h2c)
        first = _read_response(sock)
        assert first.startswith(b"HTTP/1.1 200 "), first
        echoed = json.loads(first.partition(b"\r\n\r\n")[2])
        assert echoed["path"] == "/bookings/first"
        assert "upgrade" not in echoed["headers"] and "http2-settings" not in echoed["headers"]
        sock.sendall(second)
        answer = _read_response(sock)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["path"] == "/bookings/second"
    # and pipelined in one write: both answered, in order, nothing more
    reply = raw_request(gw.port, h2c + second.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert responses(reply) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"], reply


def _read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /bookings/1 HTTP/1.1\r\n" + AUTH + b"\r\n", b"400"),  # HTTP/1.1 without Host
    (b"GET /bookings/1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + AUTH + b"\r\n", b"400"),  # two Hosts
    (b"GET /bookings/1 HTTP/1.0\r\nHost: a\r\nHost: b\r\n" + AUTH + b"\r\n", b"400"),
    (b"POST /bookings/1 HTTP/1.1\r\nHost: a\r\n" + AUTH + b"Transfer-Encoding: gzip\r\n\r\nxyz", b"501"),
    (b"POST /bookings/1 HTTP/1.1\r\nHost: a\r\n" + AUTH + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     b"501"),
    (b"GET /bookings/1 HTTP/2.0\r\nHost: a\r\n" + AUTH + b"\r\n", b"505"),
    (b"GET /bookings/1 HTTP/0.9\r\nHost: a\r\n" + AUTH + b"\r\n", b"505"),
    (b"GET /bookings/1 HTTP/1.2\r\nHost: a\r\n" + AUTH + b"\r\n", b"505"),
])
def test_rfc_9112_refusals_are_answered_once_and_never_forwarded(
        gw: RunningGateway, upstreams: list[EchoServer], request_bytes: bytes, status: bytes) -> None:
    reply = raw_request(gw.port, request_bytes)
    assert len(responses(reply)) == 1 and reply.startswith(b"HTTP/1.1 " + status + b" "), reply
    assert b"Connection: close" in reply and "error" in json.loads(reply.partition(b"\r\n\r\n")[2])
    assert upstreams[0].count == 0


def test_http_1_0_without_host_is_still_served(gw: RunningGateway) -> None:
    reply = raw_request(gw.port, b"GET /bookings/1 HTTP/1.0\r\n" + AUTH + b"\r\n")
    assert reply.startswith(b"HTTP/1.1 200 "), reply


# -- underscores in header names: what a WSGI server behind the gateway reads --------------------------------


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def wsgi_upstream() -> Iterator[str]:
    """A WSGI application (wsgiref) answering with the HTTP_* variables of its environ."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = json.dumps({k: v for k, v in environ.items() if k.startswith("HTTP_")}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _wsgi_snapshot(url: str) -> Snapshot:
    pool = PoolTarget("primary", "primary", 10, (upstream_of(url),))
    return Snapshot((Route("wsgi", b"/wsgi", True, {"primary": pool}, pool),),
                    {KEY_HASH: Identity(b"GLOBEX", b"silver", 3)})


@pytest.mark.parametrize("keep_underscores", [False, True])
def test_underscore_headers_cannot_spoof_the_gateways_own(wsgi_upstream: str, keep_underscores: bool) -> None:
    running = start_gateway(_wsgi_snapshot(wsgi_upstream), Limits(underscores_in_headers=keep_underscores))
    try:
        spoof = {"X_Accord_Tier": "platinum", "X_ACCORD_ACCOUNT": "SOMEONE-ELSE", "X_Custom_Thing": "kept?",
                 "X_Forwarded_For": "203.0.113.66", "Content_Type": "text/evil"}
        status, _h, body = call(running.port, "GET", "/wsgi/who", headers=spoof)
        assert status == 200
        environ = json.loads(body)
        assert environ["HTTP_X_ACCORD_TIER"] == "silver" and environ["HTTP_X_ACCORD_ACCOUNT"] == "GLOBEX"
        assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
        assert "HTTP_CONTENT_TYPE" not in environ
        # anonymous: no tier of its own to overwrite the spoofed one, and still none arrives
        status, _h, body = call(running.port, "GET", "/wsgi/who", headers={"Authorization": "", **spoof})
        environ = json.loads(body)
        assert status == 200 and environ.get("HTTP_X_ACCORD_TIER", "") == ""
        assert environ["HTTP_X_ACCORD_ACCOUNT"] == "anonymous"
        # other underscore names: dropped by default (as nginx does), kept with --underscores-in-headers
        assert environ.get("HTTP_X_CUSTOM_THING") == ("kept?" if keep_underscores else None)
    finally:
        stop_gateway(running)


# -- dot-segments: the route and the upstream read the same path ---------------------------------------------


# path sent -> (upstream, path it receives); the HAProxy data plane is held to the same table (haproxy test_paths)
NORMALISED_PATHS = [
    (b"/fares/../bookings/1", "a", "/bookings/1"),
    (b"/bookings/%2e%2e/fares/x", "b", "/fares/x"),
    (b"/bookings/%2E%2e/fares/y?q=%2e%2e", "b", "/fares/y?q=%2e%2e"),  # the query is not a path
    (b"/bookings/./admin/../7", "a", "/bookings/7"),
    (b"/bookings/admin/./x/..", "b", "/bookings/admin/"),
    (b"/bookings/%7Euser/%41", "a", "/bookings/~user/A"),
    (b"/bookings/a%2Fb", "a", "/bookings/a%2Fb"),  # an encoded slash is not a separator, and stays encoded
]


@pytest.mark.parametrize(("raw", "server", "seen"), NORMALISED_PATHS)
def test_paths_are_normalised_before_routing_and_forwarded_so(gw: RunningGateway, raw: bytes, server: str,
                                                              seen: str) -> None:
    reply = raw_request(gw.port, b"GET " + raw + b" HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Connection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    echoed = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert (echoed["server"], echoed["path"]) == (server, seen)


@pytest.mark.parametrize("raw", [b"/bookings/../../etc/passwd", b"/bookings/%2e%2e/%2E%2E/etc",
                                 b"/bookings/..%2f..%2fetc/passwd", b"/..", b"/bookings/..%5C..%5Cetc"])
def test_paths_climbing_above_the_root_are_refused(gw: RunningGateway, upstreams: list[EchoServer],
                                                   raw: bytes) -> None:
    reply = raw_request(gw.port, b"GET " + raw + b" HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Connection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 "), reply
    assert upstreams[0].count + upstreams[1].count == 0


def test_a_dot_segment_leaving_the_service_is_routed_where_it_lands(gw: RunningGateway) -> None:
    """`/fares` is anonymous, `/bookings` is not: a path that climbs out of /fares into /bookings needs the key."""
    reply = raw_request(gw.port, b"GET /fares/../bookings/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 401 "), reply


# -- the client's credential --------------------------------------------------------------------------------


@pytest.mark.parametrize("forward", [False, True])
def test_the_gateways_credential_is_stripped_unless_the_service_forwards_it(upstreams: list[EchoServer],
                                                                            forward: bool) -> None:
    pool = PoolTarget("primary", "primary", 10, (upstream_of(upstreams[0].url),))
    route = Route("booking", b"/bookings", False, {"primary": pool}, pool, (), forward)
    running = start_gateway(Snapshot((route,), {KEY_HASH: Identity(b"GLOBEX", b"platinum", 1)}))
    try:
        for headers in ({"Authorization": f"Bearer {KEY.decode()}"}, {"Authorization": "", "X-Api-Key": KEY.decode()}):
            status, _h, body = call(running.port, "GET", "/bookings/1", headers=headers)
            assert status == 200
            echoed = json.loads(body)["headers"]
            assert echoed["x-accord-account"] == "GLOBEX"
            presented = {k.lower(): v for k, v in headers.items() if v}
            for name, value in presented.items():
                assert echoed.get(name) == (value if forward else None), (name, echoed)
    finally:
        stop_gateway(running)


def test_another_authorization_scheme_is_the_upstreams_business(upstreams: list[EchoServer]) -> None:
    pool = PoolTarget("primary", "primary", 10, (upstream_of(upstreams[0].url),))
    running = start_gateway(Snapshot((Route("open", b"/open", True, {"primary": pool}, pool),), {}))
    try:
        status, _h, body = call(running.port, "GET", "/open/1", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert status == 200 and json.loads(body)["headers"]["authorization"] == "Basic dXNlcjpwYXNz"
    finally:
        stop_gateway(running)
