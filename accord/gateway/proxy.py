"""The gateway's HTTP/1.1 data plane: asyncio protocols and httptools, no ORM and no framework per request.

Per client connection one task forwards requests in order (pipelining is safe); request and response bodies
stream chunk by chunk with flow control in both directions; upstream connections are kept alive and reused.
Every request that got as far as a complete head is measured exactly once, whatever its fate.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools

from .measure import Accumulator
from .snapshot import ANONYMOUS, NO_POLICY, Identity, PoolTarget, Snapshot, Upstream

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
     b"trailer", b"trailers", b"transfer-encoding", b"upgrade"}
)
# Not hop-by-hop, but the gateway sets them itself (or answers `Expect` itself).
_REPLACED = frozenset({b"x-request-id", b"host", b"x-forwarded-proto", b"expect", b"content-length"})
REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout",
           413: "Payload Too Large", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
CODES = {429: "throttled"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass
class Limits:
    """What a client may send, and how long the gateway waits."""

    max_header_bytes: int = 32 * 1024
    max_body_bytes: int = 64 * 1024 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    connect_timeout: float = 3.0
    upstream_timeout: float = 30.0
    max_connections: int = 10_000
    max_idle_upstream: int = 256  # idle kept-alive connections per upstream


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


def outcome_of(status: int) -> str:
    """The outcome of an answer the upstream gave."""
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "ok"


class BodyQueue:
    """The chunks of one request body (None ends it): a deque and at most one waiting reader.

    asyncio.Queue does the same with locks, an event and three deques, which a proxy pays on every request.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[bytes | None] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: bytes | None) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> bytes | None:
        return self._items.popleft()

    async def get(self) -> bytes | None:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


@dataclass(eq=False)
class Request:
    """One parsed request head, with a queue its body chunks arrive on (None ends it), and what became of it."""

    method: bytes
    url: bytes
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    chunked: bool
    content_length: int | None
    http10: bool = False
    expect_continue: bool = False
    body: BodyQueue = field(default_factory=BodyQueue)
    too_large: bool = False
    complete: bool = False  # the whole body has arrived
    aborted: bool = False  # the client went away before the body ended
    body_ended: bool = False  # the forwarding task has taken the end of the body off the queue
    # what the measurement needs
    bytes_in: int = 0
    bytes_out: int = 0
    status: int = 0
    outcome: str = ""
    account: str = ""
    tier: str = ""
    service: str = ""
    operation: str = ""
    pool: str = ""


