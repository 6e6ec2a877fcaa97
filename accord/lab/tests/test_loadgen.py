"""The open-loop load generator against real servers on loopback: rate, shares, drops, errors, the command."""

from __future__ import annotations

import asyncio
import io
import json
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from accord.lab.loadgen import (
    LoadResult,
    Phase,
    Sample,
    TrafficClass,
    parse_class,
    parse_keys,
    parse_phase,
    parse_target,
    percentile,
    run_load,
    start_load_in_thread,
    summarize,
)
from accord.lab.sim import SimSpec, start_sims_in_thread
from accord.lib.ports import free_port


class RecordingHandler(BaseHTTPRequestHandler):
    """Answers 200 at once and remembers the path and Authorization header of every request."""

    protocol_version = "HTTP/1.1"
    server: RecordingServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.path, self.headers.get("Authorization", "")))
            self.server.connections.add(self.client_address)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.seen: list[tuple[str, str]] = []
        self.connections: set[Any] = set()
        self.lock = threading.Lock()


@pytest.fixture
def recorder() -> Iterator[RecordingServer]:
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def load(port: int, classes: list[TrafficClass], phases: list[Phase], **kwargs: Any) -> LoadResult:
    return asyncio.run(run_load("127.0.0.1", port, classes, phases, **kwargs))


def test_the_schedule_holds_against_a_saturated_upstream_and_latency_includes_the_wait() -> None:
    # 2 servers x 25 ms = 80 requests a second; send 200 a second for 1.5 s: the queue grows all along
    with start_sims_in_thread([SimSpec("slow", 0, capacity=2, service_ms=25, distribution="constant")]) as sims:
        result = load(sims.ports[0], [TrafficClass("all", 1, ["k"], ["/work"])], [Phase("peak", 1.5, 200)],
                      timeout=15)
        stats = sims.stats()[0]
    samples = result.samples
    assert len(samples) == 300
    assert all(s.status == 200 for s in samples), Counter((s.status, s.error) for s in samples)
    # open loop: every request went out on time although the answers came ever later
    # (margins are wide: a loaded 2-core machine can stall any process for a while)
    lags = sorted((s.sent - s.scheduled) * 1000 for s in samples)
    lag95 = percentile(lags, 95)
    assert lags[0] > -1 and lag95 is not None and lag95 < 150, lags[-10:]
    sent = sorted(s.sent for s in samples)
    assert 1.3 < sent[-1] - sent[0] < 2.0, sent[-1] - sent[0]
    for half in range(3):  # about 100 sends in each half second
        n = sum(1 for t in sent if half * 0.5 <= t < (half + 1) * 0.5)
        assert 60 <= n <= 140, (half, n)
    # closed-loop clients would have waited; here the waiting shows in the latency, growing with the backlog
    first = [s.latency_ms for s in samples[:20]]
    last = [s.latency_ms for s in samples[-20:]]
    assert statistics.median(first) < 300, first
    assert min(last) > 1000, last  # ~180 requests ahead of them at 80/s
    assert sum(last) / 20 > 5 * sum(first) / 20
    assert stats.max_queue > 100 and stats.requests == 300
    assert result.duration > 3  # the run lasts until the last answer
    row = result.summary()[0]
    assert (row.count, row.sent, row.ok, row.errors, row.dropped) == (300, 300, 300, 0, 0)
    assert row.p99_ms is not None and row.p99_ms > 1500


def test_latency_counts_from_the_scheduled_time_when_the_generator_itself_falls_behind() -> None:
    """No coordinated omission: requests the generator sends late (its loop blocked for 300 ms) carry the delay."""
    with start_sims_in_thread([SimSpec("fast", 0, capacity=8, service_ms=1)]) as sims:

        async def main() -> LoadResult:
            asyncio.get_running_loop().call_later(0.3, time.sleep, 0.3)  # a stall of the generator's own loop
            return await run_load("127.0.0.1", sims.ports[0], [TrafficClass("all", 1, [], ["/"])],
                                  [Phase("p", 1, 100)], timeout=5)

        result = asyncio.run(main())
    assert len(result.samples) == 100 and all(s.status == 200 for s in result.samples)
    late = [s for s in result.samples if s.sent - s.scheduled > 0.1]
    assert len(late) >= 15  # scheduled during the stall, sent after it
    for s in result.samples:
        assert s.latency_ms >= (s.sent - s.scheduled) * 1000.0 - 0.001
    assert max(s.latency_ms for s in late) > 200
    assert result.send_lag()["max_ms"] > 200  # type: ignore[operator]


