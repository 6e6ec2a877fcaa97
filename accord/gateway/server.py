"""Running the gateway: one worker's life (serve, reload, flush, drain) and the supervisor of N workers.

The supervisor forks the workers, which share the listening port with SO_REUSEPORT, and serves the admin port
(/healthz, /readyz, /metrics) from what each worker reports over a pipe every second. SIGTERM: the supervisor
passes it on; each worker stops accepting, finishes the requests in flight, flushes its measurements and exits.
A worker that dies otherwise (kill -9, out of memory) is replaced by a new one; it loses at most the measurements
of its last flush interval (docs/gateway.md, "Faults").
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.db import connections

from . import dataplane
from .exposition import MAX_SERIES, AccountSeries, latency_bounds_ms, merge_report, render_account_series
from .flusher import BUFFER_KEYS, Flusher
from .limits import Limits
from .live import LiveReporter
from .measure import Accumulator
from .proxy import Gateway
from .snapshot import current_version, load_snapshot


@dataclass
class WorkerConfig:
    """How one worker runs."""

    host: str
    port: int
    reuse_port: bool = False
    workers: int = 1
    poll: float = 0.25  # seconds between snapshot version checks
    full_reload: float = 10.0  # seconds between unconditional reloads (bulk writes send no signals)
    grace: float = 30.0
    flush_interval: float = 2.0
    buffer_keys: int = BUFFER_KEYS  # rollup keys kept while the database is away
    live_interval: float = 1.0  # seconds between live signal writes; 0 turns them off
    metrics_series: int = MAX_SERIES  # per-account label sets a worker keeps for /metrics
    limits: Limits = field(default_factory=Limits)


class SnapshotKeeper:
    """Keeps a gateway's snapshot fresh: a cheap version check every `poll` seconds, a reload when it moved."""

    def __init__(self, gateway: Gateway, poll: float, full_reload: float) -> None:
        self.gateway = gateway
        self.poll = poll
        self.full_reload = full_reload
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="gateway-snapshot")
        self.reloads = 0
        self.failures = 0
        self._last_error = ""

    def _check(self, force: bool) -> Any:
        try:
            snapshot = self.gateway.snapshot
            if not force and current_version() == snapshot.version and time.time() < snapshot.next_expiry:
                return None
            return load_snapshot()
        except Exception:
            connections.close_all()  # a broken connection is replaced on the next attempt
            raise

    async def run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        last_full = loop.time()
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.poll)
            if stopping.is_set():
                return
            force = loop.time() - last_full >= self.full_reload
            try:
                snapshot = await loop.run_in_executor(self.executor, self._check, force)
            except Exception as e:  # the database may be restarting: keep serving the last snapshot
                self.failures += 1
                error = f"{type(e).__name__}: {e}"
                if error != self._last_error:
                    print(f"gateway: snapshot check failed, keeping the last one: {error}", file=sys.stderr, flush=True)
                self._last_error = error
                continue
            self._last_error = ""
            if force:
                last_full = loop.time()
            if snapshot is not None:
                self.gateway.snapshot = snapshot  # one assignment: requests in flight keep the one they started with
                self.reloads += 1

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, connections.close_all)
        self.executor.shutdown(wait=True)


def worker_stats(gateway: Gateway, flusher: Flusher, keeper: SnapshotKeeper | None, ready: bool,
                 series: AccountSeries | None = None, full: bool = True) -> dict[str, Any]:
    """What a worker reports to the supervisor for /metrics and /readyz, with the account series counted since the
    last report, or all of them when `full` (the supervisor keeps the others; a report the pipe had no room for is
    skipped, so all are sent again now and then: a report stays small however many series there are)."""
    stats: dict[str, Any] = {
        "pid": os.getpid(), "ready": ready, "draining": gateway.draining,
        "requests": gateway.requests, "outcomes": dict(gateway.outcomes), "in_flight": gateway.in_flight,
        "connections": len(gateway.connections), "snapshot_version": gateway.snapshot.version,
        "snapshot_reloads": keeper.reloads if keeper else 0, "snapshot_failures": keeper.failures if keeper else 0,
        "measured": gateway.accumulator.recorded, "flushed": flusher.flushed, "flush_failures": flusher.failures,
        "pending": flusher.pending, "dropped": flusher.dropped,
        "buffered_keys": flusher.keys, "upstream_connections_opened": gateway.pool.opened,
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux reports KiB
        "compiled_workers": int(dataplane.runs_compiled(gateway)),
    }
    if series is not None and (series.changed or full):
        stats["account_series"] = series.report(full)
    return stats


