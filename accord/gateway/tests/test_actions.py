"""Governance actions at the gateway: route to a pool, rate limit, shed, priority admission; set by hand."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from accord.gateway.actions import do_clear_action, do_set_action
from accord.gateway.models import GatewayAction
from accord.gateway.snapshot import ActionRule, Identity, PoolTarget, Route, Snapshot, Upstream, load_snapshot

from .conftest import EchoServer, RunningGateway, on_loop, start_gateway, stop_gateway, wait_until

KEYS = {"GLOBEX": ("platinum", 1), "INITECH": ("gold", 2), "ACME": ("standard", 4)}


def key_of(account: str) -> str:
    return f"acc_key-of-{account}"


def upstream_of(server: EchoServer) -> Upstream:
    port = server.server_address[1]
    return Upstream("127.0.0.1", port, f"127.0.0.1:{port}".encode())


def snapshot(upstreams: list[EchoServer], *rules: ActionRule, capacity: int = 10) -> Snapshot:
    primary = PoolTarget("primary", "primary", capacity, (upstream_of(upstreams[0]),))
    standby = PoolTarget("standby", "standby", capacity, (upstream_of(upstreams[1]),))
    route = Route("booking", b"/bookings", False, {"primary": primary, "standby": standby}, primary)
    credentials = {
        hashlib.sha256(key_of(a).encode()).hexdigest(): Identity(a.encode(), tier.encode(), rank)
        for a, (tier, rank) in KEYS.items()
    }
    return Snapshot((route,), credentials, tuple(rules))


def rule(name: str, kind: str, **kw: Any) -> ActionRule:
    scopes = {k: frozenset(kw.pop(k)) if k in kw else None for k in ("tiers", "accounts", "services", "operations")}
    return ActionRule(name=name, kind=kind, **scopes, **kw)


def call(port: int, account: str, path: str) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"X-Api-Key": key_of(account)})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read())
    finally:
        conn.close()


@pytest.fixture
def gateway_with(upstreams: list[EchoServer]) -> Iterator[Any]:
    started: list[RunningGateway] = []

    def start(*rules: ActionRule, capacity: int = 10) -> RunningGateway:
        running = start_gateway(snapshot(upstreams, *rules, capacity=capacity))
        started.append(running)
        return running

    yield start
    for running in started:
        stop_gateway(running)


def test_a_route_action_sends_its_tier_to_the_named_pool(gateway_with: Any) -> None:
    gw = gateway_with(rule("platinum-to-standby", "route", tiers={"platinum"}, pool="standby"))
    assert call(gw.port, "GLOBEX", "/bookings/1")[2]["server"] == "b"
    assert call(gw.port, "ACME", "/bookings/1")[2]["server"] == "a"
    gw2 = gateway_with(rule("to-nowhere", "route", pool="no-such-pool"))
    assert call(gw2.port, "GLOBEX", "/bookings/1")[2]["server"] == "a"  # an unknown pool falls back to primary


def test_a_rate_limit_answers_429_with_retry_after_once_the_burst_is_spent(gateway_with: Any) -> None:
    gw = gateway_with(rule("globex-limit", "rate_limit", accounts={"GLOBEX"}, rps=0.01, burst=3))
    assert [call(gw.port, "GLOBEX", f"/bookings/{i}")[0] for i in range(3)] == [200, 200, 200]
    status, headers, body = call(gw.port, "GLOBEX", "/bookings/4")
    assert status == 429 and body["error"]["code"] == "throttled"
    assert 90 <= int(headers["retry-after"]) <= 100  # one token at 0.01/s is 100 s away
    assert call(gw.port, "ACME", "/bookings/5")[0] == 200  # other accounts are not limited
    outcomes = on_loop(gw, lambda: dict(gw.gateway.outcomes))
    assert outcomes == {"ok": 4, "rate_limited": 1}


def test_shedding_answers_503_with_retry_after_for_the_scoped_tier_only(gateway_with: Any) -> None:
    gw = gateway_with(rule("shed-standard", "shed", tiers={"standard"}, services={"booking"}, retry_after=7))
    status, headers, body = call(gw.port, "ACME", "/bookings/1")
    assert status == 503 and headers["retry-after"] == "7" and body["error"]["code"] == "service_unavailable"
    assert call(gw.port, "GLOBEX", "/bookings/1")[0] == 200


def test_at_capacity_callers_wait_in_tier_order_then_get_503(gateway_with: Any, upstreams: list[EchoServer]) -> None:
    gw = gateway_with(rule("admit", "admission", max_wait=20.0), capacity=1)
    upstream = upstreams[0]
    results: dict[str, int] = {}

    def send(account: str, path: str) -> None:
        results[path] = call(gw.port, account, path)[0]

    def waiting() -> int:
        return on_loop(gw, lambda: sum(g.waiting for g in gw.gateway.gates.values()))

    holder = threading.Thread(target=send, args=("ACME", "/bookings/hold"))
    holder.start()
    assert upstream.holding.wait(20)
    late = [threading.Thread(target=send, args=("ACME", "/bookings/standard")),
            threading.Thread(target=send, args=("INITECH", "/bookings/gold")),
            threading.Thread(target=send, args=("GLOBEX", "/bookings/platinum"))]
    for n, t in enumerate(late, 1):
        t.start()
        wait_until(lambda n=n: waiting() == n, what=f"{n} callers queued")
    upstream.release.set()
    for t in [holder, *late]:
        t.join(30)
    assert results == {"/bookings/hold": 200, "/bookings/standard": 200, "/bookings/gold": 200,
                       "/bookings/platinum": 200}
    assert upstream.order == ["/bookings/hold", "/bookings/platinum", "/bookings/gold", "/bookings/standard"]


def test_a_caller_that_waits_longer_than_max_wait_gets_503(gateway_with: Any, upstreams: list[EchoServer]) -> None:
    gw = gateway_with(rule("admit", "admission", max_wait=0.2, retry_after=3), capacity=1)
    holder = threading.Thread(target=call, args=(gw.port, "ACME", "/bookings/hold"))
    holder.start()
    try:
        assert upstreams[0].holding.wait(20)
        status, headers, body = call(gw.port, "GLOBEX", "/bookings/late")
        assert status == 503 and headers["retry-after"] == "3" and "capacity" in body["error"]["message"]
    finally:
        upstreams[0].release.set()
        holder.join(30)
    assert call(gw.port, "GLOBEX", "/bookings/after")[0] == 200  # the slot came back


@pytest.mark.django_db
def test_live_actions_and_operations_come_from_the_database(django_capture_on_commit_callbacks: Any) -> None:
    from accord.catalog.models import Operation, Pool, Service
    from accord.gateway.snapshot import current_version

    assert current_version() == 0
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        svc = Service.objects.create(name="booking", base_path="/bookings")
        Pool.objects.create(service=svc, name="primary", role="primary", capacity=5)
        Operation.objects.create(service=svc, name="book-trip", method="POST", path_pattern="/bookings")
        Operation.objects.create(service=svc, name="read-booking", method="GET", path_pattern="/bookings/{id}")
        Operation.objects.create(service=svc, name="anything", method="*", path_pattern="/bookings/{id}/{part}")
        do_set_action("limit", "rate_limit", params={"rps": 5}, tiers=["gold"], reason="peak")
        do_set_action("later", "shed", expires_at=timezone.now() + dt.timedelta(hours=1))
        do_set_action("off", "shed")
        do_clear_action("off")
    assert len(callbacks) == 1 and current_version() == 1  # one bump for the whole transaction
    GatewayAction.objects.create(name="expired", kind="shed", expires_at=timezone.now() - dt.timedelta(seconds=1))
    snap = load_snapshot()
    assert {a.name for a in snap.actions} == {"limit", "later"}
    limit = next(a for a in snap.actions if a.name == "limit")
    assert (limit.rps, limit.burst, limit.tiers) == (5.0, 5.0, frozenset({"gold"}))
    assert snap.next_expiry == pytest.approx(time.time() + 3600, abs=60)
    route = snap.route(b"/bookings/42")
    assert route is not None
    assert route.operation(b"GET", b"/bookings/42") == "read-booking"
    assert route.operation(b"DELETE", b"/bookings/42") == ""
    assert route.operation(b"POST", b"/bookings") == "book-trip"
    assert route.operation(b"PUT", b"/bookings/42/seats") == "anything"


@pytest.mark.django_db
@pytest.mark.parametrize(("kind", "params", "scopes", "message"), [
    ("route", {}, {}, "needs a pool name"),
    ("rate_limit", {"rps": -1}, {}, "rps must be a number above 0"),
    ("rate_limit", {"rps": "fast"}, {}, "rps must be a number above 0"),
    ("rate_limit", {"rps": 5, "burst": 0}, {}, "burst must be"),
    ("shed", {"retry_after": 1.5}, {}, "whole number of seconds"),
    ("shed", {"colour": "red"}, {}, "unknown for shed: colour"),
    ("admission", {"max_wait_ms": -5}, {}, "max_wait_ms must be"),
    ("shed", {}, {"tiers": ["gold", ""]}, "list of non-empty names"),
    ("explode", {}, {}, "is not a kind of action"),
])
def test_bad_actions_are_refused_and_nothing_is_stored(kind: str, params: dict[str, Any], scopes: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(ValidationError) as e:
        do_set_action("bad", kind, params=params, **scopes)
    assert message in str(e.value)
    assert not GatewayAction.objects.exists()


@pytest.mark.django_db
def test_the_cli_sets_lists_and_clears_actions(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("gateway-action", "set", "gold-limit", "rate_limit", "--params", '{"rps": 10, "burst": 20}',
                 "--tiers", "gold,platinum", "--for", "15m", "--reason", "peak hour")
    action = GatewayAction.objects.get(name="gold-limit")
    assert action.tiers == ["gold", "platinum"] and action.params == {"rps": 10, "burst": 20} and action.active
    assert action.expires_at is not None and action.set_by == "cli"
    call_command("gateway-action", "list")
    out = capsys.readouterr().out
    assert "gold-limit\trate_limit" in out and "tiers=gold,platinum" in out
    call_command("gateway-action", "clear", "gold-limit")
    assert capsys.readouterr().out == "cleared gold-limit\n"
    assert not GatewayAction.objects.get(name="gold-limit").active
    call_command("gateway-action", "list")
    assert capsys.readouterr().out == ""  # only live actions by default
    call_command("gateway-action", "list", "--all")
    assert "gold-limit\trate_limit" in capsys.readouterr().out
    for argv, message in [
        (["set", "x", "shed", "--params", "{nope"], "--params is not JSON"),
        (["set", "x", "rate_limit", "--params", '{"rps": 0}'], "rps must be"),
        (["set", "x", "shed", "--for", "soon"], "is not a duration"),
        (["clear", "nobody"], "No action is called 'nobody'"),
    ]:
        with pytest.raises(CommandError, match=message):
            call_command("gateway-action", *argv)
    assert list(GatewayAction.objects.values_list("name", flat=True)) == ["gold-limit"]
