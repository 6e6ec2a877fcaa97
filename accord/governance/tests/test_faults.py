"""Faults in the governor: SIGKILL while a policy is active and while it switches, and the restarted governor
resumes from the stored state (no flapping, no duplicate notification, the audit trail complete)."""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.utils import timezone

from accord.gateway.models import GatewayAction, LivePool
from accord.governance.models import AuditEvent, Notification, Policy, PolicyState
from accord.governance.policies import save_policy
from accord.lib.testing import accord_command, subprocess_env
from accord.lib.tests.clockshift import shift
from accord.ops.models import Heartbeat

CLOCKSHIFT = Path(shift.__file__).resolve().parent


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
        feed(0.95, lambda: bool(kinds()))  # a switch half-recorded by the dead one would show as a second below
        # Active: killed at random instants and restarted while the peak lasts; it stays on, once.
        for _ in range(3):
            feed_for(0.95, rng.uniform(0.3, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            proc = governor()
        feed_for(0.95, 1.5)
        # the governor running says it is alive (once it has started); the ones killed before it said nothing more
        feed(0.95, lambda: Heartbeat.objects.filter(kind="governor", pid=proc.pid).exists())
        assert kinds() == ["activated"]
        beats = dict(Heartbeat.objects.filter(kind="governor").values_list("pid", "stopped_at"))
        assert proc.pid in beats and not any(beats.values()), beats
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
    assert Heartbeat.objects.get(kind="governor", pid=proc.pid).stopped_at is not None  # stopped cleanly
    # One notification per switch, each for its own audit event; none lost, none twice.
    events = list(AuditEvent.objects.filter(kind__in=["activated", "deactivated"]).values_list("pk", flat=True))
    assert sorted(Notification.objects.values_list("event_id", flat=True)) == sorted(events)
    assert Policy.objects.get(pk=policy.pk).enabled


@pytest.mark.django_db(transaction=True)
def test_a_wall_clock_moved_back_an_hour_neither_stalls_the_governor_nor_makes_it_flap(tmp_path: Path) -> None:
    """The running governor's clock jumps back an hour three times: in the middle of a hold, while active (its
    minimum active time running) and in a cooldown. Each window then lasts about its own length, not an hour."""
    policy = save_policy("clock-standby", {
        "condition": "pool(booking, primary).utilisation[1s] > 0.8", "hold_seconds": 2, "clear_seconds": 1,
        "min_active_seconds": 3, "cooldown_seconds": 3, "tiers": ["platinum"], "action": "route",
        "params": {"pool": "standby"},
    })[0]
    clock = tmp_path / "clock-shift"
    clock.write_text("0s")
    paths = [str(CLOCKSHIFT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = subprocess_env(ACCORD_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
                         ACCORD_TEST_CLOCK_FILE=str(clock), PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)))
    proc = subprocess.Popen([*accord_command(), "governor", "--interval", "0.1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    offset = dt.timedelta(0)

    def jump_back(value: float) -> None:
        """The host's clock goes back an hour: the governor's (through the file) and the feeder's."""
        nonlocal offset
        offset -= dt.timedelta(hours=1)
        # the signal goes on without a gap across the jump: rows already there for the next seconds on the new clock
        start = timezone.now() + offset
        LivePool.objects.bulk_create([
            LivePool(at=start + dt.timedelta(seconds=k / 10), worker="w0", service="booking", pool="primary",
                     interval_ms=1000, busy_ms=value * 10 * 1000, capacity=10) for k in range(-10, 30)])
        clock.write_text(f"{int(offset.total_seconds())}s")

        def moved() -> bool:
            state = PolicyState.objects.get(policy=policy)
            return state.evaluated_at is not None and state.evaluated_at < timezone.now() + offset + dt.timedelta(
                minutes=30)

        feed_at(offset, value, moved)

    try:
        feed_at(offset, 0.95, lambda: PolicyState.objects.filter(policy=policy, true_since__isnull=False).exists())
        jump_back(0.95)  # mid-hold: the hold started "an hour from now"
        feed_at(offset, 0.95, lambda: kinds() == ["activated"], timeout=20)
        jump_back(0.1)  # active: switched on "an hour from now"
        feed_at(offset, 0.1, lambda: kinds() == ["activated", "deactivated"], timeout=20)
        jump_back(0.95)  # cooling down "until an hour and three seconds from now"
        feed_at(offset, 0.95, lambda: kinds() == ["activated", "deactivated", "activated"], timeout=20)
        feed_at(offset, 0.95, lambda: False, timeout=1.5, fail=False)  # and it stays on: no flapping
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert kinds() == ["activated", "deactivated", "activated"]
    events = list(AuditEvent.objects.filter(kind__in=["activated", "deactivated"]).order_by("pk"))
    for event in events:  # what the audit trail says about each window: never negative, never an hour
        waited = [float(n) for n in re.findall(r"(-?\d+)s", event.reason)]
        assert waited and all(0 <= n < 60 for n in waited), event.reason
    assert GatewayAction.objects.get(name=policy.action_name).active


def feed_at(offset: dt.timedelta, value: float, until: Callable[[], bool], timeout: float = 30.0,
            fail: bool = True) -> None:
    """`feed` on a clock `offset` from this process's: the live signals a gateway on the moved host writes."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() >= deadline:
            assert not fail, "timed out"
            return
        LivePool.objects.create(at=timezone.now() + offset, worker="w1", service="booking", pool="primary",
                                interval_ms=1000, busy_ms=value * 10 * 1000, capacity=10)
        time.sleep(0.1)
