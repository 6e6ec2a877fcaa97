"""The gateway's HTTP/1.1 data plane: asyncio protocols and httptools, no ORM and no framework per request.

Everything on the request path is a callback: the client connection's parser callbacks start a request, the
upstream connection's parser callbacks relay the answer, and no task, future or stream is created for a
request unless it has to wait (for an admission slot or a new upstream connection). Requests on one
connection are answered in order (pipelining is safe); request and response bodies stream chunk by chunk with
flow control in both directions; upstream connections are kept alive and reused. Timeouts are deadlines that
one lazy timer per connection checks, so a request arms no timer of its own. Every request that got as far as
a complete head is measured exactly once, whatever its fate.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from http import HTTPStatus
from typing import cast

import httptools

from .limits import Limits
from .measure import Accumulator
from .snapshot import ANONYMOUS, NO_POLICY, Identity, PoolTarget, Snapshot, Upstream

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
     b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"http2-settings"}
)
# Request headers the gateway reads or replaces (name -> what to do); any other goes upstream as it came, except
# X-Accord-* (the gateway's own, never taken from a client). Keyed by the lower-case names and by the usual
# spellings of these and of common headers, so that most headers are looked up once, without lower-casing.
(_H_KEEP, _H_DROP, _H_AUTHORIZATION, _H_API_KEY, _H_CONTENT_LENGTH, _H_TRANSFER_ENCODING, _H_EXPECT,
 _H_REQUEST_ID, _H_FORWARDED_FOR, _H_HOST, _H_UPGRADE) = range(11)
_REQUEST_HEADERS: dict[bytes, int] = {}
for _name, _kind in (
    *((n, _H_DROP) for n in HOP_BY_HOP), (b"host", _H_HOST), (b"upgrade", _H_UPGRADE), (b"x-forwarded-proto", _H_DROP),
    (b"authorization", _H_AUTHORIZATION), (b"x-api-key", _H_API_KEY), (b"content-length", _H_CONTENT_LENGTH),
    (b"transfer-encoding", _H_TRANSFER_ENCODING), (b"expect", _H_EXPECT), (b"x-request-id", _H_REQUEST_ID),
    (b"x-forwarded-for", _H_FORWARDED_FOR),
    *((n, _H_KEEP) for n in (b"user-agent", b"accept", b"accept-encoding", b"accept-language", b"content-type",
                             b"cookie", b"origin", b"referer", b"cache-control", b"if-none-match",
                             b"if-modified-since", b"pragma", b"traceparent")),
):
    for _spelling in (_name, _name.title()):
        _REQUEST_HEADERS[_spelling] = _kind
# Response headers the client does not get from the upstream: hop-by-hop, and the request id (the gateway's).
_RESPONSE_DROPPED = HOP_BY_HOP | {b"x-request-id"}
# What to do with a response header, by name as sent: its lower-case form and the usual spellings of the
# common ones (looked up before lower-casing; anything else is lower-cased and looked up again).
_R_KEEP, _R_DROP, _R_LENGTH, _R_ENCODING = range(4)
_RESPONSE_HEADERS: dict[bytes, int] = {}
for _name in (*_RESPONSE_DROPPED, b"content-length", b"server", b"date", b"content-type", b"cache-control",
              b"etag", b"last-modified", b"vary", b"location", b"set-cookie", b"expires", b"content-encoding",
              b"x-content-type-options", b"strict-transport-security", b"access-control-allow-origin"):
    _kind = (_R_LENGTH if _name == b"content-length" else _R_ENCODING if _name == b"transfer-encoding"
             else _R_DROP if _name in _RESPONSE_DROPPED else _R_KEEP)
    for _spelling in {_name, _name.title(), _name.title().replace(b"Etag", b"ETag")}:
        _RESPONSE_HEADERS[_spelling] = _kind
REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
# Reason phrases; the gateway's own errors keep the phrases their error codes are made of (413 payload_too_large).
REASONS = {**{s.value: s.phrase for s in HTTPStatus},
           400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout",
           413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
           505: "HTTP Version Not Supported"}
# "HTTP/1.1 200 OK\r\n" and the like, built once
STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, phrase.encode()) for code, phrase in REASONS.items()}
CODES = {429: "throttled"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# The %-encodings of unreserved characters (RFC 3986 section 2.3), which normalisation decodes; any other
# %-encoding stays as it came (its hex digits upper-cased).
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_ENCODED_SEPARATOR = re.compile(rb"%(2[Ff]|5[Cc])")


def _percent(match: re.Match[bytes]) -> bytes:
    byte = int(match.group(1), 16)
    return bytes((byte,)) if byte in _UNRESERVED else b"%" + match.group(1).upper()


def normalize_path(path: bytes) -> bytes | None:
    """The path as the route and the upstream both read it: %-encoded unreserved characters decoded, and dot-segments
    removed as RFC 3986 section 5.2.4 says. None when the path climbs above the root (`/a/../..`) or hides a
    dot-segment behind an encoded slash or backslash (`/a/..%2f..`), which an upstream may decode and resolve."""
    if b"%" in path:
        path = _PERCENT.sub(_percent, path)
    if b"." not in path:
        return path
    out: list[bytes] = []
    segments = path.split(b"/")
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if segment == b"..":
            if len(out) <= 1:  # out[0] is the empty segment before the leading slash
                return None
            out.pop()
            if index == last:
                out.append(b"")
        elif segment == b".":
            if index == last:
                out.append(b"")
        else:
            if b"%" in segment and _ENCODED_SEPARATOR.search(segment):
                decoded = _ENCODED_SEPARATOR.sub(b"/", segment).replace(b"\\", b"/")
                if any(part in (b".", b"..") for part in decoded.split(b"/")):
                    return None
            out.append(segment)
    return b"/".join(out)


def error_response(status: int, message: str, request_id: bytes = b"", close: bool = False,
                   extra: bytes = b"") -> bytes:
    """A complete response in the API's error shape: {"error": {"code", "message", "fields"}}."""
    code = CODES.get(status) or REASONS.get(status, "error").lower().replace(" ", "_")
    body = json.dumps({"error": {"code": code, "message": message, "fields": {}}}).encode()
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}".encode(), b"Content-Type: application/json",
            b"Content-Length: " + str(len(body)).encode()]
    if request_id:
        head.append(b"X-Request-Id: " + request_id)
    if extra:
        head.append(extra)
    if close:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class PoolGate:
    """Requests in flight in one pool; with admission, callers wait by tier priority when it is full."""

    __slots__ = ("busy", "capacity", "in_flight", "last", "peak", "seq", "waiters")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_flight = 0
        self.seq = 0
        self.waiters: list[tuple[int, int, asyncio.Future[bool]]] = []
        # Utilisation: in-flight integrated over time (request-seconds) since the last sample, and the peak.
        self.busy = 0.0
        self.last = time.monotonic()
        self.peak = 0

    def _tick(self, now: float | None = None) -> None:
        if now is None:
            now = time.monotonic()
        self.busy += self.in_flight * (now - self.last)
        self.last = now

    def enter(self) -> None:
        self._tick()
        self.in_flight += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight

    def sample(self) -> tuple[float, int]:
        """Busy request-seconds and the peak in flight since the previous sample; starts the next interval."""
        self._tick()
        busy, peak = self.busy, self.peak
        self.busy, self.peak = 0.0, self.in_flight
        return busy, peak

    def try_enter(self) -> bool:
        """Take a slot if one is free and nobody waits for one."""
        if self.in_flight < self.capacity and not self.waiters:
            self.enter()
            return True
        return False

    def wait(self, priority: int, max_wait: float) -> asyncio.Future[bool]:
        """Queue for a slot behind callers of higher priority (lower number): the future turns True when a leaving
        request hands its slot over, False after `max_wait` seconds. Cancel it to leave the queue."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self.seq += 1
        heapq.heappush(self.waiters, (priority, self.seq, future))
        timer = loop.call_later(max_wait, _give_up, future)
        future.add_done_callback(lambda _f: timer.cancel())
        return future

    async def admit(self, priority: int, max_wait: float) -> bool:
        """Take a slot, waiting up to `max_wait` seconds behind callers of higher priority (lower number)."""
        if self.try_enter():
            return True
        if max_wait <= 0:
            return False
        future = self.wait(priority, max_wait)
        try:
            return await future
        finally:
            if not future.done():
                future.cancel()

    def leave(self, now: float | None = None) -> None:
        """Give the slot back (to the first waiter, if any); `now` is time.monotonic() if the caller has it."""
        while self.waiters:
            _p, _s, future = heapq.heappop(self.waiters)
            if not future.done():
                future.set_result(True)  # the slot passes on: in_flight stays the same
                return
        self._tick(now)
        self.in_flight -= 1

    @property
    def waiting(self) -> int:
        return sum(1 for _p, _s, f in self.waiters if not f.done())


def _give_up(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


class TokenBucket:
    """`rate` tokens a second up to `burst`; a request takes one."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = now

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one will be there."""
        tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if tokens >= 1:
            self.tokens = tokens - 1
            return 0.0
        self.tokens = tokens
        return (1 - tokens) / self.rate


class Request:
    """One request from its parsed head to its answer: what it asked, where it went, and what became of it.

    Slots, every one set in __init__: reading a slot is the interpreter's fastest attribute access, and a
    request reads most of them several times (measured: about 0.4 µs a request faster than class defaults).
    """

    __slots__ = (
        "account", "body", "body_sent", "bytes_in", "bytes_out", "chunked", "chunked_out", "complete", "conn",
        "connecting", "content_length", "continued", "credential", "credentials", "endpoints", "expect_continue", "finished",
        "forwarded_for", "gate", "head", "head_sent", "header_bytes", "hosts", "http10", "keep_alive", "key", "lines",
        "method", "operation", "outcome", "pool", "reply", "request_id", "resp_delimited", "resp_done",
        "resp_keep_alive", "resp_status", "retried", "service", "start", "status", "streaming", "tier", "too_large",
        "transfer_encoding", "tunnel", "tunnel_ms", "tunnel_open", "upgrade", "upstream", "url", "waiter", "wall",
    )

    def __init__(self) -> None:
        # the head, as the parser callbacks fill it in
        self.method = b""
        self.url = b""
        self.lines: list[bytes] = []  # the client's header lines the upstream gets, in pieces to join
        self.header_bytes = 0
        self.keep_alive = False
        self.chunked = False
        self.content_length: int | None = None
        self.http10 = False
        self.expect_continue = False
        self.key = b""  # the API key it presented, b"" for none
        self.request_id = b""  # a valid X-Request-Id it sent, else b"" until _start gives it one
        self.forwarded_for = b""  # the X-Forwarded-For it sent, b"" for none
        self.credentials = b""  # its X-Api-Key / Authorization: Bearer lines: forwarded only if the service says so
        self.hosts = 0  # Host header lines
        self.upgrade = b""  # the Upgrade header's value
        # a WebSocket handshake: what the client sent after its head, held until the upstream switches (else None)
        self.tunnel: list[bytes] | None = None
        self.tunnel_open = False  # the upstream answered 101: bytes flow both ways as they come
        self.tunnel_ms = 0.0  # how long the handshake took: what the tunnel is measured with
        self.transfer_encoding = b""  # the Transfer-Encoding values, joined
        self.start = 0.0  # time.monotonic() when its head was complete
        self.wall = 0.0  # time.time() then
        # measurement
        self.bytes_in = 0
        self.bytes_out = 0
        self.status = 0
        self.outcome = ""
        self.account = ""
        self.credential = 0  # the id of the API key it was identified by (0: anonymous or none known)
        self.tier = ""
        self.service = ""
        self.operation = ""
        self.pool = ""
        self.too_large = False
        self.complete = False  # the whole body has arrived
        self.finished = False  # answered (or given up) and measured
        # forwarding
        self.head = b""  # the upstream request head up to (not including) the Host line
        self.body: list[bytes] | None = None  # chunks that arrived before the upstream could take them
        self.endpoints: Sequence[Upstream] = ()  # still to try, in order
        self.upstream: Upstream | None = None
        self.conn: UpstreamConnection | None = None
        self.connecting: asyncio.Task[UpstreamConnection] | None = None
        self.retried = False
        self.body_sent = False  # a body byte went to the upstream: the request cannot be sent again
        self.streaming = False  # the head went upstream: body chunks follow it directly
        self.continued = False  # 100 Continue was sent
        self.gate: PoolGate | None = None
        self.waiter: asyncio.Future[bool] | None = None
        self.reply: tuple[int, str, bytes] | None = None  # the gateway's answer, once the body has been read
        # the answer
        self.resp_status = 0
        self.resp_keep_alive = False
        self.resp_delimited = False  # the body ends when the upstream closes (no length, not chunked)
        self.resp_done = False
        self.head_sent = False
        self.chunked_out = False


class UpstreamConnection(asyncio.Protocol):
    """A kept-alive connection to one upstream; it relays the answer of the request it carries to that client."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.client: ClientConnection | None = None
        self.request: Request | None = None
        # the response head being parsed: the lines the client gets, and how the body is framed
        self.lines: list[bytes] = []
        self.out: list[bytes] = []  # what the current read gives the client, written at once
        self.has_length = self.has_encoding = False
        self.closed = False
        self.stray = False  # the upstream sent more than one answer: never reuse
        self.reading_paused = False
        self.tunnel = False  # switched to a WebSocket: bytes go to the client as they come, never reused

    # -- transport ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Bytes of the answer: parse them, pass on what the client gets, finish when it is whole."""
        client, request = self.client, self.request
        if client is None or request is None:
            self.close()  # nobody asked: the connection is out of step, not reusable
            return
        if self.tunnel:
            request.bytes_out += len(data)
            client._write(data)
            client.upstream_deadline = time.monotonic() + client.limits.tunnel_idle_timeout
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            if request.tunnel is None or request.resp_status != 101:
                client._upstream_error(request, 502, "bad_gateway", "The upstream switched protocols unasked.")
            else:
                client._tunnel_opened(request, self, data[e.args[0]:])
            return
        except httptools.HttpParserError:
            client._upstream_error(request, 502, "bad_gateway", "The upstream sent a malformed response.")
            return
        out = self.out
        if request.resp_done:
            if request.chunked_out:
                out.append(b"0\r\n\r\n")
            if out:
                client._write(out[0] if len(out) == 1 else b"".join(out))
                out.clear()
            client._answered(request, self)
            return
        if client.upstream_deadline is not None:
            client.upstream_deadline = time.monotonic() + client.limits.upstream_timeout
        if out:
            client._write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def eof_received(self) -> bool:
        self._lost()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def _lost(self) -> None:
        self.closed = True
        client, request = self.client, self.request
        if client is not None and request is not None:
            client.upstream_gone(request, self)

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause_reading(_PAUSE_UPSTREAM)

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume_reading(_PAUSE_UPSTREAM)

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not self.closed and not transport.is_closing():
            transport.write(data)

    def pause(self, paused: bool) -> None:
        if paused != self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        self.client = self.request = None
        if self.transport is not None:
            self.transport.close()

    # -- response parser callbacks ------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        kind = _RESPONSE_HEADERS.get(name)  # the usual spellings, without lower-casing
        if kind is None:
            kind = _RESPONSE_HEADERS.get(name.lower(), _R_KEEP)
        if kind == _R_KEEP:
            self.lines += (name, b": ", value, b"\r\n")
        elif kind == _R_LENGTH:
            self.has_length = True
            self.lines += (name, b": ", value, b"\r\n")
        elif kind == _R_ENCODING:
            self.has_encoding = True
        # _R_DROP: hop-by-hop, or X-Request-Id (the gateway's)

    def on_headers_complete(self) -> None:
        """The response head: the one the client gets (into self.out), and whether its body goes chunked."""
        lines, has_length, has_encoding = self.lines, self.has_length, self.has_encoding
        self.lines = []  # for the next head (after a 1xx, or the next answer): no on_message_begin needed
        self.has_length = self.has_encoding = False
        request, client = self.request, self.client
        if request is None or client is None or request.head_sent:
            self.stray = True
            return
        parser = self.parser
        status = parser.get_status_code()
        if status == 101 and request.tunnel is not None:  # the WebSocket handshake accepted
            request.resp_status = request.status = status
            request.outcome = "ok"
            lines += (UPGRADE_LINES, b"X-Request-Id: ", request.request_id, b"\r\n\r\n")
            self.out.append(STATUS_LINES[101] + b"".join(lines))
            request.head_sent = True
            return
        if status < 200:  # 1xx (e.g. 103 Early Hints): not the answer; the real head follows
            return
        request.resp_status = request.status = status
        request.outcome = "server_error" if status >= 500 else "client_error" if status >= 400 else "ok"
        # llhttp forgets keep-alive once the message completes: read it now.
        request.resp_keep_alive = parser.should_keep_alive()
        no_body = request.method == b"HEAD" or status == 204 or status == 304
        if no_body:
            request.resp_done = request.method == b"HEAD"  # the answer to HEAD has no body, whatever it says
        else:
            request.resp_delimited = not has_length and not has_encoding
        chunked = not has_length and not no_body and not request.http10
        if chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        if not request.keep_alive or client.gateway.draining or (request.http10 and not has_length and not no_body):
            lines.append(b"Connection: close\r\n")
            request.keep_alive = False
        tail = b"X-Request-Id: " + request.request_id + b"\r\n\r\n"
        lines.append(tail)
        self.out.append((STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status) + b"".join(lines))
        request.head_sent = True
        request.chunked_out = chunked

    def on_body(self, body: bytes) -> None:
        request = self.request
        if request is None or request.resp_done or not body:
            return
        request.bytes_out += len(body)
        self.out.append(b"%x\r\n%s\r\n" % (len(body), body) if request.chunked_out else body)

    def on_message_complete(self) -> None:
        request = self.request
        if request is not None and request.head_sent:
            request.resp_done = True


