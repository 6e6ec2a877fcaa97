"""The gateway under faults, with the real `accord gateway` command, a real upstream and real load.

- `kill -9` a worker mid-load: the supervisor starts another; of the requests answered before the kill, only the
  killed worker's last flush interval can be missing from the rollups. `SIGTERM` to a worker loses none.
- The database away for ~10 s under load (PostgreSQL: refused by a cut proxy; SQLite: locked by another writer):
  every request is answered, the rollups wait in memory and are all written once the database is back; with a
  tiny buffer the overflow is dropped, counted on /metrics, and memory stays bounded.

The figures each test measures are printed (run with -s) and recorded in docs/benchmarks.md, "Faults".
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum

from accord.lib.cutproxy import CutProxy
from accord.lib.testing import accord_command, full_sqlite_database, subprocess_env
from accord.ops.models import Heartbeat

from .conftest import EchoServer, wait_until
from .test_live import admin_status, metrics
from .test_proxy import dead_port

FLUSH = 1.0  # --flush: seconds between writes of the rollups
OK = "/bookings/1"
UNROUTED = "/nowhere/1"  # answered 404 by the gateway itself, measured under a key of its own


@dataclass
class Answer:
    at: float  # time.monotonic() when the answer (or the error) arrived
    status: int | str  # the HTTP status, or the exception's name
    connection: tuple[int, int]  # (client, n-th connection of that client)


@dataclass
class Load:
    """Clients each sending requests back to back on a keep-alive connection, noting every answer."""

    port: int
    clients: int = 6
    paths: tuple[str, ...] = (OK,)
    answers: list[Answer] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self, n: int) -> None:
        generation, i = 0, 0
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stopping.is_set():
            path = self.paths[i % len(self.paths)]
            i += 1
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                answer = Answer(time.monotonic(), response.status, (n, generation))
            except Exception as e:  # a failed request is a result to look at, not a crash
                answer = Answer(time.monotonic(), type(e).__name__, (n, generation))
                conn.close()
                generation += 1
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            with self.lock:
                self.answers.append(answer)
        conn.close()

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(self.clients)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)

    def answered(self, status: int | None = None) -> int:
        """Answers with an HTTP status (any, or the one given) so far."""
        with self.lock:
            return sum(1 for a in self.answers if isinstance(a.status, int) and (status is None or a.status == status))

    def wait_for(self, more: int, timeout: float = 30.0) -> None:
        target = self.answered() + more
        wait_until(lambda: self.answered() >= target, timeout=timeout, what=f"{more} more answers")


@dataclass
class RunningCommand:
    proc: subprocess.Popen[bytes]
    port: int
    admin: int
    log: Path

    def metric(self, name: str) -> float:
        return metrics(self.admin).get(name, 0.0)

    def workers(self) -> list[int]:
        return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def gateway(*args: str, database_url: str | None = None, env: dict[str, str] | None = None
            ) -> Iterator[RunningCommand]:
    """`accord gateway` with its own admin port (and more environment, if given); SIGTERM (then SIGKILL) on the
    way out."""
    port, admin = dead_port(), dead_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"accord-gateway-faults-{os.getpid()}-{port}.log"
    env = subprocess_env(**({"DATABASE_URL": database_url} if database_url else {}), **(env or {}))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*accord_command(), "gateway", "--listen", f"127.0.0.1:{port}", "--admin",
                                 f"127.0.0.1:{admin}", "--flush", str(FLUSH), *args],
                                env=env, stdout=log, stderr=log, start_new_session=True)
    running = RunningCommand(proc, port, admin, log_path)
    try:
        wait_until(lambda: proc.poll() is not None or admin_status(admin, "/readyz") == 200, timeout=60,
                   what="the gateway to be ready")
        assert proc.poll() is None, running.output()
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a worker left behind, if any


def stop(running: RunningCommand) -> int:
    """A graceful stop: every worker drains and writes what it measured."""
    running.proc.send_signal(signal.SIGTERM)
    return running.proc.wait(60)


def counted() -> int:
    """Requests in the stored rollups (the per-account minute rows: each request is in exactly one)."""
    from accord.gateway.models import Rollup

    return int(Rollup.objects.per_account_minutes().aggregate(n=Sum("count"))["n"] or 0)


@pytest.fixture
def booking(upstreams: list[EchoServer]) -> EchoServer:
    from accord.catalog.models import Endpoint, Pool, Service

    svc = Service.objects.create(name="booking", base_path="/bookings", allow_anonymous=True)
    pool = Pool.objects.create(service=svc, name="primary", role="primary", capacity=50)
    Endpoint.objects.create(pool=pool, url=upstreams[0].url)
    return upstreams[0]


def established_to(pid: int, port: int) -> int:
    """Established TCP connections a process holds on a local port (its open sockets matched in /proc/net)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
                    count += 1
    return count


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_load_is_replaced_and_loses_at_most_one_flush_interval(booking: EchoServer) -> None:
    with gateway("--workers", "2") as running, Load(running.port, clients=8) as load:
        load.wait_for(200)
        # a few flush intervals of load first: without periodic writes, a kill would lose all of them
        time.sleep(4 * FLUSH)
        workers = running.workers()
        assert len(workers) == 2
        victim = max(workers, key=lambda pid: established_to(pid, running.port))
        assert established_to(victim, running.port) > 0
        # each worker says it is alive (its flusher beats after a write), so `accord doctor` can tell it is gone
        assert set(Heartbeat.objects.filter(kind="gateway", stopped_at=None).values_list("pid", flat=True)) == set(workers)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: running.metric("accord_gateway_worker_restarts_total") == 1, what="a restart")
        wait_until(lambda: admin_status(running.admin, "/readyz") == 200, what="the new worker to be ready")
        replaced = running.workers()
        assert len(replaced) == 2 and victim not in replaced, (victim, replaced)
        assert admin_status(running.admin, "/healthz") == 200
        ready_at = time.monotonic()
        load.wait_for(200)
    assert stop(running) == 0, running.output()
    # the killed worker's beats just stopped; the others, stopped cleanly, said so
    beats = dict(Heartbeat.objects.filter(kind="gateway").values_list("pid", "stopped_at"))
    assert victim in beats and beats.pop(victim) is None and set(workers) - {victim} <= set(beats)
    assert all(stopped is not None for stopped in beats.values()), beats
    answers = load.answers
    ok = [a for a in answers if a.status == 200]
    assert all(a.status == 200 for a in answers if a.at < killed_at), "every request before the kill answered"
    after = [a for a in answers if a.at > ready_at]
    assert after and all(a.status == 200 for a in after), {a.status for a in after}
    # the killed worker's connections: those whose next request failed once it was gone
    dead = {a.connection for a in answers if a.at >= killed_at and not isinstance(a.status, int)}
    assert dead, "no connection of the killed worker saw it go"
    victim_answers = sorted(a.at for a in ok if a.connection in dead and a.at < killed_at)
    lost = len(ok) - counted()
    assert lost >= 0, f"{-lost} requests counted twice"
    assert lost <= len(victim_answers), "requests the other worker answered are missing"
    lost_seconds = killed_at - victim_answers[-lost] if lost else 0.0
    print(f"\nkill -9 of a worker: {lost} of {len(ok)} answered requests not counted, the killed worker's last "
          f"{lost_seconds:.2f} s (flush interval {FLUSH} s)")
    # At most one flush interval: each write starts early by what recent writes took (Flusher.lead), so the last
    # committed write covers everything measured until one interval before the kill, the write under way when it
    # landed included. Without the lead: up to an interval plus that write; without periodic flushes: everything.
    assert lost_seconds <= FLUSH, f"lost the last {lost_seconds:.2f} s of counts"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_stopped_with_sigterm_mid_load_is_replaced_and_loses_no_count(booking: EchoServer) -> None:
    """SIGTERM to one worker (not the supervisor), as an operator or an OOM-averse orchestrator might send: it
    finishes its requests, writes everything it measured and exits; the supervisor starts another. `--flush 3600`
    makes that last write the only one before the gateway's own stop, so a count the stopped worker did not write
    on its way out is missing for good."""
    with gateway("--workers", "2", "--flush", "3600") as running, Load(running.port, clients=8) as load:
        load.wait_for(300)
        workers = running.workers()
        assert len(workers) == 2
        victim = max(workers, key=lambda pid: established_to(pid, running.port))
        assert established_to(victim, running.port) > 0
        termed_at = time.monotonic()
        os.kill(victim, signal.SIGTERM)
        wait_until(lambda: running.metric("accord_gateway_worker_restarts_total") == 1, what="a restart")
        written_by_victim = counted()  # nothing else has written yet: only the stopped worker's last flush
        wait_until(lambda: admin_status(running.admin, "/readyz") == 200, what="the new worker to be ready")
        replaced = running.workers()
        assert len(replaced) == 2 and victim not in replaced, (victim, replaced)
        load.wait_for(300)
    assert stop(running) == 0, running.output()
    answers = load.answers
    ok = [a for a in answers if a.status == 200]
    assert all(a.status == 200 for a in answers if a.at < termed_at), "every request before the SIGTERM answered"
    # Its connections were closed once their requests were done (some with `Connection: close`, which the client
    # follows by reconnecting, so not every one shows as an error here); what it had answered it wrote itself.
    assert written_by_victim > 0, "the stopped worker wrote nothing on its way out"
    assert counted() == len(ok), f"{len(ok) - counted()} answered requests not counted"
    print(f"\nSIGTERM of a worker: {len(ok)} of {len(answers)} requests answered, {counted()} counted "
          f"({written_by_victim} written by the stopped worker on its way out), 0 lost")


