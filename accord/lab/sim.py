"""Simulated upstream services for the governance scenario: latency that grows with load past capacity.

Each simulated service is a real queue, not a formula: an M/G/c station with `capacity` servers and one FIFO
queue. A request takes a free server for a random service time (exponential, lognormal or constant, with mean
`service_ms`; `await asyncio.sleep`, so nothing burns CPU) or waits in line while all servers are busy. Below
capacity a request takes about `service_ms`; past capacity the queue grows for as long as the overload lasts
and every later request waits behind it, so a peak really hurts, and for a while after it ends too.

The servers speak HTTP/1.1 with keep-alive (asyncio protocols and httptools, like the gateway) and answer
`200 application/json` with which service and instance answered, how long the request queued and was served,
and the `X-Accord-Account` / `X-Accord-Tier` the gateway sent, if any.

    specs = [SimSpec("booking", 0, capacity=4, service_ms=20)]
    servers = await serve_sims(specs)          # on a running loop; servers[0].port is the port chosen
    ...
    with start_sims_in_thread(specs) as sims:  # or in a background thread with its own loop
        sims.ports, sims.stats(), sims.configure("booking", capacity=2)

`accord upstream-sim --service NAME=HOST:PORT:CAPACITY:SERVICE_MS ...` runs them from the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, TypeVar, cast

import httptools

DISTRIBUTIONS = ("exponential", "lognormal", "constant")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_HEADER_BYTES = 64 * 1024
_PIPELINE_PAUSE = 64  # stop reading from a client with this many requests parsed but not answered

T = TypeVar("T")


@dataclass
class SimSpec:
    """One simulated service instance.

    `capacity` servers work in parallel; each request holds one for a random time with mean `service_ms`
    (`distribution`: exponential, lognormal with shape `sigma`, or constant); `seed` makes the draws
    repeatable. `max_queue` > 0 answers 503 at once when that many requests already wait (0: the queue is
    unbounded). `error_rate` answers that fraction of served requests with 500 instead of 200. `port` 0 picks
    a free port (read it back from `SimServer.port`). `instance` names it in answers (default NAME@HOST:PORT).
    """

    name: str
    port: int
    capacity: int
    service_ms: float
    host: str = "127.0.0.1"
    distribution: str = "exponential"
    sigma: float = 0.5
    seed: int | None = None
    max_queue: int = 0
    error_rate: float = 0.0
    instance: str = ""

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"name {self.name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port!r} must be a whole number from 0 to 65535")
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int) or self.capacity < 1:
            raise ValueError(f"capacity {self.capacity!r} must be a whole number of at least 1")
        _check_service_ms(self.service_ms)
        if not self.host:
            raise ValueError("host must not be empty")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution {self.distribution!r} must be one of {', '.join(DISTRIBUTIONS)}")
        if not (isinstance(self.sigma, int | float) and math.isfinite(self.sigma) and 0 < self.sigma <= 5):
            raise ValueError(f"sigma {self.sigma!r} must be a number above 0 and at most 5")
        if isinstance(self.max_queue, bool) or not isinstance(self.max_queue, int) or self.max_queue < 0:
            raise ValueError(f"max_queue {self.max_queue!r} must be a whole number, 0 for unbounded")
        _check_error_rate(self.error_rate)


def _check_service_ms(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and 0 < value <= 3_600_000):
        raise ValueError(f"service_ms {value!r} must be a number of milliseconds above 0")


def _check_error_rate(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"error_rate {value!r} must be a fraction from 0 to 1")


def parse_service(text: str) -> SimSpec:
    """`NAME=HOST:PORT:CAPACITY:SERVICE_MS` (HOST may be `[::1]`) → a SimSpec; ValueError says what is wrong."""
    name, sep, rest = text.partition("=")
    parts = rest.rsplit(":", 3)
    if not sep or len(parts) != 4:
        raise ValueError("expected NAME=HOST:PORT:CAPACITY:SERVICE_MS, e.g. booking=127.0.0.1:9001:4:20")
    host, port, capacity, service_ms = (p.strip() for p in parts)
    name, host = name.strip(), host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError("HOST is empty")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"PORT {port!r} is not a port number (0 to 65535; 0 picks a free one)")
    if not capacity.isdigit() or int(capacity) < 1:
        raise ValueError(f"CAPACITY {capacity!r} is not a whole number of at least 1")
    try:
        ms = float(service_ms)
    except ValueError:
        raise ValueError(f"SERVICE_MS {service_ms!r} is not a number of milliseconds") from None
    return SimSpec(name, int(port), int(capacity), ms, host=host)


@dataclass
class SimStats:
    """Counters of one simulated service instance (a copy; it does not change afterwards)."""

    name: str
    instance: str
    host: str
    port: int
    capacity: int
    service_ms: float
    received: int = 0  # complete requests parsed
    requests: int = 0  # answered after service (200, or 500 by error_rate)
    errors: int = 0  # of which answered 500 by error_rate
    rejected: int = 0  # answered 503 because the queue was at max_queue
    abandoned: int = 0  # the client left while the request waited in the queue
    in_flight: int = 0  # waiting or in service now
    busy: int = 0  # servers busy now
    queued: int = 0  # waiting now
    max_in_flight: int = 0
    max_queue: int = 0
    connections: int = 0  # open now
    connections_total: int = 0
    wait_ms_total: float = 0.0  # time served requests spent in the queue
    service_ms_total: float = 0.0  # time they held a server
    uptime_s: float = 0.0

    @property
    def mean_wait_ms(self) -> float:
        return self.wait_ms_total / self.requests if self.requests else 0.0

    @property
    def mean_service_ms(self) -> float:
        return self.service_ms_total / self.requests if self.requests else 0.0

    @property
    def utilization(self) -> float:
        """The share of server time spent serving (completed requests only), 0..1."""
        if self.uptime_s <= 0:
            return 0.0
        return min(1.0, self.service_ms_total / 1000.0 / (self.capacity * self.uptime_s))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(mean_wait_ms=round(self.mean_wait_ms, 3), mean_service_ms=round(self.mean_service_ms, 3),
                    utilization=round(self.utilization, 4))
        return data

    def summary(self) -> str:
        """One line for people."""
        return (f"{self.name} {self.instance}: {self.requests} answered ({self.errors} with 500), "
                f"{self.rejected} rejected, {self.abandoned} abandoned; max in flight {self.max_in_flight}, "
                f"max queue {self.max_queue}; mean wait {self.mean_wait_ms:.1f} ms, "
                f"mean service {self.mean_service_ms:.1f} ms, utilization {self.utilization:.0%}")


class Station:
    """`capacity` servers and one FIFO queue. The capacity may change at run time (the queue moves up)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.busy = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.max_queued = 0

    @property
    def queued(self) -> int:
        return len(self.waiters)

    async def acquire(self) -> None:
        """Take a server, waiting in line behind earlier callers while none is free."""
        if self.busy < self.capacity and not self.waiters:
            self.busy += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        self.max_queued = max(self.max_queued, len(self.waiters))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # a server was handed over just as the caller gave up: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(future)
            raise

    def release(self) -> None:
        self.busy -= 1
        self.fill()

    def fill(self) -> None:
        """Hand free servers to the first in line."""
        while self.busy < self.capacity and self.waiters:
            future = self.waiters.popleft()
            if not future.done():
                self.busy += 1
                future.set_result(None)