class UpstreamPool:
    """Idle keep-alive connections per upstream."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.idle: dict[Upstream, deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self.opened = 0

    async def get(
        self, upstream: Upstream, fresh: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """A connection to the upstream (an idle one unless `fresh`) and whether it was reused."""
        idle = None if fresh else self.idle.get(upstream)
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(upstream.host, upstream.port), self.limits.connect_timeout
        )
        self.opened += 1
        return reader, writer, False

    def put(self, upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        idle = self.idle.setdefault(upstream, deque())
        if len(idle) >= self.limits.max_idle_upstream:
            writer.close()
            return
        idle.append((reader, writer))

    def close(self) -> None:
        for conns in self.idle.values():
            for _r, w in conns:
                w.close()
        self.idle.clear()


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

    def _tick(self) -> None:
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

    async def admit(self, priority: int, max_wait: float) -> bool:
        """Take a slot, waiting up to `max_wait` seconds behind callers of higher priority (lower number)."""
        if self.in_flight < self.capacity and not self.waiters:
            self.enter()
            return True
        if max_wait <= 0:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self.seq += 1
        heapq.heappush(self.waiters, (priority, self.seq, future))
        timer = loop.call_later(max_wait, _give_up, future)
        try:
            return await future  # True: a leaving request handed its slot over
        finally:
            timer.cancel()
            if not future.done():
                future.cancel()

    def leave(self) -> None:
        while self.waiters:
            _p, _s, future = heapq.heappop(self.waiters)
            if not future.done():
                future.set_result(True)  # the slot passes on: in_flight stays the same
                return
        self._tick()
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


class _ResponseHead:
    """Callbacks for httptools' response parser: the head, then body chunks into a queue."""

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.keep_alive = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.head_done = False
        self.delimited = False  # the body ends when the upstream closes (no length, not chunked)
        self.done = False
        self.chunks: deque[bytes] = deque()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if status < 200:  # 1xx (e.g. 103 Early Hints): not the answer; the real head follows
            self.headers = []
            return
        self.status = status
        self.head_done = True
        # llhttp forgets keep-alive once the message completes: read it now.
        self.keep_alive = self.parser.should_keep_alive()
        names = {name.lower() for name, _v in self.headers}
        self.delimited = (b"content-length" not in names and b"transfer-encoding" not in names
                          and status not in (204, 304))

    def on_body(self, body: bytes) -> None:
        if body:
            self.chunks.append(bytes(body))

    def on_message_complete(self) -> None:
        if self.head_done:
            self.done = True


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
        self._id_prefix = os.urandom(8).hex().encode()
        self._id_counter = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

    def next_request_id(self) -> bytes:
        self._id_counter += 1
        return b"%s-%x" % (self._id_prefix, self._id_counter)

    def identify(self, request: Request) -> Identity | None:
        """The caller's identity from `Authorization: Bearer` or `X-Api-Key`; None for a wrong key."""
        key = b""
        for name, value in request.headers:
            lower = name.lower()
            if lower == b"authorization" and value[:7].lower() == b"bearer ":
                key = value[7:].strip()
            elif lower == b"x-api-key":
                key = value.strip()
        if not key:
            return ANONYMOUS
        return self.snapshot.credentials.get(hashlib.sha256(key).hexdigest())

    def gate(self, service: str, pool: PoolTarget) -> PoolGate:
        gate = self.gates.get((service, pool.name))
        if gate is None:
            gate = self.gates[(service, pool.name)] = PoolGate(pool.capacity)
        # follows the snapshot; each worker of a host admits its share of the pool's capacity
        gate.capacity = max(1, -(-pool.capacity // self.workers))
        return gate

    def started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def finished(self, request: Request, start: float, wall: float) -> None:
        """Count a request exactly once."""
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()
        self.requests += 1
        outcome = request.outcome or "client_gone"
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.accumulator.record(
            wall, request.account, request.service, request.operation, request.pool, outcome,
            request.status or 499, request.bytes_in, request.bytes_out, (time.monotonic() - start) * 1000.0,
            request.tier,
        )

    def record_rejected(self, status: int, outcome: str) -> None:
        """A request that never got a complete head (400, 408, 431): counted, with no account or service."""
        self.requests += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.accumulator.record(time.time(), "", "", "", "", outcome, status, 0, 0, 0.0)

    def start_draining(self) -> None:
        """Stop taking new requests on open connections; idle keep-alive connections close now."""
        self.draining = True
        for conn in list(self.connections):
            if conn.idle and not conn.queue:
                conn._close()

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is in flight (or the timeout passes)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


class ClientConnection(asyncio.Protocol):
    """One client connection: parse requests, forward them in order, stream responses back."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.limits = gateway.limits
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = b""
        self.queue: deque[Request] = deque()
        self.wakeup: asyncio.Event = asyncio.Event()
        self.current: Request | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.in_head = False
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.broken = False  # unparseable input arrived: answer what is queued, then the error, then close
        self.error: tuple[int, str, str] | None = None
        self.idle = True  # no request is being parsed or forwarded

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
        self.task = asyncio.get_running_loop().create_task(self.serve())
        self._arm(self.limits.header_timeout, 0)  # nothing sent yet: close quietly when it stays so

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway.connections.discard(self)
        self._disarm()
        self.can_write.set()
        current = self.current
        if current is not None and not current.complete:
            current.aborted = True
            current.body.put_nowait(None)
        self.wakeup.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        if self.closed or self.broken:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "bad_request", "Protocol upgrades and CONNECT are not supported.")
        except httptools.HttpParserCallbackError as e:
            if isinstance(e.__context__, _TooLarge):
                self._fail(431, "headers_too_large", "The request line and headers are too large.")
            else:
                self._fail(400, "bad_request", "Malformed request.")
        except httptools.HttpParserError as e:
            current = self.current
            if current is not None and not current.complete:
                # the body broke off in the middle (bad chunk framing): the upstream must not see it end well
                current.aborted = True
                if not current.outcome:
                    current.status, current.outcome = 400, "bad_request"
                current.body.put_nowait(None)
                self._fail(0, "", "")
            else:
                self._fail(400, "bad_request", f"Malformed request: {str(e)[:200]}")

    # -- parser callbacks -------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.in_head = True
        self.idle = False
        self._arm(self.limits.header_timeout, 408)

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.limits.max_header_bytes:
            raise _TooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.limits.max_header_bytes:
            raise _TooLarge
        self.headers.append((bytes(name), bytes(value)))

    def on_headers_complete(self) -> None:
        self._disarm()
        self.in_head = False
        length = None
        chunked = expect = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
            elif lower == b"transfer-encoding":
                chunked = True  # llhttp only accepts chunked as the final coding
            elif lower == b"expect" and value.lower() == b"100-continue":
                expect = True
        parser = self.parser
        request = Request(
            method=parser.get_method(), url=self.url, headers=self.headers, keep_alive=parser.should_keep_alive(),
            chunked=chunked, content_length=length, http10=parser.get_http_version() == "1.0",
            expect_continue=expect,
        )
        if length is not None and length > self.limits.max_body_bytes:
            request.too_large = True
        if not chunked and not length:
            request.complete = True
            request.body.put_nowait(None)
        self.current = request
        self.gateway.started()
        self.queue.append(request)
        self.wakeup.set()

    def on_body(self, body: bytes) -> None:
        request = self.current
        if request is None or request.too_large:
            return
        request.bytes_in += len(body)
        if request.bytes_in > self.limits.max_body_bytes:
            request.too_large = True
            request.body.put_nowait(None)
            return
        request.body.put_nowait(bytes(body))
        if request.body.qsize() > 16 and self.transport is not None:
            self.transport.pause_reading()  # the upstream is slower than the client: stop reading

    def on_message_complete(self) -> None:
        request = self.current
        if request is not None and not request.complete:
            request.complete = True
            if not request.too_large:
                request.body.put_nowait(None)

    # -- helpers ----------------------------------------------------------------------------------------

    def _arm(self, seconds: float, status: int) -> None:
        self._disarm()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._timeout, status)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timeout(self, status: int) -> None:
        self.timer = None
        if status and self.in_head:
            self._fail(status, "request_timeout", "The request head did not arrive in time.")
        elif self.idle and not self.closed:
            self._close()  # an idle keep-alive connection, or one that never sent anything

    def _fail(self, status: int, outcome: str, message: str) -> None:
        """Stop reading; the serving task answers the requests before this one, then this error, and closes."""
        if self.closed or self.broken:
            return
        self.broken = True
        self.in_head = False
        self._disarm()
        if status:
            self.error = (status, outcome, message)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.wakeup.set()

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def _write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("client gone")
        self.transport.write(data)
        if not self.can_write.is_set():
            await self.can_write.wait()
            if self.transport.is_closing():
                raise ConnectionResetError("client gone")

    # -- forwarding --------------------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            while True:
                while not self.queue:
                    if self.broken:
                        if self.error is not None and self.transport is not None and not self.transport.is_closing():
                            status, outcome, message = self.error
                            self.gateway.record_rejected(status, outcome)
                            self.transport.write(error_response(status, message, close=True))
                        self._close()
                        return
                    if self.closed:
                        return
                    self.wakeup.clear()
                    await self.wakeup.wait()
                request = self.queue.popleft()
                keep = await self.forward(request)
                if not keep or (self.gateway.draining and not self.queue):
                    self._close()
                    return
                if self.transport is not None and not self.closed and not self.broken:
                    self.transport.resume_reading()
                if not self.queue and not self.closed:
                    self.idle = not self.in_head
                    if self.idle:
                        self._arm(self.limits.idle_timeout, 0)
        finally:
            # requests parsed but never forwarded (the client left): still counted, once
            while self.queue:
                request = self.queue.popleft()
                self.gateway.finished(request, time.monotonic(), time.time())

    async def _drain_body(self, request: Request) -> None:
        if not request.body_ended:
            while await request.body.get() is not None:
                if request.body.qsize() < 4 and self.transport is not None and not self.closed:
                    self.transport.resume_reading()
            request.body_ended = True

    def _request_id(self, request: Request) -> bytes:
        for name, value in request.headers:
            if name.lower() == b"x-request-id" and REQUEST_ID_RE.match(value):
                return value
        return self.gateway.next_request_id()

    async def _reply(self, request: Request, status: int, outcome: str, message: str, request_id: bytes,
                     extra: bytes = b"") -> bool:
        """Answer with an error of the gateway's own; keeps the connection when the body could be read."""
        request.status, request.outcome = status, outcome
        keep = request.keep_alive and not self.gateway.draining
        if request.expect_continue and not request.complete:
            keep = False  # the client waits to send its body: do not read it, close
        elif not request.too_large:
            await self._drain_body(request)
            keep = keep and not request.aborted and not request.too_large
        data = error_response(status, message, request_id, close=not keep, extra=extra)
        request.bytes_out = len(data)
        await self._write(data)
        return keep

    async def forward(self, request: Request) -> bool:
        """Forward one request and measure it; returns whether the client connection stays open."""
        gw = self.gateway
        start = time.monotonic()
        wall = time.time()
        try:
            return await self._forward(request)
        except ConnectionError:
            if not request.outcome:
                request.outcome = "client_gone"
            return False
        finally:
            gw.finished(request, start, wall)

    async def _forward(self, request: Request) -> bool:
        gw = self.gateway
        snapshot = gw.snapshot  # one snapshot for the whole request, even if a reload lands meanwhile
        request_id = self._request_id(request)
        if request.too_large:
            request.status, request.outcome = 413, "too_large"
            data = error_response(413, "The request body is too large.", request_id, close=True)
            request.bytes_out = len(data)
            await self._write(data)
            return False
        path = request.url.split(b"?", 1)[0]
        route = snapshot.route(path)
        if route is None:
            return await self._reply(request, 404, "not_found", "No service is routed at this path.", request_id)
        request.service = route.name
        identity = gw.identify(request)
        if identity is None or (identity is ANONYMOUS and not route.allow_anonymous):
            return await self._reply(request, 401, "unauthorized",
                                     "A valid API key is required (Authorization: Bearer <key>).", request_id)
        request.account = identity.key
        request.tier = identity.tier_name
        operation = route.operation(request.method, path) if route.operations else ""
        request.operation = operation
        policy = snapshot.policy(identity, route.name, operation) if snapshot.actions else NO_POLICY
        if policy.shed is not None:
            return await self._reply(request, 503, "shed", "The service is shedding load; retry later.",
                                     request_id, b"Retry-After: %d" % policy.shed.retry_after)
        for rule in policy.rate_limits:
            wait = self._take_token(rule.name, identity.account, rule.rps, rule.burst)
            if wait:
                return await self._reply(request, 429, "rate_limited", "Too many requests; slow down.",
                                         request_id, b"Retry-After: %d" % max(1, math.ceil(wait)))
        pool = route.primary
        if policy.pool:
            chosen = route.pools.get(policy.pool)
            if chosen is not None and chosen.endpoints:
                pool = chosen
        if pool is None or not pool.endpoints:
            return await self._reply(request, 503, "no_endpoint", "The service has no available endpoint.",
                                     request_id)
        request.pool = pool.name
        gate = gw.gate(route.name, pool)
        admission = policy.admission
        if admission is None:
            gate.enter()
        elif not await gate.admit(identity.priority, admission.max_wait):
            return await self._reply(request, 503, "queue_timeout", "The service is at capacity; retry later.",
                                     request_id, b"Retry-After: %d" % admission.retry_after)
        try:
            return await self._to_upstream(request, identity, pool, request_id)
        finally:
            gate.leave()

    def _take_token(self, name: str, account: bytes, rps: float, burst: float) -> float:
        gw = self.gateway
        now = time.monotonic()
        rate = rps / gw.workers
        burst = max(1.0, burst / gw.workers)
        bucket = gw.buckets.get((name, account))
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            bucket = gw.buckets[(name, account)] = TokenBucket(rate, burst, now)
        return bucket.take(now)

    async def _to_upstream(self, request: Request, identity: Identity, pool: PoolTarget, request_id: bytes) -> bool:
        gw = self.gateway
        head = self._upstream_head(request, identity, request_id)
        if request.expect_continue and not request.complete:
            await self._write(CONTINUE)
        for upstream in pool.order():
            try:
                reader, writer, _reused = await gw.pool.get(upstream)
            except (TimeoutError, OSError):
                continue  # connect failure: try the next endpoint
            try:
                return await self._exchange(request, upstream, head, reader, writer, request_id)
            except _RetryFresh:
                writer.close()
                try:
                    reader, writer, _ = await gw.pool.get(upstream, fresh=True)
                except (TimeoutError, OSError):
                    continue
                return await self._exchange(request, upstream, head, reader, writer, request_id, retry=False)
        return await self._reply(request, 503, "no_endpoint", "No endpoint of the service accepted the connection.",
                                 request_id)

    def _upstream_head(self, request: Request, identity: Identity, request_id: bytes) -> bytes:
        upstream_headers = []
        forwarded_for = self.peer
        for name, value in request.headers:
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in _REPLACED or lower.startswith(b"x-accord-"):
                continue
            if lower == b"x-forwarded-for":
                forwarded_for = value + b", " + self.peer
                continue
            upstream_headers.append(name + b": " + value)
        upstream_headers += [
            b"X-Request-Id: " + request_id,
            b"X-Forwarded-For: " + forwarded_for,
            b"X-Forwarded-Proto: http",
            b"X-Accord-Account: " + identity.account,
            b"X-Accord-Tier: " + identity.tier,
        ]
        if request.chunked:
            upstream_headers.append(b"Transfer-Encoding: chunked")
        elif request.content_length is not None:
            upstream_headers.append(b"Content-Length: %d" % request.content_length)
        return b"%s %s HTTP/1.1\r\n" % (request.method, request.url) + b"\r\n".join(upstream_headers)

    async def _exchange(
        self, request: Request, upstream: Upstream, head: bytes, reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter, request_id: bytes, retry: bool = True,
    ) -> bool:
        writer.write(head + b"\r\nHost: " + upstream.host_header + b"\r\n\r\n")
        body_sent = False
        try:
            while True:
                if request.body.empty():
                    try:
                        async with asyncio.timeout(self.limits.idle_timeout):
                            chunk = await request.body.get()
                    except TimeoutError:
                        writer.close()
                        request.status, request.outcome = 408, "request_timeout"
                        data = error_response(408, "The request body did not arrive in time.", request_id,
                                              close=True)
                        request.bytes_out = len(data)
                        await self._write(data)
                        return False
                else:
                    chunk = request.body.get_nowait()
                if chunk is None:
                    request.body_ended = True
                    break
                body_sent = True
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if request.chunked else chunk)
                await writer.drain()
                if self.transport is not None and request.body.qsize() < 4 and not self.closed:
                    self.transport.resume_reading()
            if request.aborted or request.too_large:
                writer.close()  # never let the upstream take a cut-off body for a whole one
                if request.too_large:
                    request.status, request.outcome = 413, "too_large"
                    data = error_response(413, "The request body is too large.", request_id, close=True)
                    request.bytes_out = len(data)
                    await self._write(data)
                    return False
                raise ConnectionResetError("the client left in the middle of its body")
            if request.chunked:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionResetError:
            raise
        except ConnectionError:
            writer.close()
            if retry and not body_sent:
                request.body.put_nowait(None)  # the (empty) body again for the retry
                request.body_ended = False
                raise _RetryFresh from None
            return await self._reply(request, 502, "bad_gateway", "The upstream closed the connection.", request_id)
        return await self._relay_response(request, upstream, reader, writer, request_id, retry and not body_sent)

    async def _relay_response(
        self, request: Request, upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        request_id: bytes, can_retry: bool,
    ) -> bool:
        state = _ResponseHead()
        parser = httptools.HttpResponseParser(state)
        state.parser = parser
        sent_head = False
        chunked_to_client = False
        ended = False  # the terminating chunk was written
        is_head = request.method == b"HEAD"
        timeout = self.limits.upstream_timeout
        try:
            while not state.done:
                try:
                    async with asyncio.timeout(timeout):
                        data = await reader.read(65536)
                except TimeoutError:
                    writer.close()
                    if sent_head:
                        request.outcome = "timeout"
                        return False
                    return await self._reply(request, 504, "timeout", "The upstream did not answer in time.",
                                             request_id)
                except ConnectionError:
                    data = b""
                if not data:
                    if not sent_head and not state.head_done and can_retry:
                        request.body.put_nowait(None)
                        request.body_ended = False
                        raise _RetryFresh  # a kept-alive connection the upstream had closed
                    if state.head_done and state.delimited:
                        state.done = True  # a body that ends when the connection does
                        state.keep_alive = False
                    if not state.done:
                        writer.close()
                        if not sent_head and not state.head_done:
                            return await self._reply(request, 502, "bad_gateway",
                                                     "The upstream closed the connection early.", request_id)
                        if not sent_head:
                            chunked_to_client = await self._send_head(state, request_id, request)
                            sent_head = True
                        while state.chunks:
                            await self._send_chunk(request, state.chunks.popleft(), chunked_to_client)
                        request.outcome = "bad_gateway"
                        return False  # cut mid-body: the client must see the connection end
                    break
                parser.feed_data(data)
                out = []  # what this read gives the client, written at once (head and a small body: one write)
                if state.head_done and not sent_head:
                    if is_head:
                        state.done = True  # the answer to HEAD has no body, whatever Content-Length says
                        state.chunks.clear()
                    head, chunked_to_client = self._head(state, request_id, request)
                    out.append(head)
                    sent_head = True
                while state.chunks:
                    chunk = state.chunks.popleft()
                    if chunk:
                        request.bytes_out += len(chunk)
                        out.append(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked_to_client else chunk)
                if state.done and chunked_to_client:
                    out.append(b"0\r\n\r\n")
                    ended = True
                if out:
                    await self._write(out[0] if len(out) == 1 else b"".join(out))
        except httptools.HttpParserError:
            writer.close()
            if sent_head:
                request.outcome = "bad_gateway"
                return False
            return await self._reply(request, 502, "bad_gateway", "The upstream sent a malformed response.",
                                     request_id)
        except BaseException:
            writer.close()
            raise
        if not sent_head:
            chunked_to_client = await self._send_head(state, request_id, request)
        while state.chunks:
            await self._send_chunk(request, state.chunks.popleft(), chunked_to_client)
        if chunked_to_client and not ended:
            await self._write(b"0\r\n\r\n")
        if state.keep_alive and state.done and not is_head:  # after HEAD a stray body could follow: close
            self.gateway.pool.put(upstream, reader, writer)
        else:
            writer.close()
        return request.keep_alive and not self.gateway.draining and not request.http10

    async def _send_chunk(self, request: Request, chunk: bytes, chunked: bool) -> None:
        if not chunk:
            return  # an empty chunk would end a chunked body
        request.bytes_out += len(chunk)
        await self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)

    async def _send_head(self, state: _ResponseHead, request_id: bytes, request: Request) -> bool:
        head, chunked = self._head(state, request_id, request)
        await self._write(head)
        return chunked

    def _head(self, state: _ResponseHead, request_id: bytes, request: Request) -> tuple[bytes, bool]:
        """The response head for the client, and whether the body goes to it chunked."""
        status = state.status
        request.status, request.outcome = status, outcome_of(status)
        lines = [b"HTTP/1.1 %d %s" % (status, REASONS.get(status, "").encode() or b"Status")]
        has_length = False
        for name, value in state.headers:
            lower = name.lower()
            if lower in HOP_BY_HOP or lower == b"x-request-id":
                continue
            if lower == b"content-length":
                has_length = True
            lines.append(name + b": " + value)
        no_body = request.method == b"HEAD" or status in (204, 304)
        chunked = not has_length and not no_body and not request.http10
        if chunked:
            lines.append(b"Transfer-Encoding: chunked")
        lines.append(b"X-Request-Id: " + request_id)
        close = not request.keep_alive or self.gateway.draining or (
            request.http10 and not has_length and not no_body)
        if close:
            lines.append(b"Connection: close")
            request.keep_alive = False
        return b"\r\n".join(lines) + b"\r\n\r\n", chunked


class _RetryFresh(Exception):
    """A reused upstream connection turned out closed before anything was exchanged: retry on a new one."""


class _TooLarge(Exception):
    """The request line and headers passed the limit."""


async def serve(gateway: Gateway, host: str, port: int, *, reuse_port: bool = False,
                ready: Callable[[asyncio.Server], None] | None = None) -> asyncio.Server:
    """Start listening; returns the asyncio server (close it to stop)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(gateway.protocol, host, port, reuse_port=reuse_port, backlog=1024)
    if ready is not None:
        ready(server)
    return server
