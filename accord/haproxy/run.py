"""`accord haproxy run`: HAProxy started with the rendered configuration and kept in step with the snapshot.

Each instance is HAProxy in master-worker mode in the foreground (`haproxy -W -db -f FILE`), with a Runtime API
socket of its own. The runner watches the snapshot version as the Python gateway's `SnapshotKeeper` does (a cheap
check every `poll` seconds, a full reload every `full_reload` seconds and when an action expires) and, when it moved:

- the maps that follow keys and actions (`RUNTIME_MAPS`) are changed through each instance's Runtime API (`del map`,
  `add map`, `set map`): no reload, the worker process stays the same, connections stay open;
- the map files are rewritten too, so a restart or a reload starts from the current state;
- an endpoint's weight, its maxconn (an admission action switched on or off) or its state (enabled or disabled in
  the catalog) alone: `set server BACKEND/SERVER weight N`, `set maxconn server BACKEND/SERVER N`, `set server
  BACKEND/SERVER state ready|maint` through each Runtime API, no reload;
- anything else (a service, a pool, an endpoint, a base path) changes the configuration: it is written and each
  master is sent SIGUSR2, HAProxy's seamless reload (a new worker takes the listening sockets; the old one finishes
  its requests).

It also writes the pools' live signals (`LivePool`, what governance's `pool(...).utilisation` and `in_flight` read),
as the gateway's `LiveReporter` does: HAProxy's own count of each server's current sessions (`show stat`), sampled
every `PoolSampler.every` seconds and integrated into busy time, written every `live` seconds. The collector cannot
give these: it hears of a request only when it has ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from django.db import connections

from accord.gateway.live import RETENTION_SECONDS, worker_name, write_live
from accord.gateway.models import LivePool
from accord.gateway.snapshot import Snapshot, current_version, load_snapshot
from accord.ops.heartbeat import Beat

from .render import MAPS, RUNTIME_MAPS, Options, Rendered, render, too_many_rate_limits, write
from .runtime import Runtime, RuntimeError_, diff_map

HAPROXY = os.environ.get("ACCORD_HAPROXY", "/usr/sbin/haproxy")
SBIN = Path("/usr/sbin")  # where Debian's package puts it (not on every user's PATH)
POLL = 0.25  # production defaults of `accord haproxy run`: seconds between snapshot version checks (map sync)
LIVE = 1.0  # ... and between the pools' live signal writes
INSTALL = "apt-get install haproxy (Debian/Ubuntu), or name the binary in ACCORD_HAPROXY"


def find_haproxy(environ: dict[str, str] | None = None, sbin: Path = SBIN) -> tuple[str | None, str]:
    """The HAProxy binary to run, and where it was looked for: ACCORD_HAPROXY when set (it must be an executable
    file), else `haproxy` on PATH, else in /usr/sbin. (None, where) when there is none."""
    env = os.environ if environ is None else environ
    named = env.get("ACCORD_HAPROXY", "")
    if named:
        ok = os.path.isfile(named) and os.access(named, os.X_OK)
        return (named if ok else None), f"ACCORD_HAPROXY={named}"
    found = shutil.which("haproxy", path=env.get("PATH", ""))
    if found is None and (sbin / "haproxy").is_file() and os.access(sbin / "haproxy", os.X_OK):
        found = str(sbin / "haproxy")
    return found, f"`haproxy` on PATH or in {sbin}"


_WEIGHT = re.compile(r"^(    server \S+ \S+ weight )\d+( maxconn )\d+ (.*?)( disabled)?$", re.MULTILINE)
_ANY_WEIGHT = r"\1*\2* \3"
_SETTINGS = (("weight", "set server {name} weight {value}"), ("maxconn", "set maxconn server {name} {value}"),
             ("state", "set server {name} state {value}"))


def server_settings(config: str) -> dict[str, dict[str, str]]:
    """`backend/server` -> {"weight": N, "maxconn": N, "state": maint|ready}, for every server line of a rendered
    configuration (a disabled endpoint is a server in maintenance)."""
    settings, backend = {}, ""
    for line in config.splitlines():
        if line.startswith("backend "):
            backend = line.split()[1]
        elif line[:1] not in ("", " ", "#"):  # another section (the log ring's `server` is not a backend's)
            backend = ""
        elif backend and line.startswith("    server "):
            parts = line.split()
            settings[f"{backend}/{parts[1]}"] = {"weight": parts[parts.index("weight") + 1],
                                                 "maxconn": parts[parts.index("maxconn") + 1],
                                                 "state": "maint" if parts[-1] == "disabled" else "ready"}
    return settings


def _weight_commands(old: str, new: str) -> list[str]:
    """The Runtime API commands that bring every server of `old` to `new`: weight, then maxconn, then state (an
    endpoint enabled takes its share of the capacity before its first request)."""
    before = server_settings(old)
    return [command.format(name=name, value=values[key]) for name, values in server_settings(new).items()
            for key, command in _SETTINGS if before.get(name, {}).get(key) != values[key]]


_PEER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PEER_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)$")


def parse_peers(text: str, local: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """`NAME=HOST:PORT,...` (every instance on every host that shares the rate table) and `NAME[,NAME...]` (this
    runner's instances among them, one per instance) -> ((name, address), ...), (local name, ...). ValueError says
    what is wrong: a malformed entry or address, a port out of range, a name or address given twice, a local name
    that is not one of the peers."""
    peers: list[tuple[str, str]] = []
    for entry in (e.strip() for e in text.split(",")):
        name, sep, address = entry.partition("=")
        if not sep or not _PEER_NAME.match(name.strip()):
            raise ValueError(f"--peers entry '{entry}' is not NAME=HOST:PORT (NAME: letters, digits, . _ -)")
        host, colon, port = address.strip().rpartition(":")
        if not colon or not _PEER_HOST.match(host):
            raise ValueError(f"--peers entry '{entry}': '{address}' is not HOST:PORT, e.g. 10.0.0.2:10001")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--peers entry '{entry}': port '{port}' is not between 1 and 65535")
        peers.append((name.strip(), f"{host}:{int(port)}"))
    for i, what in ((0, "name"), (1, "address")):
        seen = [p[i] for p in peers]
        twice = sorted({v for v in seen if seen.count(v) > 1})
        if twice:
            raise ValueError(f"--peers names the {what} {', '.join(twice)} more than once")
    names = tuple(n.strip() for n in local.split(",") if n.strip())
    if not names:
        raise ValueError("--peers needs --peer-name: this runner's instance(s) among the peers")
    unknown = [n for n in names if n not in {p[0] for p in peers}]
    if unknown:
        raise ValueError(f"--peer-name {', '.join(unknown)} is not one of the peers ({', '.join(p[0] for p in peers)})")
    if len(set(names)) != len(names):
        raise ValueError(f"--peer-name '{local}' names an instance twice")
    return tuple(peers), names


def instance_options(options: Options, instances: int, peer_ports: tuple[int, ...] = (),
                     peers: tuple[tuple[str, str], ...] = (), local_peers: tuple[str, ...] = ()) -> list[Options]:
    """One set of options per instance: all share the maps; each has its configuration file and socket. With
    `peer_ports` (one per instance), the rate table is shared: instance I is peer `accordI` on the listen host at the
    I-th port, and each pushes its updates to the others. With `peers` (every instance on every host, by name) and
    `local_peers` (this runner's, one per instance), the same across hosts."""
    if peer_ports and len(peer_ports) != instances:
        raise ValueError(f"{len(peer_ports)} peer ports for {instances} instance(s): give one per instance")
    if peers and len(local_peers) != instances:
        raise ValueError(f"{len(local_peers)} local peer name(s) for {instances} instance(s): give one per instance")
    if peer_ports:
        host = options.listen.rpartition(":")[0]
        host = "127.0.0.1" if host in ("", "*", "0.0.0.0", "::", "[::]") else host
        peers = tuple((f"accord{i}", f"{host}:{port}") for i, port in enumerate(peer_ports, start=1))
        local_peers = tuple(name for name, _ in peers)
    if instances <= 1:
        return [replace(options, peers=peers, local_peer=local_peers[0]) if peers else options]
    return [replace(options, config=options.directory / f"haproxy-{i}.cfg",
                    runtime=options.directory / f"admin-{i}.sock", peers=peers,
                    local_peer=local_peers[i - 1] if peers else "") for i in range(1, instances + 1)]


def check_config(path: Path, haproxy: str = HAPROXY) -> tuple[bool, str]:
    """`haproxy -c -f FILE`: whether HAProxy accepts the file, and what it said."""
    done = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def _die_with_parent(parent: int) -> Callable[[], None]:
    """For the child, before exec: SIGTERM from the kernel when the runner dies (even by kill -9), so an HAProxy
    is never left serving a snapshot nobody keeps in step (`PR_SET_PDEATHSIG`, Linux)."""

    def setup() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the runner died before the line above ran
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


def pool_sessions(stat_csv: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(service, pool) -> (requests in flight to the pool's servers, requests queued for them), from one instance's
    `show stat` CSV. Servers are `pool.N` in backend `service.pool` (the standby pools' servers also sit, as backups,
    in the primary's backend: they count for their own pool); a backend's own queue (requests not yet given a
    server) counts for the backend's pool."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    lines = stat_csv.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise RuntimeError_(f"`show stat` answered {stat_csv[:200]!r}")
    header = lines[0][2:].split(",")
    px, sv, qcur, scur = (header.index(name) for name in ("pxname", "svname", "qcur", "scur"))
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) <= max(px, sv, qcur, scur) or "." not in fields[px]:
            continue  # the frontend, the rate table's backend, an empty line
        service, _, backend_pool = fields[px].rpartition(".")
        if fields[sv] == "BACKEND":
            key, sessions = (service, backend_pool), 0
        elif fields[sv] == "FRONTEND":
            continue
        else:
            key, sessions = (service, fields[sv].rpartition(".")[0]), int(fields[scur] or 0)
        queued = int(fields[qcur] or 0)
        before = out.get(key, (0, 0))
        out[key] = (before[0] + sessions, before[1] + queued)
    return out


class PoolSampler:
    """How busy the instances keep each pool, as the gateway's `PoolGate` counts it: requests in flight integrated
    over time (request-seconds), the peak, and the last in-flight and queued counts. Each sample reads every
    instance's `show stat` (servers and backends) and holds the counts until the next one."""

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self.busy: dict[tuple[str, str], float] = {}
        self.peak: dict[tuple[str, str], int] = {}
        self.last: dict[tuple[str, str], tuple[int, int]] = {}
        self.at = time.monotonic()
        self.since = self.at
        self.errors = 0

    def sample(self, runtimes: list[Runtime]) -> None:
        now = time.monotonic()
        for key, (in_flight, _queued) in self.last.items():  # the previous counts held until now
            self.busy[key] = self.busy.get(key, 0.0) + in_flight * (now - self.at)
        self.at = now
        counts: dict[tuple[str, str], tuple[int, int]] = {}
        for runtime in runtimes:
            try:
                sessions = pool_sessions(runtime.command("show stat -1 6 -1"))
            except RuntimeError_:
                self.errors += 1  # an instance reloading: its part of this sample is missing
                continue
            for key, (in_flight, queued) in sessions.items():
                before = counts.get(key, (0, 0))
                counts[key] = (before[0] + in_flight, before[1] + queued)
        self.last = counts
        for key, (in_flight, _queued) in counts.items():
            self.peak[key] = max(self.peak.get(key, 0), in_flight)

    def rows(self, snapshot: Snapshot, worker: str, instances: int, now: float) -> list[LivePool]:
        """One `LivePool` row per pool of the snapshot since the previous call (then starts the next interval).
        The capacity is the pool's, shared between the instances as the gateway shares it between workers."""
        interval = max(0.001, self.at - self.since)
        self.since = self.at
        rows = []
        when = dt.datetime.fromtimestamp(now, tz=dt.UTC)
        for route in snapshot.routes:
            for pool in route.pools.values():
                key = (route.name, pool.name)
                in_flight, queued = self.last.get(key, (0, 0))
                rows.append(LivePool(at=when, worker=worker, service=route.name, pool=pool.name,
                                     interval_ms=max(1, round(interval * 1000)),
                                     busy_ms=self.busy.get(key, 0.0) * 1000.0,
                                     capacity=max(1, -(-pool.capacity // instances)), in_flight=in_flight,
                                     waiting=queued, peak=self.peak.get(key, in_flight)))
        self.busy = {}
        self.peak = {key: in_flight for key, (in_flight, _q) in self.last.items()}
        return rows


@dataclass
class Instance:
    options: Options
    process: subprocess.Popen[bytes] | None = None

    @property
    def runtime(self) -> Runtime:
        return Runtime(self.options.socket)


@dataclass
class DataPlane:
    """N HAProxy instances and the state they were last brought to."""

    options: Options
    instances: int = 1
    haproxy: str = HAPROXY
    poll: float = POLL
    full_reload: float = 10.0
    log: Path | None = None  # HAProxy's own stderr (events, alerts); default: inherited
    peer_ports: tuple[int, ...] = ()  # shared rate limits: each instance's peers port; empty: per instance
    peers: tuple[tuple[str, str], ...] = ()  # ... or every instance on every host, (name, HOST:PORT)
    local_peers: tuple[str, ...] = ()  # ... and this runner's instances among them
    live: float = LIVE  # seconds between the pools' live signal writes (LivePool); 0: none
    running: list[Instance] = field(default_factory=list)
    rendered: Rendered | None = None
    snapshot: Snapshot | None = None
    configs: list[str] = field(default_factory=list)  # each instance's configuration as last written
    runtime_changes: int = 0  # map commands applied through the Runtime API
    reloads: int = 0  # configuration changes (SIGUSR2)
    possibly_unlogged: int = 0  # connections open at reloads and the stop, ring transport: lines that may be lost
    overflow: list[str] = field(default_factory=list)  # service|account keys with more rate limits than HAProxy takes

    def _render_all(self, snapshot: Snapshot) -> list[Rendered]:
        return [render(snapshot, options)
                for options in instance_options(self.options, self.instances, self.peer_ports, self.peers,
                                                self.local_peers)]

    def _say_overflow(self, snapshot: Snapshot) -> None:
        overflow = too_many_rate_limits(snapshot)
        if overflow and overflow != self.overflow:
            print(f"haproxy: more than three rate-limit actions apply to {', '.join(overflow[:10])}"
                  f"{' ...' if len(overflow) > 10 else ''}: HAProxy enforces the first three of each",
                  file=sys.stderr, flush=True)
        self.overflow = overflow

    def start(self, timeout: float = 20.0) -> None:
        self.snapshot = load_snapshot()
        self._say_overflow(self.snapshot)
        connections.close_all()
        self.running = [Instance(o) for o in instance_options(self.options, self.instances, self.peer_ports,
                                                              self.peers, self.local_peers)]
        renders = self._render_all(self.snapshot)
        self.configs = [r.config for r in renders]
        self.rendered = renders[0]
        for instance, rendered in zip(self.running, renders, strict=True):
            write(rendered, instance.options)
            ok, said = check_config(instance.options.config_path, self.haproxy)
            if not ok:
                raise RuntimeError(f"HAProxy refuses {instance.options.config_path}: {said}")
            with contextlib.suppress(FileNotFoundError):
                instance.options.socket.unlink()
            out = open(self.log, "ab") if self.log else None  # noqa: SIM115 (kept open for the child's life)
            instance.process = subprocess.Popen([self.haproxy, "-W", "-db", "-f", str(instance.options.config_path)],
                                                stdout=out, stderr=out, start_new_session=True,
                                                preexec_fn=_die_with_parent(os.getpid()))
        deadline = time.monotonic() + timeout
        for instance in self.running:
            while True:
                assert instance.process is not None
                if instance.process.poll() is not None:
                    raise RuntimeError(f"haproxy exited with {instance.process.returncode} at start")
                with contextlib.suppress(Exception):
                    if instance.runtime.info().get("Pid"):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"haproxy's Runtime API at {instance.options.socket} did not answer")
                time.sleep(0.05)

    def sync(self, snapshot: Snapshot) -> str:
        """Bring every instance to a snapshot: map edits when only maps changed, else a reload. Says which."""
        assert self.rendered is not None
        self._say_overflow(snapshot)
        renders = self._render_all(snapshot)
        old = self.rendered
        changed_config = [i for i, r in enumerate(renders) if r.config != self.configs[i]]
        changed_fixed = any(renders[0].maps[name] != old.maps[name] for name in MAPS if name not in RUNTIME_MAPS)
        # endpoints whose weight, maxconn or state (enabled, disabled) alone changed: `set server ... weight`, `set
        # maxconn server ...`, `set server ... state` through the Runtime API, not a reload
        reweigh = (bool(changed_config) and not changed_fixed
                   and all(_WEIGHT.sub(_ANY_WEIGHT, r.config) == _WEIGHT.sub(_ANY_WEIGHT, self.configs[i])
                           for i, r in enumerate(renders)))
        weights = _weight_commands(self.configs[0], renders[0].config) if reweigh else []
        for instance, rendered in zip(self.running, renders, strict=True):
            write(rendered, instance.options)
        if weights:
            for instance in self.running:
                self.runtime_changes += instance.runtime.apply(weights)
            # the maps too: an admission action switched on changes admission.map as well as the servers' maxconn
            commands = [c for name in RUNTIME_MAPS
                        for c in diff_map(self.options.map_path(name), old.maps[name], renders[0].maps[name])]
            for instance in self.running:
                self._apply_maps(instance, commands, renders[0])
            what = f"{len(weights)} server weight/maxconn/state changes, {len(commands)} map changes"
        elif changed_config or changed_fixed:
            open_now = self.open_connections()
            for instance in self.running:
                if instance.process is not None and instance.process.poll() is None:
                    instance.process.send_signal(signal.SIGUSR2)
            self.reloads += 1
            what = "reloaded" + self._unlogged(open_now, "the old worker finishes")
        else:
            commands = [c for name in RUNTIME_MAPS
                        for c in diff_map(self.options.map_path(name), old.maps[name], renders[0].maps[name])]
            for instance in self.running:
                self._apply_maps(instance, commands, renders[0])
            what = f"{len(commands)} map changes"
        self.rendered = renders[0]
        self.configs = [r.config for r in renders]
        self.snapshot = snapshot
        return what

    def _apply_maps(self, instance: Instance, commands: list[str], rendered: Rendered) -> None:
        try:
            self.runtime_changes += instance.runtime.apply(commands)
        except RuntimeError_:
            # part of the edits may have gone in (an instance reloading, a refused command): replace each map whole,
            # atomically, so a retry never starts from a state nobody knows
            for name in RUNTIME_MAPS:
                instance.runtime.replace_map(self.options.map_path(name), rendered.maps[name])
            self.runtime_changes += len(commands)

    def watch(self, stopping: threading.Event) -> None:
        """Check the snapshot version every `poll` seconds until `stopping` is set; push what changed."""
        last_full = time.monotonic()
        error = ""
        # alive for `accord doctor` and the staff pages' banner (ACCORD_EXPECTED_PROCESSES=haproxy)
        heartbeat = Beat("haproxy", interval=max(10.0, self.poll))
        live = threading.Thread(target=self.write_pools, args=(stopping,), name="haproxy-live", daemon=True)
        if self.live > 0:
            live.start()
        try:
            self._watch(stopping, heartbeat, last_full, error)
        finally:
            if live.is_alive():
                stopping.set()
                live.join(10)
            with contextlib.suppress(Exception):
                heartbeat.stop()
            connections.close_all()

    def write_pools(self, stopping: threading.Event) -> None:
        """Sample the pools' sessions and write their live signals every `live` seconds until `stopping` is set. A
        write that fails is dropped, as the gateway drops it: a late live signal is worth nothing."""
        sampler = PoolSampler(min(0.05, self.live / 5))
        worker = f"haproxy:{worker_name()}"[:80]
        next_write = time.monotonic() + self.live
        last_prune = 0.0
        try:
            while not stopping.wait(sampler.every):
                sampler.sample([i.runtime for i in self.running])
                if time.monotonic() < next_write or self.snapshot is None:
                    continue
                next_write += self.live
                now = time.time()
                prune = None
                if now - last_prune >= 60:
                    last_prune, prune = now, now - RETENTION_SECONDS
                try:
                    write_live([], sampler.rows(self.snapshot, worker, len(self.running), now), prune,
                               prune=("pools",))  # the traffic rows are the collector's, on HAProxy's clock
                except Exception as e:
                    print(f"haproxy: live signals dropped: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        finally:
            connections.close_all()

    def _watch(self, stopping: threading.Event, heartbeat: Beat, last_full: float, error: str) -> None:
        while not stopping.wait(self.poll):
            for instance in self.running:  # an HAProxy that died is the runner's failure, not something to wait out
                if instance.process is not None and instance.process.poll() is not None:
                    raise RuntimeError(f"haproxy {instance.options.config_path} exited with "
                                       f"{instance.process.returncode}")
            assert self.snapshot is not None
            heartbeat.beat(f"{len(self.running)} instance(s), snapshot {self.snapshot.version}")
            force = time.monotonic() - last_full >= self.full_reload
            try:
                if not force and current_version() == self.snapshot.version and time.time() < self.snapshot.next_expiry:
                    continue
                snapshot = load_snapshot()
                if force:
                    last_full = time.monotonic()
                what = self.sync(snapshot)
                if what != "0 map changes":
                    print(f"haproxy: snapshot {snapshot.version}: {what}", file=sys.stderr, flush=True)
                error = ""
            except Exception as e:  # the database restarting, an instance reloading: keep the last state, retry
                text = f"{type(e).__name__}: {e}"
                if text != error:
                    print(f"haproxy: keeping the last state: {text}", file=sys.stderr, flush=True)
                error = text
                connections.close_all()

    def open_connections(self) -> int:
        """Client connections open on the instances' current workers now (`show info` CurrConns; the Runtime API's
        own is not among them); an instance that does not answer counts none."""
        total = 0
        for instance in self.running:
            with contextlib.suppress(Exception):
                total += int(instance.runtime.info().get("CurrConns", "0"))
        return total

    def _unlogged(self, open_now: int, when: str) -> str:
        """What a reload or a stop may leave uncounted: with the ring transport, HAProxy 2.6 closes a worker's ring
        forwarder as soon as the worker starts stopping, so the line of a request it still finishes stays in its
        ring. Each connection open then carries at most one more request on that worker (it answers with
        `Connection: close` once stopping): the bound, said where the reload or stop is reported."""
        if self.options.log_transport != "ring" or not open_now:
            return ""
        self.possibly_unlogged += open_now
        return (f"; the lines of up to {open_now} request(s) {when} may not reach the collector ({open_now} "
                "connection(s) open; HAProxy 2.6 closes a stopping worker's ring forwarder)")

    def stop(self, grace: float = 30.0) -> None:
        """A soft stop (SIGUSR1: finish what is in flight), then SIGTERM if it takes longer than `grace`."""
        said = self._unlogged(self.open_connections(), "in flight at the stop")
        if said:
            print(f"haproxy: stopping{said}", file=sys.stderr, flush=True)
        for instance in self.running:
            if instance.process is not None and instance.process.poll() is None:
                instance.process.send_signal(signal.SIGUSR1)
        for instance in self.running:
            if instance.process is None:
                continue
            try:
                instance.process.wait(grace)
            except subprocess.TimeoutExpired:
                instance.process.terminate()
                instance.process.wait(10)
