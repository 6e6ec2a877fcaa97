"""SLA clock rules: which clocks a ticket runs, how pauses move their due instants, when they are met.

The rules, in one place:
- A ticket's agreement (the account's own beats its tier's) gives per-priority targets for first response,
  next response and resolution, in business minutes on the agreement's calendar.
- First response and resolution start when the ticket is created. Next response starts when the customer
  writes again after an agent's public reply, and stops at the next public reply.
- Only a public reply by an agent counts as a response; internal notes and auto-replies do not.
- Clocks pause (in business time) while the ticket is pending or on hold and resume when it opens again.
- A reached milestone stays reached when the priority or agreement changes; running clocks take the new target.
- A breach is recorded once, at the due instant, and never cleared, also when the milestone is reached late.
- Every change to a ticket first settles what is already due at the instant of the change (worker.settle), so a
  passed due instant is recorded as a breach even when the change cancels, stops or retargets the clock.
- Writers lock the ticket, then its clocks (`locked`), and save only the fields they change: a worker's
  conditional UPDATE of warned_at or breached_at waits for them and is never written over.
- Solving stops resolution; reopening a solved ticket starts a new resolution cycle, keeping the old one.
- Instants come from the host's wall clock, which can be stepped back (or forward): a stop or a pause dated before
  what the clock already holds (its start, the end of its last pause, the pause it is in) counts at that instant
  instead (`known_since`), so no clock ever stops before it started, pauses overlap or elapsed time is negative.
  Due instants are fixed instants: after a step back they come due when the wall clock reaches them again, and
  the worker raises each alert once (its conditional UPDATE), dated at the due instant.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from accord.agreements.businesstime import BusinessTime
from accord.agreements.models import Agreement, BusinessCalendar, Objective

from .models import FAR_FUTURE, SlaClock, Ticket

# The fields each rule writes: saving only these leaves warned_at and breached_at to whoever sets them.
SCHEDULE_FIELDS = ["status", "pauses", "paused_since", "due_at", "warn_at"]
STOP_FIELDS = [*SCHEDULE_FIELDS, "stopped_at"]
TARGET_FIELDS = ["objective", "calendar", "target_seconds", *SCHEDULE_FIELDS]


def warning_share() -> float:
    """The share of a target after which a running clock warns (default 75%)."""
    return float(getattr(settings, "ACCORD_SLA_WARNING_SHARE", 0.75))


@lru_cache(maxsize=64)
def _engine(calendar_id: int, version: str) -> BusinessTime:
    return BusinessTime.from_calendar(BusinessCalendar.objects.get(pk=calendar_id))


def engine(calendar: BusinessCalendar) -> BusinessTime:
    """A business-time engine for a calendar, cached until the calendar changes."""
    version = repr((calendar.timezone, calendar.hours, calendar.holiday_country, calendar.holiday_subdivision,
                    calendar.extra_holidays, calendar.removed_holidays))
    return _engine(calendar.pk, version)


def targets(agreement: Agreement | None, priority: str, channel: str) -> dict[str, Objective]:
    """The support objectives of an agreement for a priority (and channel), by clock kind.

    An objective scoped to the ticket's channel beats one for any channel; one scoped to the priority
    beats one for any priority. Ties go to the lowest target (the stricter promise).
    """
    if agreement is None:
        return {}
    best: dict[str, tuple[tuple[int, int, float], Objective]] = {}
    for obj in agreement.objectives.all():
        if obj.kind not in Objective.SUPPORT_KINDS:
            continue
        if obj.priority and obj.priority != priority:
            continue
        if obj.channel and obj.channel != channel:
            continue
        score = (0 if obj.channel else 1, 0 if obj.priority else 1, float(obj.target))
        if obj.kind not in best or score < best[obj.kind][0]:
            best[obj.kind] = (score, obj)
    return {kind: obj for kind, (_score, obj) in best.items()}


def _pauses(clock: SlaClock) -> list[tuple[dt.datetime, dt.datetime]]:
    return [(dt.datetime.fromisoformat(a), dt.datetime.fromisoformat(b)) for a, b in clock.pauses]


def target_seconds(objective: Objective) -> int:
    """A support objective's target (business minutes, to the second: 0.5 is 30 s) in seconds."""
    return max(1, int((Decimal(objective.target) * 60).to_integral_value()))  # 0.1667 min is 10 s


