"""The governor's state machine on real LivePool/LiveTraffic rows, with time stepped by hand."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from accord.gateway.measure import Sketch
from accord.gateway.models import GatewayAction, LivePool, LiveTraffic
from accord.gateway.snapshot import Identity, load_snapshot
from accord.governance.engine import evaluate_policies, set_override
from accord.governance.models import AuditEvent, Policy, PolicyState
from accord.governance.policies import PolicyError, save_policy

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def utilisation(t: float, value: float, pool: str = "primary") -> None:
    LivePool.objects.create(at=at(t), worker="w1", service="booking", pool=pool, interval_ms=1000,
                            busy_ms=value * 10 * 1000, capacity=10)


def policy(**overrides: Any) -> Policy:
    data: dict[str, Any] = {
        "condition": "pool(booking, primary).utilisation[1s] > 0.8", "hold_seconds": 5, "clear_seconds": 10,
        "min_active_seconds": 20, "cooldown_seconds": 30, "tiers": ["platinum"], "action": "route",
        "params": {"pool": "standby"},
    }
    data.update(overrides)
    return save_policy(overrides.pop("name", "platinum-standby"), data)[0]


def run(seconds: range, values: dict[int, float] | Any) -> list[tuple[int, str]]:
    """Evaluate once a second with the given utilisation; returns (second, kind) of each switch."""
    switches = []
    for s in seconds:
        utilisation(s, values(s) if callable(values) else values[s])
        for t in evaluate_policies(at(s)):
            switches.append((s, t.kind))
    return switches


def test_the_condition_must_hold_for_its_hold_time_and_an_oscillating_signal_does_not_flap() -> None:
    p = policy()
    # around the threshold, flipping every 2 s: never held for 5 s
    assert run(range(0, 40), lambda s: 0.85 if (s // 2) % 2 == 0 else 0.75) == []
    # held: switches on after 5 s, once
    assert run(range(40, 50), lambda s: 0.9) == [(45, "activated")]
    action = GatewayAction.objects.get(name=p.action_name)
    assert action.active and action.kind == "route" and action.params == {"pool": "standby"}
    assert action.tiers == ["platinum"] and action.set_by == "policy platinum-standby"
    # oscillating while active: the clear condition never holds 10 s, so it stays on
    assert run(range(50, 87), lambda s: 0.85 if (s // 3) % 2 == 0 else 0.5) == []
    # low for good from 87: off after 10 s of clear (it has been on well over min_active)
    assert run(range(87, 105), lambda s: 0.3) == [(97, "deactivated")]
    assert not GatewayAction.objects.get(name=p.action_name).active
    # high again at once: held since 105, but the cooldown of 30 s from 97 keeps it off until 127
    switches = run(range(105, 140), lambda s: 0.95)
    assert switches == [(127, "activated")]
    kinds = list(AuditEvent.objects.filter(policy=p).order_by("at").values_list("kind", flat=True))
    assert kinds == ["activated", "deactivated", "activated"]
    first = AuditEvent.objects.filter(policy=p).order_by("at").first()
    assert first is not None and first.actor == "governor" and "held for 5s" in first.reason
    assert first.values["signals"]["pool(booking, primary).utilisation[1s]"] == pytest.approx(0.9)


def test_min_active_keeps_it_on_even_when_the_signal_clears_at_once() -> None:
    policy(hold_seconds=0, clear_seconds=0, min_active_seconds=20, cooldown_seconds=0)
    switches = run(range(0, 30), lambda s: 0.9 if s == 0 else 0.1)
    assert switches == [(0, "activated"), (20, "deactivated")]


def test_an_explicit_clear_condition_gives_a_band_between_on_and_off() -> None:
    policy(hold_seconds=0, clear_seconds=0, min_active_seconds=0, cooldown_seconds=0,
           clear_condition="pool(booking, primary).utilisation[1s] < 0.5")
    switches = run(range(0, 6), {0: 0.9, 1: 0.7, 2: 0.6, 3: 0.55, 4: 0.4, 5: 0.7})
    assert switches == [(0, "activated"), (4, "deactivated")]


def test_dry_run_records_what_it_would_do_and_touches_no_gateway_action() -> None:
    policy(mode="dry_run", hold_seconds=0, clear_seconds=0, min_active_seconds=0, cooldown_seconds=0)
    switches = run(range(0, 3), {0: 0.9, 1: 0.9, 2: 0.1})
    assert switches == [(0, "would_activate"), (2, "would_deactivate")]
    assert not GatewayAction.objects.exists()


def test_a_policy_without_data_stays_off_and_a_broken_reference_is_reported_once() -> None:
    p = policy(hold_seconds=0)
    assert evaluate_policies(at(0)) == []
    assert PolicyState.objects.get(policy=p).values["signals"] == {"pool(booking, primary).utilisation[1s]": None}
    broken = policy(name="burn", condition="budget(nope, nothing).burn_rate[1h] > 2")
    evaluate_policies(at(1))
    evaluate_policies(at(2))
    errors = AuditEvent.objects.filter(policy=broken, kind="error")
    assert errors.count() == 1 and "no objective 'nothing'" in errors.get().reason


def test_conflicting_policies_both_switch_on_and_the_gateway_follows_the_higher_priority() -> None:
    low = policy(name="to-standby", priority=50, hold_seconds=0)
    high = policy(name="to-reserve", priority=10, hold_seconds=0, params={"pool": "reserve"})
    run(range(0, 1), {0: 0.95})
    assert set(GatewayAction.live().values_list("name", flat=True)) == {low.action_name, high.action_name}
    snapshot = load_snapshot()
    platinum = Identity(b"ACME", b"platinum", 1)
    assert snapshot.policy(platinum, "booking", "").pool == "reserve"
    gold = Identity(b"GLOBEX", b"gold", 2)
    assert snapshot.policy(gold, "booking", "").pool == ""


def test_a_manual_override_wins_until_it_expires() -> None:
    p = policy(hold_seconds=0, clear_seconds=0, min_active_seconds=0, cooldown_seconds=0)
    now = timezone.now()
    set_override(p, True, "testing the standby pool", now + dt.timedelta(minutes=1), "alice")
    assert GatewayAction.objects.get(name=p.action_name).active  # on at once, with no traffic at all
    later = now + dt.timedelta(seconds=30)
    assert evaluate_policies(later) == []  # still forced on
    expired = now + dt.timedelta(seconds=61)
    switches = [t.kind for t in evaluate_policies(expired)]
    assert switches == ["deactivated"]
    events = list(AuditEvent.objects.filter(policy=p).order_by("at", "id").values_list("kind", "actor"))
    assert events == [("override", "alice"), ("activated", "alice"), ("override_ended", "governor"),
                      ("deactivated", "governor")]
    with pytest.raises(ValueError, match="reason"):
        set_override(p, False, " ", now + dt.timedelta(minutes=1), "alice")
    with pytest.raises(ValueError, match="future"):
        set_override(p, False, "too late", now - dt.timedelta(minutes=1), "alice")


def test_a_forced_off_policy_stays_off_while_its_condition_holds() -> None:
    p = policy(hold_seconds=0)
    set_override(p, False, "standby pool under maintenance", timezone.now() + dt.timedelta(hours=1), "bob")
    utilisation(0, 0.99)
    assert evaluate_policies(at(0)) == []
    assert not GatewayAction.objects.filter(name=p.action_name, active=True).exists()


def test_disabling_an_active_policy_switches_its_action_off() -> None:
    p = policy(hold_seconds=0)
    run(range(0, 1), {0: 0.95})
    Policy.objects.filter(pk=p.pk).update(enabled=False)
    switches = evaluate_policies(at(1))
    assert [t.kind for t in switches] == ["deactivated"]
    assert not GatewayAction.objects.get(name=p.action_name).active


def test_latency_and_tier_filters_read_live_traffic() -> None:
    p = policy(condition="service(booking, tier=platinum).p95_ms[10s] > 300", hold_seconds=0, action="shed",
               params={"retry_after": 2}, tiers=["bronze"])
    fast, slow = Sketch(), Sketch()
    for i in range(100):
        fast.add(50 + i % 10)
        slow.add(350 + i)
    for tier, sketch in (("platinum", fast), ("gold", slow)):
        LiveTraffic.objects.create(at=at(0), worker="w1", service="booking", pool="primary", tier=tier, count=100,
                                   latency_sum_ms=0, latency_sketch=sketch.encode())
    assert evaluate_policies(at(1)) == []  # gold is slow, platinum is not
    LiveTraffic.objects.create(at=at(1), worker="w2", service="booking", pool="primary", tier="platinum",
                               count=100, latency_sum_ms=0, latency_sketch=slow.encode())
    assert [t.kind for t in evaluate_policies(at(2))] == ["activated"]  # merged: half the requests above 350 ms
    assert GatewayAction.objects.get(name=p.action_name).kind == "shed"


@pytest.mark.parametrize("field,value,message", [
    ("condition", "pool(booking).utilisation > 1", "condition: column 1: pool() takes 2 argument"),
    ("clear_condition", "service(x).rps >", "clear_condition: column 17: expected a number"),
    ("action", "explode", "action: 'explode' is not a"),
    ("params", {"pool": ""}, "needs a pool name"),
    ("hold_seconds", -1, "hold_seconds: must be a whole number"),
    ("mode", "maybe", "mode: must be one of"),
    ("tiers", "platinum", "tiers: must be a list"),
    ("schedule", "no-such-calendar", "schedule: no calendar named"),
    ("notify_webhooks", [{"url": "ftp://x"}], "must start with http"),
])
def test_bad_policies_are_refused_with_the_field_and_nothing_is_saved(field: str, value: Any, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy(**{field: value})
    assert message in str(info.value), str(info.value)
    assert not Policy.objects.exists()