async def run_worker(config: WorkerConfig, report: Callable[[dict[str, Any]], None] | None = None) -> int:
    """One worker, until SIGTERM/SIGINT; returns the exit code (0: every measurement was written)."""
    loop = asyncio.get_running_loop()
    keeper_thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-snapshot")
    try:
        snapshot = await loop.run_in_executor(keeper_thread, load_snapshot)
        bounds = await loop.run_in_executor(keeper_thread, latency_bounds_ms)
    finally:
        await loop.run_in_executor(keeper_thread, connections.close_all)
        keeper_thread.shutdown()
    plane = dataplane.choose()  # proxy.py compiled by mypyc when a current build is there, else as Python
    gateway: Gateway = plane.module.Gateway(snapshot, config.limits, Accumulator(), config.workers)
    flusher = Flusher(gateway.accumulator, config.flush_interval, max_keys=config.buffer_keys)
    series = AccountSeries(bounds, config.metrics_series)
    gateway.accumulator.observer = series.add
    keeper = SnapshotKeeper(gateway, config.poll, config.full_reload)
    server = await plane.module.serve(gateway, config.host, config.port, reuse_port=config.reuse_port)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    async def reporter() -> None:
        ticks = 0
        while not stopping.is_set():
            if report is not None:
                report(worker_stats(gateway, flusher, keeper, True, series, full=ticks % 10 == 0))
                ticks += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 1.0)

    tasks = [loop.create_task(keeper.run(stopping)), loop.create_task(flusher.run(stopping)),
             loop.create_task(reporter())]
    live = LiveReporter(gateway, config.live_interval) if config.live_interval > 0 else None
    if live is not None:
        tasks.append(loop.create_task(live.run(stopping)))
    await stopping.wait()
    server.close()  # stop accepting
    gateway.start_draining()
    if report is not None:
        report(worker_stats(gateway, flusher, keeper, False, series))
    drained = await gateway.drained(config.grace)
    for conn in list(gateway.connections):
        conn._close()
    await asyncio.sleep(0)  # let connection_lost run and count what the clients left behind
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    written = await flusher.close()
    await keeper.close()
    if live is not None:
        await live.close()
    gateway.pool.close()
    if report is not None:
        report(worker_stats(gateway, flusher, keeper, False, series))
    if not drained:
        print("gateway: the grace period ended with requests in flight", file=sys.stderr, flush=True)
    if not written:
        print(f"gateway: {gateway.accumulator.pending} measured requests could not be written", file=sys.stderr,
              flush=True)
    return 0 if written else 1


PROMETHEUS_COUNTERS = {
    "requests": "Requests answered, by outcome.",
    "measured": "Requests recorded in rollups.",
    "flushed": "Requests whose rollups were written to the database.",
    "flush_failures": "Flushes that failed and were retried.",
    "dropped": "Measured requests dropped because the buffer was full while the database was away.",
    "snapshot_reloads": "Snapshots loaded after a change.",
    "snapshot_failures": "Snapshot checks that failed.",
    "upstream_connections_opened": "Connections opened to upstreams.",
}
PROMETHEUS_GAUGES = {
    "in_flight": "Requests in flight.",
    "connections": "Open client connections.",
    "pending": "Measured requests not yet written.",
    "buffered_keys": "Rollup keys held in memory, not yet written (bounded by --buffer-keys).",
    "compiled_workers": "Workers running the data plane compiled with mypyc (the others run it as Python).",
}


