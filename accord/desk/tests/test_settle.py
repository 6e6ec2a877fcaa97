"""A breach is never lost: every change to a ticket first settles what is already due, and a worker's alert is
never written over by a change running at the same time."""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import time_machine
from django.core import mail as django_mail
from django.db import connection, transaction

from accord.desk import actions, mail
from accord.desk.actions import Inbound
from accord.desk.models import ClockEvent, EscalationRule, SlaClock, Ticket
from accord.desk.worker import run_once
from accord.lib.smtp import SmtpSink
from accord.lib.testing import accord_command, subprocess_env

from .conftest import Desk, at
from .test_mail import email

# Monday 2026-11-23, London on UTC+0. An urgent ticket opened at 10:00 on the platinum agreement: first response
# warns at 10:22:30 (75 % of 30 min) and is due at 10:30; resolution (4 h) warns at 13:00 and is due at 14:00.
OPENED = at("2026-11-23 10:00")
FIRST_WARN = at("2026-11-23 10:22") + dt.timedelta(seconds=30)
FIRST_DUE = at("2026-11-23 10:30")


@pytest.fixture
def frozen() -> Iterator[None]:
    """The clock stands at the action's instant, so nothing depends on the day the suite runs."""
    with time_machine.travel(at("2026-11-23 10:40"), tick=False):
        yield


@pytest.fixture
def rules(desk: Desk) -> None:
    """Escalation rules on the first response: a notice at the warning and at the breach."""
    EscalationRule.objects.create(name="warn-lead", trigger="warning", action="notify", notify_email="lead@accord.example",
                                  clock_kind="first_response")
    EscalationRule.objects.create(name="breach-lead", trigger="breach", action="notify",
                                  notify_email="lead@accord.example", clock_kind="first_response")


def open_urgent(desk: Desk) -> Ticket:
    return actions.do_open_ticket(Inbound(channel="email", subject="Checkout is down", body_text="Help",
                                          from_address="grace@globetrotter.example", priority="urgent",
                                          received_at=OPENED))


def first_response(ticket: Ticket) -> SlaClock:
    return SlaClock.objects.get(ticket=ticket, kind="first_response")


def events(clock: SlaClock) -> list[str]:
    return sorted(ClockEvent.objects.filter(clock=clock).values_list("kind", flat=True))


ALL_FIRST_RESPONSE_ALERTS = ["breach", "escalation:breach-lead", "escalation:warn-lead", "warning"]

CHANGES: dict[str, Callable[[Ticket, Desk, dt.datetime], Any]] = {
    "priority lowered": lambda t, d, when: actions.do_set_priority(t, "low", at=when),
    "agreement changed": lambda t, d, when: actions.do_set_agreement(t, d.gold_agreement, at=when),
    "solved": lambda t, d, when: actions.do_set_status(t, "solved", at=when),
    "closed": lambda t, d, when: actions.do_set_status(t, "closed", at=when),
    "pending": lambda t, d, when: actions.do_set_status(t, "pending", at=when),
    "on hold": lambda t, d, when: actions.do_set_status(t, "on_hold", at=when),
    "answered late": lambda t, d, when: actions.do_reply(t, d.agent, "Sorry for the wait", at=when),
    "answered late and solved": lambda t, d, when: actions.do_reply(t, d.agent, "Fixed", at=when, new_status="solved"),
}


@pytest.mark.django_db
@pytest.mark.usefixtures("frozen", "rules")
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_breach_due_before_a_change_is_recorded_at_its_due_instant_with_its_alerts_once(
    desk: Desk, change: str, django_capture_on_commit_callbacks: Any
) -> None:
    ticket = open_urgent(desk)
    with django_capture_on_commit_callbacks(execute=True):
        CHANGES[change](ticket, desk, at("2026-11-23 10:40"))  # ten minutes late, no worker pass in between
        tick = run_once(at("2026-11-23 10:41"))
    assert (tick.warnings, tick.breaches) == (0, 0)  # the change raised them; the worker finds nothing left
    first = first_response(ticket)
    assert first.breached_at == FIRST_DUE and first.warned_at == FIRST_WARN
    assert events(first) == ALL_FIRST_RESPONSE_ALERTS
    notices = [m.subject.split(":")[0] for m in django_mail.outbox if m.to == ["lead@accord.example"]]
    assert sorted(notices) == [f"[{ticket.reference}] SLA breach", f"[{ticket.reference}] SLA warning"]
    with django_capture_on_commit_callbacks(execute=True):
        run_once(at("2026-11-23 10:50"))
    assert sum(m.to == ["lead@accord.example"] for m in django_mail.outbox) == 2
    assert events(first_response(ticket)) == ALL_FIRST_RESPONSE_ALERTS


