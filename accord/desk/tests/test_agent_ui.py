"""The agent queue and ticket page: order by next due clock, badges, filters, reply box; in a real browser too."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from accord.desk import actions
from accord.desk.actions import Inbound
from accord.desk.models import Message, SlaClock, Ticket
from accord.desk.worker import run_once

from .conftest import Desk

pytestmark = pytest.mark.django_db


def open_ticket(subject: str, when: dt.datetime, priority: str = "normal", sender: str = "grace@globetrotter.example",
                channel: str = "email") -> Ticket:
    return actions.do_open_ticket(Inbound(channel=channel, subject=subject, body_text="help", from_address=sender,
                                          priority=priority, received_at=when))


@pytest.fixture
def agent_client(desk: Desk) -> Client:
    client = Client()
    client.force_login(desk.agent)
    return client


def queue_subjects(html: str) -> list[str]:
    return re.findall(r'</a> ([^<]+?)</td>', html)


def test_the_queue_is_ordered_by_the_next_due_clock_with_badges(desk: Desk, agent_client: Client) -> None:
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        later = open_ticket("Low priority question", now - dt.timedelta(minutes=5), priority="low")
        soon = open_ticket("Urgent outage", now - dt.timedelta(minutes=1), priority="urgent")
        stranger = open_ticket("From a stranger", now, sender="who@nowhere.example")  # no agreement, no clock
        paused = open_ticket("Waiting on customer", now - dt.timedelta(minutes=2))
        actions.do_set_status(paused, "pending", at=now)
    html = agent_client.get("/desk/").content.decode()
    subjects = queue_subjects(html)
    assert subjects.index("Urgent outage") < subjects.index("Low priority question")
    assert subjects[-2:] == sorted(["From a stranger", "Waiting on customer"], key=subjects.index)
    assert "badge sla-paused" in html and "badge sla-none" in html
    assert {later.pk, soon.pk, stranger.pk, paused.pk} == {int(x) for x in re.findall(r'data-ticket="(\d+)"', html)}


def test_queue_filters_by_channel_tier_assignee_and_sla(desk: Desk, agent_client: Client) -> None:
    now = timezone.now()
    mine = open_ticket("Mine", now)
    Ticket.objects.filter(pk=mine.pk).update(assignee=desk.agent)
    open_ticket("By phone", now, sender="+442079460000", channel="phone")
    open_ticket("Unknown", now, sender="x@unknown.example")
    assert queue_subjects(agent_client.get("/desk/", {"assignee": "me"}).content.decode()) == ["Mine"]
    assert queue_subjects(agent_client.get("/desk/", {"channel": "phone"}).content.decode()) == ["By phone"]
    assert set(queue_subjects(agent_client.get("/desk/", {"tier": "platinum"}).content.decode())) == {"Mine", "By phone"}
    assert queue_subjects(agent_client.get("/desk/", {"sla_state": "none"}).content.decode()) == ["Unknown"]
    bad = agent_client.get("/desk/", {"channel": "pigeon"})
    assert bad.status_code == 200 and 'id="filter-errors"' in bad.content.decode()


def test_a_breached_ticket_shows_its_badge_after_the_worker_runs(desk: Desk, agent_client: Client) -> None:
    past = timezone.now() - dt.timedelta(days=7)
    ticket = open_ticket("Old question", past)
    run_once()
    assert "badge sla-breached" in agent_client.get("/desk/").content.decode()
    page = agent_client.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert 'class="badge sla-breached" id="sla-state">breached<' in page


def test_the_reply_box_sends_a_public_reply_or_a_note(desk: Desk, agent_client: Client) -> None:
    ticket = open_ticket("Help", timezone.now())
    note = agent_client.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": "checking with GDS", "kind": "note", "status": ""})
    assert note.status_code == 302
    assert SlaClock.objects.get(ticket=ticket, kind="first_response").status == "running"
    agent_client.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": "Rebooked you.", "kind": "reply", "status": "pending"})
    ticket.refresh_from_db()
    assert ticket.status == "pending"
    assert SlaClock.objects.get(ticket=ticket, kind="first_response").status == "met"
    assert list(ticket.messages.values_list("kind", flat=True)) == ["inbound", "note", "reply"]
    empty = agent_client.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": "", "kind": "reply"})
    assert empty.status_code == 400
    assert "Please write the reply (or the note) first." in empty.content.decode()  # not "body: ..."
    assert Message.objects.filter(ticket=ticket).count() == 3


def test_priority_status_and_assignment_change_from_the_ticket_page(desk: Desk, agent_client: Client) -> None:
    ticket = open_ticket("Help", timezone.now())
    agent_client.post(f"/desk/tickets/{ticket.pk}/update/", {"priority": "urgent", "status": "open", "assign_to_me": "on"})
    ticket.refresh_from_db()
    assert (ticket.priority, ticket.status, ticket.assignee) == ("urgent", "open", desk.agent)
    assert SlaClock.objects.get(ticket=ticket, kind="resolution").target_minutes == 240
    agent_client.post(f"/desk/tickets/{ticket.pk}/update/", {"status": "closed"})
    refused = agent_client.post(f"/desk/tickets/{ticket.pk}/update/", {"status": "open"})
    assert refused.status_code == 400 and "Status: A closed ticket cannot change" in refused.content.decode()


def test_desk_pages_are_for_staff_only(desk: Desk, bob: User) -> None:
    assert Client().get("/desk/").status_code == 302
    client = Client()
    client.force_login(bob)
    assert client.get("/desk/").status_code == 302
    assert Client().post("/desk/tickets/1/reply/", {"body": "x"}).status_code == 302


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_agent_works_the_queue_in_a_browser(desk: Desk, live_server: Any, page: Any) -> None:
    now = timezone.now()
    open_ticket("Low priority question", now, priority="low")
    urgent = open_ticket("Urgent outage at checkout", now, priority="urgent")
    desk.agent.set_password("agent-password")
    desk.agent.save()
    page.goto(f"{live_server.url}/desk/")
    page.fill("#id_username", "agent")
    page.fill("#id_password", "agent-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#queue")
    first_row = page.locator("#queue tbody tr").first
    assert "Urgent outage at checkout" in first_row.inner_text()
    assert first_row.locator(".badge.sla-on_track").inner_text() == "on track"
    first_row.locator("a").click()
    page.wait_for_selector("#thread")
    assert page.locator("#clocks tbody tr").count() == 2
    page.fill("#reply-form textarea", "We are on it: payments provider incident.")
    page.select_option("#reply-form select[name=kind]", "reply")
    page.click("#reply-form button[type=submit]")
    page.wait_for_selector("article.message.reply")
    assert "payments provider incident" in page.locator("article.message.reply").last.inner_text()
    assert "met" in page.locator("#clocks tr[data-kind=first_response]").inner_text()
    urgent.refresh_from_db()
    assert urgent.status == "open"