@dataclass(eq=False)
class _Request:
    method: bytes
    path: bytes
    keep_alive: bool
    account: bytes = b""
    tier: bytes = b""
    request_id: bytes = b""


class SimServer:
    """One simulated service instance listening on a port. Create with `serve_sims` (or `start()`)."""

    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        self.capacity = spec.capacity
        self.service_ms = float(spec.service_ms)
        self.error_rate = float(spec.error_rate)
        self.station = Station(spec.capacity)
        self.rng = random.Random(spec.seed)  # service times
        self.error_rng = random.Random(None if spec.seed is None else spec.seed + 1)  # which answers are 500
        self.port = spec.port
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[_SimConnection] = set()
        self._stats = SimStats(spec.name, spec.instance, spec.host, spec.port, spec.capacity, self.service_ms)
        self._started = time.monotonic()
        self._lognormal_mu = 0.0
        self._set_lognormal()
        self._body_base: dict[str, Any] = {"service": spec.name, "instance": spec.instance}

    async def start(self) -> None:
        """Listen (on the running loop); `port` then holds the actual port."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _SimConnection(self), self.spec.host, self.spec.port,
                                               backlog=1024)
        self.port = int(self.server.sockets[0].getsockname()[1])
        self._started = time.monotonic()
        self._stats.port = self.port
        self._stats.instance = self.spec.instance or f"{self.spec.name}@{_host_port(self.spec.host, self.port)}"
        self._body_base = {"service": self.spec.name, "instance": self._stats.instance}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        return _host_port(self.spec.host, self.port)

    def stats(self) -> SimStats:
        """A copy of the counters (call it on the server's loop, or through SimThread.stats)."""
        s = self._stats
        s.busy, s.queued, s.max_queue = self.station.busy, self.station.queued, self.station.max_queued
        s.connections = len(self.connections)
        s.capacity, s.service_ms = self.capacity, self.service_ms
        s.uptime_s = time.monotonic() - self._started
        return SimStats(**asdict(s))

    def configure(self, capacity: int | None = None, service_ms: float | None = None,
                  error_rate: float | None = None) -> None:
        """Change the model at run time (a degraded or repaired instance); the queue keeps its order."""
        if capacity is not None:
            if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
                raise ValueError(f"capacity {capacity!r} must be a whole number, 0 to stall the service")
            self.capacity = self.station.capacity = capacity
            self.station.fill()
        if service_ms is not None:
            _check_service_ms(service_ms)
            self.service_ms = float(service_ms)
            self._set_lognormal()
        if error_rate is not None:
            _check_error_rate(error_rate)
            self.error_rate = float(error_rate)

    def _set_lognormal(self) -> None:
        # The mean of a lognormal is exp(mu + sigma²/2): choose mu so that it is service_ms.
        self._lognormal_mu = math.log(self.service_ms) - self.spec.sigma ** 2 / 2

    def draw_ms(self) -> float:
        """One service time in milliseconds."""
        kind = self.spec.distribution
        if kind == "exponential":
            return self.rng.expovariate(1.0 / self.service_ms)
        if kind == "lognormal":
            return self.rng.lognormvariate(self._lognormal_mu, self.spec.sigma)
        return self.service_ms

    def close(self) -> None:
        """Stop listening and drop every connection (requests waiting or in service are cancelled)."""
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.abort()

    async def wait_closed(self) -> None:
        tasks = [c.task for c in list(self.connections) if c.task is not None]
        self.close()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    async def answer(self, request: _Request, conn: _SimConnection) -> bytes:
        """Queue, serve, and build the response of one request."""
        s = self._stats
        station = self.station
        s.received += 1
        if self.spec.max_queue and station.queued >= self.spec.max_queue:
            s.rejected += 1
            return self._response(503, {"error": {"code": "queue_full", "message": "The queue is full.",
                                                  "fields": {}}, **self._body_base}, request, b"Retry-After: 1")
        s.in_flight += 1
        s.max_in_flight = max(s.max_in_flight, s.in_flight)
        start = time.monotonic()
        try:
            conn.waiting = True
            try:
                await station.acquire()
            except asyncio.CancelledError:
                s.abandoned += 1
                raise
            finally:
                conn.waiting = False
            served = time.monotonic()
            try:
                await asyncio.sleep(self.draw_ms() / 1000.0)
            finally:
                station.release()
        finally:
            s.in_flight -= 1
        done = time.monotonic()
        wait_ms, service_ms = (served - start) * 1000.0, (done - served) * 1000.0
        s.requests += 1
        s.wait_ms_total += wait_ms
        s.service_ms_total += service_ms
        status = 200
        if self.error_rate and self.error_rng.random() < self.error_rate:
            status = 500
            s.errors += 1
        body = {**self._body_base, "path": request.path.decode("latin-1"),
                "wait_ms": round(wait_ms, 3), "service_ms": round(service_ms, 3)}
        if request.account:
            body["account"] = request.account.decode("latin-1")
        if request.tier:
            body["tier"] = request.tier.decode("latin-1")
        return self._response(status, body, request)

    def _response(self, status: int, body: dict[str, Any], request: _Request, extra: bytes = b"") -> bytes:
        data = json.dumps(body).encode()
        reason = {200: b"OK", 500: b"Internal Server Error", 503: b"Service Unavailable"}.get(status, b"Status")
        lines = [b"HTTP/1.1 %d %s" % (status, reason), b"Content-Type: application/json",
                 b"Content-Length: %d" % len(data), b"X-Sim-Instance: " + self._stats.instance.encode()]
        if request.request_id:
            lines.append(b"X-Request-Id: " + request.request_id)
        if extra:
            lines.append(extra)
        if not request.keep_alive:
            lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if request.method == b"HEAD" else data)

    def connection_opened(self, conn: _SimConnection) -> None:
        self.connections.add(conn)
        self._stats.connections_total += 1


