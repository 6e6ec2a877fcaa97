"""The collector's reading of HAProxy's log lines: outcomes as the gateway names them, each line once, and a count
of what it could not read; its TCP listener (HAProxy's ring forwarder) on real loopback sockets, bad frames too."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accord.gateway.measure import Accumulator
from accord.haproxy.collector import Collector, outcome_of, parse, serve_tcp
from accord.lib.ports import free_port

from .conftest import wait_until

HEADER = b"<134>Dec  7 17:13:18 haproxy[28066]: "


def line(counter: int = 1, account: str = "ACME", tier: str = "gold", service: str = "booking",
         credential: str = "7", backend: str = "booking.main", server: str = "main.1", status: int = 200,
         ta: int = 12, state: str = "----", path: str = "/bookings/1", refused: str = "") -> bytes:
    return HEADER + (f'accord1 28066 {counter} 1796663598 "{account}" "{tier}" "{service}" "{credential}" {backend} '
                     f'{server} {status} 120 340 0 0 1 10 {ta} {state} GET "{path}" "{refused}"\n').encode()


def test_a_line_becomes_one_request_with_its_account_pool_and_timings() -> None:
    record = parse(line())
    assert record is not None
    assert (record.account, record.tier, record.service, record.pool, record.status, record.outcome) == (
        "ACME", "gold", "booking", "main", 200, "ok")
    assert (record.credential, record.bytes_in, record.bytes_out, record.latency_ms, record.accepted) == (
        7, 120, 340, 12.0, 1796663598)


@pytest.mark.parametrize(("status", "server", "state", "expected"), [
    (200, "main.1", "----", (200, "ok")),
    (404, "main.1", "----", (404, "client_error")),  # the service's own 404
    (404, "<NOSRV>", "LR--", (404, "not_found")),  # HAProxy's: no route
    (401, "<NOSRV>", "LR--", (401, "unauthorized")),
    (503, "<NOSRV>", "SC--", (503, "no_endpoint")),
    (500, "main.1", "----", (500, "server_error")),
    (504, "main.1", "sH--", (504, "timeout")),
    (502, "main.1", "SH--", (502, "bad_gateway")),
    (-1, "main.1", "CD--", (499, "client_gone")),
])
def test_outcomes_are_named_as_the_gateway_names_them(status: int, server: str, state: str,
                                                      expected: tuple[int, str]) -> None:
    assert outcome_of(status, server, state) == expected


def test_a_refused_request_has_no_account_and_no_pool() -> None:
    record = parse(line(account="", tier="", credential="", backend="accord", server="<NOSRV>", status=401,
                        state="LR--"))
    assert record is not None
    assert (record.account, record.pool, record.credential, record.outcome) == ("", "", 0, "unauthorized")


def test_each_line_is_counted_once_and_what_cannot_be_read_is_counted_apart() -> None:
    acc = Accumulator()
    collector = Collector(acc)
    for datagram in (line(1), line(2, account="BETA"), line(1), HEADER + b"Server booking.main/main.1 is DOWN",
                     line(3)[:-20]):
        collector.feed(datagram)
    # a tagged line cut short is unparsed; HAProxy's own message on the same target is an event, not a request
    assert (collector.received, collector.recorded, collector.duplicates, collector.unparsed, collector.events) == (
        5, 2, 1, 1, 1)
    tallies = acc.take()
    assert sorted((k[1], t.count) for k, t in tallies.items()) == [("ACME", 1), ("BETA", 1)]
    assert acc.key_uses and sum(n for n, _ in acc.key_uses.values()) == 2


def test_haproxy_s_own_answers_carry_their_outcome() -> None:
    for refused, status in (("shed", 503), ("rate_limited", 429), ("no_endpoint", 503)):
        record = parse(line(server="<NOSRV>", backend="accord", status=status, state="LR--", refused=refused))
        assert record is not None and (record.status, record.outcome) == (status, refused)


def test_a_tier_name_with_a_space_comes_back_as_it_was() -> None:
    record = parse(line(tier="Gold%20Plus"))
    assert record is not None and record.tier == "Gold Plus"


def test_haproxy_s_announcement_of_lines_its_ring_dropped_is_counted_and_nothing_else_is() -> None:
    collector = Collector(Accumulator())
    for message in (b"<133>Dec  8 03:36:28 localhost haproxy[13642]: 17 events dropped",
                    b"<133>Dec  8 03:36:29 localhost haproxy[13642]: 1 event dropped\n",
                    line(5, path="/x/: 99 events dropped"),  # a request whose path says so is a request
                    HEADER + b"Proxy accord stopped (cumulated conns: FE: 3, BE: 0)."):
        collector.feed(message)
    assert (collector.ring_dropped, collector.recorded, collector.events, collector.unparsed) == (18, 1, 1, 0)


@contextlib.contextmanager
def tcp_collector() -> Iterator[tuple[int, Collector]]:
    """The collector's TCP listener (`serve_tcp`) on a loopback port, its event loop in a thread."""
    collector = Collector(Accumulator())
    loop = asyncio.new_event_loop()
    started: list[Any] = []

    async def start() -> None:
        for attempt in range(3):
            port = free_port()
            try:
                server, _ = await serve_tcp("127.0.0.1", port, collector, [0.0])
            except OSError:  # taken in between by another suite
                if attempt == 2:
                    raise
                continue
            started.append((server, port))
            return

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    server, port = started[0]
    try:
        yield port, collector
    finally:
        async def stop() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def octets(message: bytes) -> bytes:
    return b"%d %s" % (len(message), message)