class UpstreamPool:
    """Idle keep-alive connections per upstream address (host:port)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.idle: dict[str, list[UpstreamConnection]] = {}
        self.opened = 0

    def take(self, upstream: Upstream) -> UpstreamConnection | None:
        """An idle connection to the upstream that is still open, or None."""
        idle = self.idle.get(upstream.address)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def open(self, upstream: Upstream) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        _transport, conn = await asyncio.wait_for(
            loop.create_connection(partial(UpstreamConnection, upstream), upstream.host, upstream.port),
            self.limits.connect_timeout,
        )
        self.opened += 1
        return conn

    def put(self, conn: UpstreamConnection) -> None:
        conn.client = conn.request = None
        if conn.closed:
            return
        if conn.reading_paused:
            conn.pause(False)  # an idle connection must notice when the upstream closes it
        address = conn.upstream.address
        idle = self.idle.get(address)
        if idle is None:
            idle = self.idle[address] = []
        if len(idle) >= self.limits.max_idle_upstream:
            conn.close()
            return
        idle.append(conn)

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


class Gateway:
    """Shared state of one gateway process: the snapshot, upstream connections, measurements, counters."""

    def __init__(self, snapshot: Snapshot, limits: Limits | None = None, accumulator: Accumulator | None = None,
                 workers: int = 1) -> None:
        self.snapshot = snapshot
        self.limits = limits or Limits()
        self.pool = UpstreamPool(self.limits)
        self.accumulator = accumulator or Accumulator()
        self.workers = max(1, workers)  # a rate limit is shared out between the workers of a host
        self.connections: set[ClientConnection] = set()
        self.gates: dict[tuple[str, str], PoolGate] = {}
        self.buckets: dict[tuple[str, bytes], TokenBucket] = {}
        self.requests = 0
        self.in_flight = 0
        self.outcomes: dict[str, int] = {}
        self.draining = False
        # Request ids: a random prefix per process and a counter (unique across workers and hosts, and cheap)
        self._id_prefix = os.urandom(8).hex().encode() + b"-"
        self._id_counter = 0

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

    def next_request_id(self) -> bytes:
        self._id_counter = counter = self._id_counter + 1
        return self._id_prefix + b"%x" % counter

    def identify(self, key: bytes, snapshot: Snapshot | None = None) -> Identity | None:
        """Who an API key belongs to (b"": anonymous); None for a key that is unknown or revoked.

        Keys are looked up by their SHA-256, as they are stored, so no comparison runs over a secret."""
        if not key:
            return ANONYMOUS
        return (snapshot or self.snapshot).credentials.get(hashlib.sha256(key).hexdigest())

    def gate(self, service: str, pool: PoolTarget) -> PoolGate:
        """The gate of a pool: one per (service, pool name), kept across snapshots; remembered on the snapshot's
        PoolTarget, so that a request finds it with one attribute read."""
        cached = pool.gate
        if cached is not None and cached[0] is self:
            return cast(PoolGate, cached[1])
        gate = self.gates.get((service, pool.name))
        if gate is None:
            gate = self.gates[(service, pool.name)] = PoolGate(pool.capacity)
        # follows the snapshot; each worker of a host admits its share of the pool's capacity
        gate.capacity = max(1, -(-pool.capacity // self.workers))
        pool.gate = (self, gate)
        return gate

    def finished(self, request: Request, now: float | None = None) -> None:
        """Count a request exactly once (a request is in flight from its complete head on); `now` is
        time.monotonic() if the caller has it."""
        if now is None:
            now = time.monotonic()
        self.in_flight -= 1
        self.requests += 1
        outcome = request.outcome or "client_gone"
        outcomes = self.outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # a WebSocket is measured by its handshake, not by how long it stayed open
        latency = (now - request.start) * 1000.0 if request.tunnel is None else request.tunnel_ms
        self.accumulator.record(
            request.wall, request.account, request.service, request.operation, request.pool, outcome,
            request.status or 499, request.bytes_in, request.bytes_out, latency, request.tier,
        )
        if request.credential:
            self.accumulator.use_key(request.credential, request.wall)

    def record_rejected(self, status: int, outcome: str) -> None:
        """A request that never got a complete head (400, 408, 431): counted, with no account or service."""
        self.requests += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.accumulator.record(time.time(), "", "", "", "", outcome, status, 0, 0, 0.0)

    def start_draining(self) -> None:
        """Stop taking new requests on open connections; idle keep-alive connections close now."""
        self.draining = True
        for conn in list(self.connections):
            if (conn.idle and not conn.queue) or conn.tunnelling is not None:
                conn._close()  # an open WebSocket too: its client reconnects, to another gateway

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is in flight (or the timeout passes). Polled: an event set and cleared on every
        request would cost the request path more than this costs a draining gateway."""
        deadline = time.monotonic() + timeout
        while self.in_flight > 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True