def test_rate_per_phase_class_shares_keys_and_paths(recorder: RecordingServer) -> None:
    classes = [TrafficClass("gold", 5, ["g1", "g2"], ["/a"]), TrafficClass("silver", 3, ["s1"], ["/b", "/c"]),
               TrafficClass("anon", 2, [], ["/d"])]
    phases = [Phase("normal", 0.5, 40), Phase("peak", 0.5, 160)]
    result = load(recorder.server_address[1], classes, phases, timeout=5)
    assert len(result.samples) == 100
    by_phase = Counter(s.phase for s in result.samples)
    assert by_phase == {"normal": 20, "peak": 80}
    for s in result.samples:  # each phase's requests are scheduled, and sent, inside the phase
        lo, hi = (0.0, 0.5) if s.phase == "normal" else (0.5, 1.0)
        assert lo <= s.scheduled < hi
        assert lo - 0.01 <= s.sent < hi + 0.3
    assert Counter(s.traffic_class for s in result.samples) == {"gold": 50, "silver": 30, "anon": 20}
    assert Counter(s.traffic_class for s in result.samples if s.phase == "peak") == {"gold": 40, "silver": 24,
                                                                                      "anon": 16}
    assert Counter(s.key_index for s in result.samples if s.traffic_class == "gold") == {0: 25, 1: 25}
    assert {s.key_index for s in result.samples if s.traffic_class == "anon"} == {-1}
    seen = Counter(recorder.seen)
    assert seen == {("/a", "Bearer g1"): 25, ("/a", "Bearer g2"): 25, ("/b", "Bearer s1"): 15,
                    ("/c", "Bearer s1"): 15, ("/d", ""): 20}
    assert len(recorder.connections) < 50  # keep-alive: connections are reused
    rows = {(r.traffic_class, r.phase): r for r in result.summary()}
    assert rows[("gold", "peak")].count == 40 and rows[("gold", "peak")].ok == 40
    assert rows[("anon", "normal")].count == 4
    totals = result.totals()
    assert [(r.phase, r.count) for r in totals] == [("normal", 20), ("peak", 80), ("*", 100)]
    assert result.row("gold", "*").count == 50


def test_requests_over_the_connection_cap_are_dropped_not_lost() -> None:
    with start_sims_in_thread([SimSpec("slow", 0, capacity=1, service_ms=150, distribution="constant")]) as sims:
        result = load(sims.ports[0], [TrafficClass("all", 1, ["k"], ["/"])], [Phase("p", 1, 50)],
                      max_connections=3, timeout=10)
    row = result.summary()[0]
    assert row.count == 50
    assert row.dropped >= 25
    assert row.sent + row.dropped == 50 and row.ok == row.sent
    assert row.errors == 0 and row.error_rate == 0
    assert result.connections_opened <= 3
    dropped = [s for s in result.samples if s.dropped]
    assert all(s.status == 0 and s.error == "dropped" and s.sent == -1 for s in dropped)


def test_other_methods_head_and_post() -> None:
    with start_sims_in_thread([SimSpec("fast", 0, capacity=4, service_ms=1)]) as sims:
        result = load(sims.ports[0], [TrafficClass("head", 1, [], ["/"], method="HEAD"),
                                      TrafficClass("post", 1, ["k"], ["/"], method="POST")], [Phase("p", 0.4, 20)])
    assert [(r.traffic_class, r.count, r.ok) for r in result.summary()] == [("head", 4, 4), ("post", 4, 4)]
    with pytest.raises(ValueError, match="method 'get'"):
        TrafficClass("a", 1, [], ["/"], method="get")


def test_each_sample_keeps_the_recorded_header_of_its_answer() -> None:
    specs = [SimSpec("primary", 0, capacity=4, service_ms=1, instance="primary@a"),
             SimSpec("standby", 0, capacity=4, service_ms=1, instance="standby@b")]
    with start_sims_in_thread(specs) as sims:
        seen = {}
        for port in sims.ports:
            result = load(port, [TrafficClass("all", 1, [], ["/"])], [Phase("p", 0.3, 20)],
                          record_header="x-sim-instance")
            seen[port] = {s.header for s in result.samples}
        plain = load(sims.ports[0], [TrafficClass("all", 1, [], ["/"])], [Phase("p", 0.2, 20)])
    assert list(seen.values()) == [{"primary@a"}, {"standby@b"}]
    assert {s.header for s in plain.samples} == {""}  # nothing recorded unless asked
    with pytest.raises(ValueError, match="record_header 'x sim'"):
        load(sims.ports[0], [TrafficClass("all", 1, [], ["/"])], [Phase("p", 0.2, 20)], record_header="x sim")


