"""Consent with proof, double opt-in, RFC 8058 one-click unsubscribe, suppression, an agent's opt-out."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client, TestCase

from accord.access.roles import grant
from accord.customers.models import Account, Contact, ContactPoint
from accord.desk.models import Ticket
from accord.outreach import consent as service
from accord.outreach.models import Consent, ConsentEvent, Purpose, Suppression

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada() -> Contact:
    account = Account.objects.create(name="Acme", external_id="ACME")
    c = Contact.objects.create(account=account, name="Ada Lovelace", external_id="C-ADA")
    ContactPoint.objects.create(contact=c, kind="email", value="ada@example.com", primary=True)
    return c


@pytest.fixture
def news() -> Purpose:
    return Purpose.objects.create(name="newsletter", title="the monthly newsletter")


def _link(body: str, kind: str) -> str:
    m = re.search(rf"http://[^\s]+/{kind}/([^/\s]+)/", body)
    assert m, body
    return m.group(0).split("127.0.0.1:8000", 1)[1]


def test_double_opt_in_confirms_only_by_post_and_keeps_its_proof(ada: Contact, news: Purpose) -> None:
    mail.outbox.clear()
    with TestCase.captureOnCommitCallbacks(execute=True):
        consent = service.request(ada, news, Consent.Source.WEB)
    assert consent.status == "pending" and not service.mailable(ada, news).ok
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ada@example.com"]
    url = _link(mail.outbox[0].body, "c")
    client = Client()
    page = client.get(url)  # a mail scanner following the link
    assert page.status_code == 200 and "Receive the monthly newsletter at ada@example.com?" in page.content.decode()
    assert Consent.objects.get().status == "pending"
    done = client.post(url, {"confirm": "1"}, REMOTE_ADDR="192.0.2.7")
    assert done.status_code == 200 and "Thank you" in done.content.decode()
    consent = Consent.objects.get()
    assert consent.status == "confirmed" and consent.confirmed_at is not None
    assert "double opt-in confirmed by ada@example.com" in consent.proof and "192.0.2.7" in consent.proof
    assert service.mailable(ada, news).ok
    assert [e.status for e in ConsentEvent.objects.order_by("id")] == ["pending", "confirmed"]
    again = client.post(url, {"confirm": "1"})  # the same link once more: out of date
    assert again.status_code == 400 and "out of date" in again.content.decode()


def _confirmed(ada: Contact, news: Purpose) -> Consent:
    consent = service.request(ada, news, Consent.Source.WEB, send=False)
    service.confirm(service.link_token(consent, "confirm"))
    return Consent.objects.get(pk=consent.pk)


def test_rfc8058_headers_and_one_click_post_without_cookies(ada: Contact, news: Purpose) -> None:
    consent = _confirmed(ada, news)
    headers = service.headers(consent)
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(r"<(https?://[^>]+)>", headers["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    path = url.split("127.0.0.1:8000", 1)[1]
    client = Client(enforce_csrf_checks=True)  # a mailbox provider: no cookie, no CSRF token
    page = client.get(path)
    assert page.status_code == 200 and "Stop receiving the monthly newsletter" in page.content.decode()
    assert Consent.objects.get().status == "confirmed"  # a GET changes nothing
    done = client.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert done.status_code == 200 and "You are unsubscribed" in done.content.decode()
    assert Consent.objects.get().status == "withdrawn"
    assert not service.mailable(ada, news).ok and service.mailable(ada, news).why == "consent withdrawn"


def test_forged_replayed_and_erased_links(ada: Contact, news: Purpose) -> None:
    consent = _confirmed(ada, news)
    token = service.link_token(consent, "unsubscribe")
    client = Client()
    forged = client.post(f"/u/{token[:-3]}abc/")
    assert forged.status_code == 400 and "not valid" in forged.content.decode()
    wrong_kind = client.post(f"/u/{service.link_token(consent, 'confirm')}/")  # a confirm token is no unsubscribe
    assert wrong_kind.status_code == 400
    assert client.post(f"/u/{token}/").status_code == 200
    # the contact opts in again: the old unsubscribe link (a replay) no longer acts on the new consent
    service.request(ada, news, Consent.Source.WEB, send=False)
    _ = service.confirm(service.link_token(Consent.objects.get(), "confirm"))
    replay = client.post(f"/u/{token}/")
    assert replay.status_code == 400 and "out of date" in replay.content.decode()
    assert Consent.objects.get().status == "confirmed"
    # an erased person: answered 200, saying nothing about anyone
    fresh = service.link_token(Consent.objects.get(), "unsubscribe")
    ada.delete()
    gone = client.post(f"/u/{fresh}/")
    assert gone.status_code == 200 and "ada" not in gone.content.decode().lower()


def test_imports_without_proof_stay_pending_and_suppression_wins(ada: Contact, news: Purpose, tmp_path: Path) -> None:
    bob = Contact.objects.create(name="Bob", external_id="C-BOB")
    ContactPoint.objects.create(contact=bob, kind="email", value="bob@example.com")
    f = tmp_path / "consents.csv"
    f.write_text("contact,purpose,address,proof\nC-ADA,newsletter,,\nbob@example.com,newsletter,,"
                 "opted in at fair 2026-05-01 form 42\nC-NOBODY,newsletter,,\nC-ADA,nope,,\n")
    out, err = StringIO(), StringIO()
    call_command("consent", "import", str(f), stdout=out, stderr=err)
    assert "imported 1 confirmed (with proof), 1 pending" in out.getvalue() and "rejected 2" in out.getvalue()
    assert "line 4: no contact" in err.getvalue() and "line 5: no purpose 'nope'" in err.getvalue()
    assert Consent.objects.get(contact=ada).status == "pending"
    bob_consent = Consent.objects.get(contact=bob)
    assert bob_consent.status == "confirmed" and bob_consent.proof == "imported: opted in at fair 2026-05-01 form 42"
    assert service.mailable(bob, news).ok
    call_command("consent", "suppress", "BOB@example.com", "--reason", "hard_bounce", stdout=StringIO())
    assert Suppression.objects.get().address == "bob@example.com"
    assert service.mailable(bob, news).why == "suppressed (hard_bounce)"
    with pytest.raises(CommandError, match="missing column"):
        bad = tmp_path / "bad.csv"
        bad.write_text("who,what\n")
        call_command("consent", "import", str(bad))


def test_an_agent_opts_a_contact_out_in_one_click(ada: Contact, news: Purpose) -> None:
    surveys = Purpose.objects.create(name="surveys", title="surveys")
    _confirmed(ada, news)
    service.request(ada, surveys, Consent.Source.WEB, send=False)
    agent = User.objects.create_user("agent", password="pw-agent-1", is_staff=True)
    grant(agent, "agent")
    finance = User.objects.create_user("fin", password="pw-fin-1", is_staff=True)
    grant(finance, "finance")
    client = Client()
    client.force_login(finance)
    assert client.post(f"/outreach/contacts/{ada.pk}/opt-out/").status_code == 403
    assert Consent.objects.filter(status="withdrawn").count() == 0
    client.force_login(agent)
    assert client.get(f"/outreach/contacts/{ada.pk}/opt-out/").status_code == 405
    ticket = Ticket.objects.create(account=ada.account, contact=ada, channel="email", subject="Stop the newsletter")
    page = client.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert f'action="/outreach/contacts/{ada.pk}/opt-out/"' in page and "Stop marketing mail to Ada Lovelace" in page
    done = client.post(f"/outreach/contacts/{ada.pk}/opt-out/", {"next": "/desk/", "reason": "asked on T-1"})
    assert done.status_code == 302 and done["Location"] == "/desk/"
    assert set(Consent.objects.values_list("status", flat=True)) == {"withdrawn"}
    event = ConsentEvent.objects.filter(status="withdrawn").first()
    assert event is not None and event.source == "desk" and event.user == agent and event.detail == "asked on T-1"
    evil = client.post(f"/outreach/contacts/{ada.pk}/opt-out/", {"next": "https://evil.example/"})
    assert evil["Location"] == "/"


def test_command_line_request_and_withdraw(ada: Contact, news: Purpose) -> None:
    out = StringIO()
    call_command("consent", "request", "C-ADA", "newsletter", stdout=out)
    assert "pending (ada@example.com) - confirmation mailed" in out.getvalue()
    with pytest.raises(CommandError, match="no purpose 'ads'"):
        call_command("consent", "request", "C-ADA", "ads")
    with pytest.raises(CommandError, match="not an e-mail address"):
        call_command("consent", "request", "C-ADA", "newsletter", "--address", "nope")
    call_command("consent", "withdraw", "ada@example.com", stdout=out)
    assert Consent.objects.get().status == "withdrawn"
    out = StringIO()
    call_command("consent", "list", "--contact", "C-ADA", stdout=out)
    assert "withdrawn" in out.getvalue() and "1 consent(s)" in out.getvalue()