def render_metrics(stats: list[dict[str, Any]], alive: int, restarts: int = 0) -> str:
    """The Prometheus text exposition of the workers' latest reports."""
    lines = []
    for name, help_text in PROMETHEUS_COUNTERS.items():
        metric = f"accord_gateway_{name}_total"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        if name == "requests":
            outcomes: dict[str, int] = {}
            for s in stats:
                for outcome, n in s.get("outcomes", {}).items():
                    outcomes[outcome] = outcomes.get(outcome, 0) + n
            lines += [f'{metric}{{outcome="{o}"}} {n}' for o, n in sorted(outcomes.items())]
        else:
            lines.append(f"{metric} {sum(int(s.get(name, 0)) for s in stats)}")
    for name, help_text in PROMETHEUS_GAUGES.items():
        metric = f"accord_gateway_{name}"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge",
                  f"{metric} {sum(int(s.get(name, 0)) for s in stats)}"]
    rss = max((int(s.get("max_rss_bytes", 0)) for s in stats), default=0)
    lines += ["# HELP accord_gateway_max_rss_bytes The largest peak resident memory of a worker.",
              "# TYPE accord_gateway_max_rss_bytes gauge", f"accord_gateway_max_rss_bytes {rss}"]
    versions = [int(s.get("snapshot_version", 0)) for s in stats]
    lines += ["# HELP accord_gateway_snapshot_version The oldest snapshot version a worker serves.",
              "# TYPE accord_gateway_snapshot_version gauge",
              f"accord_gateway_snapshot_version {min(versions) if versions else 0}",
              "# HELP accord_gateway_workers_alive Worker processes running.",
              "# TYPE accord_gateway_workers_alive gauge", f"accord_gateway_workers_alive {alive}",
              "# HELP accord_gateway_worker_restarts_total Workers restarted after they died.",
              "# TYPE accord_gateway_worker_restarts_total counter", f"accord_gateway_worker_restarts_total {restarts}"]
    lines += render_account_series([s["account_series"] for s in stats if "account_series" in s])
    return "\n".join(lines) + "\n"


