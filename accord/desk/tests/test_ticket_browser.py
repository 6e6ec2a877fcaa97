"""In a real browser: link an unknown requester and see the clocks start, insert a canned reply, see another
agent on the same ticket; every new or changed page without accessibility violations (axe)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from accord.access.roles import grant
from accord.desk.models import CannedReply, Ticket

from .conftest import Desk
from .test_agent_ui import open_ticket

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page: Any, url: str, username: str, password: str) -> None:
    page.goto(url)
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def no_violations(page: Any, axe: Any, what: str) -> None:
    found = axe.violations(page)
    assert not found, axe.describe(what, found)
    assert not axe.duplicate_ids(page), what
    assert not (problems := axe.page_problems(page)), f"{what}: {problems}"


def test_link_a_requester_insert_a_canned_reply_and_see_a_colleague(desk: Desk, live_server: Any, page: Any,
                                                                    browser: Any, axe: Any, settings: Any) -> None:
    settings.ACCORD_DESK_PRESENCE_POLL = 0.5
    desk.agent.set_password("agent-password")
    desk.agent.first_name = "Ann"
    desk.agent.save()
    manager = User.objects.create_user("meg", "meg@accord.example", "meg-password", is_staff=True,
                                       first_name="Meg", last_name="Manager")
    grant(manager, "manager")
    CannedReply.objects.create(title="Promise", body="Dear {customer_name}, about {ticket_ref}: we answer by "
                                                     "{promised_time}. {agent_name}")
    ticket = open_ticket("Who am I", timezone.now() - dt.timedelta(minutes=20), sender="stranger@nowhere.example")
    url = f"{live_server.url}/desk/tickets/{ticket.pk}/"

    log_in(page, url, "agent", "agent-password")
    page.wait_for_selector("#thread")
    assert "No agreement applies: no clocks." in page.locator("#clocks").inner_text()
    no_violations(page, axe, "ticket of an unknown requester")

    # Link the requester: the clocks start, counted from the ticket's creation.
    page.click("#link-requester")
    page.wait_for_selector("#link-form")
    no_violations(page, axe, "link requester page")
    page.select_option("#id_contact", str(desk.contact.pk))
    page.click("#link-form button[type=submit]")
    page.wait_for_selector("#action-done")
    assert "linked to Grace Hopper" in page.locator("#action-done").inner_text()
    assert page.locator("#clocks tbody tr[data-kind]").count() == 2
    assert "running" in page.locator("#clocks tr[data-kind=first_response]").inner_text()
    assert page.locator("#ticket-agreement a").inner_text() == "platinum-sla"
    ticket.refresh_from_db()
    assert ticket.account == desk.account and ticket.clocks.get(kind="first_response").started_at == ticket.created_at

    # A canned reply, with the keyboard: its placeholders are filled for this ticket.
    page.focus("#canned-select")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "canned-insert"
    page.keyboard.press("Enter")
    text = page.input_value("#reply-form textarea")
    assert text.startswith(f"Dear Grace Hopper, about {ticket.reference}: we answer by ")
    assert text.endswith(" Ann") and "{" not in text
    assert page.evaluate("document.activeElement.tagName") == "TEXTAREA"
    no_violations(page, axe, "ticket with a canned reply inserted")

    # A colleague opens the same ticket: each sees the other.
    other = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        second = other.new_page()
        second.set_default_timeout(20_000)
        log_in(second, url, "meg", "meg-password")
        second.wait_for_selector("#thread")
        page.wait_for_function("document.getElementById('presence').textContent.includes('Meg Manager')")
        assert page.locator("#presence").inner_text() == "Meg Manager is also viewing."
        assert page.get_attribute("#presence", "aria-live") == "polite"
        # Ann has text in her reply box: Meg is told she is replying.
        second.wait_for_function("document.getElementById('presence').textContent === 'Ann is also replying.'")
        no_violations(second, axe, "ticket with a colleague's presence")
        second.goto(f"{live_server.url}/desk/canned/")
        no_violations(second, axe, "canned replies (manager)")
        second.goto(f"{live_server.url}/desk/new/")
        no_violations(second, axe, "new ticket page")
        second.select_option("#id_contact", str(desk.contact.pk))
        second.select_option("#id_channel", "phone")
        second.fill("#id_duration_minutes", "")
        second.fill("#id_subject", "Called about a refund")
        second.fill("#id_body", "Wants the refund status.")
        second.click("#new-ticket-form button[type=submit]")
        second.wait_for_selector("#form-errors")
        assert "How long was the call?" in second.locator("#id_duration_minutes_errors").inner_text()
        assert second.input_value("#id_body") == "Wants the refund status."
        no_violations(second, axe, "new ticket page with errors")
        second.fill("#id_duration_minutes", "4")
        second.click("#new-ticket-form button[type=submit]")
        second.wait_for_selector("#action-done")
        logged = Ticket.objects.get(subject="Called about a refund")
        assert logged.clocks.count() == 2 and logged.messages.get().meta["duration_seconds"] == 240
        second.goto(f"{live_server.url}/desk/tickets/{logged.pk}/merge/")
        no_violations(second, axe, "merge page")
        second.fill("#id_into", str(logged.pk))
        second.click("#merge-form button[type=submit]")
        second.wait_for_selector("#form-errors")
        assert "cannot be merged into itself" in second.locator("#id_into_errors").inner_text()
        no_violations(second, axe, "merge page with errors")
    finally:
        other.close()


def test_r_focuses_the_reply_box(desk: Desk, live_server: Any, page: Any) -> None:
    desk.agent.set_password("agent-password")
    desk.agent.save()
    ticket = open_ticket("Help", timezone.now())
    log_in(page, f"{live_server.url}/desk/tickets/{ticket.pk}/", "agent", "agent-password")
    page.wait_for_selector("#thread")
    # keys.js is deferred: it listens once the document is parsed, which #thread's presence alone does not say
    page.wait_for_load_state("domcontentloaded")
    page.focus("#merge-link")
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.name") == "body"
    page.keyboard.type("r")  # in the box, r is a letter again
    assert page.input_value("#reply-form textarea") == "r"
