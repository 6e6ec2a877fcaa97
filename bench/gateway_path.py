#!/usr/bin/env python3
"""The gateway's Python cost per proxied request, without sockets, beside the parsing floor.

    python bench/gateway_path.py [--requests 350000] [--profile]

A `ClientConnection` and an `UpstreamConnection` run on in-memory transports: each iteration feeds one request
(GET with an API key, as wrk sends in bench/gateway.py) to the client side and the upstream's 200 answer to
the upstream side, so everything the gateway does for a request runs (parse, identify, route, build the
upstream head, take a kept-alive connection, relay and rewrite the answer, measure), but no system call. The
reference in the same run: the same bytes through two bare httptools parsers whose callbacks only collect the
headers, the least any httptools-based proxy pays. Seven batches each, medians and minima shown.
`--profile` prints cProfile's top entries for the gateway side (cProfile roughly doubles the times).
This is the part of the gateway's CPU per request that is its own Python; bench/gateway.py measures the whole.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "accord.settings")

import django  # noqa: E402

django.setup()

import httptools  # noqa: E402

from accord.gateway import dataplane, proxy  # noqa: E402
from accord.gateway.snapshot import Identity, PoolTarget, Route, Snapshot, Upstream  # noqa: E402

KEY = b"acc_bench-key-0123456789abcdefghij"
REQUEST = b"GET /bookings/1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer " + KEY + b"\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 05:00:00 GMT\r\n"
            b"Content-Type: application/json\r\nContent-Length: 34\r\nConnection: keep-alive\r\n\r\n"
            b'{"ok": true, "service": "booking"}')
BATCHES = 7


class MemoryTransport:
    """What the protocols call on a transport; writes are kept until cleared."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        raise AssertionError("the gateway closed a connection it should have kept")


def gateway_side(n: int, plane: Any = proxy) -> list[float]:
    """µs per request through the gateway's protocols (proxy.py, or its compiled build), per batch."""
    upstream = Upstream("127.0.0.1", 9, b"127.0.0.1:9")
    pool = PoolTarget("primary", "primary", 1000, (upstream,))
    snapshot = Snapshot((Route("booking", b"/bookings", False, {"primary": pool}, pool),),
                        {hashlib.sha256(KEY).hexdigest(): Identity(b"GLOBEX", b"gold", 2)})
    times: list[float] = []

    async def run() -> None:
        gateway = plane.Gateway(snapshot)
        client, client_t = plane.ClientConnection(gateway), MemoryTransport()
        client.connection_made(client_t)  # type: ignore[arg-type]
        conn, conn_t = plane.UpstreamConnection(upstream), MemoryTransport()
        conn.connection_made(conn_t)  # type: ignore[arg-type]
        gateway.pool.idle[upstream.address] = [conn]
        for _ in range(200):  # warm up, and check that it proxies
            client.data_received(REQUEST)
            conn.data_received(RESPONSE)
        assert conn_t.out[-1].startswith(b"GET /bookings/1 HTTP/1.1\r\n") and b"X-Accord-Account: GLOBEX" in conn_t.out[-1]
        assert client_t.out[-1].startswith(b"HTTP/1.1 200 OK\r\n") and client_t.out[-1].endswith(RESPONSE[-34:])
        per_batch = n // BATCHES
        for _ in range(BATCHES):
            client_t.out.clear()
            conn_t.out.clear()
            start = time.perf_counter()
            for _ in range(per_batch):
                client.data_received(REQUEST)
                conn.data_received(RESPONSE)
            times.append((time.perf_counter() - start) / per_batch * 1e6)
            assert len(client_t.out) == len(conn_t.out) == per_batch
        assert gateway.accumulator.recorded == 200 + per_batch * BATCHES

    asyncio.run(run())
    return times


class Collect:
    """httptools callbacks that keep the url and headers, and nothing else."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""

    def on_message_begin(self) -> None:
        self.headers = []
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        pass


def parsing_floor(n: int) -> list[float]:
    """µs per request for parsing the same request and response with bare httptools parsers, per batch."""
    request_parser = httptools.HttpRequestParser(Collect())
    response_parser = httptools.HttpResponseParser(Collect())
    times: list[float] = []
    per_batch = n // BATCHES
    for _ in range(BATCHES):
        start = time.perf_counter()
        for _ in range(per_batch):
            request_parser.feed_data(REQUEST)
            response_parser.feed_data(RESPONSE)
        times.append((time.perf_counter() - start) / per_batch * 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=350_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(gateway_side, args.requests // 5)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return
    sides: list[tuple[str, Callable[[int], list[float]]]] = [("gateway, Python", gateway_side)]
    compiled = dataplane.choose("auto")
    if compiled.compiled:
        sides.append(("gateway, compiled", partial(gateway_side, plane=compiled.module)))
    else:
        print(f"(no compiled data plane: {compiled.reason})", flush=True)
    sides.append(("httptools floor", parsing_floor))
    results = {}
    for name, fn in sides:
        times = fn(args.requests)
        results[name] = times
        print(f"{name:18} median {statistics.median(times):6.2f} µs/request  min {min(times):6.2f}  "
              f"({len(times)} batches of {args.requests // BATCHES:,})", flush=True)
    floor = statistics.median(results["httptools floor"])
    for name, times in results.items():
        if name != "httptools floor":
            print(f"{name} / parsing floor: {statistics.median(times) / floor:.1f}x; "
                  f"above the floor: {statistics.median(times) - floor:.2f} µs")
    if "gateway, compiled" in results:
        python, machine = (statistics.median(results[k]) - floor for k in ("gateway, Python", "gateway, compiled"))
        print(f"compiled / Python, above the floor: {machine / python:.2f}")


if __name__ == "__main__":
    main()