@pytest.mark.django_db
@pytest.mark.usefixtures("frozen", "rules")
def test_a_warning_passed_before_a_change_is_recorded_even_if_the_breach_is_not_due_yet(desk: Desk) -> None:
    ticket = open_urgent(desk)
    actions.do_set_priority(ticket, "low", at=at("2026-11-23 10:25"))  # after the warning, before the due instant
    first = first_response(ticket)
    assert (first.warned_at, first.breached_at) == (FIRST_WARN, None)
    assert events(first) == ["escalation:warn-lead", "warning"]
    assert first.due_at == at("2026-11-23 14:00")  # the low target, 4 h, from 10:00: no breach to come at 10:30
    assert not run_once(at("2026-11-23 10:31"))


@pytest.mark.django_db
@pytest.mark.usefixtures("frozen")
def test_a_resolution_breach_is_recorded_when_the_ticket_is_solved_late(desk: Desk) -> None:
    ticket = open_urgent(desk)
    actions.do_reply(ticket, desk.agent, "On it", at=at("2026-11-23 10:10"))
    with time_machine.travel(at("2026-11-23 14:30"), tick=False):
        actions.do_set_status(ticket, "solved", at=at("2026-11-23 14:30"))
    resolution = SlaClock.objects.get(ticket=ticket, kind="resolution")
    assert resolution.status == "met" and resolution.breached_at == at("2026-11-23 14:00")
    assert events(resolution) == ["breach", "warning"]


@pytest.mark.django_db
def test_an_escalation_that_raises_the_priority_runs_once_and_the_new_targets_are_settled_too(desk: Desk) -> None:
    # Low priority from Monday 10:00: first response due 14:00 (4 h), resolution 40 business hours later. The
    # first-response breach raises the priority to normal, whose resolution target (16 h) fell due on Wednesday
    # at 10:00: solving the ticket at 11:00 that day records both breaches, each once.
    EscalationRule.objects.create(name="raise", trigger="breach", action="raise_priority", clock_kind="first_response")
    with time_machine.travel(OPENED, tick=False):
        ticket = actions.do_open_ticket(Inbound(channel="email", subject="Invoice", from_address="grace@globetrotter.example",
                                                priority="low", received_at=OPENED))
    with time_machine.travel(at("2026-11-25 11:00"), tick=False):
        actions.do_set_status(ticket, "solved", at=at("2026-11-25 11:00"))
    ticket.refresh_from_db()
    assert ticket.priority == "normal"  # raised one step, once
    first = first_response(ticket)
    assert first.breached_at == at("2026-11-23 14:00") and events(first) == ["breach", "escalation:raise", "warning"]
    resolution = SlaClock.objects.get(ticket=ticket, kind="resolution")
    assert (resolution.status, resolution.target_minutes) == ("met", 960)
    assert resolution.breached_at == at("2026-11-25 10:00") and events(resolution) == ["breach", "warning"]


@pytest.mark.django_db
@pytest.mark.usefixtures("frozen")
@pytest.mark.parametrize("batch", [False, True])
def test_a_customer_writing_on_an_overdue_ticket_settles_its_breach_one_by_one_and_in_a_batch(
    desk: Desk, batch: bool
) -> None:
    with time_machine.travel(OPENED, tick=False):
        stored = mail.store(email(message_id="<late@globetrotter.example>"))  # normal priority: due 11:00
    assert stored.ticket is not None
    answer = email(subject="Re: anyone?", message_id="<late2@globetrotter.example>",
                   In_Reply_To="<late@globetrotter.example>")
    with time_machine.travel(at("2026-11-23 11:20"), tick=False):
        if batch:
            list(mail.store_many([("answer", answer)]))
        else:
            mail.store(answer)
    first = first_response(stored.ticket)
    assert first.breached_at == at("2026-11-23 11:00") and events(first) == ["breach", "warning"]


# -- at the same time ---------------------------------------------------------------------------------------


def lock_waiters() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
        return int(cur.fetchone()[0])


def wait_for_waiters(count: int) -> None:
    deadline = time.monotonic() + 30
    while lock_waiters() < count:
        assert time.monotonic() < deadline, f"fewer than {count} sessions came to wait on the lock"
        time.sleep(0.02)