# Why a client connection stopped reading (it reads again when no reason is left).
_PAUSE_BUFFER = 1  # body chunks pile up before the upstream can take them
_PAUSE_UPSTREAM = 2  # the upstream does not take the body as fast as the client sends it
_PAUSE_PIPELINE = 4  # too many requests queued behind the one being answered
_PAUSE_BROKEN = 8  # unparseable input: nothing more is read
MAX_BUFFERED_CHUNKS = 16
UPGRADE_LINES = b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
MAX_QUEUED = 32


class ClientConnection(asyncio.Protocol):
    """One client connection: parse requests, forward them in order, relay the answers."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.limits = gateway.limits
        self.pool = gateway.pool
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = b""
        self.queue: deque[Request] = deque()  # parsed, waiting for the requests before them
        self.active: Request | None = None  # being forwarded or answered
        self.current: Request | None = None  # the one whose body the parser reads
        self.parsing = Request()  # the one whose head the parser reads
        # the last key presented on this connection and who it is (in the snapshot it was looked up in)
        self.known: tuple[bytes, Snapshot, Identity | None] | None = None
        self.tunnelling: Request | None = None  # a WebSocket handshake was read: the rest is not HTTP any more
        self.in_head = False
        self.idle = True  # no request is being parsed or forwarded
        self.closed = False
        self.broken = False  # unparseable input arrived: answer what is queued, then the error, then close
        self.error: tuple[int, str, str] | None = None
        self.paused = 0  # _PAUSE_* reasons
        self.write_paused = False
        self.in_feed = False
        self.advancing = False
        # Deadlines (time.monotonic()) that one lazy timer checks; None when not running.
        self.head_deadline: float | None = None
        self.body_deadline: float | None = None
        self.upstream_deadline: float | None = None
        self.idle_deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    # -- transport callbacks --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        if len(self.gateway.connections) >= self.limits.max_connections or self.gateway.draining:
            self.closed = True
            transport.write(error_response(503, "The gateway is at its connection limit.", close=True))
            transport.close()
            return
        self.gateway.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        self.idle_deadline = time.monotonic() + self.limits.header_timeout  # nothing sent yet: close quietly
        self._watch(self.idle_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        request = self.active
        if request is not None:
            if not request.outcome:
                request.outcome = "client_gone"
            self._finish(request, False)
        while self.queue:  # parsed but never forwarded: still counted, once
            request = self.queue.popleft()
            request.finished = True
            self.gateway.finished(request)

    def pause_writing(self) -> None:
        self.write_paused = True
        request = self.active
        if request is not None and request.conn is not None:
            request.conn.pause(True)  # the client reads slower than the upstream answers

    def resume_writing(self) -> None:
        self.write_paused = False
        request = self.active
        if request is not None and request.conn is not None:
            request.conn.pause(False)

    def pause_reading(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_reading(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed or self.broken:
            return
        tunnelling = self.tunnelling
        if tunnelling is not None:
            self._tunnel_in(tunnelling, data)
            return
        self.in_feed = True
        try:
            while True:
                try:
                    self.parser.feed_data(data)
                    break
                except httptools.HttpParserUpgrade as e:
                    data = data[e.args[0]:]
                    request = self.current
                    if request is not None and request.tunnel is not None:
                        # a WebSocket handshake: what follows its head is the tunnel's, held until the upstream
                        # switches protocols (and dropped if it does not)
                        self.tunnelling = request
                        if data:
                            self._tunnel_in(request, data)
                        break
                    # an ignored `Upgrade: h2c`: the request was read as HTTP/1.1, and so is what follows it
                    if not data:
                        break
        except httptools.HttpParserCallbackError as e:
            context = e.__context__
            if isinstance(context, _TooLarge):
                self._fail(431, "headers_too_large", "The request line and headers are too large.")
            elif isinstance(context, _Refused):
                self._fail(context.status, context.outcome, context.message)
            else:
                self._fail(400, "bad_request", "Malformed request.")
        except httptools.HttpParserError as e:
            current = self.current
            if str(e) == "Invalid HTTP version":
                self._fail(505, "http_version_not_supported", "Only HTTP/1.0 and HTTP/1.1 are supported.")
            elif current is not None and not current.complete:
                # the body broke off in the middle (bad chunk framing): the upstream must not see it end well
                if not current.outcome:
                    current.status, current.outcome = 400, "bad_request"
                self._fail(0, "", "")
                if current is self.active:
                    self._abort(current, 400, "bad_request", "The request body is malformed.")
            else:
                self._fail(400, "bad_request", f"Malformed request: {str(e)[:200]}")
        finally:
            self.in_feed = False
        if self.active is None and not self.closed:
            self._advance()

    # -- request parser callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.parsing = Request()
        self.in_head = True
        self.idle = False
        self.idle_deadline = None
        self.head_deadline = when = time.monotonic() + self.limits.header_timeout
        self._watch(when)

    def on_url(self, url: bytes) -> None:
        request = self.parsing
        request.url += url
        request.header_bytes += len(url)
        if request.header_bytes > self.limits.max_header_bytes:
            raise _TooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        """One pass over the headers: what the gateway needs from them, and the lines the upstream gets."""
        request = self.parsing
        request.header_bytes += len(name) + len(value) + 4
        if request.header_bytes > self.limits.max_header_bytes:
            raise _TooLarge
        kind = _REQUEST_HEADERS.get(name)
        if kind is None:
            lower = name.lower()
            kind = _REQUEST_HEADERS.get(lower)
            if kind is None:
                if b"_" in lower:
                    # A WSGI server reads X_Accord_Tier as X-Accord-Tier: names with underscores are dropped (as
                    # nginx does), or with --underscores-in-headers kept unless the dashed name is one the gateway
                    # reads or sets itself.
                    dashed = lower.replace(b"_", b"-")
                    kind = (_H_KEEP if self.limits.underscores_in_headers and dashed not in _REQUEST_HEADERS
                            and not dashed.startswith(b"x-accord-") else _H_DROP)
                else:  # the gateway's own headers are never taken from a client
                    kind = _H_DROP if lower.startswith(b"x-accord-") else _H_KEEP
        if kind == _H_KEEP:
            request.lines += (name, b": ", value, b"\r\n")
        elif kind == _H_AUTHORIZATION:
            if value[:7].lower() == b"bearer ":
                request.key = value[7:].strip()
                request.credentials += name + b": " + value + b"\r\n"  # the gateway's credential
            else:
                request.lines += (name, b": ", value, b"\r\n")  # another scheme is the upstream's business
        elif kind == _H_API_KEY:
            request.key = value.strip()
            request.credentials += name + b": " + value + b"\r\n"
        elif kind == _H_CONTENT_LENGTH:
            request.content_length = int(value)
        elif kind == _H_TRANSFER_ENCODING:
            request.chunked = True  # llhttp only accepts chunked as the final coding; other codings get 501
            te = request.transfer_encoding
            request.transfer_encoding = te + b", " + value if te else value
        elif kind == _H_HOST:
            request.hosts += 1
        elif kind == _H_UPGRADE:
            request.upgrade = value
        elif kind == _H_EXPECT:
            request.expect_continue = request.expect_continue or value.lower() == b"100-continue"
        elif kind == _H_REQUEST_ID:
            if not request.request_id and REQUEST_ID_RE.match(value):
                request.request_id = value  # the first valid one is kept; the upstream gets exactly one
        elif kind == _H_FORWARDED_FOR:
            request.forwarded_for = request.forwarded_for + b", " + value if request.forwarded_for else value
        # _H_DROP: hop-by-hop, or set by the gateway itself (X-Forwarded-Proto)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_deadline = None
        parser = self.parser
        request = self.parsing
        request.method = parser.get_method()
        request.keep_alive = parser.should_keep_alive()
        version = parser.get_http_version()
        if version != "1.1":
            if version != "1.0":
                raise _Refused(505, "http_version_not_supported", "Only HTTP/1.0 and HTTP/1.1 are supported.")
            request.http10 = True
        # Each request's fate is decided here, once: what the gateway refuses is answered before anything goes
        # upstream, with one response, and the connection closes after it (RFC 9112 sections 3.2 and 6.1).
        if request.hosts != 1 and (request.hosts or not request.http10):
            raise _Refused(400, "bad_request", "A request needs exactly one Host header." if request.hosts
                           else "An HTTP/1.1 request needs a Host header.")
        if request.transfer_encoding and request.transfer_encoding.strip().lower() != b"chunked":
            raise _Refused(501, "not_implemented", "Transfer-Encoding other than chunked is not supported.")
        # CONNECT, or Upgrade with Connection: upgrade. h2c is ignored, as RFC 9113 section 3.1 allows: the request
        # is answered over HTTP/1.1. A WebSocket handshake (RFC 6455: a GET over HTTP/1.1 without a body) goes
        # upstream like any request, and becomes a tunnel if the upstream answers 101; any other protocol and
        # CONNECT are refused before anything is forwarded.
        if parser.should_upgrade():
            protocol = request.upgrade.strip().lower()
            if request.method == b"CONNECT" or protocol not in (b"h2c", b"websocket"):
                raise _Refused(501, "not_implemented", "Protocol upgrades other than WebSocket, and CONNECT, are "
                                                       "not supported.")
            if protocol == b"websocket":
                if request.method != b"GET" or request.http10 or request.chunked or request.content_length:
                    raise _Refused(400, "bad_request", "A WebSocket handshake is a GET over HTTP/1.1 without a body.")
                request.tunnel = []
                request.keep_alive = False  # whatever the answer, the connection ends with the tunnel or it
        request.start = time.monotonic()
        request.wall = time.time()
        length = request.content_length
        if length is not None and length > self.limits.max_body_bytes:
            request.too_large = True
        if not request.chunked and not length:
            request.complete = True
        self.current = request
        self.gateway.in_flight += 1
        queue = self.queue
        queue.append(request)
        if len(queue) > MAX_QUEUED:
            self.pause_reading(_PAUSE_PIPELINE)

    def on_body(self, body: bytes) -> None:
        request = self.current
        if request is None or request.too_large or request.finished:
            return
        request.bytes_in += len(body)
        if request.bytes_in > self.limits.max_body_bytes:
            request.too_large = True
            if request is self.active:
                self._too_large(request)
            return
        if request.reply is not None:
            return  # answered already: the rest of the body is read and dropped
        if request is self.active:
            self.body_deadline = time.monotonic() + self.limits.idle_timeout
        conn = request.conn
        if request.streaming and conn is not None:
            conn.write(b"%x\r\n%s\r\n" % (len(body), body) if request.chunked else body)
            request.body_sent = True
        else:
            if request.body is None:
                request.body = [body]
            else:
                request.body.append(body)
            if len(request.body) > MAX_BUFFERED_CHUNKS:
                self.pause_reading(_PAUSE_BUFFER)  # the upstream is not there yet: stop reading

    def on_message_complete(self) -> None:
        request = self.current
        if request is None or request.complete:
            return
        request.complete = True
        if request is not self.active or request.finished:
            return
        self.body_deadline = None
        if request.reply is not None:
            self._send_reply(request)
        elif request.streaming and request.conn is not None and request.chunked and not request.too_large:
            request.conn.write(b"0\r\n\r\n")

    # -- deadlines ----------------------------------------------------------------------------------------

    def _watch(self, when: float) -> None:
        """Make sure the timer fires by `when`."""
        if self.timer is not None:
            if self.timer_at <= when:
                return
            self.timer.cancel()
        self.timer_at = when
        self.timer = asyncio.get_running_loop().call_later(max(0.0, when - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.closed:
            return
        now = time.monotonic()
        if self.head_deadline is not None and now >= self.head_deadline:
            self.head_deadline = None
            if self.in_head:
                self._fail(408, "request_timeout", "The request head did not arrive in time.")
                if self.active is None:
                    self._advance()
        if self.idle_deadline is not None and now >= self.idle_deadline:
            self.idle_deadline = None
            if self.idle and not self.in_head and self.active is None:
                self._close()  # an idle keep-alive connection, or one that never sent anything
                return
        request = self.active
        if request is not None and self.body_deadline is not None and now >= self.body_deadline:
            self.body_deadline = None
            if not request.complete and not request.finished:
                self._body_timeout(request)
        request = self.active
        if request is not None and self.upstream_deadline is not None and now >= self.upstream_deadline:
            self.upstream_deadline = None
            if request.tunnel_open:
                self._finish(request, False)  # a WebSocket silent both ways for tunnel_idle_timeout: closed
            elif request.conn is not None and not request.resp_done and not request.finished:
                self._upstream_error(request, 504, "timeout", "The upstream did not answer in time.")
        if self.closed:
            return
        pending = [d for d in (self.head_deadline, self.idle_deadline, self.body_deadline, self.upstream_deadline)
                   if d is not None]
        if pending:
            self._watch(min(pending))

    # -- the order of requests ------------------------------------------------------------------------------

    def _advance(self, now: float | None = None) -> None:
        """Start the next queued request when none is being answered; close or idle when none is left.
        `now` is time.monotonic() if the caller has it."""
        if self.advancing:
            return
        self.advancing = True
        try:
            while self.active is None and not self.closed:
                if self.queue:
                    request = self.queue.popleft()
                    if self.paused & _PAUSE_PIPELINE and len(self.queue) <= MAX_QUEUED // 2:
                        self.resume_reading(_PAUSE_PIPELINE)
                    if self.broken and not request.complete:
                        request.finished = True  # its body was cut off: nothing goes upstream
                        self.gateway.finished(request)
                        if request.status and self.error is None and self.transport is not None:
                            # its body was malformed (bad chunk framing): say so, then close
                            self.transport.write(error_response(request.status, "The request body is malformed.",
                                                                close=True))
                        continue
                    self.active = request
                    self._start(request)
                    continue
                if self.broken:
                    if self.error is not None and self.transport is not None and not self.transport.is_closing():
                        status, outcome, message = self.error
                        self.gateway.record_rejected(status, outcome)
                        self.transport.write(error_response(status, message, close=True))
                    self._close()
                elif self.gateway.draining and not self.in_head:
                    self._close()
                else:
                    self.idle = not self.in_head
                    if self.idle:
                        self.idle_deadline = when = (now or time.monotonic()) + self.limits.idle_timeout
                        self._watch(when)
                return
        finally:
            self.advancing = False

    def _finish(self, request: Request, keep: bool) -> None:
        """The request is answered (or given up): release what it held, measure it, go on or close."""
        if request.finished:
            return
        request.finished = True
        now = time.monotonic()  # one clock read for the gate, the measurement and the idle deadline
        if request.waiter is not None:
            request.waiter.cancel()
            request.waiter = None
        if request.gate is not None:
            request.gate.leave(now)
            request.gate = None
        conn = request.conn
        if conn is not None:
            request.conn = None
            conn.close()  # in the middle of an exchange: never reuse it
        if self.active is request:
            self.active = None
            self.body_deadline = self.upstream_deadline = None
        gw = self.gateway
        gw.finished(request, now)
        if self.closed:
            return
        if not keep or (gw.draining and not self.queue):
            self._close()
            return
        if self.paused & (_PAUSE_BUFFER | _PAUSE_UPSTREAM):
            self.resume_reading(_PAUSE_BUFFER | _PAUSE_UPSTREAM)
        if not self.in_feed:
            self._advance(now)

    # -- deciding -----------------------------------------------------------------------------------------

    def _start(self, request: Request) -> None:
        gw = self.gateway
        snapshot = gw.snapshot  # one snapshot for the whole request, even if a reload lands meanwhile
        if not request.request_id:
            request.request_id = gw.next_request_id()
        if not request.complete:
            self.body_deadline = when = time.monotonic() + self.limits.idle_timeout
            self._watch(when)
        if request.too_large:
            self._too_large(request)
            return
        url = request.url
        query = url.find(b"?")
        path = url if query < 0 else url[:query]
        if b"%" in path or b"/." in path:
            # the route and the upstream must read the same path: route by the normalised one, and forward it
            normal = normalize_path(path)
            if normal is None:
                self._reply(request, 400, "bad_request", "The path climbs above the root.")
                return
            if normal != path:
                path = normal
                request.url = url = normal if query < 0 else normal + url[query:]
        route = snapshot.route(path)
        if route is None:
            self._reply(request, 404, "not_found", "No service is routed at this path.")
            return
        request.service = route.name
        key = request.key
        if not key:
            identity: Identity | None = ANONYMOUS
        else:
            known = self.known  # a connection mostly sends one key: hash it once per connection and snapshot
            if known is not None and known[0] == key and known[1] is snapshot:
                identity = known[2]
            else:
                identity = gw.identify(key, snapshot)
                self.known = (key, snapshot, identity)
        if identity is None or (identity is ANONYMOUS and not route.allow_anonymous):
            self._reply(request, 401, "unauthorized", "A valid API key is required (Authorization: Bearer <key>).")
            return
        request.account = identity.key
        request.credential = identity.credential
        request.tier = identity.tier_name
        if route.operations:
            request.operation = operation = route.operation(request.method, path)
        else:
            operation = ""
        pool = route.primary
        policy = NO_POLICY
        if snapshot.actions:
            policy = snapshot.policy(identity, route.name, operation)
            if policy.shed is not None:
                self._reply(request, 503, "shed", "The service is shedding load; retry later.",
                            b"Retry-After: %d" % policy.shed.retry_after)
                return
            for rule in policy.rate_limits:
                wait = self._take_token(rule.name, identity.account, rule.rps, rule.burst)
                if wait:
                    self._reply(request, 429, "rate_limited", "Too many requests; slow down.",
                                b"Retry-After: %d" % max(1, math.ceil(wait)))
                    return
            if policy.pool:
                chosen = route.pools.get(policy.pool)
                if chosen is not None and chosen.endpoints:
                    pool = chosen
        if pool is None or not pool.endpoints:
            self._reply(request, 503, "no_endpoint", "The service has no available endpoint.")
            return
        request.pool = pool.name
        request.endpoints = pool.order()
        # the request line and headers for the upstream, all but the Host line and the blank line after it
        if request.chunked:
            framing = b"Transfer-Encoding: chunked\r\n"
        elif request.content_length is not None:
            framing = b"Content-Length: %d\r\n" % request.content_length
        else:
            framing = b""
        if request.tunnel is not None:
            framing = UPGRADE_LINES  # hop-by-hop: dropped from the client's head, said again to the upstream
        forwarded_for = request.forwarded_for + b", " + self.peer if request.forwarded_for else self.peer
        if request.credentials and route.forward_credentials:
            framing = request.credentials + framing  # the service asked for the caller's key (off by default)
        request.head = b"%s %s HTTP/1.1\r\n%sX-Request-Id: %s\r\nX-Forwarded-For: %s\r\nX-Forwarded-Proto: http\r\n%s%s" % (
            request.method, url, b"".join(request.lines), request.request_id, forwarded_for,
            identity.header_lines, framing)
        gate = gw.gate(route.name, pool)
        admission = policy.admission
        if admission is None:
            gate.enter()
        elif not gate.try_enter():
            if admission.max_wait <= 0:
                self._reply(request, 503, "queue_timeout", "The service is at capacity; retry later.",
                            b"Retry-After: %d" % admission.retry_after)
                return
            request.waiter = gate.wait(identity.priority, admission.max_wait)
            request.waiter.add_done_callback(partial(self._admitted, request, gate, admission.retry_after))
            return
        request.gate = gate
        self._connect(request)

    def _admitted(self, request: Request, gate: PoolGate, retry_after: int, future: asyncio.Future[bool]) -> None:
        request.waiter = None
        if future.cancelled():
            return  # the client left while it waited
        if request.finished:
            if future.result():
                gate.leave()
            return
        if not future.result():
            self._reply(request, 503, "queue_timeout", "The service is at capacity; retry later.",
                        b"Retry-After: %d" % retry_after)
            return
        request.gate = gate  # a leaving request handed its slot over
        self._connect(request)

    def _take_token(self, name: str, account: bytes, rps: float, burst: float) -> float:
        gw = self.gateway
        now = time.monotonic()
        rate = rps / gw.workers
        burst = max(1.0, burst / gw.workers)
        bucket = gw.buckets.get((name, account))
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            bucket = gw.buckets[(name, account)] = TokenBucket(rate, burst, now)
        return bucket.take(now)

    # -- the upstream side ----------------------------------------------------------------------------------

    def _connect(self, request: Request) -> None:
        """Send the request to the next endpoint: an idle connection if there is one, else a new one."""
        if request.expect_continue and not request.complete and not request.continued:
            request.continued = True
            self._write(CONTINUE)
        endpoints = request.endpoints
        if endpoints:
            upstream = endpoints[0]
            request.endpoints = endpoints[1:]
            conn = self.pool.take(upstream)
            if conn is not None:
                self._send(request, upstream, conn)
            else:
                self._open(request, upstream)
            return
        self._reply(request, 503, "no_endpoint", "No endpoint of the service accepted the connection.")

    def _open(self, request: Request, upstream: Upstream) -> None:
        task = asyncio.get_running_loop().create_task(self.gateway.pool.open(upstream))
        request.connecting = task
        task.add_done_callback(partial(self._opened, request, upstream))

    def _opened(self, request: Request, upstream: Upstream, task: asyncio.Task[UpstreamConnection]) -> None:
        request.connecting = None
        if task.cancelled():
            return
        error = task.exception()
        if request.finished:
            if error is None:
                self.gateway.pool.put(task.result())  # the client left meanwhile: keep it for the next one
            return
        if error is not None:
            self._connect(request)  # connect failure: try the next endpoint
            return
        self._send(request, upstream, task.result())

    def _send(self, request: Request, upstream: Upstream, conn: UpstreamConnection) -> None:
        request.upstream = upstream
        request.conn = conn
        conn.client, conn.request = self, request
        request.streaming = True
        if request.body or request.chunked:
            parts = [request.head, upstream.host_line]
            if request.body:
                for chunk in request.body:
                    parts.append(b"%x\r\n%s\r\n" % (len(chunk), chunk) if request.chunked else chunk)
                request.body = None
                request.body_sent = True
                self.resume_reading(_PAUSE_BUFFER)
            if request.complete and request.chunked:
                parts.append(b"0\r\n\r\n")
            conn.write(b"".join(parts))
        else:
            conn.write(request.head + upstream.host_line)
        if self.write_paused:
            conn.pause(True)
        self.upstream_deadline = when = time.monotonic() + self.limits.upstream_timeout
        self._watch(when)

    def _answered(self, request: Request, conn: UpstreamConnection) -> None:
        request.conn = None
        reusable = (request.resp_keep_alive and request.complete and not request.too_large
                    and request.method != b"HEAD" and not conn.stray and not conn.closed and request.tunnel is None)
        if reusable:
            self.pool.put(conn)
        else:
            conn.close()  # after HEAD a stray body could follow; a body cut short leaves it out of step
        keep = request.keep_alive and not self.gateway.draining and not request.http10 and request.complete
        self._finish(request, keep)

    def upstream_gone(self, request: Request, conn: UpstreamConnection) -> None:
        """The upstream closed the connection while this request was on it."""
        if request.finished or request.conn is not conn:
            return
        if request.tunnel_open:  # the WebSocket ended on the upstream's side: end the client's too
            self._finish(request, False)
            return
        if request.resp_done:
            return
        if request.head_sent and request.resp_delimited:
            request.resp_done = True  # a body that ends when the connection does
            request.resp_keep_alive = False
            if request.chunked_out:
                self._write(b"0\r\n\r\n")
            self._answered(request, conn)
            return
        request.conn = None
        conn.close()
        if not request.head_sent:
            if not request.retried and not request.body_sent and request.upstream is not None:
                # a kept-alive connection the upstream had closed: the same request once more, on a new one
                request.retried = True
                request.streaming = False
                self._open(request, request.upstream)
                return
            self._reply(request, 502, "bad_gateway", "The upstream closed the connection early.")
            return
        request.outcome = "bad_gateway"
        self._finish(request, False)  # cut mid-body: the client must see the connection end

    def _upstream_error(self, request: Request, status: int, outcome: str, message: str) -> None:
        """The upstream failed this request (bad answer 502, timeout 504): drop the connection, then answer
        `status` if no head went to the client yet, else cut the answer short."""
        conn = request.conn
        request.conn = None
        if conn is not None:
            conn.close()
        if not request.head_sent:
            self._reply(request, status, outcome, message)
        else:
            request.outcome = outcome
            self._finish(request, False)

    # -- WebSocket tunnels ----------------------------------------------------------------------------------

    def _tunnel_in(self, request: Request, data: bytes) -> None:
        """Bytes from the client after a WebSocket handshake: to the upstream once it has switched, held before."""
        if request.finished:
            return
        request.bytes_in += len(data)
        conn = request.conn
        if request.tunnel_open and conn is not None:
            conn.write(data)
            self.upstream_deadline = time.monotonic() + self.limits.tunnel_idle_timeout
            return
        held = request.tunnel
        if held is not None:
            held.append(data)
            if len(held) > MAX_BUFFERED_CHUNKS:
                self.pause_reading(_PAUSE_BUFFER)  # the upstream has not answered the handshake yet

    def _tunnel_opened(self, request: Request, conn: UpstreamConnection, rest: bytes) -> None:
        """The upstream answered the handshake with 101: relay it, then bytes flow both ways as they come, until
        either side closes or both stay silent for `tunnel_idle_timeout`. The request is answered: it leaves the
        pool's concurrency gate (an open WebSocket holds no request slot) and is measured when the tunnel ends."""
        now = time.monotonic()
        request.tunnel_open = conn.tunnel = True
        request.tunnel_ms = (now - request.start) * 1000.0
        if request.gate is not None:
            request.gate.leave(now)
            request.gate = None
        out = conn.out
        if out:
            self._write(b"".join(out))
            out.clear()
        if rest:
            request.bytes_out += len(rest)
            self._write(rest)
        held = request.tunnel
        if held:
            conn.write(b"".join(held))
            held.clear()
        self.resume_reading(_PAUSE_BUFFER)
        self.upstream_deadline = when = now + self.limits.tunnel_idle_timeout
        self._watch(when)

    # -- the gateway's own answers ----------------------------------------------------------------------------

    def _reply(self, request: Request, status: int, outcome: str, message: str, extra: bytes = b"") -> None:
        """Answer with an error of the gateway's own, once the request body has been read (and dropped)."""
        request.status, request.outcome = status, outcome
        request.reply = (status, message, extra)
        request.body = None
        if request.complete or (request.expect_continue and not request.continued):
            self._send_reply(request)  # nothing to wait for, or the client waits to send its body: close
            return
        self.resume_reading(_PAUSE_BUFFER)  # let the rest of the body arrive, to drop it

    def _send_reply(self, request: Request) -> None:
        assert request.reply is not None
        status, message, extra = request.reply
        keep = request.keep_alive and not self.gateway.draining and request.complete and not request.too_large
        data = error_response(status, message, request.request_id, close=not keep, extra=extra)
        request.bytes_out = len(data)
        self._write(data)
        self._finish(request, keep)

    def _too_large(self, request: Request) -> None:
        """The body passed the limit: 413 unless an answer is on its way already, then close."""
        self._abort(request, 413, "too_large", "The request body is too large.")

    def _body_timeout(self, request: Request) -> None:
        self._abort(request, 408, "request_timeout", "The request body did not arrive in time.")

    def _abort(self, request: Request, status: int, outcome: str, message: str) -> None:
        """Give up on a request whose body cannot be read to its end: drop its upstream connection (a cut-off
        exchange is never reused), answer `status` unless the answer's head went out already, and close."""
        conn = request.conn
        request.conn = None
        if conn is not None:
            conn.close()
        request.outcome = outcome
        if request.head_sent:
            self._finish(request, False)
            return
        request.status = status
        data = error_response(status, message, request.request_id, close=True)
        request.bytes_out = len(data)
        self._write(data)
        self._finish(request, False)

    # -- helpers ----------------------------------------------------------------------------------------

    def _fail(self, status: int, outcome: str, message: str) -> None:
        """Stop reading; the requests before this one are answered, then this error, then the connection closes."""
        if self.closed or self.broken:
            return
        self.broken = True
        self.in_head = False
        self.head_deadline = None
        if status:
            self.error = (status, outcome, message)
        if self.transport is not None and not self.transport.is_closing():
            self.pause_reading(_PAUSE_BROKEN)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)


class _TooLarge(Exception):
    """The request line and headers passed the limit."""


class _Refused(Exception):
    """A request head the gateway will not forward: its answer, then the connection closes."""

    def __init__(self, status: int, outcome: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome
        self.message = message


async def serve(gateway: Gateway, host: str, port: int, *, reuse_port: bool = False,
                ready: Callable[[asyncio.Server], None] | None = None) -> asyncio.Server:
    """Start listening; returns the asyncio server (close it to stop)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(gateway.protocol, host, port, reuse_port=reuse_port, backlog=1024)
    if ready is not None:
        ready(server)
    return server
