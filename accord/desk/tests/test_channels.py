"""Web form, phone call log and signed webhooks: each becomes a ticket on the right clocks; bad input refused."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
import time_machine
from django.core import mail as django_mail
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from accord.desk.forms import SupportRequestForm
from accord.desk.models import Message, Ticket, WebhookChannel

from .conftest import Desk

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clear_rate_limits() -> None:
    cache.clear()


def form_data(token: str, **overrides: str) -> dict[str, str]:
    return {"name": "Grace Hopper", "email": "grace@globetrotter.example", "subject": "Refund for trip 4711",
            "message": "The hotel was cancelled.", "website": "", "token": token, **overrides}


def old_token() -> str:
    with time_machine.travel("2026-11-23 09:00:00+00:00", tick=False):
        return SupportRequestForm.new_token()


@time_machine.travel("2026-11-23 09:05:00+00:00", tick=False)
def test_the_web_form_opens_a_ticket_for_the_known_contact_and_confirms(
    desk: Desk, django_capture_on_commit_callbacks: Any
) -> None:
    page = Client().get("/support/")
    assert page.status_code == 200 and 'name="website"' in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post("/support/", form_data(old_token()))
    assert response.status_code == 200
    ticket = Ticket.objects.get()
    assert ticket.reference in response.content.decode()
    assert (ticket.channel, ticket.account, ticket.contact) == ("web", desk.account, desk.contact)
    assert ticket.clocks.filter(kind="first_response").exists()
    assert len(django_mail.outbox) == 1 and ticket.reference in django_mail.outbox[0].subject


@time_machine.travel("2026-11-23 09:05:00+00:00", tick=False)
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"website": "http://spam.example"}, "Please leave this field empty."),
        ({"email": "not-an-address"}, "Enter a valid email address."),
        ({"message": ""}, "Please write your message."),
        ({"token": "forged"}, "This form is not valid"),
    ],
)
def test_the_web_form_refuses_bots_and_bad_input(desk: Desk, overrides: dict[str, str], message: str) -> None:
    response = Client().post("/support/", {**form_data(old_token()), **overrides})
    assert response.status_code == 400 and message in response.content.decode()
    assert not Ticket.objects.exists()


def test_a_form_sent_within_seconds_of_loading_is_refused(desk: Desk) -> None:
    with time_machine.travel("2026-11-23 09:00:00+00:00", tick=False):
        token = SupportRequestForm.new_token()
        response = Client().post("/support/", form_data(token))
    assert response.status_code == 400 and "That was quick" in response.content.decode()
    with time_machine.travel("2026-11-25 09:00:00+00:00", tick=False):
        expired = Client().post("/support/", form_data(token))
    assert expired.status_code == 400 and "expired" in expired.content.decode()


@time_machine.travel("2026-11-23 09:05:00+00:00", tick=False)
def test_the_web_form_is_rate_limited_per_address(desk: Desk) -> None:
    client = Client()
    statuses = [client.post("/support/", form_data(old_token(), subject=f"Request {i}")).status_code for i in range(7)]
    assert statuses == [200] * 5 + [429, 429]
    assert Ticket.objects.count() == 5


def test_a_phone_call_is_logged_for_the_caller_by_number(desk: Desk, api: APIClient) -> None:
    response = api.post("/api/v1/calls/", {"caller": "+44 20 7946 0000", "duration_seconds": 300,
                                           "notes": "Wants to move the flight", "priority": "high"}, format="json")
    assert response.status_code == 201, response.json()
    ticket = Ticket.objects.get(pk=response.json()["id"])
    assert (ticket.channel, ticket.contact, ticket.priority) == ("phone", desk.contact, "high")
    assert ticket.messages.get().meta == {"duration_seconds": 300}
    follow_up = api.post("/api/v1/calls/", {"caller": "+442079460000", "duration_seconds": 60, "notes": "Called back",
                                            "ticket": ticket.pk}, format="json")
    assert follow_up.status_code == 201 and ticket.messages.count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"caller": "call me maybe", "duration_seconds": 5, "notes": ""}, "caller"),
        ({"caller": "+4412345", "duration_seconds": -1, "notes": ""}, "duration_seconds"),
        ({"caller": "+4412345", "duration_seconds": 5, "notes": "", "mood": "angry"}, "mood"),
        ({"caller": "+4412345", "duration_seconds": 5, "notes": "", "ticket": 999999}, "ticket"),
    ],
)
def test_bad_call_logs_are_400_with_the_field(desk: Desk, api: APIClient, body: dict[str, Any], field: str) -> None:
    response = api.post("/api/v1/calls/", body, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"]
    assert not Ticket.objects.exists()


def signed(channel: WebhookChannel, payload: Any) -> tuple[bytes, str]:
    body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
    return body, "sha256=" + hmac.new(channel.secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(name: str, body: bytes, signature: str) -> Any:
    return APIClient().generic("POST", f"/api/v1/webhooks/{name}/", body, content_type="application/json",
                               HTTP_X_ACCORD_SIGNATURE=signature)


def test_a_signed_webhook_message_opens_a_ticket_threads_replies_and_is_idempotent(desk: Desk) -> None:
    channel = WebhookChannel.objects.create(name="x-social", secret="s3cret")
    body, sig = signed(channel, {"id": "m1", "from": "@globetrotter", "name": "Globetrotter", "text": "Where is my refund?"})
    first = post_webhook("x-social", body, sig)
    assert first.status_code == 201, first.json()
    again = post_webhook("x-social", body, sig)
    assert again.status_code == 200 and again.json() == {"duplicate": True}
    body2, sig2 = signed(channel, {"id": "m2", "from": "@globetrotter", "text": "Hello?", "in_reply_to": "m1"})
    assert post_webhook("x-social", body2, sig2).status_code == 201
    ticket = Ticket.objects.get()
    assert ticket.channel == "social" and ticket.messages.count() == 2
    assert Message.objects.filter(message_id="<m1@x-social.webhook>").exists()


def test_webhooks_refuse_bad_signatures_unknown_channels_and_bad_bodies(desk: Desk) -> None:
    channel = WebhookChannel.objects.create(name="x-social", secret="s3cret")
    body, sig = signed(channel, {"id": "m1", "from": "@a", "text": "hi"})
    bad_sig = post_webhook("x-social", body, "sha256=" + "0" * 64)
    assert bad_sig.status_code == 401 and bad_sig.json()["error"]["code"] == "not_authenticated"
    assert post_webhook("x-social", body, "").status_code == 401
    assert post_webhook("nope", body, sig).status_code == 404
    for payload, status in [(b"{not json", 400), ([1, 2], 400), ({"id": "m9", "from": "@a"}, 400),
                            ({"id": 5, "from": "@a", "text": "x"}, 400)]:
        raw, s = signed(channel, payload)
        response = post_webhook("x-social", raw, s)
        assert response.status_code == status, (payload, response.content)
        assert set(response.json()) == {"error"}
    assert not Ticket.objects.exists()
