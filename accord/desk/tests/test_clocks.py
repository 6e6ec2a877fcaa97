"""The SLA clock rules: start, pause, resume, priority change, reopen, breach stays, what counts as a response."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import time_machine

from accord.desk import actions
from accord.desk.actions import Inbound
from accord.desk.models import Message, SlaClock, Ticket

from .conftest import Desk, at

pytestmark = pytest.mark.django_db

# Monday 2026-11-23, London is on UTC+0 in November: working hours are 09:00-17:00 UTC.


@pytest.fixture(autouse=True)
def monday_morning() -> Iterator[None]:
    """Every test here opens tickets on fixed instants: the clock stands still before them, at 08:00 on the
    Monday, so whether a clock counts as breached never depends on the day the suite runs."""
    with time_machine.travel(at("2026-11-23 08:00"), tick=False):
        yield


def open_ticket(desk: Desk, when: str, priority: str = "normal", sender: str = "grace@globetrotter.example") -> Ticket:
    return actions.do_open_ticket(
        Inbound(
            channel="email", subject="Booking failed", body_text="Help", from_address=sender, priority=priority,
            received_at=at(when),
        )
    )


def clock(ticket: Ticket, kind: str, cycle: int = 1) -> SlaClock:
    return SlaClock.objects.get(ticket=ticket, kind=kind, cycle=cycle)


def test_a_new_ticket_runs_first_response_and_resolution_on_its_agreements_calendar(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 16:30")
    assert ticket.account == desk.account and ticket.contact == desk.contact
    assert ticket.agreement == desk.agreement
    first = clock(ticket, "first_response")
    assert first.target_minutes == 60
    assert first.due_at == at("2026-11-24 09:30")  # 30 minutes today, 30 tomorrow morning
    assert first.warn_at == at("2026-11-24 09:15")  # 75% of 60 minutes
    assert clock(ticket, "resolution").due_at == at("2026-11-25 16:30")  # 960 minutes = two working days
    assert not SlaClock.objects.filter(ticket=ticket, kind="next_response").exists()
    ticket.refresh_from_db()
    assert ticket.next_due_at == first.due_at and ticket.sla_state == "on_track"


def test_a_ticket_starting_outside_hours_counts_from_the_next_window(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-21 11:00")  # Saturday
    assert clock(ticket, "first_response").due_at == at("2026-11-23 10:00")


def test_only_a_public_agent_reply_counts_as_a_response(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 10:00")
    actions.do_add_note(ticket, desk.agent, "Looking into it", at=at("2026-11-23 10:10"))
    assert clock(ticket, "first_response").status == "running"
    actions.do_reply(ticket, desk.agent, "We are on it", at=at("2026-11-23 10:20"))
    first = clock(ticket, "first_response")
    assert first.status == "met" and first.stopped_at == at("2026-11-23 10:20") and first.breached_at is None
    assert clock(ticket, "resolution").status == "running"
    assert Message.objects.filter(ticket=ticket, kind="note").count() == 1


def test_the_customer_writing_again_starts_a_next_response_clock_that_the_next_reply_stops(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 10:00")
    actions.do_reply(ticket, desk.agent, "Which booking?", at=at("2026-11-23 10:20"))
    actions.do_add_customer_message(
        ticket, Inbound(channel="email", subject="Re: Booking failed", body_text="#123", received_at=at("2026-11-23 11:00"))
    )
    nxt = clock(ticket, "next_response")
    assert nxt.status == "running" and nxt.due_at == at("2026-11-23 13:00")
    actions.do_add_customer_message(
        ticket, Inbound(channel="email", subject="Re:", body_text="hello?", received_at=at("2026-11-23 11:30"))
    )
    assert SlaClock.objects.filter(ticket=ticket, kind="next_response").count() == 1  # still the same wait
    actions.do_reply(ticket, desk.agent, "Fixed", at=at("2026-11-23 12:00"))
    assert clock(ticket, "next_response").status == "met"


def test_pending_pauses_the_clocks_in_business_time_and_open_resumes_them(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 10:00")  # resolution due Tue 2026-11-24 18:00 -> Wed 10:00
    before = clock(ticket, "resolution").due_at
    actions.do_reply(ticket, desk.agent, "Can you send the PNR?", at=at("2026-11-23 11:00"), new_status="pending")
    paused = clock(ticket, "resolution")
    assert paused.status == "paused" and paused.due_at is None
    ticket.refresh_from_db()
    assert ticket.sla_state == "paused" and ticket.next_due_at is None
    # The customer answers the next day at 11:00: 16:00-17:00 Mon + 09:00-11:00 Tue = 6 business hours... of pause.
    actions.do_add_customer_message(
        ticket, Inbound(channel="email", subject="Re:", body_text="PNR X1", received_at=at("2026-11-24 11:00"))
    )
    resumed = clock(ticket, "resolution")
    assert resumed.status == "running"
    assert resumed.pauses == [[at("2026-11-23 11:00").isoformat(), at("2026-11-24 11:00").isoformat()]]
    assert before is not None and resumed.due_at is not None
    # Pause covered 6 business hours (Mon 11-17) + 2 (Tue 9-11) = 8 hours = one working day later.
    assert resumed.due_at == before + dt.timedelta(days=1)


def test_on_hold_outside_business_hours_does_not_move_the_due_instant(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 10:00")
    before = clock(ticket, "resolution").due_at
    actions.do_set_status(ticket, "on_hold", at=at("2026-11-23 18:00"))
    actions.do_set_status(ticket, "open", at=at("2026-11-24 08:00"))
    assert clock(ticket, "resolution").due_at == before


def test_a_priority_change_retargets_running_clocks_and_keeps_reached_ones(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 10:00")
    actions.do_reply(ticket, desk.agent, "On it", at=at("2026-11-23 10:50"))
    met_before = clock(ticket, "first_response")
    actions.do_set_priority(ticket, "urgent", at=at("2026-11-23 11:00"))
    first = clock(ticket, "first_response")
    assert (first.status, first.stopped_at, first.breached_at, first.target_minutes) == (
        "met", met_before.stopped_at, None, 60,
    )  # answered in 50 minutes against 60: not retro-breached by the new 30-minute target
    res = clock(ticket, "resolution")
    assert res.target_minutes == 240 and res.due_at == at("2026-11-23 14:00")


def test_a_breach_stays_breached_when_the_milestone_is_reached_late(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 10:00", priority="urgent")
    actions.do_reply(ticket, desk.agent, "Sorry for the wait", at=at("2026-11-23 11:00"))
    first = clock(ticket, "first_response")
    assert first.status == "met" and first.breached_at == at("2026-11-23 10:30")
    actions.do_set_priority(ticket, "low", at=at("2026-11-23 11:05"))
    assert clock(ticket, "first_response").breached_at == at("2026-11-23 10:30")


def test_solving_stops_resolution_and_reopening_starts_a_new_cycle_keeping_history(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 10:00")
    actions.do_reply(ticket, desk.agent, "Done", at=at("2026-11-23 12:00"), new_status="solved")
    first_cycle = clock(ticket, "resolution")
    assert first_cycle.status == "met" and first_cycle.stopped_at == at("2026-11-23 12:00")
    actions.do_add_customer_message(
        ticket, Inbound(channel="email", subject="Re:", body_text="Still broken", received_at=at("2026-11-24 09:00"))
    )
    ticket.refresh_from_db()
    assert ticket.status == "open"
    second = clock(ticket, "resolution", cycle=2)
    assert second.status == "running" and second.started_at == at("2026-11-24 09:00")
    assert clock(ticket, "resolution", cycle=1).status == "met"


def test_an_agreement_change_retargets_running_clocks(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 10:00")
    actions.do_set_agreement(ticket, desk.gold_agreement, at=at("2026-11-23 10:05"))
    assert clock(ticket, "first_response").target_minutes == 240
    actions.do_set_priority(ticket, "urgent", at=at("2026-11-23 10:06"))  # gold has no urgent target
    assert clock(ticket, "first_response").status == "cancelled"


def test_an_unknown_sender_becomes_a_new_contact_with_no_agreement(desk: Desk) -> None:
    ticket = open_ticket(desk, "2026-11-23 10:00", sender="Stranger@Example.org")
    assert ticket.contact is not None and ticket.contact.emails == ["stranger@example.org"]
    assert ticket.account is None and ticket.agreement is None
    assert not ticket.clocks.exists()
    ticket.refresh_from_db()
    assert ticket.sla_state == "none"


def test_a_closed_ticket_refuses_status_changes(desk: Desk) -> None:
    from django.core.exceptions import ValidationError

    ticket = open_ticket(desk, "2026-11-23 10:00")
    actions.do_set_status(ticket, "closed", at=at("2026-11-23 10:30"))
    with pytest.raises(ValidationError):
        actions.do_set_status(ticket, "open", at=at("2026-11-23 10:40"))
    with pytest.raises(ValidationError):
        actions.do_set_status(ticket, "sideways")
