#!/usr/bin/env python3
"""Benchmark WebSockets through the gateway beside nginx: the same echo upstream, the same clients, three paths.

    python bench/websocket.py [--connections 50] [--seconds 5] [--rate 1000] [--rounds 3]

1. An upstream: a `websockets` echo server in a process of its own.
2. Direct: the clients straight at the upstream (the floor).
3. nginx as a reverse proxy for WebSockets (proxy_pass, `Upgrade`/`Connection` passed on), one worker.
4. `accord gateway`, one worker, the data plane compiled (as a default install runs it), identifying each
   handshake by API key and tunnelling it once the upstream answers 101; measured into rollups (SQLite).

Per path and round: `--connections` WebSockets opened at once (the handshake's p50 and p99), then two runs over
them: *throughput*, each connection sending a 64-byte message and waiting for its echo, as fast as it can, for
`--seconds` (messages/s); *latency*, the same connections sending `--rate` messages a second in all, spread
evenly, for `--seconds` (the echo's p50 and p99). The paths run in turn, every other round in reverse order, and
the figures are the medians of `--rounds` rounds. The clients are Python (the `websockets` library on uvloop) in
a process of their own: on two cores they, the upstream and the proxy share the machine, so the throughput ratio
says what each proxy costs beside the rest, not its own ceiling. After the run the gateway is stopped with SIGTERM
and its rollups are compared with the WebSockets the clients opened through it (each counted once, when it
closed). nginx is installed with apt-get when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gateway import ensure_tools, free_port, seed_booking, wait_for_port  # noqa: E402  (bench/gateway.py)

NGINX = """worker_processes 1;
daemon off;
error_log {tmp}/ws-nginx.log warn;
pid {tmp}/ws-nginx.pid;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/ws-body; proxy_temp_path {tmp}/ws-proxy; fastcgi_temp_path {tmp}/ws-fastcgi;
    uwsgi_temp_path {tmp}/ws-uwsgi; scgi_temp_path {tmp}/ws-scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{proxy};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""
PAYLOAD = b"x" * 64


def echo_server(port: int) -> None:
    """The upstream: echo every message (runs in its own process)."""
    import uvloop
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", port, compression=None, max_queue=None):
            await asyncio.Future()

    uvloop.run(main())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _open(url: str, connections: int, headers: dict[str, str]) -> tuple[list[Any], list[float]]:
    from websockets.asyncio.client import connect

    async def one() -> tuple[Any, float]:
        started = time.perf_counter()
        ws = await connect(url, additional_headers=headers, compression=None, open_timeout=30, ping_interval=None,
                           max_queue=None)
        return ws, (time.perf_counter() - started) * 1000

    opened = await asyncio.gather(*(one() for _ in range(connections)))
    return [ws for ws, _ in opened], [ms for _, ms in opened]


async def _throughput(sockets: list[Any], seconds: float) -> float:
    stop = time.perf_counter() + seconds
    counts = [0] * len(sockets)

    async def loop(i: int, ws: Any) -> None:
        while time.perf_counter() < stop:
            await ws.send(PAYLOAD)
            await ws.recv()
            counts[i] += 1

    await asyncio.gather(*(loop(i, ws) for i, ws in enumerate(sockets)))
    return sum(counts) / seconds


async def _latency(sockets: list[Any], seconds: float, rate: float) -> list[float]:
    """Each connection sends at rate/len(sockets), staggered; the echo's round trip of every message, in ms."""
    per = rate / len(sockets)
    samples: list[float] = []
    start = time.perf_counter() + 0.05

    async def loop(i: int, ws: Any) -> None:
        n = 0
        t0 = start + i / rate
        while True:
            due = t0 + n / per
            if due - start >= seconds:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            await ws.send(PAYLOAD)
            await ws.recv()
            samples.append((time.perf_counter() - sent) * 1000)
            n += 1

    await asyncio.gather(*(loop(i, ws) for i, ws in enumerate(sockets)))
    return samples


