"""SLA alerts: warnings and breaches raised once when clocks come due, and the escalation rules they trigger.

Like a deadline engine (healthchecks' sendalerts): due instants are stored columns, the worker fetches what
is due with an indexed query and raises each alert with a conditional UPDATE (warned_at or breached_at from
NULL, while the clock still runs and its instant has passed) and a unique (clock, kind) event row, so several
workers can run side by side and no alert is raised or sent twice.

The worker is not the only one to raise them. Every change to a ticket first settles what is already due at
the instant of the change (`settle`, through the same `alert` as the worker's pass): otherwise a priority
change, a new agreement or solving the ticket between a due instant and the worker's next pass would stop,
cancel or retarget the clock and the breach would never be recorded.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accord.lib.faults import point
from accord.lib.units import instant, minutes

from . import clocks
from .models import ClockEvent, EscalationRule, SlaClock, Ticket

log = logging.getLogger(__name__)
PRIORITY_UP = {"low": "normal", "normal": "high", "high": "urgent", "urgent": "urgent"}
WARNING = EscalationRule.Trigger.WARNING.value
BREACH = EscalationRule.Trigger.BREACH.value
# The field an alert sets, and the instant it copies: an alert is dated when it fell due, not when it was noticed.
ALERT_FIELDS = {WARNING: ("warned_at", "warn_at"), BREACH: ("breached_at", "due_at")}


@dataclass
class Tick:
    """What one pass of the worker (or one settling) did."""

    warnings: int = 0
    breaches: int = 0
    escalations: int = 0

    def __bool__(self) -> bool:
        return bool(self.warnings or self.breaches or self.escalations)

    def __iadd__(self, other: Tick) -> Tick:
        self.warnings += other.warnings
        self.breaches += other.breaches
        self.escalations += other.escalations
        return self


def claim(clock: SlaClock, kind: str, detail: str = "") -> bool:
    """Record an event on a clock unless some worker already did; True if this call won."""
    try:
        with transaction.atomic():
            ClockEvent.objects.create(clock=clock, kind=kind, detail=detail[:300])
    except IntegrityError:
        return False
    return True


def alert(clock_id: int, kind: str, now: dt.datetime) -> Tick:
    """Raise one alert (WARNING or BREACH) on a clock if it is due at `now` and nobody has raised it yet.

    The one code path for the worker's pass and for `settle`: mark the clock, record its event, run the
    escalation rules. The UPDATE checks the clock as it is when the statement runs, after any transaction that
    holds the row has committed: a clock stopped, cancelled or moved later meanwhile is left alone, and
    breached_at is the due instant the row holds then.
    """
    field, due_field = ALERT_FIELDS[kind]
    tick = Tick()
    # One transaction: a process killed at any instant leaves the clock alerted completely (marked, event
    # recorded, escalation rules claimed) or not at all, and the next pass raises it (accord/desk/tests/test_faults.py).
    with transaction.atomic():
        won = SlaClock.objects.filter(
            pk=clock_id, status=SlaClock.Status.RUNNING, **{f"{field}__isnull": True, f"{due_field}__lt": now}
        ).update(**{field: F(due_field)})
        point("worker.alerting")  # tests: die with the clock marked and its event not yet recorded
        if won and claim(SlaClock(pk=clock_id), kind):
            if kind == WARNING:
                tick.warnings = 1
            else:
                tick.breaches = 1
            tick.escalations = escalate(clock_id, kind, now)
    return tick


def run_once(now: dt.datetime | None = None, batch: int = 500) -> Tick:
    """One pass of the worker: warn and breach what is due now, then refresh the tickets' SLA state."""
    now = now or timezone.now()
    tick = Tick()
    running = SlaClock.objects.filter(status=SlaClock.Status.RUNNING)
    warn = list(
        running.filter(warn_at__lt=now, warned_at__isnull=True).order_by("warn_at").values_list("pk", "ticket_id")[:batch]
    )
    for pk, _ticket in warn:
        tick += alert(pk, WARNING, now)
    due = list(
        running.filter(due_at__lt=now, breached_at__isnull=True).order_by("due_at").values_list("pk", "ticket_id")[:batch]
    )
    for pk, _ticket in due:
        tick += alert(pk, BREACH, now)
    for ticket_id in sorted({ticket for _pk, ticket in warn + due}):
        # Locked, so the summary is computed from clocks no action is changing at this moment.
        with transaction.atomic():
            ticket, known = clocks.locked(ticket_id)
            clocks.refresh(ticket, now, known)
    return tick


