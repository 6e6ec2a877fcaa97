"""The gateway under load: exact counts with many clients, snapshot reloads with zero failed requests,
and the real `accord gateway` command with 2 workers that loses no measurement on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from accord.gateway.server import SnapshotKeeper
from accord.gateway.snapshot import load_snapshot

from .conftest import EchoServer, on_loop, start_gateway, stop_gateway, wait_until
from .test_proxy import KEY, call, dead_port, snapshot_for


def hammer(port: int, clients: int, per_client: int, paths: list[tuple[str, dict[str, str]]]) -> list[Any]:
    """Each client sends its requests on one keep-alive connection; returns the statuses (or errors)."""
    results: list[Any] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for i in range(per_client):
            path, headers = paths[(n + i) % len(paths)]
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                mine.append((response.status, body))
            except Exception as e:  # a failed request is a result the test must see, not a crash
                mine.append((type(e).__name__, b""))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_every_request_is_counted_exactly_once_under_concurrency(upstreams: list[EchoServer]) -> None:
    running = start_gateway(snapshot_for(upstreams))
    try:
        good = {"Authorization": f"Bearer {KEY.decode()}"}
        paths = [("/bookings/1", good), ("/fares/x", {}), ("/bookings/2", {"X-Api-Key": "acc_wrong"}),
                 ("/nowhere", good)]
        results = hammer(running.port, clients=8, per_client=50, paths=paths)
        assert len(results) == 400
        statuses = sorted({r[0] for r in results})
        assert statuses == [200, 401, 404]

        def totals() -> dict[tuple[str, str, str], int]:
            out: dict[tuple[str, str, str], int] = {}
            for key, tally in running.gateway.accumulator.tallies.items():
                out[(key[1], key[2], key[5])] = out.get((key[1], key[2], key[5]), 0) + tally.count
            return out

        assert on_loop(running, totals) == {
            ("GLOBEX", "booking", "ok"): 100, ("anonymous", "fares", "ok"): 100,
            ("", "booking", "unauthorized"): 100, ("", "", "not_found"): 100,
        }
        assert on_loop(running, lambda: (running.gateway.requests, running.gateway.in_flight)) == (400, 0)
    finally:
        stop_gateway(running)


@pytest.mark.django_db(transaction=True)
def test_a_snapshot_reload_under_load_fails_no_request(upstreams: list[EchoServer]) -> None:
    from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
    from accord.customers.models import Account, Tier

    svc = Service.objects.create(name="booking", base_path="/bookings")
    pool = Pool.objects.create(service=svc, name="primary", role="primary", capacity=100)
    endpoint = Endpoint.objects.create(pool=pool, url=upstreams[0].url)
    tier = Tier.objects.create(name="gold", rank=2)
    _cred, key = ApiCredential.issue(Account.objects.create(name="Globex", external_id="GLOBEX", tier=tier))
    running = start_gateway(load_snapshot())
    keeper = SnapshotKeeper(running.gateway, poll=0.05, full_reload=3600)
    stopping = asyncio.Event()
    keeper_task = asyncio.run_coroutine_threadsafe(keeper.run(stopping), running.loop)
    try:
        stop = threading.Event()
        seen: list[Any] = []

        def load() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
            for _ in range(5000):  # bounded
                if stop.is_set():
                    break
                try:
                    conn.request("GET", "/bookings/1", headers={"X-Api-Key": key})
                    r = conn.getresponse()
                    seen.append((r.status, json.loads(r.read())["server"] if r.status == 200 else None))
                except Exception as e:
                    seen.append((type(e).__name__, None))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
            conn.close()

        clients = [threading.Thread(target=load) for _ in range(4)]
        for t in clients:
            t.start()
        wait_until(lambda: len(seen) > 50, what="load to start")
        version = on_loop(running, lambda: running.gateway.snapshot.version)
        endpoint.url = upstreams[1].url
        endpoint.save()  # the signal bumps the version; the gateway must follow within a second
        changed_at = time.monotonic()
        wait_until(lambda: on_loop(running, lambda: running.gateway.snapshot.version) > version, timeout=20,
                   what="the reload")
        reload_seconds = time.monotonic() - changed_at
        mark = len(seen)
        wait_until(lambda: len(seen) > mark + 50, what="load after the reload")
        stop.set()
        for t in clients:
            t.join(60)
        assert {s for s, _ in seen} == {200}, [s for s, _ in seen if s != 200][:5]
        assert {srv for _, srv in seen[mark + 8 :]} == {"b"}  # after the reload every request goes to b
        assert reload_seconds < 5  # generous for a loaded CI machine; typically ~0.1 s
    finally:
        running.loop.call_soon_threadsafe(stopping.set)
        keeper_task.result(20)
        asyncio.run_coroutine_threadsafe(keeper.close(), running.loop).result(20)
        stop_gateway(running)


def metrics(admin_port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def supervisor_threads_blocking(pid: int, signum: int) -> str:
    """Which of a process's threads block a signal, from /proc (Linux)."""
    blocking = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        mask = next(line for line in (task / "status").read_text().splitlines() if line.startswith("SigBlk:"))
        blocking[int(task.name)] = bool(int(mask.split()[1], 16) >> (signum - 1) & 1)
    others = [blocked for tid, blocked in blocking.items() if tid != pid]
    if not blocking[pid] and others and all(others):
        return "all but the main thread"
    return f"main thread blocks: {blocking[pid]}; others: {others}"


