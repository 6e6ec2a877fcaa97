"""No typed word is lost: a refused reply or web form comes back with the text in its box and the error next to
the field in words a person uses; a limit is said before it bites and never cuts text silently."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client

from accord.desk import actions
from accord.desk.actions import Inbound
from accord.desk.forms import MESSAGE_LIMIT, REPLY_LIMIT, SupportRequestForm
from accord.desk.models import Ticket

from .conftest import Desk

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 23, 9, 5, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def clear_rate_limits() -> None:
    cache.clear()


@pytest.fixture
def agent_client(desk: Desk) -> Client:
    client = Client()
    client.force_login(desk.agent)
    return client


def textarea(html: str, name: str) -> str:
    """The text inside a textarea of a page, as the browser shows it (Django writes a newline after the tag)."""
    match = re.search(rf'<textarea[^>]*name="{name}"[^>]*>\n?(.*?)</textarea>', html, re.S)
    assert match, f"no textarea {name}"
    return match.group(1)


def open_ticket() -> Ticket:
    return actions.do_open_ticket(Inbound(channel="email", subject="Help", body_text="help",
                                          from_address="grace@globetrotter.example"))


def test_a_reply_over_the_limit_comes_back_with_its_text_and_the_error_next_to_the_box(
    desk: Desk, agent_client: Client
) -> None:
    ticket = open_ticket()
    page = agent_client.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert "maxlength" not in page and "Up to 50,000 characters." in page  # said before it bites
    long_reply = "Dear Grace,\n" + "the itinerary follows. " * 2300 + "\nKind regards"
    size = len(long_reply)
    assert size == 52_925 and size > REPLY_LIMIT
    response = agent_client.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": long_reply, "kind": "reply", "status": ""})
    html = response.content.decode()
    assert response.status_code == 400
    assert textarea(html, "body") == long_reply
    assert re.search(r'id="reply-errors"[^>]*>The reply has 52,925 characters; the limit is 50,000\. Please shorten it '
                     r"by 2,925 characters", html)
    assert "body:" not in html  # the field is called Reply on the page, and in its errors
    assert not ticket.messages.filter(kind="reply").exists()


def test_line_breaks_count_once_as_the_counter_counts_them(desk: Desk, agent_client: Client) -> None:
    ticket = open_ticket()
    lines = "\r\n".join(["x" * 99] * 500)  # 49,500 characters and 499 line breaks: over 50,000 only counting CR LF
    response = agent_client.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": lines, "kind": "note", "status": ""})
    assert response.status_code == 302
    assert ticket.messages.get(kind="note").body_text == lines.replace("\r\n", "\n")


def test_a_refused_status_change_keeps_the_reply_that_came_with_it(desk: Desk, agent_client: Client) -> None:
    ticket = open_ticket()
    actions.do_set_status(ticket, "closed")
    response = agent_client.post(f"/desk/tickets/{ticket.pk}/reply/",
                                 {"body": "A last word.", "kind": "note", "status": "open"})
    html = response.content.decode()
    assert response.status_code == 400 and textarea(html, "body") == "A last word."
    assert "New status: A closed ticket cannot change" in html
    assert not ticket.messages.filter(kind="note").exists()  # nothing half done: no note without its status


def form_data(token: str, **overrides: str) -> dict[str, str]:
    return {"name": "Grace Hopper", "email": "grace@globetrotter.example", "subject": "Refund for trip 4711",
            "message": "The hotel was cancelled.", "website": "", "token": token, **overrides}


def old_token() -> str:
    with time_machine.travel(NOW - dt.timedelta(minutes=5), tick=False):
        return SupportRequestForm.new_token()


def test_the_web_form_says_its_limit_and_keeps_a_message_over_it(desk: Desk) -> None:
    with time_machine.travel(NOW, tick=False):
        page = Client().get("/support/").content.decode()
        assert "maxlength" not in page  # the browser would cut a pasted message at it, without a word
        assert "Up to 20,000 characters." in page and 'aria-describedby="id_message_hint"' in page
        message = "Our group booking: " + "name, passport, seat; " * 1000 + "end"
        response = Client().post("/support/", form_data(old_token(), message=message))
    html = response.content.decode()
    assert response.status_code == 400
    assert textarea(html, "message") == message
    assert f"The message has 22,022 characters; the limit is {MESSAGE_LIMIT:,}." in html
    assert not Ticket.objects.exists()


def test_the_web_forms_rate_limit_keeps_the_message_and_says_when_it_can_be_sent(desk: Desk) -> None:
    client = Client()
    with time_machine.travel(NOW, tick=False):
        for i in range(5):
            assert client.post("/support/", form_data(old_token(), subject=f"Request {i}")).status_code == 200
    later = NOW + dt.timedelta(minutes=3)
    words = "Sixth request: please also cancel the return flight on 2 December."
    with time_machine.travel(later, tick=False):
        limited = client.post("/support/", form_data(old_token(), subject="One more thing", message=words))
    html = limited.content.decode()
    assert limited.status_code == 429 and limited["Retry-After"] == "420"  # 7 minutes left of the 10-minute window
    assert textarea(html, "message") == words and 'value="One more thing"' in html
    assert 'value="grace@globetrotter.example"' in html and 'value="Grace Hopper"' in html
    assert re.search(r"you can send it in 7 min, at 09:15 UTC", html)
    assert Ticket.objects.count() == 5
    token = re.search(r'name="token" value="([^"]+)"', html)
    assert token is not None
    with time_machine.travel(NOW + dt.timedelta(minutes=10, seconds=1), tick=False):
        # Sent as it was kept: the page's own token, the same words.
        again = client.post("/support/", form_data(token.group(1), subject="One more thing", message=words))
    assert again.status_code == 200 and Ticket.objects.get(subject="One more thing").messages.get(kind="inbound").body_text == words


def test_web_form_errors_name_the_fields_as_the_page_does(desk: Desk) -> None:
    with time_machine.travel(NOW, tick=False):
        response = Client().post("/support/", form_data(old_token(), message="", email="not an address"))
    html = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'<label for="id_message">Message</label>', html) and "Please write your message." in html
    assert re.search(r'<label for="id_email">Your e-mail address</label>', html)
    assert 'value="Refund for trip 4711"' in html  # what was typed in the other fields stays


# -- in a real browser ------------------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_customer_pasting_a_long_message_keeps_every_word_and_sees_the_limit(live_server: Any, page: Any) -> None:
    message = "\n".join(["Our group booking, one traveller a line:", *["name, passport number, seat preference"] * 520])
    page.goto(f"{live_server.url}/support/")
    assert page.locator("#id_message_hint").inner_text() == "Up to 20,000 characters."
    page.fill("#id_name", "Grace Hopper")
    page.fill("#id_email", "grace@globetrotter.example")
    page.fill("#id_subject", "Group booking")
    page.fill("#id_message", message)
    count = page.locator("#id_message_count")
    over = len(message) - MESSAGE_LIMIT
    assert count.inner_text() == f"{len(message):,} of 20,000 characters: {over:,} too many"
    assert page.input_value("#id_message") == message  # nothing cut: no maxlength
    page.wait_for_timeout(2100)  # the form refuses what is sent within 2 s of loading (bots)
    page.click("#support-form button[type=submit]")
    page.wait_for_selector("#id_message_errors")
    assert f"The message has {len(message):,} characters" in page.locator("#id_message_errors").inner_text()
    assert page.input_value("#id_message") == message
    page.fill("#id_message", message[:19_000])
    assert page.locator("#id_message_count").inner_text() == "19,000 of 20,000 characters"
    page.wait_for_timeout(2100)
    page.click("#support-form button[type=submit]")
    page.wait_for_selector("#done")
    assert Ticket.objects.get().messages.get(kind="inbound").body_text == message[:19_000]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_agent_is_told_a_reply_cannot_be_delivered_and_keeps_it_as_a_note(
    desk: Desk, live_server: Any, page: Any
) -> None:
    ticket = actions.do_open_ticket(Inbound(channel="phone", subject="Call from +1 212 555 0100",
                                            body_text="Wants a refund", from_address="+1 212 555 0100"))
    desk.agent.set_password("agent-password")
    desk.agent.save()
    page.goto(f"{live_server.url}/desk/tickets/{ticket.pk}/")
    page.fill("#id_username", "agent")
    page.fill("#id_password", "agent-password")
    page.click("button[type=submit]")
    page.wait_for_selector("#reply-form")
    warning = page.locator("#reply-undeliverable")
    assert "This reply cannot be delivered: no e-mail address for this requester" in warning.inner_text()
    text = "Called back at 15:00, no answer; voicemail left."
    page.fill("#reply-form textarea", text)
    page.select_option("#reply-form select[name=kind]", "reply")
    page.click("#reply-form button[type=submit]")
    page.wait_for_selector("#reply-errors")
    assert page.input_value("#reply-form textarea") == text
    page.select_option("#reply-form select[name=kind]", "note")
    page.click("#reply-form button[type=submit]")
    page.wait_for_selector("article.message.note")
    assert text in page.locator("article.message.note").inner_text()
    assert page.input_value("#reply-form textarea") == ""
    assert list(ticket.messages.values_list("kind", flat=True)) == ["inbound", "note"]
