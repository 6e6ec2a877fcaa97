"""Through a running HAProxy (`accord haproxy run`) and `accord collector`, both real processes on the test
database, in front of real upstreams: identification, routing, refusals, a key revoked and a tier rerouted at run
time through the Runtime API (the HAProxy worker's pid unchanged: no reload), and rollups that equal what the
client saw."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db.models import Sum

from accord.catalog.models import ApiCredential, Endpoint, Pool, Service, hash_key
from accord.customers.models import Account, Tier
from accord.gateway.models import GatewayAction, LivePool, LiveTraffic, Rollup
from accord.haproxy.runtime import Runtime
from accord.lib.ports import BOTH, free_port
from accord.lib.testing import subprocess_env
from accord.ops.models import Heartbeat

from .conftest import EchoServer, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Plane:
    port: int
    directory: Path
    haproxy: subprocess.Popen[bytes]
    collector: subprocess.Popen[bytes]
    logs: Path
    instances: int = 1

    @property
    def runtime(self) -> Runtime:
        return Runtime(self.directory / "admin.sock")

    @property
    def runtimes(self) -> list[Runtime]:
        if self.instances == 1:
            return [self.runtime]
        return [Runtime(self.directory / f"admin-{i}.sock") for i in range(1, self.instances + 1)]

    def worker_pid(self) -> str:
        return self.runtime.info()["Pid"]

    def output(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]


def get(port: int, path: str, key: str | None = None, header: str = "authorization",
        extra: dict[str, str] | None = None, answer: dict[str, str] | None = None,
        host: str = "127.0.0.1") -> tuple[int, dict[str, Any]]:
    """GET through HAProxy: the status and the JSON body; the answer's headers go into `answer` if given."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    headers = dict(extra or {})
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "authorization" else key
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if answer is not None:
            answer.update({k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    return response.status, data


@contextlib.contextmanager
def spawn(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m accord ARGS` of the code under test (subprocess_env puts this checkout first on the path)."""
    env = subprocess_env()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "accord", *args], env=env, stdout=out, stderr=out,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # an haproxy left behind, if any


@pytest.fixture
def keys(upstreams: list[EchoServer]) -> dict[str, str]:
    """ACME (gold) and BETA (silver) with a key each; booking's primary pool is upstream a, its standby b."""
    gold, silver = Tier.objects.create(name="gold", rank=1), Tier.objects.create(name="silver", rank=2)
    acme = Account.objects.create(name="Acme", external_id="ACME", tier=gold)
    beta = Account.objects.create(name="Beta", external_id="BETA", tier=silver)
    svc = Service.objects.create(name="booking", base_path="/bookings")
    Endpoint.objects.create(pool=Pool.objects.create(service=svc, name="main", role="primary", capacity=50),
                            url=upstreams[0].url)
    Endpoint.objects.create(pool=Pool.objects.create(service=svc, name="spare", role="standby", capacity=50),
                            url=upstreams[1].url)
    return {"ACME": ApiCredential.issue(acme)[1], "BETA": ApiCredential.issue(beta)[1]}


@pytest.fixture
def plane(haproxy_bin: str, keys: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Plane]:
    """HAProxy and the collector; the log transport is the default (ring) unless the test is parametrized with
    `plane` indirectly."""
    transport = getattr(request, "param", "ring")
    with start_plane(tmp_path, args=("--log-transport", transport)) as running:
        yield running


class PortTaken(Exception):
    """A port chosen free was taken by someone else before HAProxy or the collector bound it."""


_BIND_FAILED = ("cannot bind socket", "Address already in use")


@contextlib.contextmanager
def start_plane(tmp_path: Path, instances: int = 1, attempts: int = 3, args: tuple[str, ...] = ()) -> Iterator[Plane]:
    """The collector and `accord haproxy run ARGS` on ports found free; a port taken in between (another test run on
    the machine) fails the bind, and the start is tried again on new ports."""
    for attempt in range(1, attempts + 1):
        stack = contextlib.ExitStack()
        try:
            running = stack.enter_context(_started(tmp_path, instances, args))
        except PortTaken:
            stack.close()
            if attempt == attempts:
                raise
            continue
        with stack:
            yield running
        return


@contextlib.contextmanager
def _started(tmp_path: Path, instances: int, args: tuple[str, ...]) -> Iterator[Plane]:
    port, udp = free_port(), free_port(kind=BOTH)
    directory = tmp_path / "haproxy"
    with spawn(["collector", "--listen", f"127.0.0.1:{udp}", "--flush", "0.5", "--report", "1"],
               tmp_path / "collector.log") as collector, \
         spawn(["haproxy", "run", "--dir", str(directory), "--listen", f"127.0.0.1:{port}", "--collector",
                f"127.0.0.1:{udp}", "--poll", "0.1", "--instances", str(instances), *args],
               tmp_path / "haproxy.log") as haproxy:
        running = Plane(port, directory, haproxy, collector, tmp_path, instances)

        def up() -> bool:
            for proc, name in ((haproxy, "haproxy"), (collector, "collector")):
                if proc.poll() is not None:
                    said = running.output(name)
                    if any(text in said for text in _BIND_FAILED):
                        raise PortTaken(said)
                    raise AssertionError(said)
            with contextlib.suppress(OSError):
                return ("listening" in running.output("collector") and "instance(s) on" in running.output("haproxy")
                        and get(port, "/healthz-probe")[0] == 404)
            return False

        wait_until(up, timeout=30, what="HAProxy and the collector to serve")
        try:
            yield running
        finally:
            for proc in (haproxy, collector):  # both stop at once, not one after the other
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)


def connections(summary: str) -> int:
    """The TCP connections the collector's summary line counts."""
    found = re.search(r", (\d+) TCP connections", summary)
    assert found, summary
    return int(found[1])


def summary_counts(said: str) -> dict[str, int]:
    """The last summary line's counts by name: recorded, ring (dropped by HAProxy), kernel, bad frames."""
    lines = [line for line in said.splitlines() if " lines received, " in line]
    assert lines, said
    last = lines[-1]
    counts = {}
    for name, pattern in (("received", r"(\d+) lines received"), ("recorded", r"(\d+) recorded"),
                          ("written", r"(\d+) written"), ("ring", r"(\d+) dropped by HAProxy \(ring full\)"),
                          ("kernel", r"(\d+) dropped by the kernel"), ("bad", r"(\d+) bad frames"),
                          ("unparsed", r"(\d+) unparsed"), ("duplicates", r"(\d+) duplicates")):
        found = re.search(pattern, last)
        assert found, last
        counts[name] = int(found[1])
    return counts


def rollups() -> Counter[tuple[str, str, str]]:
    rows = (Rollup.objects.per_account_minutes().values("account", "pool", "outcome").annotate(n=Sum("count")))
    return Counter({(r["account"], r["pool"], r["outcome"]): r["n"] for r in rows})


@pytest.mark.parametrize("plane", ["ring", "udp"], indirect=True)
def test_keys_routes_refusals_and_a_revoked_key_and_the_rollups_equal_what_was_sent(
        plane: Plane, keys: dict[str, str], upstreams: list[EchoServer]) -> None:
    sent: Counter[tuple[str, str, str]] = Counter({("", "", "not_found"): 1})  # the readiness probe
    pid = plane.worker_pid()
    wait_until(lambda: Heartbeat.objects.filter(kind="haproxy", stopped_at__isnull=True).exists(), timeout=10,
               what="the runner's heartbeat")  # `accord doctor` sees it
    for i in range(6):
        status, body = get(plane.port, f"/bookings/{i}", keys["ACME"], extra={"X-Accord-Tier": "platinum"})
        assert status == 200 and body["server"] == "a"
        assert body["headers"]["x-accord-account"] == "ACME" and body["headers"]["x-accord-tier"] == "gold"
        assert "authorization" not in body["headers"]  # the key is Accord's credential, not the service's
        sent["ACME", "main", "ok"] += 1
    answer: dict[str, str] = {}
    for request_id, expected in (("trace-1:a.b", "trace-1:a.b"), ("not valid!", None), ("x" * 129, None)):
        answer = {}
        status, body = get(plane.port, "/bookings/1", keys["ACME"], extra={"X-Request-Id": request_id},
                           answer=answer)
        assert status == 200 and body["headers"]["x-request-id"] == answer["x-request-id"]
        assert answer["x-request-id"] == expected if expected else answer["x-request-id"] != request_id
        sent["ACME", "main", "ok"] += 1
    for i in range(4):
        status, body = get(plane.port, f"/bookings/{i}", keys["BETA"], header="x-api-key")
        assert status == 200 and body["headers"]["x-accord-account"] == "BETA"
        assert "x-api-key" not in body["headers"]
        sent["BETA", "main", "ok"] += 1
    for path, key in (("/bookings/1", "acc_not-a-key"), ("/bookings/2", None), ("/bookings/3", "acc_other")):
        answer = {}
        status, body = get(plane.port, path, key, answer=answer)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        assert answer["x-request-id"]  # HAProxy's own answers carry one too
        sent["", "", "unauthorized"] += 1
    for path in ("/nowhere", "/bookingsx/1"):
        assert get(plane.port, path, keys["ACME"])[0] == 404
        sent["", "", "not_found"] += 1
    # BETA's key revoked: the runner deletes its map entries through the Runtime API
    ApiCredential.objects.get(account__external_id="BETA").revoke()
    revoked_at = time.monotonic()

    def refused() -> bool:
        status, _ = get(plane.port, "/bookings/9", keys["BETA"])
        sent[("BETA", "main", "ok") if status == 200 else ("", "", "unauthorized")] += 1
        return status == 401

    wait_until(refused, timeout=10, what="the revoked key to be refused")
    assert time.monotonic() - revoked_at < 5
    assert plane.worker_pid() == pid  # the same HAProxy worker: a map change, no reload
    assert get(plane.port, "/bookings/1", keys["ACME"])[0] == 200
    sent["ACME", "main", "ok"] += 1
    # governance's live signals (per second, without the account) come from the same lines
    wait_until(lambda: LiveTraffic.objects.filter(service="booking", tier="gold").exists(), timeout=10,
               what="live signals")
    plane.collector.send_signal(signal.SIGTERM)
    assert plane.collector.wait(30) == 0, plane.output("collector")
    assert rollups() == sent
    summary = plane.output("collector").splitlines()[-1]
    assert f"{sum(sent.values())} lines received, {sum(sent.values())} recorded" in summary
    assert "0 unparsed" in summary and "0 dropped by the kernel" in summary
    assert "0 dropped by HAProxy (ring full)" in summary and "0 bad frames" in summary
    # each line came the way asked: through the ring, over the worker's TCP connection, or in UDP datagrams
    ring = "(ring), snapshot" in plane.output("haproxy")
    assert ring != ("(udp), snapshot" in plane.output("haproxy"))
    assert (connections(summary) > 0) == ring, summary
    assert upstreams[1].count == 0
    live = LiveTraffic.objects.filter(service="booking").aggregate(n=Sum("count"))["n"]
    assert 0 < live <= sum(n for (_account, _pool, outcome), n in sent.items() if outcome != "not_found")


def test_a_tier_routed_to_standby_through_the_runtime_api_gets_there_within_5_s_and_back(
        plane: Plane, keys: dict[str, str]) -> None:
    pid = plane.worker_pid()

    def server(account: str) -> str:
        status, body = get(plane.port, "/bookings/1", keys[account])
        assert status == 200
        return str(body["server"])

    assert server("ACME") == "a"
    action = GatewayAction.objects.create(name="gold-to-spare", kind="route", tiers=["gold"], params={"pool": "spare"})
    started = time.monotonic()
    wait_until(lambda: server("ACME") == "b", timeout=10, what="gold to reach the standby pool")
    assert time.monotonic() - started < 5
    assert server("BETA") == "a"  # silver stays on the primary pool
    action.active = False
    action.save()
    started = time.monotonic()
    wait_until(lambda: server("ACME") == "a", timeout=10, what="gold to come back to the primary pool")
    assert time.monotonic() - started < 5
    assert plane.worker_pid() == pid
    plane.collector.send_signal(signal.SIGTERM)
    assert plane.collector.wait(30) == 0, plane.output("collector")
    pools = {pool for (account, pool, outcome) in rollups() if account == "ACME"}
    assert pools == {"main", "spare"}


def test_shed_and_rate_limit_actions_are_enforced_at_run_time_and_measured_as_the_gateway_names_them(
        plane: Plane, keys: dict[str, str]) -> None:
    sent: Counter[tuple[str, str, str]] = Counter({("", "", "not_found"): 1})  # the readiness probe
    pid = plane.worker_pid()
    outcome = {200: "ok", 429: "rate_limited", 503: "shed"}

    def call(account: str, answer: dict[str, str] | None = None) -> int:
        status, body = get(plane.port, "/bookings/1", keys[account], answer=answer)
        sent[account, "main" if status == 200 else "", outcome[status]] += 1
        if status != 200:
            assert body["error"]["code"] == ("throttled" if status == 429 else "service_unavailable")
        return status

    assert call("BETA") == 200 and call("ACME") == 200
    GatewayAction.objects.create(name="slow-silver", kind="rate_limit", tiers=["silver"], params={"rps": 2})
    GatewayAction.objects.create(name="shed-gold", kind="shed", tiers=["gold"], params={"retry_after": 7})
    started = time.monotonic()
    answer: dict[str, str] = {}
    wait_until(lambda: call("ACME", answer) == 503, timeout=10, what="gold to be shed")
    assert answer["retry-after"] == "7"
    assert time.monotonic() - started < 5
    statuses = [call("BETA", answer) for _ in range(6)]  # back to back: well over 2 a second
    assert 429 in statuses and statuses[0] == 200, statuses
    assert answer["retry-after"] == "1"
    GatewayAction.objects.filter(name__in=["slow-silver", "shed-gold"]).update(active=False)
    from accord.gateway.signals import bump_snapshot_version

    bump_snapshot_version()  # a bulk update sends no signal
    started = time.monotonic()
    wait_until(lambda: call("ACME") == 200, timeout=10, what="gold to be served again")
    assert time.monotonic() - started < 5
    time.sleep(1.1)  # the last second's rate has passed
    assert [call("BETA") for _ in range(6)] == [200] * 6
    assert plane.worker_pid() == pid  # map changes only, no reload
    plane.collector.send_signal(signal.SIGTERM)
    assert plane.collector.wait(30) == 0, plane.output("collector")
    assert rollups() == sent


@dataclass
class Load:
    """Clients sending requests as two accounts, each on a new connection (so the kernel spreads them over the
    instances sharing the port), noting every answer and when its request was sent."""

    port: int
    keys: dict[str, str]
    clients: int = 4
    answers: list[tuple[float, str, int]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def _client(self, n: int) -> None:
        i = n
        while not self.stopping.is_set():
            account = ("ACME", "BETA")[i % 2]
            i += 1
            sent_at = time.monotonic()  # a request sent before a switch may be answered after it
            status, _ = get(self.port, "/bookings/1", self.keys[account], extra={"Connection": "close"})
            with self.lock:
                self.answers.append((sent_at, account, status))

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(self.clients)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)

    def since(self, at: float, account: str) -> list[int]:
        """The statuses of an account's requests sent after `at` (time.monotonic())."""
        with self.lock:
            return [status for when, who, status in self.answers if when > at and who == account]


def test_two_instances_enforce_a_policy_within_5_s_and_the_rollups_are_the_sum_of_both(
        haproxy_bin: str, keys: dict[str, str], tmp_path: Path) -> None:
    with start_plane(tmp_path, instances=2) as plane:
        pids = [r.info()["Pid"] for r in plane.runtimes]
        assert len(set(pids)) == 2
        with Load(plane.port, keys) as load:
            wait_until(lambda: len(load.since(0, "ACME")) >= 50, timeout=30, what="load on gold")
            action = GatewayAction.objects.create(name="shed-gold", kind="shed", tiers=["gold"],
                                                  params={"retry_after": 3})
            switched = time.monotonic()
            wait_until(lambda: all(r.show_map(plane.directory / "shed.map") for r in plane.runtimes), timeout=10,
                       what="both instances to hold the shed entry")
            enforced = time.monotonic()
            assert enforced - switched < 5
            wait_until(lambda: len(load.since(enforced, "ACME")) >= 30, timeout=30, what="gold requests")
            assert set(load.since(enforced, "ACME")) == {503}  # every gold request on either instance is shed
            assert set(load.since(enforced, "BETA")) == {200}
            action.active = False
            action.save()
            switched = time.monotonic()
            wait_until(lambda: not any(r.show_map(plane.directory / "shed.map") for r in plane.runtimes),
                       timeout=10, what="both instances to drop the shed entry")
            enforced = time.monotonic()
            assert enforced - switched < 5
            wait_until(lambda: len(load.since(enforced, "ACME")) >= 30, timeout=30, what="gold requests")
            assert set(load.since(enforced, "ACME")) == {200}
        served = [int(r.info()["CumReq"]) for r in plane.runtimes]
        assert all(n > 0 for n in served), served  # the kernel gave both instances requests
        assert [r.info()["Pid"] for r in plane.runtimes] == pids  # no reload
        plane.collector.send_signal(signal.SIGTERM)
        assert plane.collector.wait(30) == 0, plane.output("collector")
        sent: Counter[tuple[str, str, str]] = Counter({("", "", "not_found"): 1})  # the readiness probe
        for _when, account, status in load.answers:
            sent[(account, "main", "ok") if status == 200 else (account, "", "shed")] += 1
        assert rollups() == sent


def test_a_new_service_is_served_after_a_reload_and_the_new_worker_takes_map_edits(
        plane: Plane, keys: dict[str, str], upstreams: list[EchoServer]) -> None:
    pid = plane.worker_pid()
    # a weight alone changes through the Runtime API, without a reload
    endpoint = Endpoint.objects.get(pool__name="main", pool__service__name="booking")
    endpoint.weight = 7
    endpoint.save()
    wait_until(lambda: plane.runtime.command("get weight booking.main/main.1").startswith("7 "), timeout=10,
               what="the new weight")
    assert plane.worker_pid() == pid
    assert get(plane.port, "/trips/1", keys["ACME"])[0] == 404
    # a client connection open across the reload: the old worker may finish one more request on it, whose line
    # HAProxy 2.6 keeps in the stopping worker's ring; the runner says how many lines may be lost that way
    idle = socket.create_connection(("127.0.0.1", plane.port))
    wait_until(lambda: int(plane.runtime.info()["CurrConns"]) >= 1, timeout=5, what="the open connection")
    svc = Service.objects.create(name="trips", base_path="/trips")
    Endpoint.objects.create(pool=Pool.objects.create(service=svc, name="main", capacity=5), url=upstreams[1].url)

    def routed() -> bool:
        status, body = get(plane.port, "/trips/1", keys["ACME"])
        return status == 200 and body["server"] == "b"

    wait_until(routed, timeout=15, what="the new service to be routed")
    assert plane.worker_pid() != pid  # a configuration change is a reload (a new worker), not a map edit
    said = re.search(r"reloaded; the lines of up to (\d+) request\(s\) the old worker finishes may not reach the "
                     r"collector", plane.output("haproxy"))
    assert said and int(said.group(1)) >= 1, plane.output("haproxy")
    idle.close()
    assert get(plane.port, "/bookings/1", keys["BETA"])[0] == 200
    ApiCredential.objects.get(account__external_id="BETA").revoke()  # and the new worker takes map edits too
    wait_until(lambda: get(plane.port, "/bookings/1", keys["BETA"])[0] == 401, timeout=10, what="the revoked key")
    # the fallback after a partial edit: a map replaced whole and atomically takes effect at once
    keys_map = plane.directory / "keys.map"
    assert plane.runtime.show_map(keys_map) == {hash_key(keys["ACME"]): "ACME"}
    plane.runtime.replace_map(keys_map, {hash_key(keys["BETA"]): "BETA"})
    assert plane.runtime.show_map(keys_map) == {hash_key(keys["BETA"]): "BETA"}
    assert get(plane.port, "/bookings/1", keys["BETA"])[0] == 200
    assert get(plane.port, "/bookings/1", keys["ACME"])[0] == 401


def test_a_listen_port_taken_before_haproxy_binds_it_is_tried_again_on_another(
        haproxy_bin: str, keys: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another run on the machine may take the port found free before HAProxy binds it: the start is retried."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = int(held.getsockname()[1])
        first, real = iter([taken]), free_port

        def port(host: str = "127.0.0.1", *, kind: int = socket.SOCK_STREAM) -> int:  # the held one first
            return (next(first, 0) or real(host, kind=kind)) if kind == socket.SOCK_STREAM else real(host, kind=kind)

        monkeypatch.setattr(sys.modules[__name__], "free_port", port)
        with start_plane(tmp_path) as plane:
            assert plane.port != taken
            assert get(plane.port, "/bookings/1", keys["ACME"])[0] == 200


def test_the_runner_writes_the_pools_live_signals_that_governance_reads_as_utilisation(
        plane: Plane, keys: dict[str, str], upstreams: list[EchoServer]) -> None:
    """Requests held by the primary upstream are in flight at HAProxy: the runner's `LivePool` rows say so (the
    collector cannot: it hears of a request when it ends), and governance's pool utilisation reads them as it
    reads the gateway's."""
    from accord.governance.indicators import live_pool

    Pool.objects.filter(name="main").update(capacity=4)
    Pool.objects.get(name="spare").save()  # a signal moves the snapshot version: the runner sees capacity 4
    held = [threading.Thread(target=get, args=(plane.port, "/bookings/hold", keys["ACME"])) for _ in range(3)]
    for t in held:
        t.start()
    try:
        wait_until(lambda: upstreams[0].order.count("/bookings/hold") == 3, timeout=10, what="3 requests held")
        since = time.time()

        # rows whose 2 s window holds only intervals (1 s each, the runner's default --live) that began after
        # the hold did: 2 s + 1 s after it, and some margin
        def steady() -> bool:
            return LivePool.objects.filter(service="booking", pool="main", at__gt=since_at(since + 3.3)).exists()

        wait_until(steady, timeout=15, what="live rows 3 s into the hold")
        row = LivePool.objects.filter(service="booking", pool="main").latest("at")
        assert (row.in_flight, row.waiting, row.capacity, row.peak) == (3, 0, 4, 3)
        assert row.worker.startswith("haproxy:")
        assert row.busy_ms == pytest.approx(3 * row.interval_ms, rel=0.1)
        load = live_pool(row.at, 2, "booking", "main")
        assert load.utilisation == pytest.approx(0.75, abs=0.05) and load.in_flight == 3
        spare = LivePool.objects.filter(service="booking", pool="spare").latest("at")
        assert (spare.in_flight, spare.busy_ms) == (0, 0)
    finally:
        upstreams[0].release.set()
        for t in held:
            t.join(30)
    released = time.time()
    wait_until(lambda: LivePool.objects.filter(service="booking", pool="main", at__gt=since_at(released + 3.3))
               .exists(), timeout=15, what="live rows 3 s after the release")
    row = LivePool.objects.filter(service="booking", pool="main").latest("at")
    assert (row.in_flight, row.busy_ms) == (0, 0)
    assert live_pool(row.at, 2, "booking", "main").utilisation == 0


def since_at(epoch: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def test_the_collector_prunes_old_live_rows_by_the_clock_of_haproxy_s_lines(tmp_path: Path) -> None:
    """The collector prunes the live traffic rows it writes by the time its lines carry (HAProxy's clock), not by its
    own: a line 20 minutes older than the newest is pruned (retention 15 minutes), one 100 s older stays, and
    HAProxy's runner leaves the traffic rows alone (it prunes the pool rows it writes)."""
    from accord.gateway.live import RETENTION_SECONDS

    udp = free_port(kind=socket.SOCK_DGRAM)
    newest = int(time.time()) - 5

    def line(counter: int, accepted: int) -> bytes:
        return (f'<134>Dec  7 17:13:18 haproxy[1]: accord1 1 {counter} {accepted} "ACME" "gold" "booking" "7" '
                f'booking.main main.1 200 120 340 0 0 1 10 12 ---- GET "/bookings/1" ""\n').encode()

    with spawn(["collector", "--listen", f"127.0.0.1:{udp}", "--flush", "0.5", "--live", "0.2", "--report", "1"],
               tmp_path / "collector.log") as collector:
        wait_until(lambda: "listening" in (tmp_path / "collector.log").read_text(), timeout=30, what="the collector")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for n, accepted in enumerate((newest - RETENTION_SECONDS - 300, newest - 100, newest), start=1):
                s.sendto(line(n, accepted), ("127.0.0.1", udp))
        wait_until(lambda: LiveTraffic.objects.filter(at__gte=_epoch(newest)).exists(), timeout=10,
                   what="the newest line's live row")
        time.sleep(0.5)  # the prune goes with the write that carried the newest second
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(30) == 0
    kept = sorted(int(at.timestamp()) for at in LiveTraffic.objects.values_list("at", flat=True))
    assert kept == [newest - 100, newest], kept
    assert Rollup.objects.aggregate(n=Sum("count"))["n"] >= 3  # pruned from the live signals, never from the counts


def _epoch(second: int) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(second, dt.UTC)


def test_an_endpoint_disabled_and_enabled_in_the_catalog_is_applied_through_the_runtime_api_without_a_reload(
        haproxy_bin: str, keys: dict[str, str], upstreams: list[EchoServer], tmp_path: Path) -> None:
    """booking's primary pool on upstreams a and b: b disabled in the catalog takes no request within 5 s, enabled
    again takes its turn within 5 s; the same HAProxy worker throughout (`set server ... state maint|ready`)."""
    second = Endpoint.objects.create(pool=Pool.objects.get(service__name="booking", name="main"),
                                     url=upstreams[1].url)
    with start_plane(tmp_path) as plane:
        pid = plane.worker_pid()

        def servers(n: int = 6) -> set[str]:
            return {str(get(plane.port, "/bookings/1", keys["ACME"])[1]["server"]) for _ in range(n)}

        assert servers() == {"a", "b"}  # round robin over both
        second.enabled = False
        second.save()
        switched = time.monotonic()
        wait_until(lambda: plane.runtime.command("show servers state booking.main").count(" main.2 ") == 1
                   and servers() == {"a"}, timeout=10, what="b to leave the rotation")
        assert time.monotonic() - switched < 5
        state = {line.split()[3]: line.split()[5] for line in
                 plane.runtime.command("show servers state booking.main").splitlines()[2:] if line.strip()}
        assert state["main.2"] == "0" and state["main.1"] == "2"  # srv_op_state: 0 stopped (maintenance), 2 running
        assert servers(10) == {"a"}
        second.enabled = True
        second.save()
        switched = time.monotonic()
        wait_until(lambda: servers() == {"a", "b"}, timeout=10, what="b back in the rotation")
        assert time.monotonic() - switched < 5
        assert plane.worker_pid() == pid  # state changes through the Runtime API, no reload
        assert "reloaded" not in plane.output("haproxy")


def burst(port: int, paths: list[str], clients: int, key: str | None = None) -> Counter[int]:
    """Every path GET through HAProxy, spread over `clients` keep-alive connections at once; the statuses."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def client(mine: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        seen: Counter[int] = Counter()
        try:
            for path in mine:
                conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
                response = conn.getresponse()
                response.read()
                seen[response.status] += 1
        finally:
            conn.close()
            with lock:
                statuses.update(seen)

    threads = [threading.Thread(target=client, args=(paths[n::clients],)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(statuses.values()) == len(paths), statuses
    return statuses


def test_thousands_of_requests_over_several_connections_through_the_ring_are_all_counted_none_dropped(
        haproxy_bin: str, keys: dict[str, str], tmp_path: Path) -> None:
    """Two HAProxy instances (two rings, two TCP connections to the collector), sixteen clients at once, 3,000
    requests (most refused by HAProxy itself, which is quick; the test's Python upstream is not): the rollups hold
    every request, none dropped anywhere."""
    with start_plane(tmp_path, instances=2) as plane:
        statuses = burst(plane.port, [f"/bookings/{i}" for i in range(400)], 16, keys["ACME"])
        statuses += burst(plane.port, [f"/bookings/{i}" for i in range(2600)], 16, "acc_not-a-key")
        assert statuses == {200: 400, 401: 2600}
        served = [int(r.info()["CumReq"]) for r in plane.runtimes]
        plane.collector.send_signal(signal.SIGTERM)
        assert plane.collector.wait(30) == 0, plane.output("collector")
    # and the readiness probe
    sent = Counter({("ACME", "main", "ok"): 400, ("", "", "unauthorized"): 2600, ("", "", "not_found"): 1})
    assert rollups() == sent
    counts = summary_counts(plane.output("collector"))
    assert (counts["recorded"], counts["written"], counts["ring"], counts["kernel"], counts["bad"],
            counts["unparsed"], counts["duplicates"]) == (3001, 3001, 0, 0, 0, 0, 0), counts
    assert connections(plane.output("collector")) >= 2
    assert all(n > 0 for n in served), served  # both instances had requests, so both rings carried lines


def test_lines_a_full_ring_drops_while_the_collector_is_stopped_are_counted_from_haproxy_s_announcement(
        haproxy_bin: str, keys: dict[str, str], tmp_path: Path) -> None:
    """A 16 KiB ring and the collector stopped (SIGSTOP: it reads nothing) while HAProxy answers a burst of
    requests with long paths, more than the ring and the sockets' buffers hold: HAProxy drops lines, and once the
    collector reads again, says how many; lines received + dropped announced = requests sent."""
    with start_plane(tmp_path, args=("--ring-size", "16k")) as plane:
        wait_until(lambda: " 1 recorded" in plane.output("collector"), timeout=10, what="the readiness probe's line")
        sent = 1
        # what the kernel can hold between HAProxy and the stopped collector: HAProxy's send buffer (at most
        # tcp_wmem's maximum) and the collector's receive window (about tcp_rmem's default, it has read little);
        # lines beyond that and the ring's 16 KiB are dropped
        wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        rmem = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[1])
        count = (wmem + 2 * rmem) // 1100 + 1000
        plane.collector.send_signal(signal.SIGSTOP)
        try:
            long = "x" * 1000  # about 1.2 KB a line (HAProxy logs at most 1024 bytes of a path)
            statuses = burst(plane.port, [f"/nowhere/{i}/{long}" for i in range(count)], 4)
            assert statuses == {404: count}  # HAProxy answers itself: no route
            sent += count
        finally:
            plane.collector.send_signal(signal.SIGCONT)

        def all_told() -> bool:  # HAProxy announces the drops before the next line it writes once there is room
            nonlocal sent
            assert get(plane.port, "/nowhere")[0] == 404
            sent += 1
            time.sleep(0.3)
            counts = summary_counts(plane.output("collector"))
            return counts["recorded"] + counts["ring"] == sent

        wait_until(all_told, timeout=30, what="every request received or announced dropped")
        plane.collector.send_signal(signal.SIGTERM)
        assert plane.collector.wait(30) == 0, plane.output("collector")
    counts = summary_counts(plane.output("collector"))
    assert counts["ring"] > 0, counts  # the ring did fill
    assert counts["recorded"] + counts["ring"] == sent, (counts, sent)
    assert (counts["kernel"], counts["bad"], counts["unparsed"], counts["duplicates"]) == (0, 0, 0, 0), counts
    assert rollups() == Counter({("", "", "not_found"): counts["recorded"]})
