"""The public web form under hostile use: its limit lives in the database (every process shares it, a cache
flush or a restart does not reset it) and counts the real client behind trusted proxies; its token is single-use."""

from __future__ import annotations

import re

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client, override_settings

from accord.access.models import Strike, UsedNonce
from accord.desk.forms import SupportRequestForm
from accord.desk.models import Ticket

from .conftest import Desk

pytestmark = pytest.mark.django_db
NOW = "2026-11-23 09:05:00+00:00"


def form_data(token: str, **overrides: str) -> dict[str, str]:
    return {
        "name": "Grace Hopper",
        "email": "grace@globetrotter.example",
        "subject": "Refund for trip 4711",
        "message": "The hotel was cancelled.",
        "website": "",
        "token": token,
        **overrides,
    }


def old_token() -> str:
    with time_machine.travel("2026-11-23 09:00:00+00:00", tick=False):
        return SupportRequestForm.new_token()


@time_machine.travel(NOW, tick=False)
def test_the_limit_is_kept_in_the_database_not_in_a_process(desk: Desk) -> None:
    client = Client(REMOTE_ADDR="198.51.100.4")
    for i in range(5):
        assert client.post("/support/", form_data(old_token(), subject=f"R{i}")).status_code == 200
    cache.clear()  # another process, or a restarted one, has an empty cache: the count is not there
    limited = Client(REMOTE_ADDR="198.51.100.4").post("/support/", form_data(old_token(), subject="R5"))
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert "R5" in limited.content.decode()  # what was typed is still in the form
    assert Strike.objects.filter(key="webform:addr:198.51.100.4").count() == 5
    assert Client(REMOTE_ADDR="198.51.100.5").post("/support/", form_data(old_token())).status_code == 200


@time_machine.travel(NOW, tick=False)
def test_a_forged_forwarded_header_does_not_escape_the_limit_without_trusted_proxies(desk: Desk) -> None:
    for i in range(5):
        c = Client(REMOTE_ADDR="198.51.100.9", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
        assert c.post("/support/", form_data(old_token(), subject=f"R{i}")).status_code == 200
    c = Client(REMOTE_ADDR="198.51.100.9", HTTP_X_FORWARDED_FOR="203.0.113.200")
    assert c.post("/support/", form_data(old_token())).status_code == 429


@time_machine.travel(NOW, tick=False)
@override_settings(ACCORD_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_behind_a_trusted_proxy_each_real_client_has_its_own_limit(desk: Desk) -> None:
    def post(client_address: str, subject: str) -> int:
        c = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"6.6.6.6, {client_address}")
        return c.post("/support/", form_data(old_token(), subject=subject)).status_code

    assert [post("203.0.113.1", f"A{i}") for i in range(6)] == [200] * 5 + [429]
    assert post("203.0.113.2", "B") == 200  # the proxy's other client is not blocked by the first
    assert Ticket.objects.count() == 6


@time_machine.travel(NOW, tick=False)
def test_a_form_token_is_spent_once_and_a_replay_gets_409_with_the_first_request(desk: Desk) -> None:
    token = old_token()
    first = Client().post("/support/", form_data(token))
    assert first.status_code == 200
    ticket = Ticket.objects.get()
    again = Client().post("/support/", form_data(token, subject="Sent twice"))
    page = again.content.decode()
    assert again.status_code == 409 and "already sent" in page and ticket.reference in page
    assert Ticket.objects.count() == 1 and Ticket.objects.get().subject == "Refund for trip 4711"
    assert UsedNonce.objects.get().result == ticket.reference
    fresh = re.search(r'href="(/support/)"', page)
    assert fresh is not None


@time_machine.travel(NOW, tick=False)
def test_a_refused_form_does_not_spend_its_token(desk: Desk) -> None:
    token = old_token()
    bad = Client().post("/support/", form_data(token, email="not an address"))
    assert bad.status_code == 400 and not UsedNonce.objects.exists()
    assert Client().post("/support/", form_data(token)).status_code == 200
