"""The gateway's HTTP/1.1 data plane: asyncio protocols and httptools, no ORM and no framework per request.

Per client connection one task forwards requests in order (pipelining is safe); request and response bodies
stream chunk by chunk with flow control in both directions; upstream connections are kept alive and reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools

from .snapshot import ANONYMOUS, Identity, Snapshot, Upstream

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
     b"trailer", b"trailers", b"transfer-encoding", b"upgrade"}
)
REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout",
           413: "Payload Too Large", 431: "Request Header Fields Too Large", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


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


def error_response(status: int, message: str, request_id: bytes = b"", close: bool = False) -> bytes:
    body = json.dumps({"error": {"code": REASONS.get(status, "error").lower().replace(" ", "_"), "message": message,
                                 "fields": {}}}).encode()
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}".encode(), b"Content-Type: application/json",
            b"Content-Length: " + str(len(body)).encode()]
    if request_id:
        head.append(b"X-Request-Id: " + request_id)
    if close:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@dataclass
class Request:
    """One parsed request head, with a queue its body chunks arrive on (None ends it)."""

    method: bytes
    url: bytes
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    chunked: bool
    content_length: int | None
    body: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    too_large: bool = False


class UpstreamPool:
    """Idle keep-alive connections per upstream."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.idle: dict[Upstream, deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

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
        return reader, writer, False

    def put(self, upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.idle.setdefault(upstream, deque()).append((reader, writer))

    def close(self) -> None:
        for conns in self.idle.values():
            for _r, w in conns:
                w.close()
        self.idle.clear()


class _ResponseHead:
    """Callbacks for httptools' response parser: the head, then body chunks into a queue."""

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.keep_alive = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.done = False
        self.chunks: deque[bytes] = deque()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        # llhttp forgets keep-alive once the message completes: read it now.
        self.keep_alive = bool(self.parser and self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        self.chunks.append(bytes(body))

    def on_message_complete(self) -> None:
        self.done = True


class Gateway:
    """Shared state of one gateway process: the snapshot, upstream connections, counters."""

    def __init__(self, snapshot: Snapshot, limits: Limits | None = None) -> None:
        self.snapshot = snapshot
        self.limits = limits or Limits()
        self.pool = UpstreamPool(self.limits)
        self.connections: set[ClientConnection] = set()
        self.requests = 0

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

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


class ClientConnection(asyncio.Protocol):
    """One client connection: parse requests, forward them in order, stream responses back."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.limits = gateway.limits
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = b""
        self.queue: asyncio.Queue[Request | None] = asyncio.Queue()
        self.current: Request | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    # -- transport callbacks --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        if len(self.gateway.connections) >= self.limits.max_connections:
            transport.write(error_response(503, "The gateway is at its connection limit.", close=True))
            transport.close()
            return
        self.gateway.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        self.task = asyncio.get_running_loop().create_task(self.serve())
        self._arm(self.limits.header_timeout, 408)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway.connections.discard(self)
        self._disarm()
        self.can_write.set()
        if self.current is not None:
            self.current.body.put_nowait(None)
        self.queue.put_nowait(None)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Protocol upgrades are not supported.")
        except httptools.HttpParserError as e:
            if self.current is None or not self.current.too_large:
                self._fail(400, f"Malformed request: {e}")

    # -- parser callbacks -------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self._arm(self.limits.header_timeout, 408)

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.limits.max_header_bytes:
            self._fail(431, "The request line and headers are too large.")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.limits.max_header_bytes:
            self._fail(431, "The request line and headers are too large.")
            return
        self.headers.append((bytes(name), bytes(value)))

    def on_headers_complete(self) -> None:
        self._disarm()
        length = None
        chunked = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        request = Request(
            method=self.parser.get_method(), url=self.url, headers=self.headers,
            keep_alive=self.parser.should_keep_alive(), chunked=chunked, content_length=length,
        )
        if length is not None and length > self.limits.max_body_bytes:
            request.too_large = True
        self.current = request
        self.queue.put_nowait(request)

    def on_body(self, body: bytes) -> None:
        request = self.current
        if request is None or request.too_large:
            return
        request.body.put_nowait(bytes(body))
        if request.body.qsize() > 16 and self.transport is not None:
            self.transport.pause_reading()  # the upstream is slower than the client: stop reading

    def on_message_complete(self) -> None:
        if self.current is not None:
            self.current.body.put_nowait(None)

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
        if status:
            self._fail(status, "The request head did not arrive in time.")
        elif self.transport is not None:
            self.closed = True
            self.transport.close()  # an idle keep-alive connection

    def _fail(self, status: int, message: str) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(error_response(status, message, close=True))
            self.transport.close()
        self.closed = True

    async def _write(self, data: bytes) -> None:
        if self.transport is None or self.closed:
            raise ConnectionResetError("client gone")
        self.transport.write(data)
        if not self.can_write.is_set():
            await self.can_write.wait()

    # -- forwarding --------------------------------------------------------------------------------------

    async def serve(self) -> None:
        while True:
            request = await self.queue.get()
            if request is None or self.closed:
                return
            try:
                keep = await self.forward(request)
            except (ConnectionError, asyncio.CancelledError):
                keep = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()
            if not keep:
                if self.transport is not None:
                    self.closed = True
                    self.transport.close()
                return
            if self.queue.empty() and not self.closed:
                self._arm(self.limits.idle_timeout, 0)

    async def _drain_body(self, request: Request) -> None:
        while await request.body.get() is not None:
            pass

    def _request_id(self, request: Request) -> bytes:
        for name, value in request.headers:
            if name.lower() == b"x-request-id" and REQUEST_ID_RE.match(value):
                return value
        return uuid.uuid4().hex.encode()

    async def forward(self, request: Request) -> bool:
        """Forward one request; returns whether the client connection stays open."""
        gw = self.gateway
        gw.requests += 1
        request_id = self._request_id(request)
        if request.too_large:
            await self._write(error_response(413, "The request body is too large.", request_id, close=True))
            return False
        path = request.url.split(b"?", 1)[0]
        route = gw.snapshot.route(path)
        if route is None:
            await self._drain_body(request)
            await self._write(error_response(404, "No service is routed at this path.", request_id))
            return request.keep_alive
        identity = gw.identify(request)
        if identity is None or (identity is ANONYMOUS and not route.allow_anonymous):
            await self._drain_body(request)
            await self._write(error_response(401, "A valid API key is required (Authorization: Bearer <key>).",
                                             request_id))
            return request.keep_alive
        pool = route.primary
        targets = pool.order() if pool else []
        if not targets:
            await self._drain_body(request)
            await self._write(error_response(503, "The service has no available endpoint.", request_id))
            return request.keep_alive
        head = self._upstream_head(request, identity, request_id)
        for upstream in targets:
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
        await self._drain_body(request)
        await self._write(error_response(503, "No endpoint of the service accepted the connection.", request_id))
        return request.keep_alive

    def _upstream_head(self, request: Request, identity: Identity, request_id: bytes) -> bytes:
        upstream_headers = []
        forwarded_for = self.peer
        for name, value in request.headers:
            lower = name.lower()
            if lower in HOP_BY_HOP or lower.startswith(b"x-accord-") or lower in (b"x-request-id", b"host"):
                continue
            if lower == b"x-forwarded-for":
                forwarded_for = value + b", " + self.peer
                continue
            if lower == b"x-forwarded-proto":
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
        return b"%s %s HTTP/1.1\r\n" % (request.method, request.url) + b"\r\n".join(upstream_headers)

    async def _exchange(
        self, request: Request, upstream: Upstream, head: bytes, reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter, request_id: bytes, retry: bool = True,
    ) -> bool:
        writer.write(head + b"\r\nHost: " + upstream.host_header + b"\r\n\r\n")
        body_sent = False
        while retry:  # a retry only happens when there was no body to send
            chunk = await request.body.get()
            if chunk is None:
                break
            body_sent = True
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if request.chunked else chunk)
            await writer.drain()
            if self.transport is not None and request.body.qsize() < 4:
                self.transport.resume_reading()
        if request.chunked:
            writer.write(b"0\r\n\r\n")
        try:
            await writer.drain()
        except ConnectionError:
            if retry and not body_sent:
                raise _RetryFresh from None
            await self._write(error_response(502, "The upstream closed the connection.", request_id))
            return False
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
        timeout = self.limits.upstream_timeout
        try:
            while not state.done:
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except TimeoutError:
                    writer.close()
                    if sent_head:
                        return False
                    await self._write(error_response(504, "The upstream did not answer in time.", request_id))
                    return request.keep_alive
                if not data:
                    if not sent_head and not state.head_done and can_retry:
                        raise _RetryFresh  # a kept-alive connection the upstream had closed
                    with contextlib.suppress(httptools.HttpParserError):
                        parser.feed_data(b"")  # lets a close-delimited body finish
                    if not state.done:
                        writer.close()
                        if not sent_head:
                            await self._write(error_response(502, "The upstream closed the connection early.",
                                                             request_id))
                            return request.keep_alive
                        return False  # cut mid-body: the client must see the connection end
                    break
                parser.feed_data(data)
                if state.head_done and not sent_head:
                    chunked_to_client = await self._send_head(parser, state, request_id, request)
                    sent_head = True
                while state.chunks:
                    chunk = state.chunks.popleft()
                    await self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked_to_client else chunk)
        except httptools.HttpParserError:
            writer.close()
            if sent_head:
                return False
            await self._write(error_response(502, "The upstream sent a malformed response.", request_id))
            return request.keep_alive
        if not sent_head:
            chunked_to_client = await self._send_head(parser, state, request_id, request)
        while state.chunks:
            chunk = state.chunks.popleft()
            await self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked_to_client else chunk)
        if chunked_to_client:
            await self._write(b"0\r\n\r\n")
        if state.keep_alive and state.done:
            self.gateway.pool.put(upstream, reader, writer)
        else:
            writer.close()
        return request.keep_alive

    async def _send_head(self, parser: httptools.HttpResponseParser, state: _ResponseHead, request_id: bytes,
                         request: Request) -> bool:
        status = parser.get_status_code()
        lines = [b"HTTP/1.1 %d %s" % (status, REASONS.get(status, "").encode() or b"Status")]
        has_length = False
        for name, value in state.headers:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower == b"content-length":
                has_length = True
            lines.append(name + b": " + value)
        no_body = request.method == b"HEAD" or status in (204, 304) or 100 <= status < 200
        chunked = not has_length and not no_body
        if chunked:
            lines.append(b"Transfer-Encoding: chunked")
        lines.append(b"X-Request-Id: " + request_id)
        if not request.keep_alive:
            lines.append(b"Connection: close")
        await self._write(b"\r\n".join(lines) + b"\r\n\r\n")
        return chunked


class _RetryFresh(Exception):
    """A reused upstream connection turned out closed before anything was exchanged: retry on a new one."""


async def serve(gateway: Gateway, host: str, port: int, *, reuse_port: bool = False,
                ready: Callable[[asyncio.Server], None] | None = None) -> asyncio.Server:
    """Start listening; returns the asyncio server (close it to stop)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(gateway.protocol, host, port, reuse_port=reuse_port, backlog=1024)
    if ready is not None:
        ready(server)
    return server
