"""The SLI definitions of docs/governance.md, "Service-level indicators": valid, good, bad and excluded events per
objective kind, first with real traffic through a real gateway, then outcome by outcome on rollup rows; zero
budgets that burn infinitely fast and alert; exact numbers in JSON and units in `accord slo status`."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import io
import json
import re
import socket
import threading
import time
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
from accord.customers.models import Account, Tier
from accord.gateway.actions import do_clear_action, do_set_action
from accord.gateway.flusher import write_rollups
from accord.gateway.limits import Limits
from accord.gateway.measure import Sketch
from accord.gateway.models import LiveTraffic
from accord.gateway.snapshot import load_snapshot
from accord.gateway.tests.conftest import (
    EchoServer,
    on_loop,
    start_gateway,
    stop_gateway,
    upstreams,
    wait_until,
)
from accord.governance import indicators
from accord.governance.engine import evaluate_budgets, evaluate_policies
from accord.governance.models import AuditEvent, BurnAlert, PolicyState
from accord.governance.policies import save_policy

from .rollups import add_rollup

__all__ = ["upstreams"]  # the fixture, shared with the gateway's tests

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
ALWAYS = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def agreement_with(*objectives: dict[str, Any], tier: str = "platinum") -> dict[str, Objective]:
    """A tier agreement on the service `booking` with these objectives (rolling 30 days), by name."""
    calendar = BusinessCalendar.objects.get_or_create(name="always", defaults={"timezone": "UTC", "hours": ALWAYS})[0]
    service = Service.objects.get_or_create(name="booking", defaults={"base_path": "/bookings"})[0]
    agreement = Agreement.objects.create(name=f"{tier}-sla", tier=Tier.objects.get_or_create(name=tier, rank=1)[0],
                                         calendar=calendar, effective_from=timezone.localdate() - dt.timedelta(days=400))
    made = {}
    for spec in objectives:
        spec = {"window": "rolling", "window_days": 30, "service": service, **spec}
        made[spec["name"]] = Objective.objects.create(agreement=agreement, **spec)
    return made


# -- real traffic through a real gateway ------------------------------------------------------------------------


def ask(port: int, key: str, path: str) -> int:
    """The status of a GET; an answer whose body breaks off counts as its status too."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        r = conn.getresponse()
        with contextlib.suppress(http.client.IncompleteRead):
            r.read()
        return r.status
    finally:
        conn.close()


