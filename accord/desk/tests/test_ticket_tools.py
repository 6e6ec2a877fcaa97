"""Ticket-level desk features from the pages: open a ticket or log a call, canned replies, merge, link an unknown
requester, presence, links on the ticket page; with their refusals and permissions."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from accord.access.models import AuditEntry
from accord.access.roles import grant
from accord.customers.models import Account, Contact, ContactPoint
from accord.desk import actions, canned, clocks, presence
from accord.desk.models import CannedReply, Message, SlaClock, Tag, Ticket

from .conftest import Desk
from .test_agent_ui import open_ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent_client(desk: Desk) -> Client:
    client = Client()
    client.force_login(desk.agent)
    return client


@pytest.fixture
def manager(desk: Desk) -> User:
    user = User.objects.create_user("meg", "meg@accord.example", "meg-password", is_staff=True, first_name="Meg",
                                    last_name="Manager")
    grant(user, "manager")
    return user


@pytest.fixture
def manager_client(manager: User) -> Client:
    client = Client()
    client.force_login(manager)
    return client


@pytest.fixture
def roleless_client(desk: Desk) -> Client:
    user = User.objects.create_user("norole", "n@accord.example", "x", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


# Opening a ticket / logging a call


def test_an_agent_logs_a_phone_call_for_a_contact_and_it_runs_on_the_accounts_clocks(desk: Desk,
                                                                                      agent_client: Client) -> None:
    r = agent_client.post("/desk/new/", {"contact": desk.contact.pk, "channel": "phone", "direction": "outbound",
                                         "duration_minutes": "7", "priority": "urgent", "subject": "Called about PNR",
                                         "body": "Customer lost the booking."})
    assert r.status_code == 302, r.content.decode()[:2000]
    t = Ticket.objects.get(subject="Called about PNR")
    assert r["Location"] == f"/desk/tickets/{t.pk}/"
    assert (t.channel, t.priority, t.account, t.contact, t.agreement) == ("phone", "urgent", desk.account,
                                                                          desk.contact, desk.agreement)
    first = t.messages.get()
    assert first.meta["duration_seconds"] == 420 and first.meta["direction"] == "outbound"
    assert first.from_address == "+442079460000"  # the contact's phone, as the call log matches it
    assert sorted(t.clocks.values_list("kind", "target_seconds")) == [("first_response", 1800), ("resolution", 14400)]
    assert AuditEntry.objects.filter(action="create", object_id=str(t.pk), object_type="desk.ticket").exists()


def test_a_ticket_for_an_unknown_address_matches_the_sender_as_the_channel_does(desk: Desk,
                                                                                agent_client: Client) -> None:
    r = agent_client.post("/desk/new/", {"address": "grace@globetrotter.example", "channel": "email",
                                         "priority": "normal", "subject": "Forwarded", "body": "fwd"})
    assert r.status_code == 302
    assert Ticket.objects.get(subject="Forwarded").account == desk.account  # matched by the address
    r = agent_client.post("/desk/new/", {"address": "nobody@else.example", "channel": "email", "priority": "normal",
                                         "subject": "Stranger", "body": "hi"})
    t = Ticket.objects.get(subject="Stranger")
    assert (t.account, t.agreement, t.clocks.count()) == (None, None, 0)
    assert t.contact is not None and t.contact.points.get().value == "nobody@else.example"


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"channel": "email", "subject": "s", "body": "b", "priority": "normal"}, "contact", "Pick a contact"),
    ({"channel": "email", "address": "not-an-address", "subject": "s", "body": "b", "priority": "normal"},
     "address", "is not an e-mail address"),
    ({"channel": "phone", "address": "call me", "duration_minutes": "3", "subject": "s", "body": "b",
      "priority": "normal"}, "address", "is not a phone number"),
    ({"channel": "phone", "address": "+44 20 7946 1111", "subject": "s", "body": "b", "priority": "normal"},
     "duration_minutes", "How long was the call?"),
    ({"channel": "email", "address": "a@b.example", "subject": "s", "body": "b", "priority": "soon"},
     "priority", "Select a valid choice"),
])
def test_a_refused_new_ticket_keeps_what_was_typed(desk: Desk, agent_client: Client, data: dict[str, str],
                                                    field: str, message: str) -> None:
    data = {**data, "body": "A long story the agent typed"}
    r = agent_client.post("/desk/new/", data)
    html = r.content.decode()
    assert r.status_code == 400
    assert re.search(rf'id="id_{field}_errors">[^<]*{re.escape(message)}', html), html[:3000]
    assert "A long story the agent typed" in html
    assert Ticket.objects.count() == 0


def test_a_contact_of_another_account_is_refused(desk: Desk, agent_client: Client) -> None:
    other = Account.objects.create(name="Other Co", external_id="OTHER")
    r = agent_client.post("/desk/new/", {"contact": desk.contact.pk, "account": other.pk, "channel": "email",
                                         "priority": "normal", "subject": "s", "body": "b"})
    assert r.status_code == 400 and "belongs to Globetrotter Ltd, not Other Co" in r.content.decode()


def test_desk_ticket_pages_need_a_desk_role(desk: Desk, roleless_client: Client) -> None:
    t = open_ticket("Help", timezone.now())
    for url in ("/desk/new/", f"/desk/tickets/{t.pk}/merge/", f"/desk/tickets/{t.pk}/link-requester/",
                "/desk/canned/"):
        assert roleless_client.get(url).status_code == 403, url
    assert roleless_client.post(f"/desk/tickets/{t.pk}/merge/", {"into": "1"}).status_code == 403
    assert roleless_client.post(f"/desk/tickets/{t.pk}/presence/", {"replying": "0"}).status_code == 403


# Canned replies


def test_managers_manage_canned_replies_and_unknown_placeholders_are_refused(desk: Desk, manager_client: Client,
                                                                             manager: User) -> None:
    bad = manager_client.post("/desk/canned/", {"title": "Hello", "body": "Dear {customer}, see {ticket_ref}"})
    assert bad.status_code == 400
    assert "Unknown placeholder(s): {customer}" in bad.content.decode()
    assert "Dear {customer}, see {ticket_ref}" in bad.content.decode()
    braces = manager_client.post("/desk/canned/", {"title": "Hello", "body": "Dear {customer_name"})
    assert braces.status_code == 400 and "braces do not match" in braces.content.decode()
    assert not CannedReply.objects.exists()
    ok = manager_client.post("/desk/canned/", {"title": "Hello", "body": "Dear {customer_name}, about {ticket_ref}."})
    assert ok.status_code == 302
    reply = CannedReply.objects.get()
    assert reply.created_by == manager
    edited = manager_client.post(f"/desk/canned/{reply.pk}/", {"title": "Hello", "body": "Hi {customer_name}."})
    assert edited.status_code == 302
    reply.refresh_from_db()
    assert reply.body == "Hi {customer_name}."
    assert AuditEntry.objects.filter(object_type="desk.cannedreply", action="update",
                                     changes__body=["Dear {customer_name}, about {ticket_ref}.", "Hi {customer_name}."]).exists()
    assert manager_client.post(f"/desk/canned/{reply.pk}/delete/").status_code == 302
    assert not CannedReply.objects.exists()


def test_agents_use_canned_replies_but_cannot_edit_them(desk: Desk, agent_client: Client) -> None:
    reply = CannedReply.objects.create(title="Hello", body="Hi {customer_name}")
    page = agent_client.get("/desk/canned/")
    assert page.status_code == 200 and "Hello" in page.content.decode() and 'id="canned-form"' not in page.content.decode()
    assert agent_client.post("/desk/canned/", {"title": "Mine", "body": "x"}).status_code == 403
    assert agent_client.get(f"/desk/canned/{reply.pk}/").status_code == 403
    assert agent_client.post(f"/desk/canned/{reply.pk}/delete/").status_code == 403
    assert CannedReply.objects.filter(title="Hello").exists() and not CannedReply.objects.filter(title="Mine").exists()


def test_placeholders_are_filled_for_the_ticket_and_the_agent(desk: Desk, agent_client: Client) -> None:
    desk.account.timezone = "America/New_York"
    desk.account.save()
    desk.agent.first_name, desk.agent.last_name = "Ann", "Agent"
    desk.agent.save()
    t = open_ticket("Help", timezone.now())
    CannedReply.objects.create(title="Promise",
                               body="Dear {customer_name}, {ticket_ref} by {promised_time}. {{sic}} -- {agent_name}")
    due = t.clocks.filter(status="running").order_by("due_at").first().due_at
    expected_time = due.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York")).strftime("%a %d %b %Y %H:%M")
    text = canned.render_body(CannedReply.objects.get(), t, desk.agent)
    assert text.startswith(f"Dear Grace Hopper, {t.reference} by {expected_time} E")
    assert "(America/New_York)" in text and text.endswith("{sic} -- Ann Agent")
    page = agent_client.get(f"/desk/tickets/{t.pk}/").content.decode()
    assert 'id="canned-select"' in page and f"Dear Grace Hopper, {t.reference}" in page


# Merge


def test_merging_moves_messages_closes_the_source_stops_its_clocks_and_unites_tags(desk: Desk,
                                                                                   agent_client: Client) -> None:
    now = timezone.now()
    target = open_ticket("Booking lost", now - dt.timedelta(minutes=5))
    source = open_ticket("Booking lost (again)", now)
    target.tags.add(Tag.objects.create(name="booking"))
    source.tags.add(Tag.objects.create(name="vip"))
    r = agent_client.post(f"/desk/tickets/{source.pk}/merge/", {"into": target.reference})
    assert r.status_code == 302 and r["Location"] == f"/desk/tickets/{target.pk}/"
    source.refresh_from_db()
    assert source.status == "closed" and source.sla_state == "done"
    assert set(source.clocks.values_list("status", flat=True)) == {"cancelled"}
    assert sorted(target.tags.values_list("name", flat=True)) == ["booking", "vip"]
    assert list(target.messages.values_list("kind", flat=True)) == ["inbound", "inbound", "note"]
    note = source.messages.get()
    assert note.kind == "note" and note.meta == {"merged_into": target.pk} and target.reference in note.body_text
    assert set(target.clocks.values_list("status", flat=True)) == {"running"}
    page = agent_client.get(f"/desk/tickets/{source.pk}/").content.decode()
    assert f'href="/desk/tickets/{target.pk}/" class="merged-into"' in page
    entry = AuditEntry.objects.get(action="merge")
    assert entry.user == desk.agent and entry.object_id == str(source.pk)


def test_merge_refusals(desk: Desk, agent_client: Client) -> None:
    now = timezone.now()
    a = open_ticket("A", now)
    b = open_ticket("B", now)
    closed = open_ticket("Closed", now)
    actions.do_set_status(closed, "closed")
    stranger = open_ticket("Stranger", now, sender="who@nowhere.example")

    def refused(src: Ticket, into: str, message: str, **extra: str) -> None:
        r = agent_client.post(f"/desk/tickets/{src.pk}/merge/", {"into": into, **extra})
        assert r.status_code == 400 and message in r.content.decode(), r.content.decode()[:3000]

    refused(a, a.reference, "cannot be merged into itself")
    refused(a, str(closed.pk), "is closed: merge into an open ticket")
    refused(a, "ACC-999999", "There is no such ticket")
    refused(a, "banana", "There is no such ticket")
    refused(a, stranger.reference, "belong to different accounts")
    assert Ticket.objects.get(pk=a.pk).status == "new" and a.messages.count() == 1
    r = agent_client.post(f"/desk/tickets/{a.pk}/merge/", {"into": stranger.reference,
                                                           "confirm_other_account": "on"})
    assert r.status_code == 302 and Ticket.objects.get(pk=a.pk).status == "closed"
    assert b.messages.count() == 1


# Link requester


def test_linking_an_unknown_requester_starts_the_clocks_from_the_tickets_creation(desk: Desk,
                                                                                  agent_client: Client) -> None:
    created = timezone.now() - dt.timedelta(hours=3)
    t = open_ticket("Who am I", created, sender="stranger@nowhere.example")
    assert (t.account, t.clocks.count()) == (None, 0)
    page = agent_client.get(f"/desk/tickets/{t.pk}/").content.decode()
    assert 'id="link-requester"' in page
    r = agent_client.post(f"/desk/tickets/{t.pk}/link-requester/", {"contact": desk.contact.pk})
    assert r.status_code == 302, r.content.decode()[:3000]
    t.refresh_from_db()
    assert (t.account, t.contact, t.agreement) == (desk.account, desk.contact, desk.agreement)
    first = t.clocks.get(kind="first_response")
    assert first.started_at == created and first.target_minutes == 60
    due = clocks.engine(desk.calendar).add(created, 60, [])
    assert first.status == "running" and first.due_at == due  # business time from the creation
    assert t.clocks.get(kind="resolution").due_at == clocks.engine(desk.calendar).add(created, 960, [])
    if due < timezone.now():  # created out of hours, the promise may still be ahead; else it is already missed
        assert t.sla_state == "breached" and first.breached_at == due
    else:
        assert t.sla_state in ("on_track", "warning") and first.breached_at is None
    # The stranger's address now belongs to the contact: the next e-mail from it is matched to the account.
    assert ContactPoint.objects.get(value="stranger@nowhere.example").contact == desk.contact
    entry = AuditEntry.objects.get(action="link-requester")
    assert entry.changes["account"] == [None, desk.account.pk]
    page = agent_client.get(f"/desk/tickets/{t.pk}/").content.decode()
    assert 'id="link-requester"' not in page
    assert f'<a href="/accounts/{desk.account.pk}/">Grace Hopper</a>' in page
    assert f'<a href="/agreements/{desk.agreement.pk}/">platinum-sla</a>' in page


def test_a_first_reply_before_linking_counts_as_the_first_response(desk: Desk) -> None:
    created = timezone.now() - dt.timedelta(days=3)
    t = open_ticket("Early", created, sender="early@nowhere.example")
    Message.objects.create(ticket=t, kind="reply", channel="email", author_user=desk.agent, body_text="hi",
                           created_at=created + dt.timedelta(minutes=1))
    from accord.desk.ticket_actions import do_link_requester

    do_link_requester(t, desk.contact, by=desk.agent)
    first = t.clocks.get(kind="first_response")
    assert first.status == "met" and first.stopped_at == created + dt.timedelta(minutes=1)


def test_link_requester_refusals_and_a_manager_creates_a_contact(desk: Desk, agent_client: Client,
                                                                 manager_client: Client) -> None:
    t = open_ticket("Who", timezone.now(), sender="who@nowhere.example")
    r = agent_client.post(f"/desk/tickets/{t.pk}/link-requester/", {"name": "Who Ever", "account": desk.account.pk})
    assert r.status_code == 400 and "Your role cannot create contacts" in r.content.decode()
    r = manager_client.post(f"/desk/tickets/{t.pk}/link-requester/", {"name": "Who Ever"})
    assert r.status_code == 400 and "A new contact needs an account" in r.content.decode()
    assert 'value="Who Ever"' in r.content.decode()
    r = manager_client.post(f"/desk/tickets/{t.pk}/link-requester/",
                            {"name": "Who Ever", "email": "who@nowhere.example", "account": desk.account.pk})
    assert r.status_code == 302
    t.refresh_from_db()
    assert t.contact is not None and t.contact.name == "Who Ever" and t.account == desk.account
    assert t.clocks.count() == 2
    loose = Contact.objects.create(name="No Account")
    other = open_ticket("Other", timezone.now(), sender="other@nowhere.example")
    r = agent_client.post(f"/desk/tickets/{other.pk}/link-requester/", {"contact": loose.pk})
    assert r.status_code == 400  # not offered: only contacts of an account
    assert Ticket.objects.get(pk=other.pk).account is None


# Presence and the ticket page


def test_presence_says_who_else_is_viewing_or_replying(desk: Desk, agent_client: Client, manager: User,
                                                       manager_client: Client) -> None:
    t = open_ticket("Help", timezone.now())
    first = agent_client.post(f"/desk/tickets/{t.pk}/presence/", {"replying": "0"}).json()
    assert first["others"] == [] and first["text"] == ""
    manager_client.post(f"/desk/tickets/{t.pk}/presence/", {"replying": "1"})
    assert agent_client.post(f"/desk/tickets/{t.pk}/presence/", {"replying": "0"}).json()["text"] == \
        "Meg Manager is also replying"
    assert manager_client.post(f"/desk/tickets/{t.pk}/presence/", {"replying": "0"}).json()["text"] == \
        "agent is also viewing"
    assert agent_client.post(f"/desk/tickets/{t.pk}/presence/", {"replying": "maybe"}).status_code == 400
    assert agent_client.get(f"/desk/tickets/{t.pk}/presence/").status_code == 405
    # After the TTL without a poll, an agent is gone.
    from accord.desk.models import Presence

    Presence.objects.filter(user=manager).update(seen_at=timezone.now() - dt.timedelta(seconds=presence.ttl_seconds() + 1))
    assert agent_client.post(f"/desk/tickets/{t.pk}/presence/", {"replying": "0"}).json()["others"] == []


def test_a_ticket_without_an_account_shows_plain_contact_and_no_agreement(desk: Desk, agent_client: Client) -> None:
    t = open_ticket("Stranger", timezone.now(), sender="who@nowhere.example")
    page = agent_client.get(f"/desk/tickets/{t.pk}/").content.decode()
    assert re.search(r'id="ticket-agreement">none<', page)
    assert re.search(r'id="ticket-contact">who@nowhere.example<', page)
    assert SlaClock.objects.filter(ticket=t).count() == 0