class _SimConnection(asyncio.Protocol):
    """One client connection: parse requests (httptools), answer them in order (pipelining is safe)."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: deque[_Request] = deque()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.paused = False
        self.waiting = False  # the current request is in the queue, not yet in service
        self.url = b""
        self.header_bytes = 0
        self.current: _Request | None = None

    # transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.server.connection_opened(self)
        self.task = asyncio.get_running_loop().create_task(self.run())

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, b"Bad Request")
        except httptools.HttpParserError:
            self._fail(431 if self.header_bytes > MAX_HEADER_BYTES else 400,
                       b"Request Header Fields Too Large" if self.header_bytes > MAX_HEADER_BYTES else b"Bad Request")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self.task is not None and self.waiting:
            self.task.cancel()  # the client left while its request waited: it leaves the queue
        self.wakeup.set()

    def abort(self) -> None:
        self.closed = True
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.abort()

    # parser callbacks

    def on_message_begin(self) -> None:
        self.url = b""
        self.header_bytes = 0
        self.current = _Request(b"", b"", True)

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise httptools.HttpParserError("request head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > MAX_HEADER_BYTES:
            raise httptools.HttpParserError("request head too large")
        if self.current is None:
            return
        lower = name.lower()
        if lower == b"x-accord-account":
            self.current.account = value
        elif lower == b"x-accord-tier":
            self.current.tier = value
        elif lower == b"x-request-id":
            self.current.request_id = value

    def on_headers_complete(self) -> None:
        request = self.current
        if request is None:
            return
        request.method = self.parser.get_method()
        request.path = self.url.split(b"?", 1)[0] or b"/"
        # llhttp forgets keep-alive once the message completes: read it now.
        request.keep_alive = bool(self.parser.should_keep_alive())

    def on_message_complete(self) -> None:
        if self.current is None:
            return
        self.pending.append(self.current)
        self.current = None
        self.wakeup.set()
        if len(self.pending) >= _PIPELINE_PAUSE and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    # the per-connection task

    async def run(self) -> None:
        while not self.closed:
            if not self.pending:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            request = self.pending.popleft()
            if self.paused and len(self.pending) < _PIPELINE_PAUSE // 2 and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()
            data = await self.server.answer(request, self)
            if self.closed or self.transport is None:
                return
            self.transport.write(data)
            if not request.keep_alive:
                self.closed = True
                self.transport.close()
                return

    def _fail(self, status: int, reason: bytes) -> None:
        self.closed = True
        if self.transport is not None:
            body = b'{"error": {"code": "bad_request", "message": "Malformed request.", "fields": {}}}'
            self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                                 b"Connection: close\r\n\r\n%s" % (status, reason, len(body), body))
            self.transport.close()
        self.wakeup.set()


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_sims(specs: Iterable[SimSpec]) -> list[SimServer]:
    """Start one SimServer per spec on the running loop; if one cannot listen, close the others and raise."""
    servers: list[SimServer] = []
    try:
        for spec in specs:
            server = SimServer(spec)
            await server.start()
            servers.append(server)
    except BaseException:
        for server in servers:
            await server.wait_closed()
        raise
    return servers


def new_event_loop(use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """A fresh event loop: uvloop's when asked for and installed, else asyncio's."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio works too
            pass
        else:
            return cast(asyncio.AbstractEventLoop, uvloop.new_event_loop())
    return asyncio.new_event_loop()