def closed_by_peer(sock: socket.socket) -> bool:
    """The collector closed this connection (the read ends, or the reset says so)."""
    sock.settimeout(5)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_octet_counted_and_newline_frames_over_several_connections_are_each_one_line() -> None:
    with tcp_collector() as (port, collector):
        first, second = socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port))
        with first, second:
            stream = b"".join(octets(line(i)[:-1]) for i in range(1, 51))  # as HAProxy sends them: no newline
            for at in range(0, len(stream), 37):  # cut anywhere: inside a length, a message, at the space
                first.sendall(stream[at:at + 37])
                if at % 370 == 0:
                    time.sleep(0.001)  # now and then a pause, so the pieces arrive as separate reads
            second.sendall(b"".join(line(i) for i in range(51, 81)))  # HAProxy's `legacy` framing
            second.sendall(octets(b"<133>Dec  8 03:36:28 localhost haproxy[28066]: 12 events dropped"))
            wait_until(lambda: collector.received == 81, timeout=10, what="81 messages")
    assert (collector.recorded, collector.ring_dropped, collector.bad_frames, collector.connections) == (80, 12, 0, 2)


@pytest.mark.parametrize(("name", "payload"), [
    ("a length that is not a number", b"12x4 <134>Dec  8 accord1 ..."),
    ("a length over 64 KiB", b"70000 <134>Dec  8 " + b"x" * 100),
    ("a length of more than 7 digits", b"123456789"),
    ("neither a length nor a syslog header", b"GET / HTTP/1.1\r\n\r\n"),
    ("a line longer than 64 KiB without its newline", b"<134>" + b"x" * (70 * 1024)),
])
def test_a_bad_frame_is_counted_its_connection_dropped_and_the_others_still_served(name: str,
                                                                                   payload: bytes) -> None:
    with tcp_collector() as (port, collector):
        good = socket.create_connection(("127.0.0.1", port))
        bad = socket.create_connection(("127.0.0.1", port))
        with good, bad:
            good.sendall(octets(line(1)[:-1]))
            wait_until(lambda: collector.recorded == 1, timeout=10, what="the good connection's first line")
            bad.sendall(octets(line(2)[:-1]) + payload)
            assert closed_by_peer(bad), name
            good.sendall(octets(line(3)[:-1]))
            wait_until(lambda: collector.recorded == 3, timeout=10, what="the good connection's next line")
        assert collector.bad_frames == 1, name


def test_a_connection_closed_in_the_middle_of_a_frame_is_a_bad_frame_and_a_quiet_one_blocks_nobody() -> None:
    with tcp_collector() as (port, collector):
        idle = socket.create_connection(("127.0.0.1", port))  # connects and never sends: holds nothing up
        with idle:
            with socket.create_connection(("127.0.0.1", port)) as cut:
                cut.sendall(octets(line(1)[:-1]) + octets(line(2)[:-1])[:40])
                wait_until(lambda: collector.recorded == 1, timeout=10, what="the whole frame")
            wait_until(lambda: collector.bad_frames == 1, timeout=10, what="the cut frame counted")
            with socket.create_connection(("127.0.0.1", port)) as later:
                later.sendall(octets(line(3)[:-1]))
                wait_until(lambda: collector.recorded == 2, timeout=10, what="a later connection's line")
    assert (collector.received, collector.bad_frames, collector.connections) == (2, 1, 3)


@pytest.mark.django_db
def test_a_bad_listen_address_exits_2_and_a_port_taken_for_tcp_is_a_clear_error() -> None:
    for address in ("nonsense", "127.0.0.1:", "127.0.0.1:70000"):
        with pytest.raises(CommandError, match="is not HOST:PORT") as refused:
            call_command("collector", "--listen", address)
        assert refused.value.returncode == 2
    with socket.socket() as taken:  # the port is free for UDP, not for TCP
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}: .*in use"):
            call_command("collector", "--listen", f"127.0.0.1:{port}")