def test_a_closed_port_counts_as_errors_with_status_0() -> None:
    result = load(free_port(), [TrafficClass("all", 1, ["k"], ["/"])], [Phase("p", 0.5, 20)], timeout=2)
    row = result.summary()[0]
    assert (row.count, row.sent, row.errors, row.ok, row.dropped) == (10, 10, 10, 0, 0)
    assert row.error_rate == 1.0 and row.p50_ms is None
    assert {(s.status, s.error) for s in result.samples} == {(0, "connect")}
    assert result.connections_opened == 0


def test_timeouts_count_as_errors_and_free_the_upstream_queue() -> None:
    with start_sims_in_thread([SimSpec("stuck", 0, capacity=1, service_ms=3000, distribution="constant")]) as sims:
        result = load(sims.ports[0], [TrafficClass("all", 1, ["k"], ["/"])], [Phase("p", 0.5, 10)], timeout=0.3)
        row = result.summary()[0]
        assert (row.count, row.errors, row.timeouts, row.ok) == (5, 5, 5, 0)
        assert all(s.status == 0 and s.error == "timeout" and 250 <= s.latency_ms < 1500 for s in result.samples)
        deadline = time.monotonic() + 5
        while sims.stats()[0].abandoned < 4:  # the sim saw the clients leave the queue
            assert time.monotonic() < deadline, sims.stats()[0]
            time.sleep(0.02)


def test_thread_runner_reports_progress_and_stops_early() -> None:
    with start_sims_in_thread([SimSpec("fast", 0, capacity=8, service_ms=1)]) as sims:
        seen = []
        run = start_load_in_thread("127.0.0.1", sims.ports[0], [TrafficClass("all", 1, ["k"], ["/"])],
                                   [Phase("long", 30, 40)], timeout=5, progress=seen.append)
        deadline = time.monotonic() + 10
        while (p := run.progress()) is None or p.answered < 40:
            assert time.monotonic() < deadline and not run.done()
            time.sleep(0.05)
        assert p.phase == "long" and p.sent >= 40 and p.errors == 0
        started = time.monotonic()
        result = run.stop(timeout=10)
        assert time.monotonic() - started < 3
    assert result.stopped and 40 <= len(result.samples) < 200
    assert all(s.status == 200 for s in result.samples)
    assert seen and seen[-1].sent == len(result.samples)
    with pytest.raises(ValueError, match="target port 0"):  # errors come out of the thread too
        start_load_in_thread("127.0.0.1", 0, [TrafficClass("a", 1, [], ["/"])], [Phase("p", 1, 1)]).wait(10)


def test_summaries() -> None:
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    samples = [Sample("p", "c", 0, "/", 0, sent=0, latency_ms=10, status=200),
               Sample("p", "c", 0, "/", 0, sent=0, latency_ms=20, status=429),
               Sample("p", "c", 0, "/", 0, sent=0, latency_ms=30, status=503),
               Sample("p", "c", 0, "/", 0, sent=0, latency_ms=5000, error="timeout"),
               Sample("p", "c", 0, "/", 0, error="dropped")]
    row = summarize("c", "p", samples)
    assert (row.count, row.sent, row.ok, row.client_errors, row.errors, row.timeouts, row.dropped) == (
        5, 4, 1, 1, 2, 1, 1)
    assert row.error_rate == 0.5
    assert (row.p50_ms, row.max_ms) == (20, 30)  # over the requests that got an answer
    assert row.as_dict()["statuses"] == {"200": 1, "429": 1, "503": 1}