def in_thread(work: Callable[[], Any], errors: list[BaseException]) -> threading.Thread:
    """Run work on a thread of its own, with its own database connection."""

    def run() -> None:
        from django.db import connection as own

        try:
            work()
        except BaseException as e:  # reported by the test, not lost in the thread
            errors.append(e)
        finally:
            own.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_in", ["worker", "agent"])
def test_a_worker_and_an_agent_at_once_record_the_breach_exactly_once(desk: Desk, first_in: str) -> None:
    """The worker raises the breach while an agent lowers the priority of the same ticket.

    A third session holds the clock's row, so both queue behind it in a known order; then it lets go. Whoever
    comes first, the breach is recorded once, at its due instant, and stays: the agent's change must not write
    breached_at back to NULL (it did, saving the whole clock it had read before the worker's UPDATE).
    """
    if connection.vendor != "postgresql":
        pytest.skip("SQLite lets one writer in at a time: the worker's UPDATE waits for the agent's whole "
                    "transaction (or the reverse), so the two cannot interleave there")
    ticket = open_urgent(desk)
    run_once(at("2026-11-23 10:25"))  # the warning is raised: only the breach is left to race for
    first = first_response(ticket)
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold_the_row() -> None:
        with transaction.atomic():
            SlaClock.objects.select_for_update().get(pk=first.pk)
            holding.set()
            release.wait(30)

    def worker() -> None:
        run_once(at("2026-11-23 10:41"))

    def agent() -> None:
        actions.do_set_priority(ticket, "low", at=at("2026-11-23 10:40"))

    threads = [in_thread(hold_the_row, errors)]
    assert holding.wait(30)
    order = [worker, agent] if first_in == "worker" else [agent, worker]
    for n, work in enumerate(order, start=1):
        threads.append(in_thread(work, errors))
        wait_for_waiters(n)  # it waits on the held row before the next one starts
    release.set()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    first = first_response(ticket)
    assert first.breached_at == FIRST_DUE
    assert first.target_minutes == 240 and first.due_at == at("2026-11-23 14:00")  # the agent's change holds too
    assert events(first) == ["breach", "warning"]
    ticket.refresh_from_db()
    assert (ticket.priority, ticket.sla_state) == ("low", "breached")
    assert not run_once(at("2026-11-23 10:42"))


@pytest.mark.django_db(transaction=True)
def test_two_workers_and_an_agent_at_once_record_each_warning_and_breach_exactly_once(
    desk: Desk, settings: Any
) -> None:
    """Two worker processes pass over forty overdue tickets while an agent lowers the priority of each of them."""
    EscalationRule.objects.create(name="breach-lead", trigger="breach", action="notify", notify_email="l@a.example",
                                  clock_kind="first_response")
    tickets = [open_urgent(desk) for _ in range(40)]
    with SmtpSink() as smtp:
        # The agent's own notices (when its change raises a breach first) go to the same server.
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = smtp.host, smtp.port
        env = subprocess_env(
            ACCORD_WORKER_NOW="2026-11-23T10:41:00+00:00", ACCORD_SMTP_HOST=smtp.host, ACCORD_SMTP_PORT=str(smtp.port),
            ACCORD_EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        )
        procs = [subprocess.Popen([*accord_command(), "worker", "--interval", "0.05"], env=env, stdout=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        try:
            deadline = time.monotonic() + 60
            while not ClockEvent.objects.filter(kind="breach").exists():  # the workers are at work: join them
                assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no worker started"
                time.sleep(0.01)
            with time_machine.travel(at("2026-11-23 10:40"), tick=False):
                for ticket in reversed(tickets):  # from the other end: the agent and the workers meet midway
                    actions.do_set_priority(ticket, "low", at=at("2026-11-23 10:40"))
            received = smtp.wait_for(40, timeout=30)
            time.sleep(0.5)  # a forty-first notice would be a duplicate: give it the time to arrive
            received = smtp.messages
        finally:
            for p in procs:
                p.terminate()
            outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert len(received) == 40 and len({m["Subject"] for _f, _t, m in received}) == 40
    for ticket in tickets:
        first = first_response(ticket)
        assert (first.warned_at, first.breached_at, first.target_minutes) == (FIRST_WARN, FIRST_DUE, 240)
        assert events(first) == ["breach", "escalation:breach-lead", "warning"]
    by_workers = sum(int(line.split(", ")[1].split()[1]) for out in outputs for line in out.splitlines())
    assert by_workers > 0, outputs  # they were at work when the agent began