class LoopThread:
    """An event loop running forever in a daemon thread; submit coroutines to it from other threads."""

    def __init__(self, name: str, use_uvloop: bool = True) -> None:
        self.loop = new_event_loop(use_uvloop)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the loop and wait for its result here."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what is left on the loop, stop it and close it."""
        if self.loop.is_closed():
            return

        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.thread.is_alive():
            with contextlib.suppress(Exception):
                self.call(cancel_rest(), timeout)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
        if not self.thread.is_alive():
            self.loop.close()


class SimThread:
    """Simulated services served from a background thread with its own event loop (see start_sims_in_thread)."""

    def __init__(self, runner: LoopThread, servers: list[SimServer]) -> None:
        self.runner = runner
        self.servers = servers

    @property
    def ports(self) -> list[int]:
        """The listening ports, in the order of the specs."""
        return [s.port for s in self.servers]

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.servers]

    def server(self, name: str) -> SimServer:
        """The first server of that service name."""
        for s in self.servers:
            if s.name == name:
                return s
        raise KeyError(name)

    def stats(self) -> list[SimStats]:
        """Each server's counters, in the order of the specs (read on the servers' loop)."""

        async def read() -> list[SimStats]:
            return [s.stats() for s in self.servers]

        return self.runner.call(read())

    def configure(self, name: str, capacity: int | None = None, service_ms: float | None = None,
                  error_rate: float | None = None) -> None:
        """Change every server of that service name at run time (see SimServer.configure)."""
        targets = [s for s in self.servers if s.name == name]
        if not targets:
            raise KeyError(name)

        async def apply() -> None:
            for s in targets:
                s.configure(capacity, service_ms, error_rate)

        self.runner.call(apply())

    def stop(self, timeout: float = 10.0) -> None:
        """Close every server and end the thread. Safe to call twice."""
        if self.runner.loop.is_closed():
            return

        async def close_all() -> None:
            for s in self.servers:
                await s.wait_closed()

        if self.runner.thread.is_alive():
            with contextlib.suppress(Exception):
                self.runner.call(close_all(), timeout)
        self.runner.stop(timeout)

    def __enter__(self) -> SimThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __iter__(self) -> Iterator[SimServer]:
        return iter(self.servers)


def start_sims_in_thread(specs: Iterable[SimSpec], *, use_uvloop: bool = True, timeout: float = 10.0) -> SimThread:
    """Serve the specs from a new daemon thread with its own loop; returns once every port listens.

    Raises (after cleaning up) what `serve_sims` raised, e.g. OSError when a port is taken.
    """
    specs = list(specs)
    runner = LoopThread("accord-upstream-sim", use_uvloop)
    try:
        servers = runner.call(serve_sims(specs), timeout)
    except BaseException:
        runner.stop()
        raise
    return SimThread(runner, servers)


__all__ = [
    "DISTRIBUTIONS", "LoopThread", "SimServer", "SimSpec", "SimStats", "SimThread", "Station", "new_event_loop",
    "parse_service", "serve_sims", "start_sims_in_thread",
]