def abandon(port: int, key: str, path: str, upstream: EchoServer, after: float) -> None:
    """Send a request the upstream holds, wait until it has arrived there, wait `after` seconds more, and leave
    without reading an answer (the gateway records 499, client_gone)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
        wait_until(lambda: path in upstream.order, what=f"{path} at the upstream")
        time.sleep(after)


@pytest.mark.django_db
def test_real_traffic_through_the_gateway_counts_by_the_sli_definitions(upstreams: list[EchoServer]) -> None:
    up = upstreams[0]
    objectives = agreement_with(
        {"name": "availability", "kind": "availability", "target": Decimal("99.9")},
        {"name": "errors", "kind": "error_rate", "target": Decimal(1)},
        {"name": "p95", "kind": "latency", "percentile": Decimal(95), "target": Decimal(1000)},
    )
    service = Service.objects.get(name="booking")
    pool = Pool.objects.create(service=service, name="primary", role="primary", capacity=1)
    endpoint = Endpoint.objects.create(pool=pool, url=up.url)
    account = Account.objects.create(name="Globex", external_id="GLOBEX", tier=Tier.objects.get(name="platinum"))
    _c, key = ApiCredential.issue(account)
    running = start_gateway(load_snapshot())
    port = running.port
    impatient = start_gateway(load_snapshot(), Limits(upstream_timeout=0.3))  # for a 504

    def reload() -> None:
        running.set_snapshot(load_snapshot())
        snapshot = load_snapshot()
        wait_until(lambda: on_loop(running, lambda: running.gateway.snapshot.actions == snapshot.actions
                                   and running.gateway.snapshot.routes == snapshot.routes), what="the new snapshot")

    try:
        statuses = [ask(port, key, f"/bookings/{i}") for i in range(10)]
        statuses += [ask(port, key, "/bookings/status=404"), ask(port, key, "/bookings/status=409")]
        statuses.append(ask(port, key, "/bookings/status=500"))
        assert statuses == [200] * 10 + [404, 409, 500]
        assert ask(port, key, "/bookings/cut") == 200  # the head said 200, the body broke off: bad_gateway, bad
        assert ask(impatient.port, key, "/bookings/slow=1") == 504  # the upstream took too long: timeout, bad
        abandon(port, key, "/bookings/hold-early", up, after=0.0)  # left at once: excluded
        abandon(port, key, "/bookings/hold-late", up, after=1.3)  # left after 1.3 s > 1000 ms: bad
        # the customer's own rate limit: one request through, then 429s that are not valid events
        do_set_action("limit-globex", "rate_limit", params={"rps": 0.001, "burst": 1}, accounts=["GLOBEX"])
        reload()
        assert [ask(port, key, f"/bookings/r{i}") for i in range(4)] == [200, 429, 429, 429]
        do_clear_action("limit-globex")
        # shed by policy: bad
        do_set_action("shed-platinum", "shed", tiers=["platinum"])
        reload()
        assert [ask(port, key, "/bookings/s1"), ask(port, key, "/bookings/s2")] == [503, 503]
        do_clear_action("shed-platinum")
        # no endpoint: the gateway's own 503, bad
        Endpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
        reload()
        assert ask(port, key, "/bookings/n1") == 503
        Endpoint.objects.filter(pk=endpoint.pk).update(enabled=True)
        # at capacity with no wait allowed: queue_timeout, bad; the request holding the slot answers 200 after
        # 1.3 s, good for availability but slow for latency
        do_set_action("admit", "admission", params={"max_wait_ms": 0})
        reload()
        slow: list[int] = []
        holder = threading.Thread(target=lambda: slow.append(ask(port, key, "/bookings/hold-slow")))
        holder.start()
        wait_until(lambda: "/bookings/hold-slow" in up.order, what="the slow request at the upstream")
        assert ask(port, key, "/bookings/q1") == 503
        time.sleep(1.3)
        up.release.set()
        holder.join(30)
        assert slow == [200]
        wait_until(lambda: on_loop(running, lambda: running.gateway.in_flight) == 0, what="every request counted")
        outcomes = on_loop(running, lambda: dict(running.gateway.outcomes))
        assert outcomes == {"ok": 12, "client_error": 2, "server_error": 1, "bad_gateway": 1, "client_gone": 2,
                            "rate_limited": 3, "shed": 2, "no_endpoint": 1, "queue_timeout": 1}
        assert on_loop(impatient, lambda: dict(impatient.gateway.outcomes)) == {"timeout": 1}
        for gateway in (running, impatient):
            write_rollups(on_loop(gateway, gateway.gateway.accumulator.take), 60)
    finally:
        up.release.set()
        stop_gateway(running)
        stop_gateway(impatient)

    # 26 measured; 3 rate-limited and 1 abandoned early are excluded: 22 valid. Bad for availability and error
    # rate: the upstream's 500, the broken-off 200, the 504, the late abandon, 2 shed, no_endpoint, queue_timeout
    availability = indicators.budget_status(objectives["availability"])
    assert (availability.requests, availability.valid, availability.bad, availability.excluded) == (26, 22, 8, 4)
    assert availability.events.threshold_ms == 1000.0  # from the latency objective of the same scope
    assert availability.sli == 14 / 22 * 100 and availability.met is False
    errors = indicators.budget_status(objectives["errors"])
    assert (errors.valid, errors.bad, errors.sli) == (22, 8, 8 / 22 * 100)
    # bad for latency: the late abandon and the slow 200 (every other answer took well under a second)
    latency = indicators.budget_status(objectives["p95"])
    assert (latency.requests, latency.valid, latency.bad, latency.excluded) == (26, 22, 2, 4)
    assert latency.consumed == float(Fraction(2, 22) / Fraction(5, 100)) and latency.met is False
    assert latency.sli is not None and latency.sli >= 297  # p95 of 22 is the 20th: the 504 after 0.3 s (sketch: 1 %)


# -- outcome by outcome, on rollup rows -------------------------------------------------------------------------


def rows(outcome: str, count: int, *, status: int = 200, latency: float = 20.0, minutes_ago: float = 10) -> None:
    """`count` requests of one outcome, answered with `status`, each taking `latency` ms."""
    add_rollup(NOW - dt.timedelta(minutes=minutes_ago), count=count, errors=count if status >= 500 else 0,
               latencies=[latency] * count, outcome=outcome)


@pytest.mark.django_db
def test_each_outcome_is_good_bad_or_excluded_for_availability_and_error_rate() -> None:
    made = agreement_with({"name": "availability", "kind": "availability", "target": Decimal("99.9")},
                          {"name": "errors", "kind": "error_rate", "target": Decimal("0.5")})
    rows("ok", 100)
    rows("client_error", 10, status=404)  # the caller's doing: good
    rows("unauthorized", 5, status=401)
    rows("rate_limited", 50, status=429)  # the customer's own contractual limit: not a valid event
    rows("server_error", 1, status=500)
    rows("shed", 2, status=503)
    rows("queue_timeout", 3, status=503)
    rows("no_endpoint", 4, status=503)
    rows("timeout", 1, status=504)
    rows("bad_gateway", 1, status=200)  # the upstream broke off an answer whose 200 head had gone out: bad
    with time_machine.travel(NOW, tick=False):
        for name in ("availability", "errors"):
            events = indicators.objective_events(made[name], NOW - dt.timedelta(hours=1), NOW)
            assert (events.requests, events.valid, events.bad, events.excluded) == (177, 127, 12, 50), name
        assert indicators.budget_status(made["errors"]).sli == pytest.approx(12 / 127 * 100)


@pytest.mark.django_db
def test_a_request_abandoned_after_the_latency_threshold_is_bad_and_before_it_excluded() -> None:
    made = agreement_with({"name": "availability", "kind": "availability", "target": Decimal("99")},
                          {"name": "p90", "kind": "latency", "percentile": Decimal(90), "target": Decimal(500)},
                          {"name": "p99", "kind": "latency", "percentile": Decimal(99), "target": Decimal(2000)})
    rows("ok", 100)
    rows("client_gone", 3, status=499, latency=300.0)  # left within every threshold: excluded everywhere
    rows("client_gone", 4, status=499, latency=1000.0)  # bad for p90 (500 ms), excluded for p99 (2000 ms)
    rows("client_gone", 5, status=499, latency=2500.0)  # bad for all three
    with time_machine.travel(NOW, tick=False):
        p90 = indicators.budget_status(made["p90"])
        p99 = indicators.budget_status(made["p99"])
        availability = indicators.budget_status(made["availability"])
    assert (p90.valid, p90.bad, p90.excluded) == (109, 9, 3)
    assert (p99.valid, p99.bad, p99.excluded) == (105, 5, 7)
    # availability takes the longest latency target of its scope (2000 ms): only the 5 past it are bad
    assert availability.events.threshold_ms == 2000.0
    assert (availability.valid, availability.bad, availability.excluded) == (105, 5, 7)


@pytest.mark.django_db
def test_a_latency_objective_of_another_scope_does_not_set_the_threshold_and_the_default_is_the_upstream_timeout(
        settings: Any) -> None:
    made = agreement_with({"name": "availability", "kind": "availability", "target": Decimal("99")})
    other = Service.objects.create(name="search", base_path="/search")
    Objective.objects.create(agreement=made["availability"].agreement, name="search-p95", kind="latency",
                             percentile=Decimal(95), target=Decimal(100), window="rolling", window_days=30,
                             service=other)
    rows("ok", 100)
    rows("client_gone", 2, status=499, latency=10_000.0)  # 10 s: before the default 30 s
    rows("client_gone", 3, status=499, latency=31_000.0)  # 31 s: after it
    assert settings.ACCORD_SLI_ABANDON_MS == Limits.upstream_timeout * 1000 == 30_000
    with time_machine.travel(NOW, tick=False):
        status = indicators.budget_status(made["availability"])
        assert status.events.threshold_ms == 30_000.0
        assert (status.valid, status.bad, status.excluded) == (103, 3, 2)
        settings.ACCORD_SLI_ABANDON_MS = 5_000.0
        status = indicators.budget_status(made["availability"])
        assert (status.valid, status.bad, status.excluded) == (105, 5, 0)


@pytest.mark.django_db
def test_the_threshold_is_judged_on_the_sketch_so_only_requests_within_one_percent_of_it_may_fall_either_way() -> None:
    made = agreement_with({"name": "p95", "kind": "latency", "percentile": Decimal(95), "target": Decimal(1000)})
    rows("ok", 100)
    rows("client_gone", 1, status=499, latency=1020.0)  # 2 % past the threshold: bad
    rows("client_gone", 1, status=499, latency=980.0)  # 2 % before it: excluded
    rows("ok", 1, latency=1020.0)  # an answer 2 % late is bad, as it always was
    with time_machine.travel(NOW, tick=False):
        status = indicators.budget_status(made["p95"])
    assert (status.valid, status.bad, status.excluded) == (102, 2, 1)


@pytest.mark.django_db
def test_rate_limited_requests_are_not_valid_for_latency_either() -> None:
    made = agreement_with({"name": "p95", "kind": "latency", "percentile": Decimal(95), "target": Decimal(300)})
    rows("ok", 90, latency=100.0)
    rows("ok", 10, latency=400.0)
    rows("rate_limited", 1000, status=429, latency=0.1)  # fast 429s would hide the slow answers
    with time_machine.travel(NOW, tick=False):
        status = indicators.budget_status(made["p95"])
    assert (status.valid, status.bad, status.excluded) == (100, 10, 1000)
    assert status.sli == pytest.approx(400, rel=0.01) and status.met is False


@pytest.mark.django_db
def test_a_window_whose_every_request_was_excluded_has_no_sli_and_says_why(alice: Any) -> None:
    made = agreement_with({"name": "availability", "kind": "availability", "target": Decimal("99.9")})
    rows("rate_limited", 5, status=429)
    with time_machine.travel(NOW, tick=False):
        status = indicators.budget_status(made["availability"])
        assert (status.requests, status.valid, status.sli, status.met, status.consumed) == (5, 0, None, None, None)
        client = Client()
        client.force_login(alice)
        html = client.get("/governance/").content.decode()
    row = re.search(r'<tr data-objective="platinum-sla/availability" data-level="none">(.*?)</tr>', html, re.S)
    assert row and "no valid events (5 excluded)" in row.group(1)


# -- zero budgets ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_100_percent_objective_burns_infinitely_on_one_bad_request_and_the_governor_alerts(alice: Any) -> None:
    made = agreement_with({"name": "perfect", "kind": "availability", "target": Decimal(100)})
    perfect = made["perfect"]
    for minute in range(1, 120):
        rows("ok", 100, minutes_ago=minute)
    with time_machine.travel(NOW, tick=False):
        assert indicators.burn_rate(perfect, NOW, 3600) == 0.0  # a zero budget untouched burns nothing
        assert evaluate_budgets(NOW) == []
        rows("server_error", 1, status=500, minutes_ago=2)
        assert indicators.burn_rate(perfect, NOW, 3600) == float("inf")
        status = indicators.budget_status(perfect)
        assert status.consumed == float("inf") and status.remaining == float("-inf") and status.met is False
        fired = evaluate_budgets(NOW)
    # every rule whose short window holds the bad request fires: 1h/5m, 6h/30m and 3d/6h
    assert [t.kind for t in fired] == ["burn_alert"] * 3
    alert = BurnAlert.objects.get(rule="page 14.4x 1h/5m")
    assert alert.values == {"long": "Infinity", "short": "Infinity", "threshold": 14.4}
    event = AuditEvent.objects.filter(kind="burn_alert").order_by("id").first()
    assert event is not None and "burning at ∞ over 1h and ∞ over the short window" in event.reason
    assert "a zero budget" in event.reason
    assert json.loads(json.dumps(event.values, allow_nan=False))["long"] == "Infinity"
    # people read ∞: the error-budget table and the event's values on the governance page
    client = Client()
    client.force_login(alice)
    with time_machine.travel(NOW + dt.timedelta(minutes=1), tick=False):
        html = client.get("/governance/").content.decode()
    row = re.search(r'<tr data-objective="platinum-sla/perfect" data-level="bad">(.*?)</tr>', html, re.S)
    assert row and "∞ used: a zero budget, 1 bad" in row.group(1) and "≥ 100 %" in row.group(1)
    assert "99.991 %" in row.group(1)  # 11,900 good of 11,901: 99.99160 %, rounded down
    event_row = re.search(r'<tr data-kind="burn_alert" data-subject="platinum-sla/perfect">(.*?)</tr>', html, re.S)
    assert event_row and "<code>long</code> ∞" in event_row.group(1)


@pytest.mark.django_db
def test_a_policy_on_the_burn_rate_of_a_zero_budget_switches_on_and_records_infinity() -> None:
    agreement_with({"name": "perfect", "kind": "availability", "target": Decimal(100)})
    rows("ok", 100)
    rows("shed", 1, status=503)
    save_policy("burning", {"condition": "budget(platinum-sla, perfect).burn_rate[1h] > 14.4", "hold_seconds": 0,
                            "action": "notify", "params": {}, "notify_emails": ["ops@example.com"]})
    with time_machine.travel(NOW, tick=False):
        assert [t.kind for t in evaluate_policies(NOW)] == ["activated"]
    state = PolicyState.objects.get(policy__name="burning")
    assert state.values["signals"] == {"budget(platinum-sla, perfect).burn_rate[1h]": "Infinity"}


# -- exact numbers and units ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_measured_level_is_never_rounded_to_look_better_than_it_is() -> None:
    made = agreement_with({"name": "availability", "kind": "availability", "target": Decimal("99.9")},
                          {"name": "errors", "kind": "error_rate", "target": Decimal("0.5")})
    add_rollup(NOW - dt.timedelta(minutes=5), count=999_999, latencies=[20.0], outcome="ok")
    rows("server_error", 1, status=500)
    with time_machine.travel(NOW, tick=False):
        assert indicators.budget_status(made["availability"]).sli_label() == "99.999 %"  # not 100.000 %
        assert indicators.budget_status(made["errors"]).sli_label() == "0.001 % errors"  # not 0.000 %



def slo(*args: str) -> str:
    out = io.StringIO()
    call_command("slo", "status", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_slo_status_json_carries_exact_numbers_and_infinity_as_a_string() -> None:
    agreement_with({"name": "availability", "kind": "availability", "target": Decimal("99.9")},
                   {"name": "perfect", "kind": "availability", "target": Decimal(100)},
                   {"name": "p95", "kind": "latency", "percentile": Decimal("99.9"), "target": Decimal(600)})
    rows("ok", 9995)
    rows("server_error", 5, status=500)
    with time_machine.travel(NOW, tick=False):
        text = slo("--json")
    assert "0.000999" not in text and "99999999" not in text  # no float noise
    by_name = {r["objective"]: r for r in json.loads(text)}
    row = by_name["availability"]
    assert row["budget"] == 0.001 and row["consumed"] == 0.5 and row["remaining"] == 0.5 and row["sli"] == 99.95
    assert (row["requests"], row["valid"], row["good"], row["bad"], row["excluded"]) == (10_000, 10_000, 9995, 5, 0)
    assert by_name["p95"]["budget"] == 0.001  # 100 - 99.9 percentile, exactly
    assert by_name["perfect"]["consumed"] == "Infinity" and by_name["perfect"]["remaining"] == "-Infinity"


@pytest.mark.django_db
def test_slo_status_shows_targets_and_levels_with_their_units() -> None:
    agreement_with({"name": "availability", "kind": "availability", "target": Decimal("99.9")},
                   {"name": "errors", "kind": "error_rate", "target": Decimal("0.5")},
                   {"name": "perfect", "kind": "availability", "target": Decimal(100)},
                   {"name": "p95", "kind": "latency", "percentile": Decimal(95), "target": Decimal(600)})
    rows("ok", 9995)
    rows("server_error", 5, status=500)
    with time_machine.travel(NOW, tick=False):
        text = slo()
    lines = {line.split()[0]: line for line in text.splitlines()}
    assert "p95 ≤ 600 ms" in lines["platinum-sla/p95"] and "600m " not in text
    assert "p95 20 ms" in lines["platinum-sla/p95"]
    assert "≥ 99.9 %" in lines["platinum-sla/availability"] and "99.950 %" in lines["platinum-sla/availability"]
    assert "10,000" in lines["platinum-sla/availability"] and "50.0 %" in lines["platinum-sla/availability"]
    assert "≤ 0.5 % errors" in lines["platinum-sla/errors"] and "0.050 % errors" in lines["platinum-sla/errors"]
    assert "∞ %" in lines["platinum-sla/perfect"] and "MISSED" in lines["platinum-sla/perfect"]


@pytest.mark.django_db
def test_the_api_carries_latencies_and_shares_without_float_noise(api: Any) -> None:
    now = timezone.now()
    add_rollup(now - dt.timedelta(minutes=1), count=2, latencies=[0.1, 0.2], outcome="ok")  # sum 0.30000000000000004
    row = api.get("/api/v1/gateway/rollups/").json()["results"][0]
    assert row["latency_sum_ms"] == 0.3 and row["mean_ms"] == 0.15  # to the microsecond
    assert row["p50_ms"] == 0.09925  # 0.09924864547445746: 4 significant digits, a sketch is within 1 %
    sketch = Sketch()
    for _ in range(3):
        sketch.add(20.0)
    LiveTraffic.objects.create(at=now - dt.timedelta(seconds=2), worker="w", service="booking", pool="primary",
                               tier="gold", count=3, errors=1, latency_sum_ms=60.0, latency_sketch=sketch.encode())
    live = api.get("/api/v1/governance/indicators/", {"service": "booking", "window": 10}).json()
    assert live["availability"] == 2 / 3 and live["availability"] != 1 - 1 / 3  # one division, not two
    assert live["p95_ms"] == 19.89  # 19.886670240866188