def due_alerts(known: Iterable[SlaClock], at: dt.datetime) -> list[tuple[dt.datetime, int, int, str]]:
    """The alerts due at `at` and not yet raised on these clocks, in the order they fell due."""
    due = []
    for c in known:
        if c.status != SlaClock.Status.RUNNING:
            continue
        if c.warned_at is None and c.warn_at is not None and clocks.passed(c.warn_at, at):
            due.append((c.warn_at, 0, c.pk, WARNING))
        if c.breached_at is None and c.due_at is not None and clocks.passed(c.due_at, at):
            due.append((c.due_at, 1, c.pk, BREACH))
    return sorted(due)


def settled(ticket_id: int, at: dt.datetime) -> tuple[Ticket, list[SlaClock]]:
    """How every change to a ticket begins: lock the ticket and its clocks, settle what is due at `at`, and
    return them as they are then (an escalation may have raised the priority or reassigned the ticket)."""
    ticket, known = clocks.locked(ticket_id)
    if settle(ticket_id, at, known):
        ticket, known = clocks.locked(ticket_id)
    return ticket, known


def settle(ticket_id: int, at: dt.datetime, known: list[SlaClock]) -> Tick:
    """Raise every alert already due at `at` on a ticket's clocks, before a change to the ticket.

    Call it inside the change's transaction with the ticket and its clocks locked (`clocks.locked`); `known` are
    the clocks so read. Each alert goes through `alert`, as in the worker's pass: dated at its due instant, its
    event recorded and its escalation rules run once. An escalation that raises the priority can bring another
    due instant forward, so the clocks are read again until nothing more is due.
    """
    tick = Tick()
    while due := due_alerts(known, at):
        step = Tick()
        for _instant, _order, pk, kind in due:
            step += alert(pk, kind, at)
        tick += step
        if not step:  # someone else raised them (not possible while we hold the locks, but never loop)
            break
        known = clocks.locked(ticket_id)[1]
    return tick


def escalate(clock_id: int, trigger: str, now: dt.datetime | None = None) -> int:
    """Run the enabled rules that match this clock and trigger; each rule at most once per clock."""
    clock = SlaClock.objects.select_related("ticket__account", "ticket__group", "calendar").get(pk=clock_id)
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
        apply_rule(rule, ticket, clock, trigger, now or timezone.now())
        done += 1
    return done


def apply_rule(rule: EscalationRule, ticket: Ticket, clock: SlaClock, trigger: str, now: dt.datetime) -> None:
    """Carry out one escalation rule on a ticket; its e-mail goes out after the commit."""
    if rule.action == EscalationRule.Action.REASSIGN:
        # Only what the rule sets: writing back the other field as read earlier could undo an agent's change.
        targets = {"assignee": rule.assignee, "group": rule.group}
        Ticket.objects.filter(pk=ticket.pk).update(**{k: v for k, v in targets.items() if v is not None})
    elif rule.action == EscalationRule.Action.RAISE_PRIORITY:
        raise_priority(ticket.pk, now)
    elif rule.action == EscalationRule.Action.NOTIFY and rule.notify_email:
        subject = f"[{ticket.reference}] SLA {trigger}: {clock.get_kind_display()} ({ticket.priority})"
        due = clock.due_at or clock.breached_at
        body = (
            f"Ticket {ticket.reference} '{ticket.subject}'\n"
            f"Account: {ticket.account or '-'}\nClock: {clock.get_kind_display()}, cycle {clock.cycle}, "
            f"target {minutes(clock.target_minutes, largest='h')} of business time, "
            f"due {instant(due, clock.calendar.timezone) if due else '-'}\n"
        )
        to = rule.notify_email

        def send() -> None:
            try:
                send_mail(subject, body, None, [to])
            except OSError as e:  # a mail server outage must not stop the worker; the event row records intent
                log.error("could not send escalation %s for %s to %s: %s", rule.name, ticket.reference, to, e)

        transaction.on_commit(send)


def raise_priority(ticket_id: int, now: dt.datetime) -> None:
    """Raise a ticket's priority one step; its running clocks take the new targets (as `do_set_priority` does).

    A change like any other: what is due at `now` is settled first, under the old targets.
    """
    with transaction.atomic():
        ticket, known = settled(ticket_id, now)
        raised = PRIORITY_UP[ticket.priority]
        if raised != ticket.priority:
            ticket.priority = raised
            ticket.save(update_fields=["priority"])
            clocks.retarget_all(ticket, known)
        clocks.refresh(ticket, now, known)