def client(url: str, connections: int, seconds: float, rate: float, headers: dict[str, str]) -> dict[str, float]:
    """One round on one path (runs in its own process, printing JSON)."""
    import uvloop

    async def main() -> dict[str, float]:
        sockets, handshakes = await _open(url, connections, headers)
        rps = await _throughput(sockets, seconds)
        rtts = await _latency(sockets, seconds, rate)
        await asyncio.gather(*(ws.close() for ws in sockets))
        return {"handshake_p50": pct(handshakes, 0.5), "handshake_p99": pct(handshakes, 0.99), "msgs": rps,
                "p50": pct(rtts, 0.5), "p99": pct(rtts, 0.99), "sent": len(rtts)}

    return uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="messages/s in all, for the latency runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--echo", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        echo_server(args.echo)
        return
    if args.client:
        url, headers = json.loads(args.client)
        print(json.dumps(client(url, args.connections, args.seconds, args.rate, headers)))
        return
    ensure_tools()
    tmp = tempfile.mkdtemp(prefix="accord-ws-bench-")
    upstream, proxy, gw_port = free_port(), free_port(), free_port()
    accord = str(Path(sys.executable).with_name("accord"))
    if subprocess.call([accord, "gateway-compile", "--if-stale"]) != 0:
        raise SystemExit("the data plane did not compile (see above)")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["upstream"] = subprocess.Popen([sys.executable, __file__, "--echo", str(upstream)])
        wait_for_port(upstream, procs["upstream"])
        conf = Path(tmp, "ws-nginx.conf")
        conf.write_text(NGINX.format(tmp=tmp, proxy=proxy, upstream=upstream))
        procs["nginx"] = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf), "-p", tmp])
        wait_for_port(proxy, procs["nginx"])
        env, credential, key = seed_booking(tmp, upstream, service="echo", base_path="/ws")
        from accord.gateway.models import Rollup
        procs["gateway"] = subprocess.Popen([accord, "gateway", "--listen", f"127.0.0.1:{gw_port}", "--workers", "1",
                                             "--flush", "2"], env={**env, "ACCORD_DATAPLANE": "compiled"},
                                            stdout=subprocess.DEVNULL)
        wait_for_port(gw_port, procs["gateway"])
        paths = [("direct", f"ws://127.0.0.1:{upstream}/ws/echo", {}),
                 ("nginx", f"ws://127.0.0.1:{proxy}/ws/echo", {}),
                 ("gateway", f"ws://127.0.0.1:{gw_port}/ws/echo", {"Authorization": f"Bearer {key}"})]
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _u, _h in paths}
        opened_through_gateway = 0
        for n in range(args.rounds):
            for name, url, headers in (paths if n % 2 == 0 else paths[::-1]):
                out = subprocess.run([sys.executable, __file__, "--client", json.dumps([url, headers]),
                                      "--connections", str(args.connections), "--seconds", str(args.seconds),
                                      "--rate", str(args.rate)], capture_output=True, text=True, check=True)
                r = json.loads(out.stdout)
                rounds[name].append(r)
                if name == "gateway":
                    opened_through_gateway += args.connections
                print(f"round {n + 1} {name:8} handshake p50 {r['handshake_p50']:.2f} ms p99 {r['handshake_p99']:.2f}"
                      f" ms | {r['msgs']:>8.0f} msg/s | at {args.rate:.0f}/s: p50 {r['p50']:.3f} ms p99 "
                      f"{r['p99']:.3f} ms", flush=True)
        procs["gateway"].send_signal(signal.SIGTERM)
        procs["gateway"].wait(60)
        counted = sum(Rollup.objects.per_account_minutes().filter(service="echo", outcome="ok")
                      .values_list("count", flat=True))
        credential.refresh_from_db()
    finally:
        for name, proc in procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in rounds.items()}
    print(f"\nmedians of {args.rounds} rounds, {args.connections} connections, {args.seconds:g} s runs:")
    print("| path | handshake p50 / p99, ms | echo messages/s (closed loop) | echo at "
          f"{args.rate:.0f}/s: p50 / p99, ms |")
    print("|---|---:|---:|---:|")
    for name, r in med.items():
        print(f"| {name} | {r['handshake_p50']:.2f} / {r['handshake_p99']:.2f} | {r['msgs']:,.0f} | "
              f"{r['p50']:.3f} / {r['p99']:.3f} |")
    ratio = [g["msgs"] / x["msgs"] for g, x in zip(rounds["gateway"], rounds["nginx"], strict=True)]
    print(f"gateway / nginx messages/s: median {statistics.median(ratio):.3f} (per round "
          f"{', '.join(f'{x:.3f}' for x in ratio)})")
    print(f"p50 added to the echo at {args.rate:.0f}/s: nginx {med['nginx']['p50'] - med['direct']['p50']:.3f} ms, "
          f"gateway {med['gateway']['p50'] - med['direct']['p50']:.3f} ms")
    print(f"gateway rollups: {counted} WebSockets counted, {opened_through_gateway} opened through it: "
          f"{'exact' if counted == opened_through_gateway else 'MISMATCH'}")


if __name__ == "__main__":
    main()
