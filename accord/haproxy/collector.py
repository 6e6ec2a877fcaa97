"""`accord collector`: HAProxy's request log lines, over TCP from its ring or over UDP, folded into the gateway's
rollups.

Each line (the `LOG_FORMAT` of `render.py`, behind whatever syslog header HAProxy puts) becomes one `record` in the
same `Accumulator` the Python gateway measures into, written by the same `Flusher` (batch ids, retries, the bounded
buffer), and its live tallies by the same `write_live`: governance, reports, credits and meters read rows they
cannot tell from the gateway's.

It listens on one port for both transports. TCP (`--log-transport ring`, the default of `accord haproxy run`): each
HAProxy worker's ring forwarder keeps one connection and sends RFC 6587 frames, octet-counted (`LEN SP MSG`) or,
with HAProxy's `legacy` log-proto, one line per message ending in a newline; any number of connections at once.
UDP: one syslog datagram per line.

What it cannot count it says: lines it could not parse, lines seen twice (the same HAProxy process and request
counter), TCP frames it refused (a length that is not a number or is over MAX_FRAME, a connection closed mid-frame:
that connection is dropped, the others go on), the lines HAProxy's ring dropped because it was full (HAProxy says so
in band, later, in a message "N events dropped", which is counted), and the datagrams the kernel dropped at its UDP
socket because it did not read fast enough (the `drops` column of /proc/net/udp for its port). UDP itself can lose a
datagram on a real network without anyone knowing; on loopback the kernel's drop count is the loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import signal
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connections

from accord.gateway.flusher import BUFFER_KEYS, Flusher
from accord.gateway.live import RETENTION_SECONDS, traffic_rows, worker_name, write_live
from accord.gateway.measure import Accumulator

from .render import FRONTEND, LOG_TAG, decode_value

RCVBUF = 8 * 1024 * 1024  # asked of the kernel; it grants up to net.core.rmem_max
FLUSH = 2.0  # production defaults: seconds between rollup writes
LIVE = 1.0  # ... and between live signal writes (the traffic's, per second, tier and pool)
SEEN = 200_000  # (pid, request counter) pairs remembered to recognise a line sent twice
MAX_FRAME = 64 * 1024  # the longest TCP frame taken (HAProxy sends at most its `maxlen`, render.LOG_LEN)
QUIET = 0.3  # on SIGTERM: seconds without a byte on any TCP connection before it stops reading
DRAIN = 5.0  # ... and at most this long

_LINE = re.compile(
    rb"accord1 (?P<pid>\d+) (?P<rt>\d+) (?P<ts>\d+) \"(?P<account>[^\"]*)\" \"(?P<tier>[^\"]*)\" "
    rb"\"(?P<service>[^\"]*)\" \"(?P<credential>[^\"]*)\" (?P<backend>\S+) (?P<server>\S+) (?P<status>-?\d+) "
    rb"(?P<bytes_in>\d+) (?P<bytes_out>\d+) (?P<tr_req>-?\d+) (?P<tw>-?\d+) (?P<tc>-?\d+) (?P<tr>-?\d+) "
    rb"(?P<ta>-?\d+) (?P<state>\S+) (?P<method>\S+) \"(?P<path>[^\"]*)\" \"(?P<refused>[a-z_]*)\"\s*$"
)
assert LOG_TAG == "accord1"  # the pattern above reads that format

# What HAProxy 2.6 writes into a ring, with the ring's syslog header, when it had to drop messages because the ring
# was full (src/sink.c, sink_announce_dropped): "<PRI>TIMESTAMP HOST TAG[PID]: N event(s) dropped"
_DROPPED = re.compile(rb"^<\d+>[^\n]*?\[\d+\]: (?P<n>\d{1,18}) events? dropped\s*$")

# HAProxy's own answers (no server chose): the gateway's outcome for each status
_OWN = {400: "bad_request", 401: "unauthorized", 404: "not_found", 408: "request_timeout", 413: "too_large",
        431: "headers_too_large", 503: "no_endpoint", 504: "timeout", 502: "bad_gateway", 429: "rate_limited"}


@dataclass(frozen=True)
class LogRecord:
    """One request as HAProxy logged it."""

    pid: int
    counter: int
    accepted: int  # epoch seconds
    account: str
    tier: str
    service: str
    credential: int
    pool: str
    status: int
    outcome: str
    bytes_in: int
    bytes_out: int
    latency_ms: float
    method: str
    path: str


def outcome_of(status: int, server: str, state: str) -> tuple[int, str]:
    """(status as recorded, outcome) of a logged request, in the gateway's outcome names.

    The termination state's first letter says who ended the session: `s` the server's timeout, `C` the client
    leaving (499 when nothing was answered), `S` the server aborting or refusing; `sQ` is the server queue's timeout
    (priority admission).
    """
    first = state[:1]
    if state[:2] == "sQ":  # the queue's timeout: an admission action held the request past its max_wait
        return 503, "queue_timeout"
    if first == "s":
        return (status if status > 0 else 504), "timeout"
    if status <= 0:
        return 499, "client_gone"
    if server == "<NOSRV>" and status in _OWN:
        return status, _OWN[status]
    if first == "S" and status in (502, 503):
        return status, "bad_gateway" if status == 502 else "no_endpoint"
    return status, "server_error" if status >= 500 else "client_error" if status >= 400 else "ok"


def parse(datagram: bytes) -> LogRecord | None:
    """The request in one syslog datagram, or None when it is not a line of ours (or malformed)."""
    at = datagram.find(b"accord1 ")
    if at < 0:
        return None
    m = _LINE.match(datagram, at)
    if m is None:
        return None
    g = m.groupdict()
    backend, server = g["backend"].decode(), g["server"].decode()
    status, outcome = outcome_of(int(g["status"]), server, g["state"].decode())
    if g["refused"]:  # HAProxy answered itself and said why
        outcome = g["refused"].decode()
    if server != "<NOSRV>":
        pool = server.rpartition(".")[0]
    elif backend != FRONTEND:
        pool = backend.rpartition(".")[2]
    else:
        pool = ""
    credential = g["credential"]
    ta = int(g["ta"])
    return LogRecord(
        pid=int(g["pid"]), counter=int(g["rt"]), accepted=int(g["ts"]), account=g["account"].decode(),
        tier=decode_value(g["tier"].decode()), service=g["service"].decode(),
        credential=int(credential) if credential.isdigit() else 0, pool=pool, status=status, outcome=outcome,
        bytes_in=int(g["bytes_in"]), bytes_out=int(g["bytes_out"]), latency_ms=float(max(ta, 0)),
        method=g["method"].decode(), path=g["path"].decode(),
    )


class Collector:
    """Folds log datagrams into an accumulator, counting what it could not use."""

    def __init__(self, accumulator: Accumulator, operation: Callable[[str, str, str], str] | None = None) -> None:
        self.accumulator = accumulator
        self.operation = operation  # (service, method, path) -> operation name, from the gateway's snapshot
        self.received = 0
        self.recorded = 0
        self.unparsed = 0  # lines of ours (tagged) it could not read
        self.events = 0  # HAProxy's own messages on the same log target (a proxy stopping ...): not requests
        self.duplicates = 0
        self.connections = 0  # TCP connections accepted, in all
        self.ring_dropped = 0  # lines HAProxy's ring dropped (full), as HAProxy announced them
        self.bad_frames = 0  # TCP frames refused (their connection dropped)
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.last_unparsed = b""

    def feed(self, datagram: bytes) -> None:
        self.received += 1
        record = parse(datagram)
        if record is None:
            if b"accord1 " not in datagram:
                dropped = _DROPPED.match(datagram)
                if dropped:
                    self.ring_dropped += int(dropped["n"])
                    return
                self.events += 1
                return
            self.unparsed += 1
            self.last_unparsed = datagram[:300]
            return
        key = (record.pid, record.counter)
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen[key] = None
        if len(self._seen) > SEEN:
            self._seen.popitem(last=False)
        operation = self.operation(record.service, record.method, record.path) if self.operation and \
            record.service else ""
        self.accumulator.record(record.accepted, record.account, record.service, operation, record.pool,
                                record.outcome, record.status, record.bytes_in, record.bytes_out, record.latency_ms,
                                record.tier)
        if record.credential:
            self.accumulator.use_key(record.credential, record.accepted)
        self.recorded += 1


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.collector.feed(data)


class FrameReader(asyncio.Protocol):
    """One TCP connection of HAProxy's ring forwarder: RFC 6587 frames, each message fed to the collector.

    `LEN SP MSG` (octet counting, `log-proto octet-count`) or `MSG LF` (non-transparent framing, HAProxy's `legacy`),
    told apart by each frame's first byte (a digit, or the `<` of a syslog header). Anything else, a length over
    MAX_FRAME or a line longer than that, or the connection ending mid-frame, is a bad frame: counted, and the
    connection closed (its frames cannot be told apart any more); the other connections are not touched.
    """

    def __init__(self, collector: Collector, connections: set[FrameReader], activity: list[float]) -> None:
        self.collector = collector
        self.connections = connections
        self.activity = activity  # [monotonic time of the last byte read on any connection]
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connections.add(self)
        self.collector.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.buffer and not self.closed:  # the peer went away in the middle of a frame
            self.collector.bad_frames += 1
        self.buffer.clear()
        self.closed = True

    def _bad(self) -> None:
        self.collector.bad_frames += 1
        self.closed = True
        self.buffer.clear()
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.activity[0] = time.monotonic()
        buffer = self.buffer
        buffer += data
        at, end, feed = 0, len(buffer), self.collector.feed
        while at < end:
            first = buffer[at]
            if 0x30 <= first <= 0x39:  # octet counting: LEN SP MSG
                space = buffer.find(b" ", at, min(end, at + 8))
                if space < 0:
                    if end - at >= 8 or not buffer[at:end].isdigit():
                        return self._bad()  # no length of at most 7 digits then a space
                    break  # the length is still arriving
                digits = buffer[at:space]
                if not digits.isdigit():
                    return self._bad()
                length = int(digits)
                if length > MAX_FRAME:
                    return self._bad()
                if space + 1 + length > end:
                    break  # the message is still arriving
                feed(bytes(buffer[space + 1:space + 1 + length]))
                at = space + 1 + length
            elif first == 0x3C:  # "<": a syslog header, the message ends at its newline
                newline = buffer.find(b"\n", at, min(end, at + MAX_FRAME + 1))
                if newline < 0:
                    if end - at > MAX_FRAME:
                        return self._bad()
                    break
                feed(bytes(buffer[at:newline]))
                at = newline + 1
            elif first in (0x0A, 0x0D):  # a stray line end between frames
                at += 1
            else:
                return self._bad()
        del buffer[:at]


async def serve_tcp(host: str, port: int, collector: Collector, activity: list[float]) -> tuple[asyncio.Server,
                                                                                              set[FrameReader]]:
    """The TCP listener of the collector (HAProxy's ring forwarders connect to it); its open connections."""
    loop = asyncio.get_running_loop()
    connections: set[FrameReader] = set()
    server = await loop.create_server(lambda: FrameReader(collector, connections, activity), host, port,
                                      reuse_address=True, backlog=128)
    return server, connections


def kernel_drops(port: int) -> int:
    """Datagrams the kernel dropped at the UDP socket bound to `port` (its receive buffer was full)."""
    dropped = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 12 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    dropped += int(fields[12])
    return dropped


def summary(collector: Collector, flusher: Flusher, drops: int) -> str:
    return (f"collector: {collector.received} lines received, {collector.recorded} recorded, {flusher.flushed} "
            f"written, {collector.unparsed} unparsed, {collector.events} HAProxy events (not requests), "
            f"{collector.duplicates} duplicates dropped, {flusher.dropped} "
            f"dropped (buffer full), {collector.ring_dropped} dropped by HAProxy (ring full), {drops} dropped by the "
            f"kernel (socket buffer full), {collector.bad_frames} bad frames, {collector.connections} TCP "
            f"connections")


class _OperationNames:
    """Operation names from the gateway's snapshot, reloaded when its version moves."""

    def __init__(self) -> None:
        self.snapshot: Any = None

    def load(self) -> None:
        from accord.gateway.snapshot import current_version, load_snapshot

        try:
            if self.snapshot is None or current_version() != self.snapshot.version:
                self.snapshot = load_snapshot()
        finally:
            connections.close_all()

    def __call__(self, service: str, method: str, path: str) -> str:
        snapshot = self.snapshot
        if snapshot is None:
            return ""
        for route in snapshot.routes:
            if route.name == service:
                return str(route.operation(method.encode(), path.encode()))
        return ""


async def run_collector(host: str, port: int, flush: float = FLUSH, live: float = LIVE, report: float = 60.0,
                        buffer_keys: int = BUFFER_KEYS, ready: Callable[[int], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then write everything and print the summary; 0 when all was written."""
    loop = asyncio.get_running_loop()
    accumulator = Accumulator()
    names = _OperationNames()
    snapshot_thread = ThreadPoolExecutor(1, thread_name_prefix="collector-snapshot")
    with contextlib.suppress(Exception):  # no snapshot: operations stay unnamed, counts are the same
        await loop.run_in_executor(snapshot_thread, names.load)
    collector = Collector(accumulator, names)
    flusher = Flusher(accumulator, flush, max_keys=buffer_keys)
    activity = [time.monotonic()]
    for attempt in range(20):  # port 0: the kernel picks a UDP port, which may be taken for TCP: another
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((host, port))
        bound = sock.getsockname()[1]
        try:
            server, readers = await serve_tcp(host, bound, collector, activity)
        except OSError:
            sock.close()
            if port or attempt == 19:
                snapshot_thread.shutdown(wait=False)
                raise
            continue
        break
    transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(collector), sock=sock)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"collector: listening on {host}:{bound} (UDP and TCP)", file=sys.stderr, flush=True)
    if ready is not None:
        ready(bound)
    worker = f"haproxy-collector:{worker_name()}"[:80]
    live_thread = ThreadPoolExecutor(1, thread_name_prefix="collector-live")

    async def live_writer() -> None:
        pruned = 0
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), live)
            # a line arrives when its request ends: the second before the last is complete enough
            taken = accumulator.take_live(int(time.time()) - 1)
            if taken:
                # old rows pruned by the clock of the lines (HAProxy's), once a minute, not by this host's
                newest = max(key[0] for key in taken)
                prune = newest - RETENTION_SECONDS if newest - pruned >= 60 else None
                with contextlib.suppress(Exception):  # a late live signal is worth nothing: dropped, as the gateway
                    await loop.run_in_executor(live_thread, functools.partial(
                        write_live, traffic_rows(taken, worker), [], prune, prune=("traffic",)))
                    if prune is not None:
                        pruned = newest

    async def refresher() -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 1.0)
            with contextlib.suppress(Exception):
                await loop.run_in_executor(snapshot_thread, names.load)

    async def reporter() -> None:
        last = None
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), report)
            now = (collector.received, collector.unparsed, collector.events, collector.duplicates, flusher.dropped,
                   collector.ring_dropped, collector.bad_frames, collector.connections)
            if now != last:
                print(summary(collector, flusher, kernel_drops(bound)), file=sys.stderr, flush=True)
                last = now

    tasks = [loop.create_task(flusher.run(stopping)), loop.create_task(reporter()), loop.create_task(refresher())]
    if live > 0:
        tasks.append(loop.create_task(live_writer()))
    await stopping.wait()
    server.close()  # no new connection; those open are read until they have been quiet a moment
    await asyncio.sleep(0.2)  # lines of requests that ended just before the signal are still in the sockets
    deadline = time.monotonic() + DRAIN
    while readers and time.monotonic() - activity[0] < QUIET and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    drops = kernel_drops(bound)
    transport.close()
    for reader in list(readers):
        if reader.transport is not None:
            reader.transport.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    written = await flusher.close()
    for executor in (snapshot_thread, live_thread):
        await loop.run_in_executor(executor, connections.close_all)
        executor.shutdown(wait=True)
    print(summary(collector, flusher, drops), file=sys.stderr, flush=True)
    if collector.unparsed:
        print(f"collector: last line it could not parse: {collector.last_unparsed!r}", file=sys.stderr, flush=True)
    return 0 if written else 1
