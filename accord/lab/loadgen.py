"""An open-loop HTTP load generator for the governance scenario.

Open loop: every request has a send time fixed in advance by the profile (a constant arrival rate per phase,
or Poisson arrivals); a slow answer never delays a later send. Latency is measured from the *scheduled* send
time, so the time a request would have waited for the generator counts too (no coordinated omission).

Connections are HTTP/1.1 keep-alive with one request at a time each: a request takes an idle connection if
there is one, else opens a new one, up to `max_connections`. At the cap the request is not sent and is
recorded as `dropped` (a generator limit, reported apart from the target's errors). Every scheduled request
becomes exactly one `Sample`.

    classes = [TrafficClass("gold", 0.2, ["key-g1"], ["/bookings"]),
               TrafficClass("standard", 0.8, ["key-s1", "key-s2"], ["/bookings"])]
    phases = [Phase("normal", 10, 50), Phase("peak", 10, 200), Phase("normal", 10, 50)]
    result = await run_load("127.0.0.1", 8080, classes, phases, timeout=5.0)   # on a running loop
    print(result.table())
    run = start_load_in_thread("127.0.0.1", 8080, classes, phases)           # or from a background thread
    result = run.wait()

`accord loadgen --target HOST:PORT --class ... --phase ...` runs it from the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httptools

from .sim import NAME_RE, new_event_loop

ERRORS = ("timeout", "connect", "closed", "bad_response", "dropped")
# Event loop timers tick in milliseconds (uvloop's): sleeping less would spin. So the scheduler wakes at least
# a tick apart, and a request may go out up to EARLY seconds before its time; its latency then counts from
# when it was really sent (the later of the two), so going early never flatters it.
TICK = 0.001
EARLY = 0.0005


@dataclass
class TrafficClass:
    """A kind of caller (e.g. a tier): its `share` of the arrival rate (shares are normalised over all classes,
    so 0.2/0.8 and 20/80 mean the same), the API keys it sends as `Authorization: Bearer <key>` (round robin;
    an empty list sends none) and the paths it calls (round robin)."""

    name: str
    share: float
    keys: list[str]
    paths: list[str]
    method: str = "GET"

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"class name {self.name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
        if isinstance(self.share, bool) or not isinstance(self.share, int | float) or not (
                math.isfinite(self.share) and self.share > 0):
            raise ValueError(f"share {self.share!r} of class {self.name!r} must be a number above 0")
        self.keys, self.paths = list(self.keys), list(self.paths)
        for key in self.keys:
            if not key or any(c in key for c in " \t\r\n") or not key.isascii():
                raise ValueError(f"class {self.name!r} has an empty key or one with spaces or non-ASCII characters")
        if not self.paths:
            raise ValueError(f"class {self.name!r} needs at least one path")
        for path in self.paths:
            if not path.startswith("/") or any(c in path for c in " \t\r\n") or not path.isascii():
                raise ValueError(f"path {path!r} of class {self.name!r} must start with / and have no spaces")
        if not self.method.isalpha() or not self.method.isupper():
            raise ValueError(f"method {self.method!r} must be an HTTP method such as GET")


@dataclass
class Phase:
    """A stretch of the profile: `seconds` long at `rps` requests a second (0: a quiet stretch)."""

    name: str
    seconds: float
    rps: float

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"phase name {self.name!r} must be letters, digits, '.', '_' or '-' (at most 64)")
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int | float) or not (
                math.isfinite(self.seconds) and 0 < self.seconds <= 86_400):
            raise ValueError(f"phase {self.name!r}: seconds {self.seconds!r} must be above 0 (at most a day)")
        if isinstance(self.rps, bool) or not isinstance(self.rps, int | float) or not (
                math.isfinite(self.rps) and 0 <= self.rps <= 1_000_000):
            raise ValueError(f"phase {self.name!r}: rps {self.rps!r} must be 0 or more")

    @property
    def requests(self) -> int:
        """How many requests a constant-rate phase schedules."""
        return round(self.seconds * self.rps)


@dataclass(slots=True)
class Sample:
    """One scheduled request and what became of it. Times are seconds from the start of the run.

    `status` is the HTTP status, or 0 when there was none: `error` then says why (timeout, connect, closed,
    bad_response, or dropped when the generator was at its connection cap and did not send it).
    `latency_ms` runs from the scheduled send time (or the actual one, if up to half a millisecond earlier) to
    the end of the answer (or the failure). `header` is the answer's value of the header `run_load` was asked to
    record (`record_header`), or "".
    """

    phase: str
    traffic_class: str
    key_index: int  # in the class's keys (-1: the class sends no key)
    path: str
    scheduled: float
    phase_index: int = 0  # in the profile (a phase name may come back, e.g. normal, peak, normal)
    sent: float = -1.0  # when it was written (-1: never)
    latency_ms: float = 0.0
    status: int = 0
    error: str = ""
    retried: bool = False  # a kept-alive connection was found closed before any answer: sent again once
    header: str = ""  # the value of the answer's `record_header` (run_load), e.g. which upstream answered

    @property
    def dropped(self) -> bool:
        return self.error == "dropped"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    @property
    def failed(self) -> bool:
        """An error of the target: status >= 500, or no answer at all (not counting dropped)."""
        return self.status >= 500 or (self.status == 0 and not self.dropped)


@dataclass
class SummaryRow:
    """Counts and latency of one (class, phase); class '*' is every class together.

    `errors` are statuses >= 500 and requests without an answer (timeouts, connection errors); `dropped` were
    never sent (the connection cap); `error_rate` = errors / sent. Latency percentiles are over the requests
    that got an HTTP answer, any status, measured from their scheduled time (None when there were none).
    """

    traffic_class: str
    phase: str
    count: int
    sent: int
    ok: int
    client_errors: int  # 4xx, e.g. 401, 429 from the gateway
    errors: int
    timeouts: int
    dropped: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    error_rate: float
    statuses: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "class": self.traffic_class, "phase": self.phase, "count": self.count, "sent": self.sent,
            "ok": self.ok, "client_errors": self.client_errors, "errors": self.errors, "timeouts": self.timeouts,
            "dropped": self.dropped, "p50_ms": _round(self.p50_ms), "p95_ms": _round(self.p95_ms),
            "p99_ms": _round(self.p99_ms), "max_ms": _round(self.max_ms), "error_rate": round(self.error_rate, 6),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-th percentile (0 < q <= 100) of sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(traffic_class: str, phase: str, samples: Sequence[Sample]) -> SummaryRow:
    """Per (class, phase): requests, answers, errors and latency percentiles of the samples."""
    latencies = sorted(s.latency_ms for s in samples if s.status > 0)
    statuses: dict[int, int] = {}
    for s in samples:
        if s.status:
            statuses[s.status] = statuses.get(s.status, 0) + 1
    dropped = sum(1 for s in samples if s.dropped)
    sent = len(samples) - dropped
    errors = sum(1 for s in samples if s.failed)
    return SummaryRow(
        traffic_class, phase, len(samples), sent, ok=sum(1 for s in samples if s.ok),
        client_errors=sum(1 for s in samples if 400 <= s.status < 500), errors=errors,
        timeouts=sum(1 for s in samples if s.error == "timeout"), dropped=dropped,
        p50_ms=percentile(latencies, 50), p95_ms=percentile(latencies, 95), p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else None, error_rate=errors / sent if sent else 0.0, statuses=statuses,
    )


@dataclass
class Progress:
    """Totals so far, reported about once a second while a run goes on."""

    elapsed: float
    phase: str  # the phase being scheduled ('' once the schedule is done)
    scheduled: int
    sent: int
    answered: int
    errors: int
    dropped: int
    in_flight: int
    connections: int


@dataclass
class LoadResult:
    """Every sample of a run, and summaries of them."""

    target: str
    classes: list[TrafficClass]
    phases: list[Phase]
    samples: list[Sample]
    started_at: float  # wall clock (time.time()) at the start of the schedule
    duration: float  # seconds from the start to the last answer
    stopped: bool = False  # stopped before the schedule ended
    connections_opened: int = 0  # connections established (attempts that failed not counted)

    def summary(self) -> list[SummaryRow]:
        """One row per (class, phase) in profile order, then class order; a phase name used twice (e.g. normal,
        peak, normal) is one row per occurrence, in order."""
        groups: dict[tuple[int, str], list[Sample]] = {}
        for s in self.samples:
            groups.setdefault((s.phase_index, s.traffic_class), []).append(s)
        rows = []
        for i, phase in enumerate(self.phases):
            for c in self.classes:
                rows.append(summarize(c.name, phase.name, groups.get((i, c.name), [])))
        return rows

    def totals(self) -> list[SummaryRow]:
        """One row per phase, every class together (class '*'), then one for the whole run (phase '*')."""
        by_phase: dict[int, list[Sample]] = {}
        for s in self.samples:
            by_phase.setdefault(s.phase_index, []).append(s)
        rows = [summarize("*", p.name, by_phase.get(i, [])) for i, p in enumerate(self.phases)]
        rows.append(summarize("*", "*", self.samples))
        return rows

    def row(self, traffic_class: str, phase: str) -> SummaryRow:
        """The summary of one class ('*': all) in one phase ('*': all), every occurrence of the phase name."""
        picked = [s for s in self.samples if (traffic_class == "*" or s.traffic_class == traffic_class)
                  and (phase == "*" or s.phase == phase)]
        return summarize(traffic_class, phase, picked)

    def send_lag(self) -> dict[str, float | None]:
        """How late the generator sent, in ms (p50, p99, max over the requests sent): when this grows beyond a
        few ms, the generator (or its machine) could not keep the schedule, and latencies include its delay."""
        lags = sorted((s.sent - s.scheduled) * 1000.0 for s in self.samples if s.sent >= 0)
        return {"p50_ms": _round(percentile(lags, 50)), "p99_ms": _round(percentile(lags, 99)),
                "max_ms": _round(lags[-1] if lags else None)}

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain data (for JSON), without the samples."""
        return {
            "target": self.target, "started_at": self.started_at, "duration_s": round(self.duration, 3),
            "stopped": self.stopped, "connections_opened": self.connections_opened, "send_lag": self.send_lag(),
            "phases": [{"name": p.name, "seconds": p.seconds, "rps": p.rps} for p in self.phases],
            "classes": [{"name": c.name, "share": c.share, "keys": len(c.keys), "paths": c.paths}
                        for c in self.classes],
            "summary": [r.as_dict() for r in self.summary()],
            "totals": [r.as_dict() for r in self.totals()],
        }

    def table(self) -> str:
        """The summary as an aligned text table."""
        head = ("phase", "class", "count", "ok", "4xx", "errors", "timeouts", "dropped", "err%", "p50 ms",
                "p95 ms", "p99 ms", "max ms")
        lines = [head]

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        totals = self.totals()
        rows = self.summary()
        if len(self.classes) > 1:
            rows += totals[:-1]  # each phase, every class together
        if len(self.phases) > 1:
            rows += totals[-1:]  # the whole run
        for r in rows:
            lines.append((r.phase, r.traffic_class, str(r.count), str(r.ok), str(r.client_errors), str(r.errors),
                          str(r.timeouts), str(r.dropped), f"{100 * r.error_rate:.1f}", ms(r.p50_ms),
                          ms(r.p95_ms), ms(r.p99_ms), ms(r.max_ms)))
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        return "\n".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                                   enumerate(zip(line, widths, strict=True))).rstrip() for line in lines)


