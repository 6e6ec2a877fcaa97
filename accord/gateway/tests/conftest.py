"""A real upstream (threaded http.server) and a real gateway (its own event loop in a thread), on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from accord.gateway import dataplane
from accord.gateway.limits import Limits
from accord.gateway.proxy import Gateway
from accord.gateway.snapshot import Snapshot


class EchoHandler(BaseHTTPRequestHandler):
    """Answers with what it received: method, path, headers, body length and hash."""

    protocol_version = "HTTP/1.1"
    server: EchoServer

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._body()
        with self.server.lock:
            self.server.connections.add(self.client_address)
            self.server.count += 1
            self.server.order.append(self.path)
        if self.path.startswith("/bookings/hold"):
            self.server.holding.set()
            self.server.release.wait(30)
        if self.path.startswith("/bookings/slow"):
            import time

            time.sleep(float(self.path.rsplit("=", 1)[1]))
        if self.path.startswith("/bookings/big"):
            size = int(self.path.rsplit("=", 1)[1])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"x" * 65536
            sent = 0
            while sent < size:
                part = block[: min(len(block), size - sent)]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                sent += len(part)
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/bookings/empty"):
            self.send_response(204)
            self.end_headers()
            return
        if self.path.startswith("/bookings/cut"):  # a 200 whose body breaks off: 10 of 1000 bytes, then close
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path.startswith("/bookings/early"):  # an interim 103 Early Hints before the answer
            self.send_response_only(103)
            self.send_header("Link", "</style.css>; rel=preload")
            self.end_headers()
        payload = json.dumps({
            "server": self.server.name, "method": self.command, "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_length": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
        }).encode()
        # /bookings/status=503: answers with that status (and the same body)
        self.send_response(int(self.path.rsplit("=", 1)[1]) if self.path.startswith("/bookings/status=") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def do_HEAD(self) -> None:
        with self.server.lock:
            self.server.connections.add(self.client_address)
            self.server.count += 1
            self.server.order.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1234")  # what a GET would carry; a HEAD answer has no body
        self.end_headers()


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), EchoHandler)
        self.name = name
        self.count = 0
        self.connections: set[Any] = set()
        self.order: list[str] = []
        self.lock = threading.Lock()
        self.holding = threading.Event()  # a /bookings/hold request has arrived
        self.release = threading.Event()  # lets /bookings/hold requests answer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def upstreams() -> Iterator[list[EchoServer]]:
    servers = [EchoServer("a"), EchoServer("b")]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    yield servers
    for s in servers:
        s.release.set()
        s.shutdown()
        s.server_close()


@dataclass
class RunningGateway:
    """A gateway serving on a loopback port from its own thread."""

    gateway: Gateway
    port: int
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    server: Any = field(default=None)

    def set_snapshot(self, snapshot: Snapshot) -> None:
        self.loop.call_soon_threadsafe(setattr, self.gateway, "snapshot", snapshot)


def start_gateway(snapshot: Snapshot, limits: Limits | None = None) -> RunningGateway:
    loop = asyncio.new_event_loop()
    plane = dataplane.choose().module  # ACCORD_DATAPLANE: dev.py runs these tests on both builds
    gateway = plane.Gateway(snapshot, limits)
    started = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            holder["server"] = await plane.serve(gateway, "127.0.0.1", 0)
            started.set()

        loop.run_until_complete(main())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "gateway did not start"
    server = holder["server"]
    return RunningGateway(gateway, server.sockets[0].getsockname()[1], loop, thread, server)


def stop_gateway(running: RunningGateway) -> None:
    async def shutdown() -> None:
        running.server.close()
        for conn in list(running.gateway.connections):
            conn._close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        running.gateway.pool.close()
        await asyncio.sleep(0)

    asyncio.run_coroutine_threadsafe(shutdown(), running.loop).result(10)
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join(10)
    running.loop.close()


def on_loop(running: RunningGateway, fn: Any) -> Any:
    """Run fn() on the gateway's event loop and return its result (reads state without racing it)."""

    async def call() -> Any:
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), running.loop).result(10)


def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll a condition about state (not about time) until it holds; fail after a generous timeout."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes, read until the server closes or the timeout passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
        except ConnectionResetError:
            # a server that refuses a request it is still receiving (70 KB of garbage) answers and closes with the
            # rest unread, and the kernel then resets the connection; the answer may or may not have arrived first
            pass
        return b"".join(chunks)
