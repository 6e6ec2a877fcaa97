"""Faults in the SLA worker: killed with SIGKILL mid-batch, beside a second worker, it loses and repeats nothing.

Every alert is one transaction (the clock marked, its event recorded, its escalation rules claimed), so a worker
killed at any instant leaves each clock either alerted completely or not at all; the survivor, or the restarted
worker, raises what is left. Removing that transaction (`alert` outside `transaction.atomic`) leaves clocks
marked breached with no event and no escalation, which this test finds.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest
from django.db.models import Count, Q

from accord.desk.models import ClockEvent, EscalationRule, SlaClock
from accord.lib.testing import accord_command, subprocess_env

from .conftest import Desk
from .test_worker import open_ticket

TICKETS = 250
NOW = "2026-11-23T11:01:00+00:00"  # every first-response clock of tickets opened at 10:00 is past due


def worker(env: dict[str, str], fault: str = "") -> subprocess.Popen[bytes]:
    return subprocess.Popen([*accord_command(), "worker", "--interval", "0.05"], env={**env, "ACCORD_FAULTS": fault},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_beside_another_leaves_every_alert_recorded_exactly_once(desk: Desk) -> None:
    EscalationRule.objects.create(name="note-breach", trigger="breach", action="notify", notify_email="")
    for _ in range(TICKETS):
        open_ticket(desk, "2026-11-23 10:00")
    clocks = SlaClock.objects.filter(kind="first_response")
    env = subprocess_env(ACCORD_WORKER_NOW=NOW, ACCORD_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
    rng = random.Random(22)
    # First it dies (as kill -9 would) exactly between marking a clock and recording its event...
    victim = worker(env, "worker.alerting")
    assert victim.wait(60) == 137
    # ...then it is killed at random instants, alone for the first kills and then beside a second worker.
    victim = worker(env)
    steady: subprocess.Popen[bytes] | None = None
    kills = 0
    try:
        deadline = time.monotonic() + 240
        while kills < 30 and clocks.filter(breached_at__isnull=True).exists() and time.monotonic() < deadline:
            if kills == 6:
                steady = worker(env)
            before = ClockEvent.objects.count()
            while ClockEvent.objects.count() == before and victim.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)  # the worker has started on the batch
            time.sleep(rng.uniform(0.0, 0.05))
            victim.send_signal(signal.SIGKILL)
            victim.wait(30)
            kills += 1
            victim = worker(env)
        while clocks.filter(breached_at__isnull=True).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for p in (steady, victim):
            if p is None:
                continue
            p.send_signal(signal.SIGTERM)
            p.wait(30)
    assert kills >= 8, f"the batch ended after {kills} kill(s); raise TICKETS"
    events = clocks.annotate(
        breaches=Count("events", filter=Q(events__kind="breach")),
        warnings=Count("events", filter=Q(events__kind="warning")),
        escalations=Count("events", filter=Q(events__kind="escalation:note-breach")),
    )
    assert clocks.count() == TICKETS
    incomplete = [(c.pk, c.breached_at, c.warned_at, c.warnings, c.breaches, c.escalations) for c in events
                  if not (c.breached_at and c.warned_at and c.warnings == c.breaches == c.escalations == 1)]
    assert incomplete == [], f"{len(incomplete)} clock(s) alerted partly after {kills} kill(s): {incomplete[:5]}"
    assert ClockEvent.objects.filter(kind="breach").count() == TICKETS