class _ClassPicker:
    """Smooth weighted round robin: every prefix of the sequence keeps the shares as closely as possible."""

    def __init__(self, classes: Sequence[TrafficClass]) -> None:
        total = sum(c.share for c in classes)
        self.classes = list(classes)
        self.weights = [c.share / total for c in classes]
        self.current = [0.0] * len(classes)
        self.next_key = [0] * len(classes)
        self.next_path = [0] * len(classes)

    def pick(self) -> tuple[int, int, int]:
        """(class index, key index, path index) of the next request."""
        best = 0
        for i, w in enumerate(self.weights):
            self.current[i] += w
            if self.current[i] > self.current[best]:
                best = i
        self.current[best] -= 1.0
        c = self.classes[best]
        key = self.next_key[best]
        self.next_key[best] = (key + 1) % len(c.keys) if c.keys else 0
        path = self.next_path[best]
        self.next_path[best] = (path + 1) % len(c.paths)
        return best, key, path


def _schedule(phases: Sequence[Phase], poisson: bool, rng: random.Random) -> Iterator[tuple[int, float]]:
    """(phase index, send time in seconds from the start) of every request, in order."""
    start = 0.0
    for i, phase in enumerate(phases):
        if phase.rps > 0:
            if poisson:
                t = start + rng.expovariate(phase.rps)
                while t < start + phase.seconds:
                    yield i, t
                    t += rng.expovariate(phase.rps)
            else:
                for n in range(phase.requests):
                    yield i, start + n / phase.rps
        start += phase.seconds


