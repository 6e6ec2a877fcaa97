"""The queue's live region: new tickets and breaches since the page was drawn, announced once, in a browser too."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from accord.desk import actions
from accord.desk.actions import Inbound
from accord.desk.models import ClockEvent, Ticket
from accord.desk.worker import run_once

from .conftest import Desk

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs in the test thread

pytestmark = pytest.mark.django_db


def open_ticket(subject: str, when: dt.datetime, sender: str = "grace@globetrotter.example") -> Ticket:
    return actions.do_open_ticket(Inbound(channel="email", subject=subject, body_text="help", from_address=sender,
                                          priority="normal", received_at=when))


@pytest.fixture
def agent_client(desk: Desk) -> Client:
    client = Client()
    client.force_login(desk.agent)
    return client


def changes(client: Client, cursor: dict[str, int]) -> dict[str, Any]:
    answer = client.get("/desk/changes/", cursor)
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_the_queue_page_starts_listening_after_what_it_shows(desk: Desk, agent_client: Client) -> None:
    shown = open_ticket("Shown when the page was drawn", timezone.now())
    html = agent_client.get("/desk/").content.decode()
    assert f'data-ticket="{shown.pk}"' in html and 'role="status"' in html and "desk/live.js" in html
    # The shortcuts' dialog lives in the page, not in its <title> (where a browser shows markup as text).
    title = html[html.index("<title>"):html.index("</title>")]
    assert title == "<title>Desk · Accord"


def test_new_tickets_and_breaches_are_told_once_by_id(desk: Desk, agent_client: Client) -> None:
    start = changes(agent_client, {"ticket": 0, "breach": 0})["cursor"]
    # A ticket from a mailbox import carries its old date: it is still news, as ids say, not instants.
    old = open_ticket("Imported from last week", timezone.now() - dt.timedelta(days=7))
    fresh = open_ticket("Payments fail", timezone.now())
    stranger = open_ticket("Who am I", timezone.now(), sender="who@nowhere.example")
    first = changes(agent_client, start)
    assert [t["id"] for t in first["new"]] == [old.pk, fresh.pk, stranger.pk]
    assert first["new"][1] == {"id": fresh.pk, "reference": fresh.reference, "subject": "Payments fail",
                               "account": desk.account.name, "url": f"/desk/tickets/{fresh.pk}/"}
    assert first["new"][2]["account"] == "" and first["new_total"] == 3 and first["breached"] == []

    run_once()  # the week-old ticket's first response and resolution are long overdue
    breaches = ClockEvent.objects.filter(kind="breach", clock__ticket=old).order_by("pk")
    assert breaches.count() == 2
    second = changes(agent_client, first["cursor"])
    assert second["new"] == [] and second["breached_total"] == 2
    assert second["breached"] == [
        {"id": e.pk, "reference": old.reference, "clock": e.clock.kind.replace("_", " "), "url": f"/desk/tickets/{old.pk}/"}
        for e in breaches
    ]
    assert {b["clock"] for b in second["breached"]} == {"first response", "resolution"}
    # Told once: asked again from the new cursor, nothing.
    third = changes(agent_client, second["cursor"])
    assert (third["new"], third["breached"]) == ([], [])
    # A closed ticket is not news for the queue.
    closed = open_ticket("Solved at once", timezone.now())
    actions.do_set_status(closed, "closed")
    assert changes(agent_client, third["cursor"])["new"] == []


def test_a_long_list_is_cut_with_its_total(desk: Desk, agent_client: Client) -> None:
    start = changes(agent_client, {"ticket": 0, "breach": 0})["cursor"]
    for n in range(23):
        open_ticket(f"Flood {n}", timezone.now())
    answer = changes(agent_client, start)
    assert len(answer["new"]) == 20 and answer["new_total"] == 23
    assert answer["cursor"]["ticket"] == Ticket.objects.order_by("-pk").first().pk  # type: ignore[union-attr]


def test_bad_cursors_and_strangers_are_refused(desk: Desk, agent_client: Client, bob: User) -> None:
    for bad in ({"ticket": "-1", "breach": "0"}, {"ticket": "x", "breach": "0"}, {"ticket": "1"}):
        answer = agent_client.get("/desk/changes/", bad)
        assert answer.status_code == 400 and answer.json()["error"] == "bad_request"
    assert agent_client.post("/desk/changes/", {"ticket": 0, "breach": 0}).status_code in (403, 405)
    assert Client().get("/desk/changes/", {"ticket": 0, "breach": 0}).status_code == 302
    outsider = Client()
    outsider.force_login(bob)
    assert outsider.get("/desk/changes/", {"ticket": 0, "breach": 0}).status_code == 302


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_queue_announces_a_new_ticket_and_a_breach(desk: Desk, live_server: Any, page: Any, axe: Any,
                                                       settings: Any) -> None:
    settings.ACCORD_DESK_LIVE_POLL = 0.5
    open_ticket("Already here", timezone.now())
    desk.agent.set_password("agent-password")
    desk.agent.save()
    page.goto(f"{live_server.url}/desk/")
    page.fill("#id_username", "agent")
    page.fill("#id_password", "agent-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#queue")
    page.wait_for_timeout(1500)  # a few polls with nothing new: nothing is said
    assert page.locator("#queue-live p").count() == 0 and page.title() == "Desk · Accord"
    focused = page.locator("#queue a.ticket-link").first
    focused.focus()

    late = open_ticket("Checkout is down", timezone.now() - dt.timedelta(days=7))
    page.wait_for_selector("#queue-live p")
    said = page.locator("#queue-live p").last.inner_text()
    assert said == f"New ticket {late.reference} from {desk.account.name}: Checkout is down."
    assert page.title() == "(1) Desk · Accord" and page.locator("#queue-reload").is_visible()
    # The table is not redrawn under the agent: focus stays where it was.
    assert page.evaluate("document.activeElement.textContent") == focused.inner_text()

    run_once()
    page.wait_for_function("document.querySelectorAll('#queue-live p').length === 2")
    clocks = "; ".join(f"{late.reference}, {e.clock.kind.replace('_', ' ')}"
                       for e in ClockEvent.objects.filter(kind="breach", clock__ticket=late).order_by("pk"))
    assert "first response" in clocks
    assert page.locator("#queue-live p").last.inner_text() == f"Breached: {clocks}."
    page.wait_for_timeout(1500)  # told once
    assert page.locator("#queue-live p").count() == 2
    found = axe.violations(page)
    assert not found, axe.describe("desk queue with news", found)
