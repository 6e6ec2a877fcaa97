"""Units and time zones in the desk: promises in the customer's zone, every instant with its zone, targets in
hours and minutes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.core import mail as django_mail
from django.test import Client

from accord.customers.models import Account
from accord.desk import actions, mail
from accord.desk.actions import Inbound
from accord.desk.models import EscalationRule, Ticket
from accord.desk.worker import run_once

from .conftest import Desk, at
from .test_mail import email

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def monday() -> Iterator[None]:
    # Monday 2026-11-23 10:00 UTC: 10:00 in London (GMT), 05:00 in New York (EST).
    with time_machine.travel(at("2026-11-23 10:00"), tick=False):
        yield


def acknowledgement_for(desk: Desk, django_capture_on_commit_callbacks: Any) -> str:
    with django_capture_on_commit_callbacks(execute=True):
        mail.store(email(), acknowledge=True)
    (ack,) = django_mail.outbox
    return str(ack.body)


def test_the_acknowledgement_quotes_the_promise_in_the_customers_zone(
    desk: Desk, django_capture_on_commit_callbacks: Any
) -> None:
    Account.objects.filter(pk=desk.account.pk).update(timezone="America/New_York")
    body = acknowledgement_for(desk, django_capture_on_commit_callbacks)
    # First response (normal, 1 h on the London calendar) is due at 11:00 UTC: 06:00 in New York.
    assert "we will respond within 1 h of our business hours, by Mon 23 Nov 2026 06:00 EST (America/New_York)." in body
    assert "Europe/London" not in body and "min" not in body


def test_the_acknowledgement_falls_back_to_the_calendars_zone_and_still_names_it(
    desk: Desk, django_capture_on_commit_callbacks: Any
) -> None:
    Account.objects.filter(pk=desk.account.pk).update(timezone="")
    body = acknowledgement_for(desk, django_capture_on_commit_callbacks)
    assert "by Mon 23 Nov 2026 11:00 GMT (Europe/London)." in body


def test_the_customers_zone_is_the_contacts_accounts_when_the_ticket_has_none(desk: Desk) -> None:
    Account.objects.filter(pk=desk.account.pk).update(timezone="Asia/Tokyo")
    desk.contact.refresh_from_db()
    ticket = Ticket(contact=desk.contact, channel="web", subject="x")
    assert ticket.customer_timezone() == "Asia/Tokyo"
    assert Ticket(channel="web", subject="x").customer_timezone() is None


def due_cells(html: str) -> list[str]:
    return re.findall(r'<td class="muted">([^<]*)</td>', html)


def test_desk_pages_give_each_instant_its_zone_and_each_target_its_unit(desk: Desk) -> None:
    ticket = actions.do_open_ticket(Inbound(channel="email", subject="Help", from_address="grace@globetrotter.example",
                                            received_at=at("2026-11-23 10:00")))
    client = Client()
    client.force_login(desk.agent)
    queue = client.get("/desk/").content.decode()
    assert "2026-11-23 11:00 UTC" in due_cells(queue)
    page = client.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    clocks = re.search(r'<table id="clocks">.*?</table>', page, re.S)
    assert clocks is not None
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", clocks.group(0))
    assert "1 h" in cells and "16 h" in cells  # first response and resolution, not "60 min" and "960 min"
    assert "2026-11-23 11:00 UTC" in cells and "2026-11-25 10:00 UTC" in cells
    assert not re.search(r"\d+ min\b", clocks.group(0))
    assert re.search(r"Inbound · 2026-11-23 10:00 UTC", page, re.I)  # the thread's instants too


def test_an_escalation_notice_gives_the_target_in_hours_and_the_due_instant_with_its_zone(
    desk: Desk, django_capture_on_commit_callbacks: Any
) -> None:
    EscalationRule.objects.create(name="lead", trigger="breach", action="notify", notify_email="lead@accord.example",
                                  clock_kind="resolution")
    actions.do_open_ticket(Inbound(channel="email", subject="Help", from_address="grace@globetrotter.example",
                                   received_at=at("2026-11-23 10:00")))
    with django_capture_on_commit_callbacks(execute=True):
        run_once(at("2026-11-25 10:01"))
    (notice,) = [m for m in django_mail.outbox if m.to == ["lead@accord.example"]]
    assert "target 16 h of business time, due 2026-11-25 10:00 GMT (Europe/London)" in notice.body