class _Connection(asyncio.Protocol):
    """One keep-alive client connection carrying one request at a time; parses answers with httptools."""

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sample: Sample | None = None
        self.data = b""
        self.timer: asyncio.TimerHandle | None = None
        self.status = 0
        self.keep_alive = True
        self.got_bytes = False
        self.used = False  # has carried a request before (a reuse may find it closed by the server)
        self.head = False  # the request is a HEAD: the answer has no body, whatever its headers say
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, sample: Sample, data: bytes, deadline: float) -> None:
        assert self.transport is not None
        self.sample, self.data, self.status, self.got_bytes = sample, data, 0, False
        self.head = data.startswith(b"HEAD ")
        now = time.monotonic()
        if sample.sent < 0:
            sample.sent = now - self.gen.t0
        self.timer = self.gen.loop.call_later(max(0.0, deadline - now), self.on_timeout)
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.sample is None:
            self.closed = True  # bytes nobody asked for: this connection cannot be trusted any more
            if self.transport is not None:
                self.transport.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.finish(0, "bad_response", reusable=False)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status >= 200:
            self.status = status
            self.keep_alive = bool(self.parser.should_keep_alive())
            if self.head:  # the parser would wait for a body: done here, and the connection is not reused
                self.finish(status, "", reusable=False)

    def on_message_complete(self) -> None:
        if self.status:  # not a 1xx
            self.finish(self.status, "", reusable=self.keep_alive)

    def on_timeout(self) -> None:
        self.timer = None
        self.finish(0, "timeout", reusable=False)

    def finish(self, status: int, error: str, reusable: bool) -> None:
        sample = self.sample
        if sample is None:
            return
        self.sample = None
        self.used = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not reusable and not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
        self.gen.record(sample, status, error)
        if reusable and not self.closed:
            self.gen.release(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gen.lost(self)
        sample = self.sample
        if sample is None:
            return
        if self.used and not self.got_bytes and not sample.retried and not self.gen.stopping:
            # A kept-alive connection the server had closed: not the target's answer to this request.
            self.sample = None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            sample.retried = True
            self.gen.dispatch(sample, self.data)
            return
        self.finish(0, "closed", reusable=False)


class _RecordingConnection(_Connection):
    """A connection that also keeps one response header's value in each sample (only runs that ask for it pay
    for the header callback)."""

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.sample is not None and name.lower() == self.gen.record_header:
            self.sample.header = value.decode("latin-1")


class _Generator:
    """The state of one run: connections, samples, counters."""

    def __init__(self, host: str, port: int, classes: Sequence[TrafficClass], phases: Sequence[Phase],
                 timeout: float, max_connections: int, seed: int | None, poisson: bool,
                 record_header: str = "") -> None:
        self.loop = asyncio.get_running_loop()
        self.record_header = record_header.lower().encode("latin-1")
        self.connection_class = _RecordingConnection if record_header else _Connection
        self.host, self.port = host, port
        self.classes, self.phases = list(classes), list(phases)
        self.timeout = timeout
        self.max_connections = max_connections
        self.rng = random.Random(seed)
        self.poisson = poisson
        self.samples: list[Sample] = []
        self.idle: list[_Connection] = []
        self.open = 0  # connected or connecting
        self.opened = 0
        self.in_flight = 0
        self.sent = self.answered = self.errors = self.dropped = 0
        self.ends = list(itertools.accumulate(p.seconds for p in self.phases))
        self.stopping = False
        self.stop_event = asyncio.Event()
        self.t0 = time.monotonic()
        self.all_done = asyncio.Event()
        self.connecting: set[asyncio.Task[None]] = set()
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.requests = [
            [[self._request_bytes(c.method, path, key, authority) for path in c.paths] for key in (c.keys or [""])]
            for c in self.classes
        ]

    @staticmethod
    def _request_bytes(method: str, path: str, key: str, authority: str) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {authority}", "User-Agent: accord-loadgen",
                 "Accept: application/json"]
        if key:
            lines.append(f"Authorization: Bearer {key}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    async def run(self, progress: Callable[[Progress], None] | None, stop: asyncio.Event | None) -> None:
        picker = _ClassPicker(self.classes)
        schedule = _schedule(self.phases, self.poisson, self.rng)
        reporter = self.loop.create_task(self._report(progress)) if progress is not None else None
        stopper = self.loop.create_task(self._watch(stop)) if stop is not None else None
        self.t0 = time.monotonic()
        nxt = next(schedule, None)
        try:
            while nxt is not None and not self.stopping:
                delay = self.t0 + nxt[1] - time.monotonic()
                if delay > EARLY:
                    await self._sleep(max(delay, TICK))
                    continue
                batch = 0
                while nxt is not None and nxt[1] <= time.monotonic() - self.t0 + EARLY and batch < 256:
                    self._fire(picker, *nxt)
                    batch += 1
                    nxt = next(schedule, None)
                await asyncio.sleep(0)  # let answers in, even when behind schedule
            # a quiet stretch at the end of the profile is part of the run too
            if not self.stopping:
                await self._sleep(self.t0 + self.ends[-1] - time.monotonic())
            if self.in_flight:
                self.all_done.clear()
                await self.all_done.wait()
        finally:
            for task in (reporter, stopper):
                if task is not None:
                    task.cancel()
            for conn in self.idle:
                if conn.transport is not None:
                    conn.transport.close()
            self.idle.clear()
            if progress is not None:
                progress(self.progress())

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stopping = True
        self.stop_event.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the run is stopped."""
        if seconds <= 0:
            return
        if seconds < 0.05:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), seconds)

    def phase_now(self) -> str:
        """The phase the schedule is in ('' once it is over)."""
        elapsed = time.monotonic() - self.t0
        return next((self.phases[i].name for i, end in enumerate(self.ends) if elapsed < end), "")

    async def _report(self, progress: Callable[[Progress], None]) -> None:
        n = 1
        while True:
            await asyncio.sleep(max(0.0, self.t0 + n - time.monotonic()))
            n += 1
            progress(self.progress())

    def progress(self) -> Progress:
        return Progress(time.monotonic() - self.t0, "" if self.stopping else self.phase_now(), len(self.samples), self.sent,
                        self.answered, self.errors, self.dropped, self.in_flight, self.open)

    def _fire(self, picker: _ClassPicker, phase: int, at: float) -> None:
        ci, ki, pi = picker.pick()
        c = self.classes[ci]
        sample = Sample(self.phases[phase].name, c.name, ki if c.keys else -1, c.paths[pi], at, phase)
        self.samples.append(sample)
        self.in_flight += 1
        self.dispatch(sample, self.requests[ci][ki][pi])

    def dispatch(self, sample: Sample, data: bytes) -> None:
        """Send on an idle connection, or a new one, or record the sample as dropped at the cap."""
        deadline = self.t0 + sample.scheduled + self.timeout
        while self.idle:
            conn = self.idle.pop()  # the most recently used: few connections stay warm
            if not conn.closed:
                if sample.sent < 0:
                    self.sent += 1
                conn.send(sample, data, deadline)
                return
        if self.open >= self.max_connections:
            self.record(sample, 0, "dropped")
            return
        self.open += 1
        if sample.sent < 0:
            self.sent += 1
            sample.sent = time.monotonic() - self.t0
        task = self.loop.create_task(self._connect(sample, data, deadline))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _connect(self, sample: Sample, data: bytes, deadline: float) -> None:
        try:
            async with asyncio.timeout(max(0.001, deadline - time.monotonic())):
                _transport, protocol = await self.loop.create_connection(
                    lambda: self.connection_class(self), self.host, self.port)
        except TimeoutError:
            self.open -= 1
            self.record(sample, 0, "timeout")
            return
        except OSError:
            self.open -= 1
            self.record(sample, 0, "connect")
            return
        self.opened += 1
        conn = cast(_Connection, protocol)
        conn.send(sample, data, deadline)

    def record(self, sample: Sample, status: int, error: str) -> None:
        if sample.status or sample.error:
            return  # already recorded
        sample.status, sample.error = status, error
        if error == "dropped":
            sample.latency_ms = 0.0
        else:  # from the scheduled time, or from the real send if that was (a little) earlier
            start = sample.scheduled if sample.sent < 0 else min(sample.scheduled, sample.sent)
            sample.latency_ms = (time.monotonic() - self.t0 - start) * 1000.0
        if error == "dropped":
            self.dropped += 1
        else:
            if status:
                self.answered += 1
            if sample.failed:
                self.errors += 1
        self.in_flight -= 1
        if self.in_flight == 0:
            self.all_done.set()

    def release(self, conn: _Connection) -> None:
        self.idle.append(conn)

    def lost(self, conn: _Connection) -> None:
        self.open -= 1


async def run_load(target_host: str, target_port: int, classes: Sequence[TrafficClass], phases: Sequence[Phase],
                   timeout: float = 5.0, max_connections: int = 1000, seed: int | None = None, *,
                   poisson: bool = False, progress: Callable[[Progress], None] | None = None,
                   stop: asyncio.Event | None = None, record_header: str = "") -> LoadResult:
    """Send the profile to the target on the running loop and return every sample.

    `timeout`: seconds from a request's scheduled time until it counts as a timeout (status 0) and its
    connection is closed. `max_connections`: open connections at most (then requests are dropped).
    `seed`: repeatable Poisson arrivals (`poisson=True`; else a constant rate per phase). `progress` is called
    about once a second with the totals so far, and once at the end. Setting `stop` ends the schedule early;
    requests in flight still finish (or time out). `record_header` names a response header whose value each
    sample keeps in `Sample.header` (e.g. `X-Sim-Instance`: which upstream answered, through a gateway).
    """
    classes, phases = list(classes), list(phases)
    if not classes:
        raise ValueError("give at least one traffic class")
    if not phases:
        raise ValueError("give at least one phase")
    if len({c.name for c in classes}) != len(classes):
        raise ValueError("traffic class names must differ")
    if not (math.isfinite(timeout) and 0 < timeout <= 3600):
        raise ValueError(f"timeout {timeout!r} must be a number of seconds above 0")
    if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
        raise ValueError(f"max_connections {max_connections!r} must be a whole number of at least 1")
    if not 0 < target_port < 65536:
        raise ValueError(f"target port {target_port!r} must be from 1 to 65535")
    if record_header and not (record_header.isascii() and all(c.isalnum() or c == "-" for c in record_header)):
        raise ValueError(f"record_header {record_header!r} must be a header name such as X-Sim-Instance")
    gen = _Generator(target_host, target_port, classes, phases, timeout, max_connections, seed, poisson,
                     record_header)
    wall = time.time()
    await gen.run(progress, stop)
    return LoadResult(f"{target_host}:{target_port}", classes, phases, gen.samples, wall,
                      time.monotonic() - gen.t0, stopped=gen.stopping, connections_opened=gen.opened)


class LoadThread:
    """A run of `run_load` in a background thread with its own loop (see start_load_in_thread)."""

    def __init__(self, target_host: str, target_port: int, classes: Sequence[TrafficClass],
                 phases: Sequence[Phase], use_uvloop: bool, kwargs: dict[str, Any]) -> None:
        self.loop = new_event_loop(use_uvloop)
        self._stop: asyncio.Event | None = None
        self._latest: Progress | None = None
        self._result: LoadResult | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._done = threading.Event()
        self._user_progress: Callable[[Progress], None] | None = kwargs.pop("progress", None)
        self._args = (target_host, target_port, list(classes), list(phases))
        self._kwargs = kwargs
        self.thread = threading.Thread(target=self._run, name="accord-loadgen", daemon=True)
        self.thread.start()
        self._ready.wait(10)

    def _on_progress(self, p: Progress) -> None:
        self._latest = p
        if self._user_progress is not None:
            self._user_progress(p)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> LoadResult:
            self._stop = asyncio.Event()
            self._ready.set()
            return await run_load(*self._args, progress=self._on_progress, stop=self._stop, **self._kwargs)

        try:
            self._result = self.loop.run_until_complete(main())
        except BaseException as e:
            self._error = e
        finally:
            self._ready.set()
            self.loop.close()
            self._done.set()

    def progress(self) -> Progress | None:
        """The latest totals (about once a second)."""
        return self._latest

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> LoadResult:
        """The result once the run ends; TimeoutError if it has not after `timeout` seconds."""
        if not self._done.wait(timeout):
            raise TimeoutError("the load run has not finished")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def stop(self, timeout: float | None = None) -> LoadResult:
        """End the schedule now; requests in flight finish or time out. Returns the (partial) result."""
        stop = self._stop
        if stop is not None and not self._done.is_set():
            with contextlib.suppress(RuntimeError):  # the loop may just have closed
                self.loop.call_soon_threadsafe(stop.set)
        return self.wait(timeout)


def start_load_in_thread(target_host: str, target_port: int, classes: Sequence[TrafficClass],
                         phases: Sequence[Phase], *, use_uvloop: bool = True, **kwargs: Any) -> LoadThread:
    """Start `run_load` (same keyword arguments) in a new daemon thread; `.wait()` returns the LoadResult."""
    return LoadThread(target_host, target_port, classes, phases, use_uvloop, kwargs)


def parse_target(text: str) -> tuple[str, int]:
    """`HOST:PORT` (HOST may be `[::1]`) → (host, port); ValueError says what is wrong."""
    host, _, port = text.rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def parse_keys(text: str) -> list[str]:
    """A key file (one key a line; blank lines and # comments skipped), `-` for no key, or KEY[,KEY...]."""
    if text == "-":
        return []
    if "," not in text and os.path.isfile(text):
        try:
            with open(text, encoding="utf-8") as f:
                keys = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read key file {text!r}: {e}") from None
        if not keys:
            raise ValueError(f"key file {text!r} has no keys")
        return keys
    keys = [k.strip() for k in text.split(",")]
    if not text or not all(keys):
        raise ValueError("KEYS is empty or has an empty key (give a key file, KEY[,KEY...], or - for none)")
    return keys


def parse_class(text: str) -> TrafficClass:
    """`NAME:SHARE:KEYFILE_OR_KEY[,KEY...]:PATH[,PATH...]` → a TrafficClass; ValueError says what is wrong."""
    parts = text.split(":", 3)
    if len(parts) != 4:
        raise ValueError("expected NAME:SHARE:KEYFILE_OR_KEY[,KEY...]:PATH[,PATH...], e.g. gold:20:keys.txt:/bookings")
    name, share, keys, paths = (p.strip() for p in parts)
    try:
        share_value = float(share)
    except ValueError:
        raise ValueError(f"SHARE {share!r} is not a number") from None
    return TrafficClass(name, share_value, parse_keys(keys), [p.strip() for p in paths.split(",")])


def parse_phase(text: str) -> Phase:
    """`NAME:SECONDS:RPS` → a Phase; ValueError says what is wrong."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError("expected NAME:SECONDS:RPS, e.g. peak:10:200")
    name, seconds, rps = (p.strip() for p in parts)
    try:
        seconds_value = float(seconds)
    except ValueError:
        raise ValueError(f"SECONDS {seconds!r} is not a number") from None
    try:
        rps_value = float(rps)
    except ValueError:
        raise ValueError(f"RPS {rps!r} is not a number") from None
    return Phase(name, seconds_value, rps_value)


__all__ = [
    "ERRORS", "LoadResult", "LoadThread", "Phase", "Progress", "Sample", "SummaryRow", "TrafficClass",
    "parse_class", "parse_keys", "parse_phase", "parse_target", "percentile", "run_load", "start_load_in_thread",
    "summarize",
]
