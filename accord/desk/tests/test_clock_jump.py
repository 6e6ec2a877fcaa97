"""The SLA worker and the clock rules when the host's wall clock is stepped back an hour, and forward.

A real `accord worker` runs on a clock the test steps through a file (the clock shim of the governor's fault test,
`ACCORD_TEST_CLOCK_FILE`); the test process plays the web app on the same host, dating its changes by the moved
clock. Due instants are fixed instants: stepped back, the worker raises nothing new and nothing again; stepped
forward, it raises what came due, each alert once and dated at its due instant. A reply or a pause dated before
the clock started counts at its start (`clocks.known_since`): no negative elapsed time, no pause before the start.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from accord.agreements.models import Agreement, BusinessCalendar
from accord.desk import actions, clocks
from accord.desk.actions import Inbound
from accord.desk.models import ClockEvent, EscalationRule, SlaClock, Ticket
from accord.lib.testing import accord_command, subprocess_env
from accord.lib.tests.clockshift import shift

from .conftest import Desk

CLOCKSHIFT = Path(shift.__file__).resolve().parent
HOUR = dt.timedelta(hours=1)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def opened(minutes_ago: int, now: dt.datetime) -> Ticket:
    return actions.do_open_ticket(Inbound(channel="email", subject=f"opened {minutes_ago} min before", body_text="Help",
                                          from_address="grace@globetrotter.example", priority="normal",
                                          received_at=now - dt.timedelta(minutes=minutes_ago)))


def first_response(ticket: Ticket) -> SlaClock:
    return SlaClock.objects.get(ticket=ticket, kind="first_response", cycle=1)


def events() -> list[tuple[int, str, int]]:
    """(clock, kind, how many) of every event recorded."""
    return sorted(ClockEvent.objects.values("clock_id", "kind").annotate(n=Count("id")).values_list("clock_id", "kind", "n"))


@pytest.mark.django_db(transaction=True)
def test_a_wall_clock_stepped_back_and_forward_neither_loses_nor_doubles_alerts_nor_corrupts_clocks(
        desk: Desk, tmp_path: Path) -> None:
    # Business time around the clock and no holidays: the offsets below hold whatever day the suite runs.
    always = BusinessCalendar.objects.create(name="always", timezone="UTC", holiday_country="",
                                             hours={d: ["00:00-24:00"] for d in
                                                    ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    Agreement.objects.update(calendar=always)
    EscalationRule.objects.create(name="note-breach", trigger="breach", action="notify", notify_email="")
    now = timezone.now()
    # first response: 60 minutes, warning at 45
    breached = opened(61, now)  # warned and breached already
    warned = opened(50, now)  # warned already, due in 10 minutes
    later = opened(30, now)  # warns in 15 minutes, due in 30
    replied = opened(10, now)  # replied to "an hour ago": before its clocks started
    paused = opened(10, now)  # put on hold "an hour ago"
    due_before = {t.pk: first_response(t).due_at for t in (breached, warned, later, replied, paused)}

    clock_file = tmp_path / "clock-shift"
    clock_file.write_text("0s")
    paths = [str(CLOCKSHIFT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = subprocess_env(ACCORD_TEST_CLOCK_FILE=str(clock_file), PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)),
                         ACCORD_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
    env.pop("ACCORD_WORKER_NOW", None)
    proc = subprocess.Popen([*accord_command(), "worker", "--interval", "0.05"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: first_response(breached).breached_at is not None
                   and first_response(warned).warned_at is not None, "the first pass")
        time.sleep(0.5)
        settled = events()

        # Back an hour: the worker raises nothing new and nothing again; the web app dates its changes an hour back.
        clock_file.write_text("-1h")
        back = timezone.now() - HOUR
        actions.do_reply(replied, desk.agent, "On it.", at=back)
        actions.do_set_status(paused, "on_hold", at=back)
        actions.do_set_status(paused, "open", at=back + dt.timedelta(minutes=1))  # still before the start
        with transaction.atomic():  # the worker's (or any change's) refresh of the summary on the moved clock
            ticket, known = clocks.locked(warned.pk)
            clocks.refresh(ticket, back, known)
        state_back = Ticket.objects.get(pk=warned.pk).sla_state
        time.sleep(1.5)
        assert events() == settled, "alerts raised while the clock was an hour back"

        # Forward an hour past the real time: what came due in that hour is raised, once, dated when it came due.
        clock_file.write_text("1h")
        wait_until(lambda: first_response(later).breached_at is not None
                   and first_response(paused).breached_at is not None, "the alerts of the hour ahead")
        time.sleep(0.5)
        ahead = events()

        # And back to the real time: nothing again.
        clock_file.write_text("0s")
        time.sleep(1.5)
        assert events() == ahead
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

    assert all(n == 1 for _clock, _kind, n in ahead)
    for ticket in (breached, warned, later, paused):
        c = first_response(ticket)
        assert c.status == "running" and c.warned_at == c.warn_at and c.breached_at == c.due_at, ticket.subject
        assert c.due_at == due_before[ticket.pk], "the hold dated before the start moved the due instant"
        assert {kind for clock, kind, _n in ahead if clock == c.pk} == {"warning", "breach", "escalation:note-breach"}
    # The reply dated before the clock started: met at its start, in time, zero business minutes.
    met = first_response(replied)
    assert met.status == "met" and met.stopped_at == met.started_at and met.breached_at is None
    assert clocks.engine(always).elapsed(met.started_at, met.stopped_at, clocks._pauses(met)) == 0
    assert not ClockEvent.objects.filter(clock=met).exists()
    # The hold dated before the start began at the start; its end, before that too, recorded no pause.
    for c in SlaClock.objects.filter(ticket=paused):
        assert all(a <= b for a, b in clocks._pauses(c)) and (c.stopped_at is None or c.stopped_at >= c.started_at)
    # The ticket warned before the step stayed "warning" when its summary was refreshed an hour back.
    assert state_back == "warning"
