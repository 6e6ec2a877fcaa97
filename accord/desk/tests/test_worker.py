"""The SLA worker: warnings and breaches once, escalation rules once, also with two workers at a time."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import time_machine
from django.core import mail

from accord.desk import actions
from accord.desk.actions import Inbound
from accord.desk.models import ClockEvent, EscalationRule, SlaClock, SupportGroup, Ticket
from accord.desk.worker import run_once
from accord.lib.smtp import SmtpSink
from accord.lib.testing import accord_command, subprocess_env

from .conftest import Desk, at


def open_ticket(desk: Desk, when: str, priority: str = "normal") -> Ticket:
    return actions.do_open_ticket(
        Inbound(
            channel="email", subject="Help", from_address="grace@globetrotter.example", priority=priority,
            received_at=at(when),
        )
    )


@pytest.mark.django_db
def test_it_warns_at_the_share_and_breaches_at_the_due_instant_once(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 10:00")  # first response due 11:00, warning at 10:45
    assert not run_once(at("2026-11-23 10:44"))
    tick = run_once(at("2026-11-23 10:46"))
    assert (tick.warnings, tick.breaches) == (1, 0)
    ticket.refresh_from_db()
    assert ticket.sla_state == "warning"
    assert not run_once(at("2026-11-23 10:50"))  # nothing twice
    tick = run_once(at("2026-11-23 11:01"))
    assert (tick.warnings, tick.breaches) == (0, 1)
    first = SlaClock.objects.get(ticket=ticket, kind="first_response")
    assert first.breached_at == at("2026-11-23 11:00")  # the due instant, not when the worker noticed
    ticket.refresh_from_db()
    assert ticket.sla_state == "breached"
    assert not run_once(at("2026-11-23 11:30"))
    assert list(ClockEvent.objects.filter(clock=first).values_list("kind", flat=True)) == ["warning", "breach"]


@pytest.mark.django_db
def test_a_paused_clock_neither_warns_nor_breaches(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 10:00")
    actions.do_set_status(ticket, "on_hold", at=at("2026-11-23 10:01"))
    assert not run_once(at("2026-11-24 10:00"))


@pytest.mark.django_db
def test_escalation_rules_reassign_raise_priority_and_notify_once(
    desk: Desk, django_capture_on_commit_callbacks: Any
) -> None:
    tier2 = SupportGroup.objects.create(name="tier-2")
    EscalationRule.objects.create(name="warn-platinum-lead", trigger="warning", action="notify",
                                  notify_email="lead@accord.example")
    rule = EscalationRule.objects.create(name="breach-to-tier-2", trigger="breach", action="reassign", group=tier2,
                                         clock_kind="first_response")
    rule.tiers.add(desk.platinum)
    EscalationRule.objects.create(name="breach-raise", trigger="breach", action="raise_priority",
                                  clock_kind="first_response")
    EscalationRule.objects.create(name="gold-only", trigger="breach", action="notify", notify_email="x@accord.example")
    EscalationRule.objects.get(name="gold-only").tiers.add(desk.gold)
    ticket = open_ticket(desk, "2026-11-23 10:00")

    with django_capture_on_commit_callbacks(execute=True):
        run_once(at("2026-11-23 10:46"))
        with time_machine.travel(at("2026-11-23 11:01"), tick=False):
            tick = run_once(at("2026-11-23 11:01"))
    assert tick.escalations == 2
    ticket.refresh_from_db()
    assert ticket.group == tier2 and ticket.priority == "high"
    assert [m.to for m in mail.outbox] == [["lead@accord.example"]]
    assert "SLA warning" in mail.outbox[0].subject and ticket.reference in mail.outbox[0].subject
    with django_capture_on_commit_callbacks(execute=True):
        run_once(at("2026-11-23 12:00"))
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_raise_each_alert_exactly_once(desk: Desk) -> None:
    EscalationRule.objects.create(name="notify-breach", trigger="breach", action="notify", notify_email="l@a.example")
    tickets = [open_ticket(desk, "2026-11-23 10:00") for _ in range(30)]
    with SmtpSink() as smtp:
        env = subprocess_env(
            ACCORD_WORKER_NOW="2026-11-23T11:01:00+00:00",
            ACCORD_SMTP_HOST=smtp.host,
            ACCORD_SMTP_PORT=str(smtp.port),
            ACCORD_EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        )
        procs = [
            subprocess.Popen([*accord_command(), "worker", "--once"], env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        received = smtp.wait_for(30, timeout=30)
    assert len(received) == 30  # one e-mail per breached clock, none twice
    assert len({m["Subject"] for _f, _t, m in received}) == 30
    assert all(p.returncode == 0 for p in procs), outputs
    counts = [tuple(int(part.split()[1]) for part in out.strip().splitlines()[-1].split(", ")) for out in outputs]
    assert sum(c[0] for c in counts) == 30  # warnings (first response, 75% passed)
    assert sum(c[1] for c in counts) == 30  # breaches
    assert sum(c[2] for c in counts) == 30  # one notification per breached clock
    for ticket in tickets:
        first = SlaClock.objects.get(ticket=ticket, kind="first_response")
        assert sorted(ClockEvent.objects.filter(clock=first).values_list("kind", flat=True)) == [
            "breach", "escalation:notify-breach", "warning",
        ]