def schedule(clock: SlaClock) -> None:
    """Recompute due_at and warn_at of a running clock from its start, target and pauses."""
    if clock.status != SlaClock.Status.RUNNING:
        clock.due_at = clock.warn_at = None
        return
    bt = engine(clock.calendar)
    pauses = _pauses(clock)
    clock.due_at = bt.add(clock.started_at, clock.target_minutes, pauses)
    clock.warn_at = bt.add(clock.started_at, clock.target_minutes * warning_share(), pauses)


def start(ticket: Ticket, kind: str, objective: Objective, at: dt.datetime, cycle: int = 1) -> SlaClock:
    """Start a clock of a kind on a ticket from an objective (saved)."""
    clock = plan(ticket, kind, objective, at, cycle)
    clock.save()
    return clock


def plan(ticket: Ticket, kind: str, objective: Objective, at: dt.datetime, cycle: int = 1) -> SlaClock:
    """A clock as `start` would create it, not saved (a new ticket saves its clocks in one statement)."""
    assert ticket.agreement is not None
    clock = SlaClock(
        ticket=ticket,
        kind=kind,
        cycle=cycle,
        objective=objective,
        calendar=ticket.agreement.calendar,
        target_seconds=target_seconds(objective),
        started_at=at,
    )
    if ticket.status in Ticket.PAUSED_STATUSES:
        clock.status = SlaClock.Status.PAUSED
        clock.paused_since = at
    schedule(clock)
    return clock


def known_since(clock: SlaClock, at: dt.datetime) -> dt.datetime:
    """`at`, or the latest instant the clock already holds if `at` is before it (its start, the end of its last
    pause, the start of the pause it is in): a wall clock stepped back cannot date a change into its past."""
    latest = clock.started_at
    if clock.pauses:
        latest = max(latest, dt.datetime.fromisoformat(clock.pauses[-1][1]))
    if clock.paused_since is not None:
        latest = max(latest, clock.paused_since)
    return max(at, latest)


def stop(clock: SlaClock, at: dt.datetime) -> None:
    """Mark a milestone reached; late means breached, and a breach is never cleared."""
    at = known_since(clock, at)
    if clock.status == SlaClock.Status.PAUSED:
        resume(clock, at)
    if clock.status != SlaClock.Status.RUNNING:
        return
    fields = STOP_FIELDS
    if passed(clock.due_at, at) and clock.breached_at is None:  # settled already, unless the caller did not settle
        clock.breached_at = clock.due_at
        fields = [*STOP_FIELDS, "breached_at"]
    clock.status = SlaClock.Status.MET
    clock.stopped_at = at
    clock.due_at = clock.warn_at = None
    clock.save(update_fields=fields)


def pause(clock: SlaClock, at: dt.datetime) -> None:
    """Pause a running clock (the ticket waits on the customer or a third party)."""
    if clock.status != SlaClock.Status.RUNNING:
        return
    clock.status = SlaClock.Status.PAUSED
    clock.paused_since = known_since(clock, at)
    clock.due_at = clock.warn_at = None
    clock.save(update_fields=SCHEDULE_FIELDS)


def resume(clock: SlaClock, at: dt.datetime, *, save: bool = True) -> None:
    """Resume a paused clock: the pause is recorded and the due instant moves by the business time it covered."""
    if clock.status != SlaClock.Status.PAUSED or clock.paused_since is None:
        return
    if at > clock.paused_since:
        clock.pauses = [*clock.pauses, [clock.paused_since.isoformat(), at.isoformat()]]
    clock.status = SlaClock.Status.RUNNING
    clock.paused_since = None
    schedule(clock)
    if save:
        clock.save(update_fields=SCHEDULE_FIELDS)


def cancel(clock: SlaClock) -> None:
    """Stop a clock that no longer applies; a breach already recorded stays."""
    clock.status = SlaClock.Status.CANCELLED
    clock.paused_since = None
    clock.due_at = clock.warn_at = None
    clock.save(update_fields=SCHEDULE_FIELDS)