def test_parsing_and_validation(tmp_path: Path) -> None:
    assert parse_target("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_target("[::1]:80") == ("::1", 80)
    for bad in ("8080", "host:", "host:0", "host:99999", ":80"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_target(bad)
    keyfile = tmp_path / "gold.txt"
    keyfile.write_text("# gold keys\nk-1\n\n  k-2  \n")
    assert parse_keys(str(keyfile)) == ["k-1", "k-2"]
    assert parse_keys("a,b") == ["a", "b"]
    assert parse_keys("-") == []
    (tmp_path / "empty.txt").write_text("# none\n")
    with pytest.raises(ValueError, match="has no keys"):
        parse_keys(str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError, match="empty key"):
        parse_keys("a,,b")
    c = parse_class(f"gold:20:{keyfile}:/bookings,/search")
    assert (c.name, c.share, c.keys, c.paths) == ("gold", 20, ["k-1", "k-2"], ["/bookings", "/search"])
    assert parse_phase("peak:10:200") == Phase("peak", 10, 200)
    with pytest.raises(ValueError, match="SHARE 'lots'"):
        parse_class("gold:lots:k:/x")
    with pytest.raises(ValueError, match=r"share 0\.0"):
        parse_class("gold:0:k:/x")
    with pytest.raises(ValueError, match="must start with /"):
        parse_class("gold:1:k:bookings")
    with pytest.raises(ValueError, match="expected NAME:SHARE"):
        parse_class("gold:1:k")
    with pytest.raises(ValueError, match="RPS 'fast'"):
        parse_phase("peak:10:fast")
    with pytest.raises(ValueError, match=r"seconds 0\.0"):
        parse_phase("peak:0:10")
    with pytest.raises(ValueError, match="expected NAME:SECONDS:RPS"):
        parse_phase("peak:10")
    with pytest.raises(ValueError, match="names must differ"):
        load(1, [TrafficClass("a", 1, [], ["/"]), TrafficClass("a", 1, [], ["/"])], [Phase("p", 1, 1)])


def test_command_runs_and_prints_progress_and_a_summary(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("s1\ns2\n")
    with start_sims_in_thread([SimSpec("fast", 0, capacity=8, service_ms=2)]) as sims:
        target = f"127.0.0.1:{sims.ports[0]}"
        out, err = io.StringIO(), io.StringIO()
        call_command("loadgen", "--target", target, "--class", "gold:1:g1,g2:/bookings",
                     "--class", f"std:3:{keyfile}:/bookings", "--phase", "normal:0.6:40", "--phase", "peak:0.6:80",
                     "--json", stdout=out, stderr=err)
        data = json.loads(out.getvalue())
        rows = {(r["class"], r["phase"]): r for r in data["summary"]}
        assert rows[("gold", "normal")]["count"] == 6 and rows[("std", "normal")]["count"] == 18
        assert rows[("gold", "peak")]["count"] == 12 and rows[("std", "peak")]["count"] == 36
        assert data["totals"][-1]["count"] == 72 and data["totals"][-1]["ok"] == 72
        assert data["totals"][-1]["p95_ms"] > 0
        assert "sent" in err.getvalue() and "answered" in err.getvalue()  # progress goes to stderr with --json

        out = io.StringIO()
        call_command("loadgen", "--target", target, "--class", "all:1:-:/x", "--phase", "p:1.1:20", stdout=out)
        text = out.getvalue()
        assert "1.0s p " in text and "sent" in text  # a progress line after the first second
        assert "22 requests scheduled over 1.1 s, 22 sent; send lag p99 " in text
        assert "p50 ms" in text and re.search(r"\np +all +22 +22 +0 +0 ", text), text


@pytest.mark.parametrize(("args", "message"), [
    ([], "give --target HOST:PORT"),
    (["--target", "localhost"], "--target 'localhost': expected HOST:PORT"),
    (["--target", "127.0.0.1:1"], "give at least one --class"),
    (["--target", "127.0.0.1:1", "--class", "gold:1:k:/x"], "give at least one --phase"),
    (["--target", "127.0.0.1:1", "--class", "gold:x:k:/x", "--phase", "p:1:1"],
     "--class 'gold:x:k:/x': SHARE 'x' is not a number"),
    (["--target", "127.0.0.1:1", "--class", "gold:1:k", "--phase", "p:1:1"],
     "--class 'gold:1:k': expected NAME:SHARE:KEYFILE_OR_KEY"),
    (["--target", "127.0.0.1:1", "--class", "gold:1::/x", "--phase", "p:1:1"], "KEYS is empty"),
    (["--target", "127.0.0.1:1", "--class", "gold:1:k:/x", "--class", "gold:2:k:/y", "--phase", "p:1:1"],
     "--class names must differ"),
    (["--target", "127.0.0.1:1", "--class", "gold:1:k:/x", "--phase", "p:1"], "--phase 'p:1': expected NAME:SECONDS:RPS"),
    (["--target", "127.0.0.1:1", "--class", "gold:1:k:/x", "--phase", "p:-1:5"], "--phase 'p:-1:5': phase 'p': seconds"),
    (["--target", "127.0.0.1:1", "--class", "gold:1:k:/x", "--phase", "p:1:5", "--timeout", "0"], "--timeout"),
    (["--target", "127.0.0.1:1", "--class", "gold:1:k:/x", "--phase", "p:1:5", "--max-connections", "0"],
     "--max-connections"),
])
def test_command_refuses_bad_arguments(args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as e:
        call_command("loadgen", *args)
    assert message in str(e.value)
    assert e.value.returncode == 2
