"""A public reply reaches the customer on a channel they can receive: e-mail for web and phone tickets, the
channel's reply URL for webhook tickets; where nothing can reach them, the agent is told before sending."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from rest_framework.test import APIClient

from accord.desk import actions, mail
from accord.desk.actions import Inbound
from accord.desk.models import Ticket, WebhookChannel
from accord.desk.outbound import NO_ADDRESS
from accord.lib.smtp import SmtpSink, free_port

from .conftest import Desk
from .test_mail import email

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp(settings: Any) -> Iterator[SmtpSink]:
    """Desk mail goes to a real SMTP server on loopback."""
    with SmtpSink() as sink:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
        yield sink


class Receiver:
    """A loopback HTTP server standing in for a social channel's reply endpoint: answers with the given statuses
    (the last one repeats) and keeps every request."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses) or [200]
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((dict(self.headers.items()), body))
                status = receiver.statuses[min(len(receiver.requests), len(receiver.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/replies"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def web_ticket(address: str = "grace@globetrotter.example") -> Ticket:
    return actions.do_open_ticket(Inbound(channel="web", subject="Refund for trip 4711", body_text="Hotel cancelled",
                                          from_address=address, from_name="Grace"))


def phone_ticket(caller: str) -> Ticket:
    return actions.do_open_ticket(Inbound(channel="phone", subject=f"Call from {caller}", body_text="Wants a refund",
                                          from_address=caller))


def test_a_reply_on_a_web_form_ticket_is_mailed_to_the_address_typed_in_the_form(
    desk: Desk, smtp: SmtpSink, django_capture_on_commit_callbacks: Any
) -> None:
    ticket = web_ticket("someone.new@elsewhere.example")
    with django_capture_on_commit_callbacks(execute=True):
        reply = actions.do_reply(ticket, desk.agent, "Your refund is on its way.")
    (_sender, to, sent), = smtp.wait_for(1)
    assert to == ["someone.new@elsewhere.example"]
    assert sent["Subject"] == f"Re: Refund for trip 4711 [{ticket.reference}]"
    assert "Your refund is on its way." in sent.get_payload() and sent["Message-ID"] == reply.message_id
    reply.refresh_from_db()
    assert reply.to_addresses == ["someone.new@elsewhere.example"] and not reply.flagged
    # The customer answers the e-mail: it comes back onto the same ticket.
    answer = mail.store(email(sender="someone.new@elsewhere.example", subject="Re: thanks", In_Reply_To=reply.message_id or ""))
    assert answer.ticket == ticket


def test_a_reply_on_a_phone_ticket_is_mailed_to_the_callers_contact(
    desk: Desk, smtp: SmtpSink, django_capture_on_commit_callbacks: Any
) -> None:
    ticket = phone_ticket("+44 20 7946 0000")  # Grace's number
    assert ticket.contact == desk.contact
    with django_capture_on_commit_callbacks(execute=True):
        actions.do_reply(ticket, desk.agent, "As discussed on the phone: rebooked.")
    (_sender, to, sent), = smtp.wait_for(1)
    assert to == ["grace@globetrotter.example"] and "rebooked" in sent.get_payload()


def test_a_failed_send_is_flagged_with_its_error_on_the_reply(
    desk: Desk, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens there
    ticket = web_ticket()
    with django_capture_on_commit_callbacks(execute=True):
        reply = actions.do_reply(ticket, desk.agent, "Hello")
    reply.refresh_from_db()
    assert reply.flagged and reply.flag_reason.startswith("not sent:")


def test_a_reply_that_cannot_reach_the_caller_is_refused_before_anything_is_stored(
    desk: Desk, smtp: SmtpSink, django_capture_on_commit_callbacks: Any
) -> None:
    ticket = phone_ticket("+1 212 555 0100")  # an unknown number: a new contact with no e-mail address
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ValidationError) as refused:
        actions.do_reply(ticket, desk.agent, "We will call you back.")
    assert refused.value.message_dict == {"body_text": [NO_ADDRESS]}
    assert not ticket.messages.filter(kind="reply").exists() and smtp.messages == []
    assert ticket.clocks.count() == 0  # no account, no agreement: nothing to stop either
    note = actions.do_add_note(ticket, desk.agent, "We will call you back.")
    assert note.kind == "note"


def test_the_ticket_page_says_a_reply_cannot_be_delivered_and_keeps_the_text_for_a_note(desk: Desk) -> None:
    ticket = phone_ticket("+1 212 555 0100")
    client = Client()
    client.force_login(desk.agent)
    page = client.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert 'id="reply-undeliverable"' in page
    assert "This reply cannot be delivered: no e-mail address for this requester" in page
    text = "Called back: no answer. Will try again at 15:00."
    refused = client.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": text, "kind": "reply", "status": ""})
    shown = refused.content.decode()
    assert refused.status_code == 400 and 'id="reply-errors"' in shown and "no e-mail address for this requester" in shown
    assert f"{text}</textarea>" in shown  # the text is still in the box
    assert not ticket.messages.filter(kind="reply").exists()
    as_note = client.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": text, "kind": "note", "status": ""})
    assert as_note.status_code == 302 and ticket.messages.get(kind="note").body_text == text
    known = phone_ticket("+442079460000")
    page = client.get(f"/desk/tickets/{known.pk}/").content.decode()
    assert "reply-undeliverable" not in page and "A public reply goes by e-mail to grace@globetrotter.example." in page


def post_webhook(channel: WebhookChannel, payload: dict[str, str]) -> Any:
    body = json.dumps(payload).encode()
    return APIClient().generic("POST", f"/api/v1/webhooks/{channel.name}/", body, content_type="application/json",
                               HTTP_X_ACCORD_SIGNATURE=channel.signature(body))


def test_a_reply_on_a_webhook_ticket_is_posted_signed_to_the_channels_reply_url(
    desk: Desk, django_capture_on_commit_callbacks: Any
) -> None:
    with Receiver(200) as receiver:
        channel = WebhookChannel.objects.create(name="x-social", secret="s3cret", reply_url=receiver.url)
        assert post_webhook(channel, {"id": "m1", "from": "@globetrotter", "text": "Where is my refund?"}).status_code == 201
        ticket = Ticket.objects.get()
        with django_capture_on_commit_callbacks(execute=True):
            reply = actions.do_reply(ticket, desk.agent, "It left our account today.")
    (headers, body), = receiver.requests
    assert headers["X-Accord-Signature"] == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    payload = json.loads(body)
    assert payload["to"] == "@globetrotter" and payload["text"] == "It left our account today."
    assert payload["in_reply_to"] == "m1" and payload["ticket"] == ticket.reference
    reply.refresh_from_db()
    assert not reply.flagged and reply.message_id == f"<{payload['id']}@x-social.webhook>"
    # The customer answers our reply on the channel: it threads onto the ticket.
    answer = post_webhook(channel, {"id": "m2", "from": "@globetrotter", "text": "Thanks!", "in_reply_to": payload["id"]})
    assert answer.status_code == 201 and answer.json()["id"] == ticket.pk


@pytest.mark.parametrize(("statuses", "attempts", "reason"), [
    ([503, 503, 503], 3, "HTTP 503"),
    ([500, 200], 2, None),
    ([401], 1, "HTTP 401"),
])
def test_a_webhook_reply_is_retried_on_server_errors_and_flagged_when_it_fails(
    desk: Desk, statuses: list[int], attempts: int, reason: str | None, django_capture_on_commit_callbacks: Any
) -> None:
    with Receiver(*statuses) as receiver:
        channel = WebhookChannel.objects.create(name="x-social", secret="s3cret", reply_url=receiver.url)
        post_webhook(channel, {"id": "m1", "from": "@globetrotter", "text": "Hello?"})
        with django_capture_on_commit_callbacks(execute=True):
            reply = actions.do_reply(Ticket.objects.get(), desk.agent, "Hello!")
    assert len(receiver.requests) == attempts
    reply.refresh_from_db()
    if reason is None:
        assert not reply.flagged
    else:
        assert reply.flagged and reply.flag_reason.startswith("not sent:") and reason in reply.flag_reason


def test_a_webhook_reply_to_a_server_that_is_gone_is_flagged(desk: Desk, django_capture_on_commit_callbacks: Any) -> None:
    channel = WebhookChannel.objects.create(name="x-social", secret="s3cret",
                                            reply_url=f"http://127.0.0.1:{free_port()}/replies")
    post_webhook(channel, {"id": "m1", "from": "@globetrotter", "text": "Hello?"})
    with django_capture_on_commit_callbacks(execute=True):
        reply = actions.do_reply(Ticket.objects.get(), desk.agent, "Hello!")
    reply.refresh_from_db()
    assert reply.flagged and "refused" in reply.flag_reason.lower()
    client = Client()
    client.force_login(desk.agent)
    page = client.get(f"/desk/tickets/{reply.ticket_id}/").content.decode()
    assert html.escape(reply.flag_reason) in page  # on the page, not only in a tooltip


def test_a_webhook_ticket_without_a_reply_url_is_refused_unless_the_requester_has_an_e_mail_address(
    desk: Desk, django_capture_on_commit_callbacks: Any
) -> None:
    channel = WebhookChannel.objects.create(name="x-social", secret="s3cret")
    post_webhook(channel, {"id": "m1", "from": "@stranger", "text": "Hello?"})
    with pytest.raises(ValidationError, match="the x-social channel has no reply URL"):
        actions.do_reply(Ticket.objects.get(), desk.agent, "Hello!")
    post_webhook(channel, {"id": "m2", "from": "grace@globetrotter.example", "text": "Hello again"})
    ticket = Ticket.objects.get(messages__message_id="<m2@x-social.webhook>")
    with django_capture_on_commit_callbacks(execute=True):
        reply = actions.do_reply(ticket, desk.agent, "Hello Grace!")
    assert reply.to_addresses == ["grace@globetrotter.example"]