def retarget(clock: SlaClock, objective: Objective | None, calendar: BusinessCalendar | None) -> None:
    """Give a clock that is still running (or paused) a new target; a clock without one is cancelled."""
    if clock.status not in (SlaClock.Status.RUNNING, SlaClock.Status.PAUSED):
        return
    if objective is None or calendar is None:
        cancel(clock)
        return
    clock.objective = objective
    clock.calendar = calendar
    clock.target_seconds = target_seconds(objective)
    schedule(clock)
    clock.save(update_fields=TARGET_FIELDS)


def retarget_all(ticket: Ticket, known: Iterable[SlaClock]) -> None:
    """Give the ticket's live clocks the targets of its agreement and priority as they are now."""
    objectives = targets(ticket.agreement, ticket.priority, ticket.channel)
    calendar = ticket.agreement.calendar if ticket.agreement else None
    for clock in live(known):
        retarget(clock, objectives.get(clock.kind), calendar)


def passed(instant: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a due (or warning) instant has passed at `now`: a milestone reached at its due instant is in time."""
    return instant is not None and instant < now


def warned(clock: SlaClock) -> bool:
    """Whether the clock's warning was raised for the warning instant it has now (not for an earlier target or
    schedule): it stays warned when the wall clock is stepped back before that instant."""
    return clock.warned_at is not None and clock.warned_at == clock.warn_at


def live(clocks: Iterable[SlaClock]) -> list[SlaClock]:
    """The clocks that still run or are paused (not met, not cancelled)."""
    return [c for c in clocks if c.status in (SlaClock.Status.RUNNING, SlaClock.Status.PAUSED)]


def locked(ticket_id: int) -> tuple[Ticket, list[SlaClock]]:
    """A ticket and all its clocks, read and locked for the rest of the caller's transaction.

    Always the ticket first, then its clocks in key order: every writer (actions, the worker's escalations and
    its refresh of the ticket's summary) takes them in this order, so two writers wait for each other instead of
    deadlocking, and a worker's conditional UPDATE of a clock waits until the change has committed. SQLite locks
    the whole database for a writing transaction instead (select_for_update is a no-op there).
    """
    if not connection.in_atomic_block:
        raise RuntimeError("locked() holds its locks until the transaction ends: call it inside transaction.atomic()")
    ticket = Ticket.objects.select_for_update().get(pk=ticket_id)
    clocks = list(
        SlaClock.objects.select_for_update(of=("self",)).filter(ticket_id=ticket_id).select_related("calendar").order_by("pk")
    )
    return ticket, clocks


def refresh(ticket: Ticket, now: dt.datetime, known: list[SlaClock] | None = None, **also: Any) -> None:
    """Recompute the ticket's denormalised next_due_at, queue_due and sla_state as of `now` and write them (with
    the fields in `also`); only these columns, so a concurrent change to others is not written over."""
    summarise(ticket, now, known)
    Ticket.objects.filter(pk=ticket.pk).update(
        next_due_at=ticket.next_due_at, queue_due=ticket.queue_due, sla_state=ticket.sla_state, **also
    )


def summarise(ticket: Ticket, now: dt.datetime | None = None, known: list[SlaClock] | None = None) -> None:
    """Refresh the ticket's denormalised next_due_at and sla_state from its clocks (not saved).

    `known` are all the ticket's clocks when the caller has them in hand (a new ticket), saving a query.
    """
    now = now or timezone.now()
    clocks = known if known is not None else list(ticket.clocks.all())
    running = [c for c in clocks if c.status == SlaClock.Status.RUNNING and c.due_at is not None]
    ticket.next_due_at = min((c.due_at for c in running), default=None)  # type: ignore[type-var]
    ticket.queue_due = ticket.next_due_at or FAR_FUTURE
    if not clocks:
        ticket.sla_state = Ticket.SlaState.NONE
    elif any(c.breached_at is not None and c.status != SlaClock.Status.CANCELLED for c in live(clocks)) or any(
        passed(c.due_at, now) for c in running
    ):
        ticket.sla_state = Ticket.SlaState.BREACHED
    elif any(passed(c.warn_at, now) or warned(c) for c in running):
        ticket.sla_state = Ticket.SlaState.WARNING
    elif running:
        ticket.sla_state = Ticket.SlaState.ON_TRACK
    elif any(c.status == SlaClock.Status.PAUSED for c in clocks):
        ticket.sla_state = Ticket.SlaState.PAUSED
    else:
        ticket.sla_state = Ticket.SlaState.DONE
