"""The simulated upstreams on real loopback sockets: HTTP/1.1 keep-alive, the queue, stats, the command."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accord.lab.sim import SimServer, SimSpec, parse_service, serve_sims, start_sims_in_thread

ROOT = Path(__file__).resolve().parents[3]


def get(port: int, path: str = "/", headers: dict[str, str] | None = None,
        conn: http.client.HTTPConnection | None = None) -> tuple[int, dict, http.client.HTTPResponse]:
    own = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    own.request("GET", path, headers=headers or {})
    response = own.getresponse()
    body = json.loads(response.read())
    return response.status, body, response


async def closed_loop(port: int, concurrency: int, per_worker: int) -> list[float]:
    """`concurrency` clients, each sending `per_worker` requests one after another on its own keep-alive
    connection; the latency of every request in ms."""
    latencies: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(per_worker):
                start = time.perf_counter()
                writer.write(b"GET /work HTTP/1.1\r\nHost: sim\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                latencies.append((time.perf_counter() - start) * 1000.0)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def test_answers_json_with_keep_alive_and_pipelining() -> None:
    with start_sims_in_thread([SimSpec("booking", 0, 2, 2, distribution="constant"),
                               SimSpec("search", 0, 2, 2, instance="search-b")]) as sims:
        booking, search = sims.ports
        assert booking and search and booking != search
        conn = http.client.HTTPConnection("127.0.0.1", booking, timeout=10)
        for i in range(3):
            status, body, response = get(booking, f"/bookings/{i}?x=1",
                                         {"X-Accord-Account": "acme", "X-Accord-Tier": "gold"}, conn=conn)
            assert status == 200
            assert response.getheader("Content-Type") == "application/json"
            assert body["service"] == "booking"
            assert body["instance"] == f"booking@127.0.0.1:{booking}"
            assert body["path"] == f"/bookings/{i}"
            assert body["account"] == "acme" and body["tier"] == "gold"
            assert body["service_ms"] >= 1.5
        conn.close()
        assert get(search)[1]["instance"] == "search-b"

        # two requests in one write: two answers, in order, on the same connection; then Connection: close
        with socket.create_connection(("127.0.0.1", booking), timeout=10) as sock:
            sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.count(b"HTTP/1.1 200 OK") == 2
        assert data.index(b'"/one"') < data.index(b'"/two"')
        assert b"Connection: close" in data  # and the server closed: recv returned b""

        stats = {s.name: s for s in sims.stats()}
        assert stats["booking"].requests == 5
        assert stats["booking"].connections_total == 2  # keep-alive: three requests on the first connection
        assert stats["booking"].in_flight == 0 and stats["booking"].busy == 0
        assert stats["search"].requests == 1
    # stopped: the ports are closed
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", booking), timeout=2).close()


def test_a_malformed_request_gets_400_and_close() -> None:
    with start_sims_in_thread([SimSpec("booking", 0, 1, 1)]) as sims, \
            socket.create_connection(("127.0.0.1", sims.ports[0]), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 400")


def test_latency_stays_near_service_time_below_capacity_and_grows_above_it() -> None:
    spec = SimSpec("booking", 0, capacity=4, service_ms=20, distribution="constant")
    with start_sims_in_thread([spec]) as sims:
        port = sims.ports[0]
        alone = asyncio.run(closed_loop(port, 1, 15))
        at_capacity = asyncio.run(closed_loop(port, 4, 8))
        overloaded = asyncio.run(closed_loop(port, 40, 5))
        stats = sims.stats()[0]
    base = statistics.median(alone)
    assert 15 <= base < 100, alone  # about the service time
    assert statistics.median(at_capacity) < 3 * base, at_capacity  # 4 servers for 4 clients: hardly any queue
    # 40 clients on 4 servers of 20 ms: ~200 ms each (Little's law); generous margins for a loaded machine
    assert pct(overloaded, 95) > 100
    assert statistics.median(overloaded) > 3 * base
    assert stats.max_queue >= 20
    assert stats.max_in_flight >= 30
    assert stats.requests == 15 + 32 + 200
    assert 15 < stats.mean_service_ms < 60
    assert stats.mean_wait_ms > 20


def test_service_time_distributions_have_the_mean_asked_for_and_seed_repeats_them() -> None:
    for kind in ("exponential", "lognormal", "constant"):
        server = SimServer(SimSpec("s", 0, 1, 20, distribution=kind, seed=7))
        draws = [server.draw_ms() for _ in range(20000)]
        assert statistics.fmean(draws) == pytest.approx(20, rel=0.05), kind
        again = SimServer(SimSpec("s", 0, 1, 20, distribution=kind, seed=7))
        assert [again.draw_ms() for _ in range(50)] == draws[:50]
    spread = [SimServer(SimSpec("s", 0, 1, 20, distribution="exponential", seed=1)).draw_ms() for _ in range(3)]
    assert len(set(spread)) == 1  # same seed, same first draw


def test_fifo_queue_abandoned_requests_and_runtime_capacity() -> None:
    with start_sims_in_thread([SimSpec("slow", 0, capacity=1, service_ms=300, distribution="constant")]) as sims:
        port = sims.ports[0]
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        first.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)
        second = socket.create_connection(("127.0.0.1", port), timeout=10)
        second.sendall(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 5
        while sims.stats()[0].queued < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second.close()  # gives up while waiting: leaves the queue, never served
        data = first.recv(65536)
        assert b"200 OK" in data and b'"/first"' in data
        first.close()
        deadline = time.monotonic() + 5
        while (s := sims.stats()[0]).abandoned < 1 or s.busy:
            assert time.monotonic() < deadline, s
            time.sleep(0.01)
        assert s.requests == 1 and s.queued == 0 and s.in_flight == 0

        # capacity 0 stalls the service; raising it lets the queue through
        sims.configure("slow", capacity=0, service_ms=5)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /stalled HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            assert sims.stats()[0].queued == 1
            sims.configure("slow", capacity=2)
            assert b"200 OK" in sock.recv(65536)
        with pytest.raises(KeyError):
            sims.configure("nope", capacity=1)


def test_max_queue_answers_503_and_error_rate_answers_500() -> None:
    specs = [SimSpec("tight", 0, capacity=1, service_ms=400, distribution="constant", max_queue=1),
             SimSpec("broken", 0, capacity=2, service_ms=1, error_rate=1.0)]
    with start_sims_in_thread(specs) as sims:
        tight, broken = sims.ports
        socks = []
        for i in range(2):  # one in service, one queued
            sock = socket.create_connection(("127.0.0.1", tight), timeout=10)
            sock.sendall(f"GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            socks.append(sock)
            time.sleep(0.05)
        status, body, response = get(tight)
        assert status == 503 and body["error"]["code"] == "queue_full"
        assert response.getheader("Retry-After") == "1"
        for sock in socks:
            assert b"200 OK" in sock.recv(65536)
            sock.close()
        assert get(broken)[0] == 500
        stats = {s.name: s for s in sims.stats()}
        assert stats["tight"].rejected == 1 and stats["tight"].requests == 2
        assert stats["broken"].errors == 1


def test_serve_sims_on_an_existing_loop_and_a_taken_port() -> None:
    async def main() -> None:
        servers = await serve_sims([SimSpec("a", 0, 1, 1), SimSpec("b", 0, 1, 1)])
        try:
            assert all(s.port for s in servers)
            reader, writer = await asyncio.open_connection("127.0.0.1", servers[1].port)
            writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            writer.close()
            # a port already taken: the error comes out, and the sims started before it are closed again
            with pytest.raises(OSError):
                await serve_sims([SimSpec("c", 0, 1, 1), SimSpec("d", servers[0].port, 1, 1)])
        finally:
            for s in servers:
                await s.wait_closed()
        assert servers[0].stats().requests == 0 and servers[1].stats().requests == 1

    asyncio.run(main())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            start_sims_in_thread([SimSpec("x", taken.getsockname()[1], 1, 1)])


@pytest.mark.parametrize(("text", "message"), [
    ("booking", "expected NAME=HOST:PORT:CAPACITY:SERVICE_MS"),
    ("booking=127.0.0.1:9001:4", "expected NAME=HOST:PORT:CAPACITY:SERVICE_MS"),
    ("=127.0.0.1:9001:4:20", "name ''"),
    ("booking=:9001:4:20", "HOST is empty"),
    ("booking=127.0.0.1:http:4:20", "PORT 'http'"),
    ("booking=127.0.0.1:70000:4:20", "PORT '70000'"),
    ("booking=127.0.0.1:9001:0:20", "CAPACITY '0'"),
    ("booking=127.0.0.1:9001:four:20", "CAPACITY 'four'"),
    ("booking=127.0.0.1:9001:4:fast", "SERVICE_MS 'fast'"),
    ("booking=127.0.0.1:9001:4:-5", "service_ms -5.0"),
    ("booking=127.0.0.1:9001:4:nan", "service_ms nan"),
])
def test_parse_service_refuses_bad_values(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_service(text)


def test_parse_service_and_spec_validation() -> None:
    spec = parse_service("booking-v2=[::1]:9001:4:20.5")
    assert (spec.name, spec.host, spec.port, spec.capacity, spec.service_ms) == ("booking-v2", "::1", 9001, 4, 20.5)
    with pytest.raises(ValueError, match="distribution 'gauss'"):
        SimSpec("a", 0, 1, 1, distribution="gauss")
    with pytest.raises(ValueError, match="error_rate 2"):
        SimSpec("a", 0, 1, 1, error_rate=2)
    with pytest.raises(ValueError, match="max_queue -1"):
        SimSpec("a", 0, 1, 1, max_queue=-1)


def test_command_runs_briefly_and_refuses_bad_values() -> None:
    out = io.StringIO()
    call_command("upstream-sim", "--service", "booking=127.0.0.1:0:2:5", "--service", "search=127.0.0.1:0:1:1",
                 "--duration", "0.3", stdout=out)
    text = out.getvalue()
    assert "upstream-sim booking listening on 127.0.0.1:" in text
    assert "upstream-sim search listening on 127.0.0.1:" in text
    assert "booking booking@127.0.0.1:" in text and "0 answered" in text

    out = io.StringIO()
    call_command("upstream-sim", "--service", "a=127.0.0.1:0:1:1", "--duration", "0.1", "--json", stdout=out)
    summary = json.loads(out.getvalue().split("\n", 1)[1])
    assert summary[0]["name"] == "a" and summary[0]["requests"] == 0

    with pytest.raises(CommandError, match="give at least one --service") as e:
        call_command("upstream-sim")
    assert e.value.returncode == 2
    with pytest.raises(CommandError, match=r"--service 'booking=127.0.0.1:9001:x:20': CAPACITY 'x'") as e:
        call_command("upstream-sim", "--service", "booking=127.0.0.1:9001:x:20")
    assert e.value.returncode == 2
    with pytest.raises(CommandError, match="distribution 'pareto'"):
        call_command("upstream-sim", "--service", "a=127.0.0.1:0:1:1", "--distribution", "pareto")
    with pytest.raises(CommandError, match="same HOST:PORT"):
        call_command("upstream-sim", "--service", "a=127.0.0.1:9001:1:1", "--service", "b=127.0.0.1:9001:1:1")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(CommandError, match="cannot listen"):
            call_command("upstream-sim", "--service", f"a=127.0.0.1:{taken.getsockname()[1]}:1:1")


def _accord(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "accord", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_command_serves_until_sigterm_then_prints_a_summary() -> None:
    proc = _accord("upstream-sim", "--service", "booking=127.0.0.1:0:2:5")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("upstream-sim booking listening on 127.0.0.1:"), line + (proc.stderr.read()
                                                                                          if proc.poll() else "")
        port = int(line.split("127.0.0.1:")[1].split()[0])
        assert get(port, "/ping")[1]["service"] == "booking"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "booking booking@127.0.0.1:" in out and "1 answered" in out

    bad = _accord("upstream-sim", "--service", "booking=127.0.0.1:9001:4")
    out, err = bad.communicate(timeout=30)
    assert bad.returncode == 2
    assert "--service 'booking=127.0.0.1:9001:4'" in err and "NAME=HOST:PORT:CAPACITY:SERVICE_MS" in err
