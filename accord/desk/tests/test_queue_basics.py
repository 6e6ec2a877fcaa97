"""The desk's basics on the queue: views, saved filters, full-text search, assignment and bulk changes."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone

from accord.access.roles import grant
from accord.desk import actions, search
from accord.desk.actions import Inbound
from accord.desk.models import Message, SavedFilter, SlaClock, SupportGroup, Tag, Ticket

from .conftest import Desk

pytestmark = pytest.mark.django_db


def open_ticket(subject: str, body: str = "help", *, when: dt.datetime | None = None,
                sender: str = "grace@globetrotter.example", priority: str = "normal") -> Ticket:
    return actions.do_open_ticket(Inbound(channel="email", subject=subject, body_text=body, from_address=sender,
                                          priority=priority, received_at=when or timezone.now()))


@pytest.fixture
def agent_client(desk: Desk) -> Client:
    client = Client()
    client.force_login(desk.agent)
    return client


def rows(html: str) -> set[int]:
    return {int(x) for x in re.findall(r'<tr data-ticket="(\d+)"', html)}


def test_views_show_their_statuses_with_counts_and_the_current_tab(desk: Desk, agent_client: Client) -> None:
    new = open_ticket("Brand new")
    opened = open_ticket("Being worked")
    actions.do_set_status(opened, "open")
    pending = open_ticket("Waiting")
    actions.do_set_status(pending, "pending")
    solved = open_ticket("Done")
    actions.do_set_status(solved, "solved")
    closed = open_ticket("Over")
    actions.do_set_status(closed, "closed")
    default = agent_client.get("/desk/").content.decode()
    assert rows(default) == {new.pk, opened.pk, pending.pk}  # open work, as before
    assert re.search(r'data-view="work" aria-current="page">Open work <span class="count">3<', default)
    for view, expected in [("new", {new.pk}), ("open", {opened.pk}), ("pending", {pending.pk}),
                           ("solved", {solved.pk}), ("closed", {closed.pk}),
                           ("all", {new.pk, opened.pk, pending.pk, solved.pk, closed.pk})]:
        html = agent_client.get("/desk/", {"view": view}).content.decode()
        assert rows(html) == expected, view
        assert re.search(rf'data-view="{view}" aria-current="page">\w+ <span class="count">{len(expected)}<', html), view
    # An unknown view is the default, not an error.
    assert rows(agent_client.get("/desk/", {"view": "nonsense"}).content.decode()) == {new.pk, opened.pk, pending.pk}


def test_filters_are_selects_and_built_in_filters_work(desk: Desk, agent_client: Client) -> None:
    mine = open_ticket("Mine")
    Ticket.objects.filter(pk=mine.pk).update(assignee=desk.agent)
    stranger = open_ticket("Stranger", sender="who@nowhere.example")  # no agreement: no clock
    later = open_ticket("Later", priority="low")
    # Its clocks run well past today in any zone: not breaching today.
    SlaClock.objects.filter(ticket=later).update(due_at=timezone.now() + dt.timedelta(days=3))
    Ticket.objects.filter(pk=later.pk).update(next_due_at=timezone.now() + dt.timedelta(days=3))
    urgent = open_ticket("Due soon", priority="urgent")
    Ticket.objects.filter(pk=urgent.pk).update(next_due_at=timezone.now() + dt.timedelta(minutes=1))
    html = agent_client.get("/desk/").content.decode()
    for name in ("status", "priority", "tier", "group", "assignee", "channel", "tag"):
        assert re.search(rf'<select name="{name}"', html), name
    assert 'href="?assignee=me">My tickets<' in html and 'href="?due=today">Breaching today<' in html
    assert rows(agent_client.get("/desk/?assignee=me").content.decode()) == {mine.pk}
    assert stranger.pk in rows(agent_client.get("/desk/?assignee=none").content.decode())
    assert rows(agent_client.get("/desk/?tier=platinum").content.decode()) == {mine.pk, later.pk, urgent.pk}
    breaching = rows(agent_client.get("/desk/?due=today").content.decode())
    assert urgent.pk in breaching and later.pk not in breaching and stranger.pk not in breaching
    Ticket.objects.filter(pk=later.pk).update(sla_state="breached")
    assert later.pk in rows(agent_client.get("/desk/?due=today").content.decode())
    bad = agent_client.get("/desk/", {"tier": "diamond"})
    assert bad.status_code == 200 and 'id="filter-errors"' in bad.content.decode() and not rows(bad.content.decode())


def test_saved_filters_are_personal(desk: Desk, agent_client: Client) -> None:
    urgent = open_ticket("Urgent one", priority="urgent")
    open_ticket("Normal one")
    response = agent_client.post("/desk/filters/", {"name": "  My urgent ", "query": "priority=urgent&page=3"})
    assert response.status_code == 302 and response["Location"].endswith("?priority=urgent")
    saved = SavedFilter.objects.get(user=desk.agent)
    assert (saved.name, saved.query) == ("My urgent", "priority=urgent")
    html = agent_client.get("/desk/").content.decode()
    assert 'href="?priority=urgent">My urgent<' in html
    assert rows(agent_client.get("/desk/?" + saved.query).content.decode()) == {urgent.pk}
    # No name: refused with a message, nothing saved.
    agent_client.post("/desk/filters/", {"name": "  ", "query": "priority=low"})
    assert SavedFilter.objects.count() == 1
    assert "The filter was not saved" in agent_client.get("/desk/").content.decode()
    # Another agent neither sees nor deletes it.
    other = User.objects.create_user("other", is_staff=True)
    grant(other, "agent")
    other_client = Client()
    other_client.force_login(other)
    assert "My urgent" not in other_client.get("/desk/").content.decode()
    assert other_client.post(f"/desk/filters/{saved.pk}/delete/").status_code == 404
    assert SavedFilter.objects.filter(pk=saved.pk).exists()
    assert agent_client.post(f"/desk/filters/{saved.pk}/delete/").status_code == 302
    assert not SavedFilter.objects.exists()


def test_search_finds_a_word_in_a_message_body_or_a_subject(desk: Desk, agent_client: Client) -> None:
    body = open_ticket("Printer trouble", "The spectrograph keeps jamming on page two.")
    subject = open_ticket("Kaleidoscope order missing", "Where is it?")
    other = open_ticket("Something else", "Nothing to see.")
    later = open_ticket("Follow-up", "First message.")
    actions.do_add_customer_message(later, Inbound(channel="email", subject="Re", body_text="Now the zeppelins are late."))
    Message.objects.bulk_create([Message(ticket=other, kind="inbound", channel="email", body_text="bulk marmalade")])
    html = agent_client.get("/desk/", {"search": "spectrograph"}).content.decode()
    assert rows(html) == {body.pk} and "keeps jamming" in html and 'id="search-summary"' in html
    assert rows(agent_client.get("/desk/", {"search": "kaleidoscope"}).content.decode()) == {subject.pk}
    assert rows(agent_client.get("/desk/", {"search": "zeppelin"}).content.decode()) == {later.pk}  # stemmed
    assert rows(agent_client.get("/desk/", {"search": "marmalade"}).content.decode()) == {other.pk}  # bulk insert
    assert rows(agent_client.get("/desk/", {"search": "spectrograph kaleidoscope"}).content.decode()) == set()
    # Search keeps to the view: a solved ticket is not open work, but is in "all".
    actions.do_set_status(body, "solved")
    assert rows(agent_client.get("/desk/", {"search": "spectrograph"}).content.decode()) == set()
    assert rows(agent_client.get("/desk/", {"search": "spectrograph", "view": "all"}).content.decode()) == {body.pk}
    # A changed or deleted message leaves the index with it.
    Message.objects.filter(ticket=later).update(body_text="changed")
    assert rows(agent_client.get("/desk/", {"search": "zeppelin"}).content.decode()) == set()
    Message.objects.filter(ticket=other).delete()
    assert search.search(Ticket.objects.all(), "marmalade").ids == []


@pytest.mark.parametrize("text", [
    '"', '"unbalanced', "spectrograph AND", "AND OR NOT", "*", "spectro*", "NEAR(spectrograph", '"spectrograph', "(((", ")",
    "body_text:spectrograph", "^spectrograph", "-", "'; DROP TABLE desk_ticket; --", "\x00", "a" * 10_000,
    "spectrograph " * 2000, "ü€𝄞", "{}[]:+", "the",
])
def test_hostile_searches_never_fail(desk: Desk, agent_client: Client, text: str) -> None:
    target = open_ticket("Printer trouble", "The spectrograph keeps jamming.")
    response = agent_client.get("/desk/", {"search": text})
    assert response.status_code == 200
    found = rows(response.content.decode())
    assert found <= {target.pk}
    if text in ("^spectrograph", '"spectrograph', "spectrograph " * 2000) and connection.vendor == "sqlite":
        assert found == {target.pk}  # the words are still searched for, the syntax is not


def _bulk(client: Client, tickets: list[Ticket], change: str, **extra: str) -> str:
    response = client.post("/desk/bulk/", {"tickets": [t.pk for t in tickets], "change": change, **extra})
    assert response.status_code == 302, response.content
    return client.get(response["Location"]).content.decode()


def test_bulk_solve_settles_clocks_and_reports_a_refusal(desk: Desk, agent_client: Client) -> None:
    three = [open_ticket(f"Ticket {i}") for i in range(3)]
    closed = open_ticket("Already closed")
    actions.do_set_status(closed, "closed")
    html = _bulk(agent_client, [*three, closed], "status:solved")
    assert "Status set to solved: 3 tickets changed" in html
    assert f"refused for {closed.reference} (A closed ticket cannot change" in html
    for t in three:
        t.refresh_from_db()
        assert t.status == "solved" and t.solved_at is not None
        # As for a single change: resolution stopped (met), the response clock cancelled.
        assert set(t.clocks.values_list("kind", "status")) == {("first_response", "cancelled"), ("resolution", "met")}
    closed.refresh_from_db()
    assert closed.status == "closed"


def test_bulk_priority_tag_and_assignment(desk: Desk, agent_client: Client) -> None:
    a, b = open_ticket("A"), open_ticket("B")
    group = SupportGroup.objects.create(name="tier-2")
    due_before = SlaClock.objects.get(ticket=a, kind="first_response").due_at
    assert "Priority set to urgent: 2 tickets changed" in _bulk(agent_client, [a, b], "priority:urgent")
    assert SlaClock.objects.get(ticket=a, kind="first_response").due_at < due_before  # retargeted: 30 min not 60
    assert "Tag “vip” added: 2 tickets" in _bulk(agent_client, [a, b], "tag", tag="vip")
    assert set(Tag.objects.get(name="vip").tickets.all()) == {a, b}
    assert "Already so" in _bulk(agent_client, [a], "tag", tag="vip")
    assert "Assigned to group tier-2: 2 tickets" in _bulk(agent_client, [a, b], f"group:{group.pk}")
    assert "Assigned to agent: 1 ticket changed" in _bulk(agent_client, [a], f"assignee:{desk.agent.pk}")
    a.refresh_from_db()
    assert (a.group, a.assignee) == (group, desk.agent)
    assert rows(agent_client.get("/desk/", {"group": "tier-2"}).content.decode()) == {a.pk, b.pk}
    assert rows(agent_client.get("/desk/", {"tag": "vip"}).content.decode()) == {a.pk, b.pk}
    # Not an agent (no agent or manager role): not a choice, nothing changed.
    outsider = User.objects.create_user("outsider", is_staff=True)
    html = _bulk(agent_client, [b], f"assignee:{outsider.pk}")
    assert "Nothing was changed" in html and "not one of the available choices" in html
    b.refresh_from_db()
    assert b.assignee is None


def test_bulk_bad_input_is_refused_with_a_message(desk: Desk, agent_client: Client) -> None:
    t = open_ticket("A")
    assert "Select at least one ticket" in _bulk(agent_client, [], "status:solved")
    assert "Choose a change" in _bulk(agent_client, [t], "")
    assert "is not one of the available choices" in _bulk(agent_client, [t], "status:exploded")
    assert "Write the tag to add" in _bulk(agent_client, [t], "tag")
    response = agent_client.post("/desk/bulk/", {"tickets": ["999999", "x"], "change": "status:solved"})
    assert "Nothing was changed" in agent_client.get(response["Location"]).content.decode()
    t.refresh_from_db()
    assert t.status == "new"


def test_bulk_needs_the_change_permission(desk: Desk) -> None:
    t = open_ticket("A")
    reader = User.objects.create_user("reader", is_staff=True)
    grant(reader, "finance")  # reads everything, changes no ticket
    client = Client()
    client.force_login(reader)
    page = client.get("/desk/")
    assert page.status_code == 200 and 'id="bulk-form"' not in page.content.decode()
    assert client.post("/desk/bulk/", {"tickets": [t.pk], "change": "status:solved"}).status_code == 403
    t.refresh_from_db()
    assert t.status == "new"


def test_the_ticket_page_assigns_to_an_agent_or_a_group(desk: Desk, agent_client: Client) -> None:
    t = open_ticket("A")
    group = SupportGroup.objects.create(name="billing")
    page = agent_client.get(f"/desk/tickets/{t.pk}/").content.decode()
    assert f'<option value="group:{group.pk}">billing</option>' in page
    assert agent_client.post(f"/desk/tickets/{t.pk}/update/", {"assign": f"group:{group.pk}"}).status_code == 302
    t.refresh_from_db()
    assert t.group == group
    bad = agent_client.post(f"/desk/tickets/{t.pk}/update/", {"assign": "group:999999"})
    assert bad.status_code == 400 and "not one of the available choices" in bad.content.decode()


def _login(page: Any, live_server: Any, desk: Desk) -> None:
    desk.agent.set_password("agent-password")
    desk.agent.save()
    page.goto(f"{live_server.url}/desk/")
    page.fill("#id_username", "agent")
    page.fill("#id_password", "agent-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#queue")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_in_a_browser_assign_to_a_group_bulk_solve_and_search(desk: Desk, live_server: Any, page: Any,
                                                               axe: Any) -> None:
    group = SupportGroup.objects.create(name="second-line")
    three = [open_ticket(f"Question {i}") for i in range(3)]
    hidden = open_ticket("Invoice query", "Our quetzal account number changed last week.")
    _login(page, live_server, desk)
    # The queue with its new controls has no accessibility violations.
    found = axe.violations(page)
    assert not found, axe.describe("desk queue with views, saved filters and bulk changes", found)
    # Assign one ticket to a group from its page.
    page.click(f'#queue tr[data-ticket="{hidden.pk}"] a.ticket-link')
    page.wait_for_selector("#update-form")
    page.select_option("#id_update_assign", f"group:{group.pk}")
    page.click("#update-form button[type=submit]")
    page.wait_for_selector("#action-done")
    assert page.locator("#ticket-group").inner_text() == "second-line"
    hidden.refresh_from_db()
    assert hidden.group == group
    # Select three tickets (x on a focused row, a click, a label) and solve them in one go.
    page.goto(f"{live_server.url}/desk/")
    page.locator(f'#queue tr[data-ticket="{three[0].pk}"] a.ticket-link').focus()
    page.keyboard.press("x")
    assert page.locator(f"#select-{three[0].pk}").is_checked()
    page.check(f"#select-{three[1].pk}")
    page.get_by_label(f"Select {three[2].reference}", exact=True).check()  # the checkbox is found by its label
    page.select_option("#id_bulk_change", "status:solved")
    page.click("#bulk-form button[type=submit]")
    page.wait_for_selector("#messages")
    assert "Status set to solved: 3 tickets changed" in page.locator("#messages").inner_text()
    assert {t.status for t in Ticket.objects.filter(pk__in=[t.pk for t in three])} == {"solved"}
    # "Select all on this page" selects the rest.
    page.check("#select-page")
    assert page.locator("input.select-ticket:checked").count() == page.locator("input.select-ticket").count() == 1
    # Search a word that only occurs in a message body, and open the result.
    page.fill("#queue-search", "quetzal")
    page.press("#queue-search", "Enter")
    page.wait_for_selector("#search-summary")
    assert page.locator("#queue tbody tr[data-ticket]").count() == 1
    assert "quetzal" in page.locator("#queue .snippet").inner_text()
    found = axe.violations(page)
    assert not found, axe.describe("desk queue search results", found)
    page.click("#queue a.ticket-link")
    page.wait_for_url(f"**/desk/tickets/{hidden.pk}/")
    assert "quetzal account number" in page.locator("#thread").inner_text()


def test_a_hostile_query_in_a_form_is_encoded_again(desk: Desk, agent_client: Client) -> None:
    t = open_ticket("A")
    response = agent_client.post("/desk/bulk/", {"tickets": [t.pk], "change": "priority:high",
                                                 "query": "status=new\r\nSet-Cookie: x=1&page=2"})
    assert response.status_code == 302 and response["Location"] == "/desk/?status=new%0D%0ASet-Cookie%3A+x%3D1"
    response = agent_client.post("/desk/filters/", {"name": "", "query": "a=1\nb"})
    assert response.status_code == 302 and "\n" not in response["Location"]
