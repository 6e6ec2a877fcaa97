"""Faults in the governor: SIGKILL while a policy is active and while it switches, and the restarted governor
resumes from the stored state (no flapping, no duplicate notification, the audit trail complete)."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from django.utils import timezone

from accord.gateway.models import GatewayAction, LivePool
from accord.governance.models import AuditEvent, Notification, Policy, PolicyState
from accord.governance.policies import save_policy
from accord.lib.testing import accord_command, subprocess_env


def governor(fault: str = "") -> subprocess.Popen[bytes]:
    env = subprocess_env(ACCORD_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend", ACCORD_FAULTS=fault)
    return subprocess.Popen([*accord_command(), "governor", "--interval", "0.1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def feed(value: float, until: Callable[[], bool], timeout: float = 60.0) -> None:
    """Write the pool's utilisation every 0.1 s, as the gateway's live signals do, until `until()` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        LivePool.objects.create(at=timezone.now(), worker="w1", service="booking", pool="primary",
                                interval_ms=1000, busy_ms=value * 10 * 1000, capacity=10)
        time.sleep(0.1)


def feed_for(value: float, seconds: float) -> None:
    end = time.monotonic() + seconds
    feed(value, lambda: time.monotonic() >= end)


def kinds() -> list[str]:
    return list(AuditEvent.objects.filter(kind__in=["activated", "deactivated"]).order_by("pk")
                .values_list("kind", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_governor_killed_while_active_and_while_switching_resumes_without_flapping_or_repeats() -> None:
    policy = save_policy("platinum-standby", {
        "condition": "pool(booking, primary).utilisation[1s] > 0.8", "hold_seconds": 1, "clear_seconds": 1,
        "min_active_seconds": 2, "cooldown_seconds": 600, "tiers": ["platinum"], "action": "route",
        "params": {"pool": "standby"}, "notify_emails": ["ops@accord.example"],
    })[0]
    rng = random.Random(5)
    # Switching on: the governor dies (as kill -9 would) after recording the switch and before saving the state.
    proc = governor("governor.switching")
    try:
        feed(0.95, lambda: proc.poll() is not None)
        assert proc.returncode == 137
        proc = governor()
        feed(0.95, lambda: kinds() == ["activated"])
        # Active: killed at random instants and restarted while the peak lasts; it stays on, once.
        for _ in range(3):
            feed_for(0.95, rng.uniform(0.3, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            proc = governor()
        feed_for(0.95, 1.5)
        assert kinds() == ["activated"]
        assert GatewayAction.objects.get(name=policy.action_name).active
        # Switching off: dies at the same point of the switch off, then resumes.
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        proc = governor("governor.switching")
        feed(0.1, lambda: proc.poll() is not None)
        assert proc.returncode == 137
        proc = governor()
        feed(0.1, lambda: kinds() == ["activated", "deactivated"])
        feed_for(0.1, 1.0)
        # Within the cooldown a new peak does not switch it back on (the stored cooldown holds across restarts).
        feed_for(0.95, 2.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    assert kinds() == ["activated", "deactivated"]
    assert not GatewayAction.objects.get(name=policy.action_name).active
    state = PolicyState.objects.get(policy=policy)
    assert not state.active and state.cooldown_until is not None
    # One notification per switch, each for its own audit event; none lost, none twice.
    events = list(AuditEvent.objects.filter(kind__in=["activated", "deactivated"]).values_list("pk", flat=True))
    assert sorted(Notification.objects.values_list("event_id", flat=True)) == sorted(events)
    assert Policy.objects.get(pk=policy.pk).enabled