@contextlib.contextmanager
def database_url_for_gateway() -> Iterator[tuple[str, CutProxy | None]]:
    """The URL the gateway uses: through a cuttable proxy on PostgreSQL, the test database's file on SQLite."""
    if connection.vendor == "postgresql":
        db = settings.DATABASES["default"]
        port = int(db.get("PORT") or 5432)
        with CutProxy(db.get("HOST") or "127.0.0.1", port) as proxy:
            url = subprocess_env()["DATABASE_URL"].replace(f":{port}/", f":{proxy.port}/")
            assert str(proxy.port) in url
            yield url, proxy
    else:
        yield subprocess_env()["DATABASE_URL"], None


@contextlib.contextmanager
def database_away(proxy: CutProxy | None) -> Iterator[None]:
    """PostgreSQL refusing connections (open ones dropped), or SQLite locked by another writer, until exit."""
    if proxy is not None:
        proxy.cut()
        try:
            yield
        finally:
            proxy.restore()
        return
    locker = sqlite3.connect(settings.DATABASES["default"]["NAME"], timeout=30, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # in WAL mode: readers go on, every writer waits
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


OUTAGE = 10.0  # seconds the database is away


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_database_away_under_load_loses_no_count_and_serves_every_request(booking: EchoServer) -> None:
    with database_url_for_gateway() as (url, proxy), gateway("--workers", "2", database_url=url) as running, \
            Load(running.port, clients=4) as load:
        load.wait_for(100)
        with database_away(proxy):
            away_at = time.monotonic()
            during = load.answered()
            wait_until(lambda: running.metric("accord_gateway_pending") > 0, what="measurements held")
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - away_at)))
            served = load.answered(200) - during
            held = running.metric("accord_gateway_pending")
        back_at = time.monotonic()
        answered_then = load.answered()
        wait_until(lambda: counted() >= answered_then, timeout=30, what="the held rollups to be written")
        recovery = time.monotonic() - back_at
        load.wait_for(50)
        seen = metrics(running.admin)
    assert stop(running) == 0, running.output()
    answers = load.answers
    assert all(a.status == 200 for a in answers), {str(a.status) for a in answers}
    assert served > 0 and held > 0
    if proxy is not None:
        assert seen["accord_gateway_flush_failures_total"] > 0, "the outage was never seen"
    assert seen["accord_gateway_dropped_total"] == 0
    assert counted() == len(answers), "each request counted exactly once"
    print(f"\ndatabase away {OUTAGE:.0f} s ({connection.vendor}): {served} requests served meanwhile, {held:.0f} "
          f"held at the end, all written {recovery:.2f} s after it was back; {len(answers)} answered, "
          f"{counted()} counted, 0 dropped")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_full_buffer_drops_the_oldest_rollups_counts_them_and_keeps_serving(booking: EchoServer) -> None:
    # one rollup key kept: requests routed and not routed make two keys a minute, so one of them must go
    with database_url_for_gateway() as (url, proxy), gateway("--buffer-keys", "1", database_url=url) as running:
        with Load(running.port, clients=4, paths=(OK, UNROUTED)) as load:
            load.wait_for(100)
            rss_before = running.metric("accord_gateway_max_rss_bytes")
            keys_seen = []
            with database_away(proxy):
                away_at = time.monotonic()
                wait_until(lambda: running.metric("accord_gateway_dropped_total") > 0, timeout=30, what="a drop")
                while time.monotonic() - away_at < 6:
                    keys_seen.append(running.metric("accord_gateway_buffered_keys"))
                    time.sleep(0.25)
                rss_during = running.metric("accord_gateway_max_rss_bytes")
            load.wait_for(50)
        # the load has stopped: once everything is written, no more can be dropped
        wait_until(lambda: running.metric("accord_gateway_pending") == 0, timeout=30, what="everything written")
        dropped = int(running.metric("accord_gateway_dropped_total"))
        assert stop(running) == 0, running.output()
    answers = load.answers
    assert {a.status for a in answers} == {200, 404}
    # what was answered is either counted or dropped (and counted as dropped): never both, never neither
    assert counted() + dropped == len(answers)
    # memory: one key kept, plus what came in since the last tick (a second's keys; the write under way's)
    assert max(keys_seen) <= 8, keys_seen
    assert rss_during - rss_before < 20 * 1024 * 1024
    assert "measurement buffer full (1 rollup keys" in running.output()
    print(f"\nbuffer of 1 key, database away 6 s ({connection.vendor}): {dropped} of {len(answers)} measured requests "
          f"dropped and counted, {counted()} written")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_wall_clock_stepped_back_an_hour_and_forward_again_loses_and_doubles_no_count(
        booking: EchoServer, tmp_path: Path) -> None:
    """The host's wall clock goes back an hour under load, then forward again (the workers' clocks, through the
    clock shim; monotonic time goes on). A request is counted in the minute the wall clock showed when it started:
    after the step back, in the minutes of an hour before, added to whatever they hold. Nothing is lost or counted
    twice, the hour and all-accounts rows agree with the minute rows, and no latency is negative or an hour long
    (durations are measured on the monotonic clock)."""
    from accord.gateway.models import ALL_ACCOUNTS, HOUR, MINUTE, Rollup
    from accord.lib.tests.clockshift import shift

    clock = tmp_path / "clock-shift"
    clock.write_text("0s")
    paths = [str(Path(shift.__file__).resolve().parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {"ACCORD_TEST_CLOCK_FILE": str(clock), "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
    started = time.time()
    with gateway("--workers", "2", env=env) as running, Load(running.port, clients=4) as load:
        load.wait_for(100)
        time.sleep(1.5 * FLUSH)  # a flush or two on the right clock first
        clock.write_text("-1h")
        load.wait_for(100)
        time.sleep(2.5 * FLUSH)  # writes on the moved clock, while requests straddle the step
        clock.write_text("0s")
        load.wait_for(100)
        time.sleep(1.5 * FLUSH)
    assert stop(running) == 0, running.output()
    ended = time.time()
    answers = load.answers
    assert answers and all(a.status == 200 for a in answers), {str(a.status) for a in answers}
    minutes = list(Rollup.objects.per_account_minutes())
    now_rows = [r for r in minutes if started - MINUTE <= r.window_start.timestamp() <= ended]
    hour_ago = [r for r in minutes if started - HOUR - MINUTE <= r.window_start.timestamp() <= ended - HOUR]
    assert len(now_rows) + len(hour_ago) == len(minutes), "a minute row neither now nor an hour ago"
    in_now, in_hour_ago = sum(r.count for r in now_rows), sum(r.count for r in hour_ago)
    assert in_now > 0 and in_hour_ago > 0, (in_now, in_hour_ago)
    assert in_now + in_hour_ago == counted() == len(answers), "each request counted exactly once"
    for seconds in (MINUTE, HOUR):  # the coarser rows add up to the same
        everyone = Rollup.objects.filter(window_seconds=seconds, account=ALL_ACCOUNTS).aggregate(n=Sum("count"))
        assert everyone["n"] == len(answers), seconds
    assert Rollup.objects.filter(window_seconds=HOUR).exclude(account=ALL_ACCOUNTS).aggregate(
        n=Sum("count"))["n"] == len(answers)
    for row in minutes:  # no request measured across the step took "minus an hour" or "an hour"
        assert 0 <= row.latency_sum_ms / row.count < 1000, (row.window_start, row.count, row.latency_sum_ms)
    print(f"\nwall clock back an hour and forward again under load: {len(answers)} answered = {counted()} counted, "
          f"{in_hour_ago} of them in the minutes of an hour before")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "sqlite", reason="a database file that cannot grow is SQLite's")
def test_a_full_disk_keeps_the_gateway_serving_and_its_counts_are_written_once_there_is_room(
        booking: EchoServer) -> None:
    """The SQLite file cannot grow (as on a full file system): every request is still answered, the rollups
    wait in memory, and once room is made they are all written, each once. Requests go to 60 operations, so each
    write needs new pages (a few rows could still fit in the room left on the tables' own pages)."""
    from accord.catalog.models import Operation, Service

    service = Service.objects.get(name="booking")
    for n in range(60):
        Operation.objects.create(service=service, name=f"op{n}", method="GET", path_pattern=f"/bookings/op{n}")
    paths = tuple(f"/bookings/op{n}" for n in range(60))
    with full_sqlite_database() as full:
        env = {"ACCORD_SQLITE_MAX_PAGES": str(full.pages)}
        with gateway("--workers", "2", env=env) as running, Load(running.port, clients=4, paths=paths) as load:
            load.wait_for(100)
            wait_until(lambda: running.metric("accord_gateway_flush_failures_total") > 0, timeout=30,
                       what="a write refused for want of room")
            full_at = time.monotonic()
            during = load.answered(200)
            time.sleep(3 * FLUSH)
            served = load.answered(200) - during
            held = running.metric("accord_gateway_pending")
            assert counted() == 0, "nothing can have been written to a full database"
            full.free()
            freed_at = time.monotonic()
            answered_then = load.answered()
            wait_until(lambda: counted() >= answered_then, timeout=30, what="the held rollups to be written")
            recovery = time.monotonic() - freed_at
            load.wait_for(50)
            seen = metrics(running.admin)
        assert stop(running) == 0, running.output()
    answers = load.answers
    assert all(a.status == 200 for a in answers), {str(a.status) for a in answers}
    assert served > 0 and held > 0
    assert seen["accord_gateway_dropped_total"] == 0
    assert counted() == len(answers), "each request counted exactly once"
    assert "full" in running.output(), "the refused writes are logged with their reason"
    print(f"\ndisk full (SQLite cannot grow): {served} requests served in {3 * FLUSH:.0f} s after the first refused "
          f"write ({time.monotonic() - full_at:.1f} s full in all), {held:.0f} held; all written {recovery:.2f} s "
          f"after room was made; {len(answers)} answered, {counted()} counted, 0 dropped")
