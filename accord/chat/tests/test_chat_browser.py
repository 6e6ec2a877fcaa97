"""In a browser (Debian's Chromium), two contexts on one ASGI server (uvicorn, in this process, on the test
database): a customer chats in the widget on a host page while an agent answers in the console; the first
agent message stops the chat's first-response clock; the console announces a new chat and a message in
another chat in its live region; HTML typed by the visitor shows as text; the visitor's
connection drops and nothing typed meanwhile is lost; offline, the widget takes a message as an e-mail ticket."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from accord.chat.models import AgentConnection, ChatSession
from accord.desk.models import Message, SlaClock, Ticket

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def staff_login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def open_widget(page: Any, base: str, message: str) -> None:
    page.goto(f"{base}/chat/demo/")
    page.click("#accord-chat-open")
    page.fill("#accord-chat-name", "Grace")
    page.fill("#accord-chat-email", "grace@example.com")
    page.fill("#accord-chat-message", message)
    page.click("#accord-chat-form button[type=submit]")


def test_a_customer_chats_while_an_agent_answers_in_the_console(asgi_server: str, browser: Any, axe: Any,
                                                                desk: dict[str, Any]) -> None:
    base = asgi_server
    agent_ctx, visitor_ctx = browser.new_context(), browser.new_context()
    agent, visitor = agent_ctx.new_page(), visitor_ctx.new_page()
    for p in (agent, visitor):
        p.set_default_timeout(20_000)
    staff_login(agent, base, "ada")
    agent.goto(f"{base}/chat/console/")
    agent.wait_for_selector("#chat-state:has-text('Online')")
    wait_for(lambda: AgentConnection.objects.exists())

    open_widget(visitor, base, "My booking <script>alert(1)</script> failed")
    visitor.wait_for_selector("#accord-chat-status:has-text('connected')")
    ticket = Ticket.objects.get(channel="chat")
    # The console says what changed in its live region, once: the new chat, then a message in it while another
    # (none here) is open; nothing for the chat the agent has open.
    agent.wait_for_selector("#chat-news p")
    assert agent.locator("#chat-news p").all_inner_texts() == [f"New chat {ticket.reference} from Grace."]
    visitor.fill("#accord-chat-text", "Is anyone there?")
    visitor.click("#accord-chat-send")
    agent.wait_for_function("document.querySelectorAll('#chat-news p').length === 2")
    assert agent.locator("#chat-news p").last.inner_text() == f"New message in chat {ticket.reference}."
    agent.click(f"#chat-{ticket.pk} button")
    agent.wait_for_selector("#chat-thread p")
    assert "<script>alert(1)</script>" in agent.inner_text("#chat-thread")  # text, not markup
    visitor.wait_for_timeout(2100)  # the widget tells "typing" at most every 2 s; the last was for "Is anyone there?"
    visitor.fill("#accord-chat-text", "It says error 500")
    agent.wait_for_selector("#chat-typing:has-text('typing')")
    visitor.click("#accord-chat-send")
    agent.wait_for_selector("#chat-thread p:has-text('It says error 500')")
    assert agent.locator("#chat-news p").count() == 2, "a message in the open chat was announced"
    agent.fill("#chat-text", "Sorry Grace, fixing it now.")
    agent.click("#chat-send")
    visitor.wait_for_selector("#accord-chat-log p:has-text('fixing it now')")
    wait_for(lambda: SlaClock.objects.get(ticket=ticket, kind="first_response").status == "met")
    problems = axe.run(visitor, "#accord-chat") + axe.run(agent)
    assert not problems, axe.describe("the widget and the console", problems)
    assert axe.focus_hidden(visitor) == [] and axe.focus_hidden(agent) == [], "a control's focus does not show"

    # The visitor's connection drops (the page's WebSockets go through a route that can cut them): what they
    # type meanwhile is kept and sent once they are back, once.
    state = {"down": False, "current": None}

    def through(route: Any) -> None:
        if state["down"]:
            route.close()
            return
        route.connect_to_server()
        state["current"] = route

    visitor.route_web_socket("**/ws/chat/visitor/", through)
    visitor.reload()  # reconnects through the route, with the token kept in sessionStorage
    visitor.wait_for_selector("#accord-chat-status:has-text('connected')")
    assert "fixing it now" in visitor.inner_text("#accord-chat-log")  # the history came back
    state["down"] = True
    state["current"].close()
    visitor.wait_for_selector("#accord-chat-status:has-text('reconnecting')")
    visitor.fill("#accord-chat-text", "typed while offline")
    visitor.click("#accord-chat-send")
    assert "sending" in visitor.inner_text("#accord-chat-log")
    state["down"] = False
    agent.wait_for_selector("#chat-thread p:has-text('typed while offline')", timeout=30_000)
    visitor.wait_for_function("!document.getElementById('accord-chat-log').innerText.includes('sending')")
    assert Message.objects.filter(ticket=ticket, body_text="typed while offline").count() == 1
    assert ChatSession.objects.get(ticket=ticket).status == "open"
    agent_ctx.close()
    visitor_ctx.close()


def test_offline_the_widget_takes_a_message_that_becomes_an_email_ticket(asgi_server: str, browser: Any,
                                                                          desk: dict[str, Any]) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    open_widget(page, asgi_server, "Please call me back")
    page.wait_for_selector("#accord-chat-status:has-text('No agent is online')")
    ticket = Ticket.objects.get()
    assert ticket.channel == "email" and "answer by e-mail" in page.inner_text("#accord-chat-status")
    assert ticket.messages.get().from_address == "grace@example.com"
    context.close()
