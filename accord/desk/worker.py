"""The SLA worker: fetch clocks that are due, raise warnings and breaches once, run escalation rules.

Like a deadline engine (healthchecks' sendalerts): due instants are stored columns, the worker fetches what
is due with an indexed query and claims each alert with a unique (clock, kind) row, so several workers can
run side by side and no alert is raised or sent twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import clocks
from .models import ClockEvent, EscalationRule, SlaClock, Ticket

log = logging.getLogger(__name__)
PRIORITY_UP = {"low": "normal", "normal": "high", "high": "urgent", "urgent": "urgent"}


@dataclass
class Tick:
    """What one pass of the worker did."""

    warnings: int = 0
    breaches: int = 0
    escalations: int = 0

    def __bool__(self) -> bool:
        return bool(self.warnings or self.breaches or self.escalations)


def claim(clock: SlaClock, kind: str, detail: str = "") -> bool:
    """Record an event on a clock unless some worker already did; True if this call won."""
    try:
        with transaction.atomic():
            ClockEvent.objects.create(clock=clock, kind=kind, detail=detail[:300])
    except IntegrityError:
        return False
    return True


def run_once(now: dt.datetime | None = None, batch: int = 500) -> Tick:
    """One pass: warn and breach what is due now."""
    now = now or timezone.now()
    tick = Tick()
    warn_ids = list(
        SlaClock.objects.filter(status=SlaClock.Status.RUNNING, warn_at__lte=now, warned_at__isnull=True)
        .order_by("warn_at")
        .values_list("pk", flat=True)[:batch]
    )
    for pk in warn_ids:
        # Conditional update: only one worker moves warned_at from NULL.
        if SlaClock.objects.filter(pk=pk, warned_at__isnull=True).update(warned_at=now) and claim_event(pk, "warning"):
            tick.warnings += 1
            tick.escalations += escalate(pk, EscalationRule.Trigger.WARNING)
    breach_ids = list(
        SlaClock.objects.filter(status=SlaClock.Status.RUNNING, due_at__lte=now, breached_at__isnull=True)
        .order_by("due_at")
        .values_list("pk", flat=True)[:batch]
    )
    for pk in breach_ids:
        clock = SlaClock.objects.filter(pk=pk).values_list("due_at", flat=True).first()
        if SlaClock.objects.filter(pk=pk, breached_at__isnull=True).update(breached_at=clock or now) and claim_event(
            pk, "breach"
        ):
            tick.breaches += 1
            tick.escalations += escalate(pk, EscalationRule.Trigger.BREACH)
    touched = set(warn_ids) | set(breach_ids)
    if touched:
        for ticket in Ticket.objects.filter(clocks__pk__in=touched).distinct():
            clocks.summarise(ticket, now)
            Ticket.objects.filter(pk=ticket.pk).update(next_due_at=ticket.next_due_at, queue_due=ticket.queue_due, sla_state=ticket.sla_state)
    return tick


def claim_event(clock_id: int, kind: str) -> bool:
    return claim(SlaClock(pk=clock_id), kind)


def escalate(clock_id: int, trigger: str) -> int:
    """Run the enabled rules that match this clock and trigger; each rule at most once per clock."""
    clock = SlaClock.objects.select_related("ticket__account", "ticket__group").get(pk=clock_id)
    ticket = clock.ticket
    done = 0
    for rule in EscalationRule.objects.filter(enabled=True, trigger=trigger).prefetch_related("tiers"):
        if rule.clock_kind and rule.clock_kind != clock.kind:
            continue
        if rule.priorities and ticket.priority not in rule.priorities:
            continue
        tiers = {t.pk for t in rule.tiers.all()}
        if tiers and (ticket.account is None or ticket.account.tier_id not in tiers):
            continue
        if not claim(clock, f"escalation:{rule.name}", f"{rule.action} on {trigger}"):
            continue
        apply_rule(rule, ticket, clock, trigger)
        done += 1
    return done


def apply_rule(rule: EscalationRule, ticket: Ticket, clock: SlaClock, trigger: str) -> None:
    if rule.action == EscalationRule.Action.REASSIGN:
        Ticket.objects.filter(pk=ticket.pk).update(
            assignee=rule.assignee or ticket.assignee, group=rule.group or ticket.group
        )
    elif rule.action == EscalationRule.Action.RAISE_PRIORITY:
        from .actions import do_set_priority

        do_set_priority(ticket, PRIORITY_UP[ticket.priority])
    elif rule.action == EscalationRule.Action.NOTIFY and rule.notify_email:
        subject = f"[{ticket.reference}] SLA {trigger}: {clock.get_kind_display()} ({ticket.priority})"
        body = (
            f"Ticket {ticket.reference} '{ticket.subject}'\n"
            f"Account: {ticket.account or '-'}\nClock: {clock.kind} cycle {clock.cycle}, "
            f"target {clock.target_minutes} business minutes, due {clock.due_at or clock.breached_at}\n"
        )
        to = rule.notify_email

        def send() -> None:
            try:
                send_mail(subject, body, None, [to])
            except OSError as e:  # a mail server outage must not stop the worker; the event row records intent
                log.error("could not send escalation %s for %s to %s: %s", rule.name, ticket.reference, to, e)

        transaction.on_commit(send)
