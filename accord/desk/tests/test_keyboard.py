"""An agent works a ticket from the queue to a sent reply with the keyboard only (docs/accessibility.md's keys).

At every step the test checks where focus is (the focus order) and that it shows (our focus ring: a computed
outline of at least 2 px), and saves a screenshot under var/test/keyboard/ (ACCORD_VAR_DIR) to be looked at.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from accord.desk.models import Message, Ticket

from .conftest import Desk
from .test_agent_ui import open_ticket

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FOCUS = """() => {
  const e = document.activeElement, s = getComputedStyle(e);
  return {tag: e.tagName.toLowerCase(), id: e.id, cls: e.className, text: (e.innerText || '').trim().slice(0, 60),
          outline: s.outlineStyle === 'none' ? 0 : parseFloat(s.outlineWidth), shadow: s.boxShadow};
}"""


class Steps:
    def __init__(self, page: Any) -> None:
        self.page = page
        self.n = 0
        self.dir = settings.VAR_DIR / "keyboard"
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("*.png"):
            old.unlink()

    def press(self, key: str, name: str) -> dict[str, Any]:
        """Press a key, then where focus went (it must show) and a screenshot."""
        self.page.keyboard.press(key)
        return self.focused(name)

    def focused(self, name: str, *, visible: bool = True) -> dict[str, Any]:
        """Where focus is now; it must show (outline of 2 px or more, or a box-shadow ring); a screenshot."""
        info: dict[str, Any] = self.page.evaluate(FOCUS)
        if visible:
            assert info["outline"] >= 2 or info["shadow"] not in ("", "none"), f"{name}: focus does not show: {info}"
        self.n += 1
        self.page.screenshot(path=str(self.dir / f"{self.n:02d}-{name}.png"))
        return info


def test_an_agent_works_a_ticket_from_the_queue_to_a_sent_reply_by_keyboard(desk: Desk, live_server: Any,
                                                                             page: Any) -> None:
    now = timezone.now()
    open_ticket("Low priority question", now, priority="low")
    urgent = open_ticket("Urgent outage at checkout", now, priority="urgent")
    page.goto(f"{live_server.url}/login/")
    page.wait_for_function("document.activeElement.id === 'id_username'")  # the login form's autofocus
    page.keyboard.press("Shift+Tab")  # the skip link comes first on every page
    steps = Steps(page)
    info = steps.focused("login-skip-link")
    assert info["cls"] == "skip-link", info
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUS)["id"] == "id_username"
    page.keyboard.type("agent")
    page.keyboard.press("Tab")
    page.keyboard.type("agent-password")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/desk/")

    # The queue: skip link, Enter skips the header's links; j / k walk the tickets, the most due first.
    assert steps.press("Tab", "queue-skip-link")["text"] == "Skip to content"
    page.keyboard.press("Enter")
    first_tab = steps.press("Tab", "queue-first-view")
    assert (first_tab["tag"], first_tab["text"].split()[0]) == ("a", "Open"), "after the skip link, the views"
    page.locator("#main").focus()
    first = steps.press("j", "queue-j")
    assert first["cls"] == "ticket-link" and first["text"] == urgent.reference
    assert steps.press("j", "queue-j-again")["text"] != urgent.reference
    assert steps.press("k", "queue-k")["text"] == urgent.reference
    page.keyboard.press("?")  # the help lists the keys, and Esc closes it
    assert page.locator("#shortcuts").evaluate("d => d.open")
    steps.focused("help-dialog")
    page.keyboard.press("Escape")
    assert not page.locator("#shortcuts").evaluate("d => d.open")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/desk/tickets/{urgent.pk}/")

    # The ticket: p, s, a reach priority, status and assignment; typing picks an option; Tab, Enter update.
    assert steps.press("p", "ticket-p")["id"] == "id_update_priority"
    page.keyboard.type("h")  # high
    page.keyboard.press("s")  # a key in a select picks an option: the shortcut waits until focus leaves it
    assert page.evaluate(FOCUS)["id"] == "id_update_priority"
    assert steps.press("Tab", "ticket-tab-to-status")["id"] == "id_update_status"
    page.keyboard.type("p")  # pending
    assert steps.press("Tab", "ticket-tab-to-assign")["id"] == "id_update_assign_to_me"
    page.keyboard.press("Space")
    assert steps.press("Tab", "ticket-tab-to-assign-select")["id"] == "id_update_assign"
    assert steps.press("Tab", "ticket-tab-to-update")["text"] == "Update"
    page.keyboard.press("Enter")
    page.wait_for_selector("#action-done")
    done = steps.focused("ticket-updated", visible=False)
    assert done["id"] == "action-done" and done["text"] == "Ticket updated."
    urgent.refresh_from_db()
    assert (urgent.priority, urgent.status, urgent.assignee) == ("high", "pending", desk.agent)

    # r: the reply box; Ctrl+Enter sends it.
    assert steps.press("r", "ticket-r")["id"] == "id_reply_body"
    page.keyboard.type("We are on it: payments provider incident.")
    assert steps.press("Tab", "reply-tab-to-kind")["id"] == "id_reply_kind"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("article.message.reply")
    sent = steps.focused("reply-sent", visible=False)
    assert sent["id"] == "action-done" and sent["text"] == "Reply sent."
    reply = Message.objects.get(ticket=urgent, kind="reply")
    assert reply.body_text == "We are on it: payments provider incident." and reply.author_user == desk.agent

    # n: on to the next ticket.
    with page.expect_navigation():
        page.keyboard.press("n")
    assert page.url != f"{live_server.url}/desk/tickets/{urgent.pk}/"
    assert Ticket.objects.filter(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]), is_open=True).exists()
    assert steps.n >= 14


def test_single_key_shortcuts_leave_text_boxes_alone_and_can_be_turned_off(desk: Desk, live_server: Any,
                                                                          page: Any) -> None:
    ticket = open_ticket("Question", timezone.now())
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "agent")
    page.fill("#id_password", "agent-password")
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/desk/tickets/{ticket.pk}/")
    page.focus("#id_reply_body")
    page.keyboard.type("upsr")  # letters typed in the reply stay there: no shortcut fires
    assert page.input_value("#id_reply_body") == "upsr" and page.url.endswith(f"/tickets/{ticket.pk}/")
    page.locator("#main").focus()
    page.keyboard.press("?")
    page.locator("#shortcuts-enabled").focus()
    page.keyboard.press("Space")  # off, in this browser
    assert not page.locator("#shortcuts-enabled").is_checked()
    page.keyboard.press("Escape")
    page.locator("#main").focus()
    page.keyboard.press("r")
    assert page.evaluate(FOCUS)["id"] == "main", "a shortcut acted after being turned off"
    page.reload()
    page.locator("#main").focus()
    page.keyboard.press("u")
    assert page.url.endswith(f"/tickets/{ticket.pk}/"), "turned off is remembered"