class Supervisor:
    """Forks the workers, relays SIGTERM, and answers the admin port from the workers' reports."""

    def __init__(self, config: WorkerConfig, workers: int, admin: tuple[str, int] | None) -> None:
        self.config = config
        self.count = workers
        self.admin = admin
        self.children: dict[int, int] = {}  # pid -> worker index
        self.stats: dict[int, dict[str, Any]] = {}
        self.alive: set[int] = set()
        self.stopping = False
        self.lock = threading.Lock()
        self.admin_server: ThreadingHTTPServer | None = None
        self.restarts = 0
        self.started: dict[int, float] = {}  # worker index -> time.monotonic() of its last start
        self.pauses: dict[int, float] = {}  # worker index -> seconds waited before its last restart

    def _fork(self, index: int) -> tuple[int, int]:
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with_parent(parent)
                os.close(read_fd)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.set_blocking(write_fd, False)
                with contextlib.suppress(OSError, AttributeError):  # room for a report with many account series
                    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 1 << 20)
                unsent = bytearray()  # the rest of a report the pipe had no room for: a line is never cut

                def report(stats: dict[str, Any]) -> None:
                    with contextlib.suppress(BlockingIOError, BrokenPipeError):
                        if not unsent:
                            unsent.extend(json.dumps({"worker": index, **stats}).encode() + b"\n")
                        while unsent:  # an older report first; this one is skipped (the next says it all again)
                            del unsent[:os.write(write_fd, unsent)]

                _install_uvloop()
                profile = os.environ.get("ACCORD_GATEWAY_PROFILE")
                if profile:  # for bench/gateway.py --profile: where a worker's time goes
                    import cProfile

                    profiler = cProfile.Profile()
                    code = profiler.runcall(asyncio.run, run_worker(self.config, report))
                    profiler.dump_stats(profile if self.count == 1 else f"{profile}.{index}")
                else:
                    code = asyncio.run(run_worker(self.config, report))
            except BaseException as e:
                print(f"gateway worker {index}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            finally:
                os._exit(code)
        os.close(write_fd)
        return pid, read_fd

    def _start_worker(self, index: int) -> int:
        pid, read_fd = self._fork(index)
        self.children[pid] = index
        self.alive.add(index)
        self.started[index] = time.monotonic()
        return read_fd

    def _restart(self, index: int) -> None:
        """Fork a worker in place of one that died. One that dies soon after starting (no database yet, a bad
        setting) is restarted after a growing pause (0.1 s doubling to 5 s) rather than in a tight loop.

        The supervisor has threads by now (report readers, the admin server), which a fork does not copy: the
        worker uses no lock or object of theirs, only the configuration, and starts its own event loop.
        """
        lived = time.monotonic() - self.started.get(index, 0.0)
        pause = self.pauses[index] = 0.0 if lived >= 10 else min(5.0, max(0.1, 2 * self.pauses.get(index, 0.0)))
        time.sleep(pause)
        if self.stopping:
            return
        read_fd = self._start_worker(index)
        self.restarts += 1
        print(f"gateway worker {index} restarted (pid {next(p for p, i in self.children.items() if i == index)})",
              file=sys.stderr, flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # see run()
        try:
            threading.Thread(target=self._read_reports, args=(index, read_fd), daemon=True).start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})

    def _read_reports(self, index: int, read_fd: int) -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for line in pipe:
                with contextlib.suppress(ValueError):
                    stats = json.loads(line)
                    with self.lock:
                        kept = self.stats.get(index, {}).get("account_series")
                        if "account_series" in stats:
                            stats["account_series"] = merge_report(kept, stats["account_series"], stats.get("pid", 0))
                        elif kept is not None and kept.get("pid") == stats.get("pid"):
                            stats["account_series"] = kept  # nothing counted since
                        self.stats[index] = stats

    def run(self) -> int:
        """Serve until every worker has exited; returns the exit code."""
        connections.close_all()  # never share a database connection across fork
        readers = []
        for index in range(self.count):
            readers.append((index, self._start_worker(index)))
        def stop(signum: int, frame: object) -> None:
            self.stopping = True
            for pid in list(self.children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # Threads only after every fork: a fork copies no other thread and no lock they hold. They start with
        # SIGTERM and SIGINT blocked, so the kernel always hands those to the main thread: its os.wait() then
        # returns EINTR and the handler runs. Caught by another thread, the signal would only set a flag that
        # the main thread, blocked in wait() until a worker exits, never gets to look at.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            for index, read_fd in readers:
                threading.Thread(target=self._read_reports, args=(index, read_fd), daemon=True).start()
            if self.admin is not None:
                self.admin_server = _admin_server(self, *self.admin)
                threading.Thread(target=self.admin_server.serve_forever, daemon=True).start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        code = 0
        while self.children:
            pid, status = os.wait()
            if pid not in self.children:
                continue
            index = self.children.pop(pid)
            self.alive.discard(index)
            exit_code = os.waitstatus_to_exitcode(status)
            if exit_code != 0 or not self.stopping:
                print(f"gateway worker {index} (pid {pid}) exited with {exit_code}", file=sys.stderr, flush=True)
            if not self.stopping:  # killed (kill -9, out of memory) or crashed: a new worker takes its place
                self._restart(index)
            elif exit_code != 0:
                code = 1
        if self.admin_server is not None:
            self.admin_server.shutdown()
            self.admin_server.server_close()
        return code

    def health(self) -> tuple[int, str]:
        healthy = len(self.alive) == self.count
        return (200, "ok\n") if healthy else (503, f"{self.count - len(self.alive)} worker(s) down\n")

    def readiness(self) -> tuple[int, str]:
        with self.lock:
            ready = sum(1 for i in self.alive if self.stats.get(i, {}).get("ready"))
        if self.stopping:
            return 503, "draining\n"
        return (200, "ready\n") if ready == self.count else (503, f"{ready} of {self.count} workers ready\n")

    def metrics(self) -> str:
        with self.lock:
            stats = list(self.stats.values())
        return render_metrics(stats, len(self.alive), self.restarts)


def _admin_server(supervisor: Supervisor, host: str, port: int) -> ThreadingHTTPServer:
    class AdminHandler(BaseHTTPRequestHandler):
        """/healthz, /readyz and /metrics."""

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            content_type = "text/plain; charset=utf-8"
            if path == "/healthz":
                status, text = supervisor.health()
            elif path == "/readyz":
                status, text = supervisor.readiness()
            elif path == "/metrics":
                status, text = 200, supervisor.metrics()
                content_type = "text/plain; version=0.0.4; charset=utf-8"
            else:
                status, text = 404, "not found: try /healthz, /readyz or /metrics\n"
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

    return Server((host, port), AdminHandler)


def _die_with_parent(parent: int) -> None:
    """A worker whose supervisor is killed (SIGKILL, OOM) gets SIGTERM instead of serving on as an orphan."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the supervisor died before the line above ran
        os.kill(os.getpid(), signal.SIGTERM)


def _install_uvloop() -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
        pass