def admin_status(admin_port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_command_with_two_workers_counts_everything_across_a_graceful_stop(upstreams: list[EchoServer]) -> None:
    from accord.catalog.models import Endpoint, Pool, Service
    from accord.gateway import dataplane
    from accord.gateway.models import Rollup
    from accord.lib.testing import accord_command, subprocess_env

    svc = Service.objects.create(name="booking", base_path="/bookings", allow_anonymous=True)
    pool = Pool.objects.create(service=svc, name="primary", role="primary", capacity=10)
    Endpoint.objects.create(pool=pool, url=upstreams[0].url)
    port, admin = dead_port(), dead_port()
    log_path = f"{os.environ.get('TMPDIR', '/tmp')}/accord-gateway-test-{os.getpid()}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below; a pipe nobody reads could fill and block
    # --flush 3600: nothing is written before SIGTERM, so the final flush must carry every request
    proc = subprocess.Popen([*accord_command(), "gateway", "--listen", f"127.0.0.1:{port}", "--workers", "2",
                             "--admin", f"127.0.0.1:{admin}", "--flush", "3600"],
                            env=subprocess_env(), stdout=log, stderr=log, start_new_session=True)
    holders: list[threading.Thread] = []
    try:
        wait_until(lambda: admin_status(admin, "/readyz") == 200 or proc.poll() is not None, timeout=60,
                   what="the gateway to be ready")
        assert proc.poll() is None and admin_status(admin, "/healthz") == 200
        results = hammer(port, clients=6, per_client=40, paths=[("/bookings/1", {}), ("/bookings/2", {})])
        assert [r[0] for r in results] == [200] * 240
        # 50 MB through a worker: streamed, so the worker's memory does not grow by the body's size
        before = metrics(admin)
        status, _h, body = call(port, "POST", "/bookings/upload", body=b"z" * (50 * 1024 * 1024), timeout=120,
                                 headers={"Authorization": ""})
        assert status == 200 and json.loads(body)["body_length"] == 50 * 1024 * 1024
        wait_until(lambda: metrics(admin)['accord_gateway_requests_total{outcome="ok"}'] == 241, what="a report")
        after = metrics(admin)
        # every worker runs the data plane this process would choose (compiled when a current build is there)
        assert after["accord_gateway_compiled_workers"] == (2 if dataplane.choose().compiled else 0), after
        grown = after["accord_gateway_max_rss_bytes"] - before["accord_gateway_max_rss_bytes"]
        assert grown < 20 * 1024 * 1024, (before, after)
        # two requests in flight when SIGTERM arrives: they finish, and are counted
        holding: list[Any] = []
        for _ in range(2):
            t = threading.Thread(target=lambda: holding.append(call(port, "GET", "/bookings/hold", headers={"Authorization": ""})[0]))
            t.start()
            holders.append(t)
        wait_until(lambda: upstreams[0].order.count("/bookings/hold") == 2, what="two held requests")
        # SIGTERM must reach the supervisor's main thread (blocked in wait() for its workers): its other
        # threads block it, or a signal one of them caught would wait for a worker to exit, which never comes
        assert supervisor_threads_blocking(proc.pid, signal.SIGTERM) == "all but the main thread"
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: admin_status(admin, "/readyz") == 503, what="draining")
        upstreams[0].release.set()
        for t in holders:
            t.join(30)
        assert holding == [200, 200]
        code = proc.wait(60)
    finally:
        upstreams[0].release.set()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the supervisor and its workers
            proc.wait(30)
        log.close()
    assert code == 0, Path(log_path).read_text(errors="replace")[-3000:]
    minutes = Rollup.objects.per_account_minutes()
    assert sum(minutes.values_list("count", flat=True)) == 243, list(minutes.values_list(
        "account", "service", "outcome", "count"))
    assert set(minutes.values_list("account", "service", "outcome")) == {("anonymous", "booking", "ok")}
    hours = Rollup.objects.filter(window_seconds=3600, account="anonymous")
    assert sum(hours.values_list("count", flat=True)) == 243  # the hour rows agree, flushed in the same transactions


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_workers_do_not_outlive_a_killed_supervisor() -> None:
    from accord.lib.testing import accord_command, subprocess_env

    port, admin = dead_port(), dead_port()
    proc = subprocess.Popen([*accord_command(), "gateway", "--listen", f"127.0.0.1:{port}", "--workers", "2",
                             "--admin", f"127.0.0.1:{admin}"], env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: admin_status(admin, "/readyz") == 200 or proc.poll() is not None, timeout=60,
                   what="the gateway to be ready")
        workers = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert len(workers) == 2
        proc.kill()  # SIGKILL: no chance to pass anything on
        proc.wait(30)

        def alive(pid: int) -> bool:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return False
            return state != "Z"

        wait_until(lambda: not any(alive(w) for w in workers), timeout=30, what="the orphaned workers to exit")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
