"""Segments and campaigns sent to a real SMTP server on loopback: RFC 8058 headers, DKIM verified with dkimpy,
only confirmed and unsuppressed contacts, a sender killed mid-campaign, one-click unsubscribe, bounces."""

from __future__ import annotations

import datetime as dt
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes
from io import StringIO
from pathlib import Path
from typing import Any

import dkim
import pytest
import time_machine
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client

import accord
from accord.customers.models import Account, Contact, ContactPoint, Tier
from accord.desk.tests.conftest import dovecot  # noqa: F401 - the real Dovecot fixture of the desk's tests
from accord.insight.models import HealthScore, OrderLine
from accord.lib.ports import free_port
from accord.lib.processes import subprocess_env
from accord.outreach import bounces, campaigns, dkimsign, segments
from accord.outreach import consent as service
from accord.outreach.models import (
    Campaign,
    CampaignSend,
    Consent,
    ConsentEvent,
    Purpose,
    Segment,
    Suppression,
)

pytestmark = pytest.mark.django_db(transaction=True)
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
HTML = "<p>Hello {{ contact.name }} of {{ account.name }}</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>"
TEXT = "Hello {{ contact.first_name }},\n\nNews for {{ account.name }}.\n\nUnsubscribe: {{ unsubscribe_url }}\n"


class RawSink:
    """aiosmtpd on loopback keeping each message's bytes as received (DKIM is verified over them)."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], bytes]] = []
        self.lock = threading.Lock()
        self.hold_after: int | None = None  # take this many, then keep the next sender waiting for its answer
        self.released = threading.Event()
        self.pipelining = False  # say PIPELINING in the EHLO answer (aiosmtpd reads commands one by one anyway)
        self.refused: dict[str, str] = {}
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refused:
            return self.refused[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        with self.lock:
            self.received.append((list(envelope.rcpt_tos), bytes(envelope.original_content)))
            hold = self.hold_after is not None and len(self.received) > self.hold_after
        while hold and not self.released.is_set():
            await asyncio.sleep(0.02)
        return "250 OK"

    def messages(self) -> list[tuple[list[str], bytes]]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def sink() -> Iterator[RawSink]:
    s = RawSink()
    s.controller.start()
    try:
        yield s
    finally:
        s.released.set()
        s.controller.stop()


@pytest.fixture
def dkim_key(tmp_path: Path, settings: Any) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    (tmp_path / "dkim.pem").write_bytes(pem)
    settings.ACCORD_DKIM_KEY_FILE = str(tmp_path / "dkim.pem")
    settings.ACCORD_DKIM_SELECTOR, settings.ACCORD_DKIM_DOMAIN = "mail2026", "accord.example"
    dkimsign._load.cache_clear()
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def dns(record: bytes) -> Any:
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail2026._domainkey.accord.example."
        return record
    return lookup


@pytest.fixture
def world(settings: Any, sink: RawSink) -> dict[str, Any]:
    settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT = SMTP_BACKEND, "127.0.0.1", sink.port
    settings.ACCORD_PUBLIC_URL = "https://crm.accord.example"
    settings.ACCORD_UNSUBSCRIBE_MAILTO = "unsubscribe@accord.example"
    settings.DEFAULT_FROM_EMAIL = "news@accord.example"
    gold = Tier.objects.create(name="gold", rank=1)
    acme = Account.objects.create(name="Acme Travel", external_id="ACME", tier=gold)
    other = Account.objects.create(name="Other Ltd", external_id="OTHER")
    news = Purpose.objects.create(name="newsletter", title="the monthly newsletter")
    people: dict[str, Contact] = {}
    for key, status, account in [("ada", "confirmed", acme), ("bob", "confirmed", acme), ("cy", "pending", acme),
                                 ("dee", "withdrawn", acme), ("eve", "confirmed", acme), ("fay", None, acme),
                                 ("gil", "confirmed", other)]:
        c = Contact.objects.create(account=account, name=f"{key.title()} Person", external_id=f"C-{key}")
        ContactPoint.objects.create(contact=c, kind="email", value=f"{key}@example.com", primary=True)
        if status:
            Consent.objects.create(contact=c, purpose=news, status=status, source="import",
                                   address=f"{key}@example.com", proof="test" if status == "confirmed" else "")
        people[key] = c
    service.suppress("eve@example.com", Suppression.Reason.MANUAL)
    segment = Segment.objects.create(name="gold accounts", spec={"tier": ["gold"]})
    return {"news": news, "segment": segment, "people": people, "acme": acme}


def new_campaign(world: dict[str, Any], rate: float = 1000.0, **kw: Any) -> Campaign:
    c = Campaign(name=kw.pop("name", "December news"), purpose=world["news"], segment=kw.pop("segment", world["segment"]),
                 subject="News for {{ account.name }}", html=HTML, text=TEXT, rate=rate, **kw)
    c.full_clean()
    c.save()
    return campaigns.schedule(c)


def by_recipient(sink: RawSink) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for to, raw in sink.messages():
        found.setdefault(to[0], []).append(raw)
    return found


def test_a_campaign_reaches_only_confirmed_unsuppressed_contacts_signed_with_one_click_headers(
        world: dict[str, Any], sink: RawSink, dkim_key: bytes) -> None:
    campaign = new_campaign(world)
    out = StringIO()
    call_command("outreach", "send-campaign", str(campaign.pk), stdout=out)
    got = by_recipient(sink)
    assert sorted(got) == ["ada@example.com", "bob@example.com"]  # not cy (pending), dee (withdrawn), eve
    assert out.getvalue().startswith(f"campaign {campaign.pk}: sent 2, skipped 4 (consent pending 1, consent withdrawn 1, "
                                     "suppressed 1, no consent 1), failed 0"), out.getvalue()
    skipped = dict(CampaignSend.objects.filter(status="skipped").values_list("contact__external_id", "reason"))
    assert skipped == {"C-cy": "consent pending", "C-dee": "consent withdrawn", "C-eve": "suppressed (manual)",
                       "C-fay": "no consent"}
    for address, [raw] in got.items():
        msg = message_from_bytes(raw)
        url = re.fullmatch(r"<(https://crm\.accord\.example/u/([^/>]+)/)>, <mailto:unsubscribe@accord\.example\?subject="
                           r"unsubscribe%20([^>]+)>", " ".join(str(msg["List-Unsubscribe"]).split()))
        assert url, msg["List-Unsubscribe"]
        assert url.group(2) == url.group(3)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["Message-ID"] == CampaignSend.objects.get(address=address).message_id
        signature = dkim.DKIM(raw)
        assert signature.verify(dnsfunc=dns(dkim_key)), "DKIM signature does not verify"
        signed = set(signature.include_headers)
        assert {b"from", b"to", b"subject", b"date", b"message-id", b"list-unsubscribe",
                b"list-unsubscribe-post"} <= signed
        tampered = raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                               b"List-Unsubscribe-Post: List-Unsubscribe=Two-Clicks")
        assert not dkim.verify(tampered, dnsfunc=dns(dkim_key))  # the one-click header is covered
        assert msg.get_content_type() == "multipart/alternative"
        parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in msg.get_payload()}
        name = address.split("@")[0].title()
        assert parts["text/plain"].startswith(f"Hello {name},") and url.group(1) in parts["text/plain"]
        assert f"<p>Hello {name} Person of Acme Travel</p>" in parts["text/html"]
        assert str(msg["Subject"]) == "News for Acme Travel"
    assert Campaign.objects.get().status == "done"
    first = CampaignSend.objects.filter(status="sent").order_by("sent_at").first()
    assert first and first.sent_at and abs((first.sent_at - campaign.send_at).total_seconds()) < 60  # type: ignore[operator]
    # run again: everyone had theirs, nobody gets a second one
    call_command("outreach", "send-campaign", str(campaign.pk), stdout=StringIO())
    assert len(sink.messages()) == 2


def test_pipelined_smtp_and_a_recipient_refused_for_good(world: dict[str, Any], sink: RawSink, dkim_key: bytes) -> None:
    sink.pipelining = True
    sink.refused["ada@example.com"] = "550 5.1.1 <ada@example.com>: Recipient address rejected: User unknown"
    out = StringIO()
    call_command("outreach", "send-campaign", str(new_campaign(world).pk), stdout=out)
    assert "sent 1, skipped 4" in out.getvalue() and "failed 1" in out.getvalue()
    [(to, raw)] = sink.messages()
    assert to == ["bob@example.com"] and dkim.verify(raw, dnsfunc=dns(dkim_key))
    ada = CampaignSend.objects.get(address="ada@example.com")
    assert ada.status == "failed" and "550 5.1.1" in ada.reason
    assert Suppression.objects.get(address="ada@example.com").reason == "hard_bounce"


def test_the_openssl_signing_step_gives_the_bytes_dkim_sign_gives(dkim_key: bytes, settings: Any) -> None:
    signer = dkimsign.configured()
    assert signer is not None and signer.openssl_key is not None
    message = (b"From: news@accord.example\r\nTo: ada@example.com\r\nSubject: Hi\r\nDate: Mon, 07 Dec 2026 17:00:00 +0000"
               b"\r\nMessage-ID: <a@b>\r\nList-Unsubscribe: <https://x/u/t/>\r\nList-Unsubscribe-Post: List-Unsubscribe"
               b"=One-Click\r\n\r\nHello\r\n")
    with time_machine.travel(dt.datetime(2026, 12, 7, 17, tzinfo=dt.UTC), tick=False):
        ours = signer.header(message)
        reference = dkim.sign(message, b"mail2026", b"accord.example", Path(settings.ACCORD_DKIM_KEY_FILE).read_bytes(),
                              include_headers=list(dkimsign.SIGNED_HEADERS))
    assert ours == reference
    assert dkim.verify(ours + message, dnsfunc=dns(dkim_key))


def test_without_a_key_mail_goes_unsigned(world: dict[str, Any], sink: RawSink, settings: Any) -> None:
    settings.ACCORD_DKIM_KEY_FILE = ""
    call_command("outreach", "send-campaign", str(new_campaign(world).pk), stdout=StringIO())
    assert len(sink.messages()) == 2 and all(b"DKIM-Signature" not in raw for _to, raw in sink.messages())


def test_unknown_placeholders_are_refused_before_sending_and_an_empty_segment_is_refused(
        world: dict[str, Any], sink: RawSink) -> None:
    c = Campaign(name="Bad", purpose=world["news"], segment=world["segment"], subject="Hi {{ contact.nickname }}",
                 html="<p>{{ account.name }} {{ coupon }}</p>", text="ok", rate=5)
    with pytest.raises(ValidationError) as refused:
        c.full_clean()
    assert "{{ contact.nickname }}" in str(refused.value.message_dict["subject"])
    assert "{{ coupon }}" in str(refused.value.message_dict["html"])
    # one saved behind validation's back is still refused by the sender, naming the placeholder
    c.status = "scheduled"
    c.save()
    with pytest.raises(CommandError, match=r"subject: Unknown placeholder\(s\): \{\{ contact.nickname \}\}"):
        call_command("outreach", "send-campaign", str(c.pk), stdout=StringIO())
    assert sink.messages() == [] and not CampaignSend.objects.exists()
    nobody = Segment.objects.create(name="platinum", spec={"health": {"min": 99}})
    assert segments.count(nobody.spec) == 0  # a segment may match nobody ...
    out = StringIO()
    call_command("outreach", "segment", "list", stdout=out)
    assert "platinum: 0 contacts" in out.getvalue() and "gold accounts: 6 contacts" in out.getvalue()
    empty = Campaign.objects.create(name="To nobody", purpose=world["news"], segment=nobody, subject="s", html="h",
                                    text="t")
    with pytest.raises(campaigns.CampaignError, match="matches nobody"):  # ... but no campaign goes to it
        campaigns.schedule(empty)
    empty.status = "scheduled"
    empty.save()
    with pytest.raises(CommandError, match="The segment 'platinum' matches nobody"):
        call_command("outreach", "send-campaign", str(empty.pk), stdout=StringIO())


def test_segment_filters_over_tier_health_last_order_and_consent(world: dict[str, Any]) -> None:
    acme = world["acme"]
    other = Account.objects.get(external_id="OTHER")
    HealthScore.objects.create(account=acme, score=40, computed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    HealthScore.objects.create(account=acme, score=80, computed_at=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    HealthScore.objects.create(account=other, score=30)
    OrderLine.objects.create(order_id="o1", account=other, ordered_at=dt.datetime(2026, 11, 30, tzinfo=dt.UTC),
                             ordered_on=dt.date(2026, 11, 30), amount=10, currency="EUR")

    def who(spec: dict[str, Any]) -> set[str]:
        return {c.external_id for c in segments.contacts(spec, today=dt.date(2026, 12, 7))}

    acme_people = {f"C-{k}" for k in ("ada", "bob", "cy", "dee", "eve", "fay")}
    assert who({"health": {"max": 50}}) == {"C-gil"}  # Acme's latest score is 80, not the older 40
    assert who({"health": {"min": 50}}) == acme_people
    assert who({"last_order": {"within_days": 30}}) == {"C-gil"}
    assert who({"last_order": {"not_within_days": 30}}) == acme_people
    assert who({"tier": "gold", "consent": {"purpose": "newsletter", "status": ["pending", "none"]}}) == {"C-cy", "C-fay"}
    assert who({"clv": {"min": 1}}) == set()  # no CLV fit yet: nobody has a value
    for bad, says in [({"country": ["FR", "XX"]}, "country[1]: 'XX' is not an ISO 3166-1"), ({"tier": ["tin"]}, "no tier named tin"),
                      ({"health": {"min": "lots"}}, "health.min must be a number"), ({"colour": 1}, "unknown key"),
                      ({"consent": {"purpose": "nope"}}, "no purpose named 'nope'"),
                      ({"last_order": {"after": "2026-13-01"}}, "YYYY-MM-DD")]:
        with pytest.raises(segments.SpecError, match=re.escape(says)):
            segments.check(bad)
    with pytest.raises(CommandError, match=r"country\[0\]: 'fr' must be written in upper case: 'FR'"):
        call_command("outreach", "segment", "add", "France", '{"country": ["fr"]}', stdout=StringIO())


def test_one_click_unsubscribe_from_a_campaign_and_the_next_campaign_skips_them(
        world: dict[str, Any], sink: RawSink) -> None:
    call_command("outreach", "send-campaign", str(new_campaign(world).pk), stdout=StringIO())
    raw = by_recipient(sink)["ada@example.com"][0]
    url = re.search(r"<https://crm\.accord\.example(/u/[^>]+)>", str(message_from_bytes(raw)["List-Unsubscribe"]))
    assert url
    path = url.group(1)
    client = Client(enforce_csrf_checks=True)  # no cookie, no CSRF token, no login
    page = client.get(path)
    assert page.status_code == 200 and "Stop receiving the monthly newsletter" in page.content.decode()
    assert Consent.objects.get(contact=world["people"]["ada"]).status == "confirmed"  # a GET changes nothing
    events = ConsentEvent.objects.count()
    done = client.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert done.status_code == 200 and "You are unsubscribed" in done.content.decode()
    ada_consent = Consent.objects.get(contact=world["people"]["ada"])
    assert ada_consent.status == "withdrawn"
    event = ConsentEvent.objects.order_by("-id").first()
    assert event and event.status == "withdrawn" and f"campaign {Campaign.objects.get().pk}" in event.detail
    again = client.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert again.status_code == 200 and ConsentEvent.objects.count() == events + 1  # a replay changes nothing
    forged = client.post(path[:-4] + "AAA/", "List-Unsubscribe=One-Click",
                         content_type="application/x-www-form-urlencoded")
    assert forged.status_code == 400 and "This link is not valid." in forged.content.decode()
    # the next campaign skips Ada
    sink.received.clear()
    call_command("outreach", "send-campaign", str(new_campaign(world, name="January news").pk), stdout=StringIO())
    assert sorted(by_recipient(sink)) == ["bob@example.com"]
    # Bob is erased: his link answers 200 and names nobody
    raw = by_recipient(sink)["bob@example.com"][0]
    bob_path = re.search(r"<https://crm\.accord\.example(/u/[^>]+)>", str(message_from_bytes(raw)["List-Unsubscribe"]))
    assert bob_path
    from accord.privacy.person import ERASED_DOMAIN, erase

    assert ERASED_DOMAIN == service.ERASED_DOMAIN
    erase(world["people"]["bob"])
    for answer in (client.get(bob_path.group(1)), client.post(bob_path.group(1), "List-Unsubscribe=One-Click",
                                                              content_type="application/x-www-form-urlencoded")):
        assert answer.status_code == 200
        assert "bob" not in answer.content.decode().lower() and "erased" not in answer.content.decode().lower()
    # and an erased contact's pseudonymous consent is never mailed
    sink.received.clear()
    call_command("outreach", "send-campaign", str(new_campaign(world, name="February news").pk), stdout=StringIO())
    assert by_recipient(sink) == {}


def test_a_sender_killed_mid_campaign_and_restarted_sends_each_message_once(
        world: dict[str, Any], sink: RawSink, settings: Any) -> None:
    acme, news = world["acme"], world["news"]
    for i in range(40):
        c = Contact.objects.create(account=acme, name=f"Reader {i}")
        Consent.objects.create(contact=c, purpose=news, status="confirmed", source="import",
                               address=f"reader{i}@example.com", proof="test")
    campaign = new_campaign(world, rate=200.0)
    root = Path(accord.__file__).resolve().parents[1]
    env = subprocess_env(ACCORD_EMAIL_BACKEND=SMTP_BACKEND, ACCORD_SMTP_HOST="127.0.0.1",
                         ACCORD_SMTP_PORT=str(sink.port), ACCORD_MAIL_FROM="news@accord.example")
    command = [sys.executable, "-m", "accord", "outreach", "send-campaign", str(campaign.pk), "--batch", "10"]
    sink.hold_after = 15  # the 16th message is taken and its answer held: the sender is killed waiting for it
    victim = subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(sink.messages()) < 16 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sink.messages()) == 16, victim.communicate(timeout=5)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL
    in_flight = sink.messages()[15]
    assert CampaignSend.objects.filter(status="sending").count() > 1  # the rest of its claimed batch, unsent
    sink.hold_after = None
    sink.released.set()
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"sent 2\d, skipped 0, failed 0", done.stdout), done.stdout
    counts = Counter(to[0] for to, _raw in sink.messages())
    assert set(counts) == {"ada@example.com", "bob@example.com", "gil@example.com"} - {"gil@example.com"} | {
        f"reader{i}@example.com" for i in range(40)}
    twice = {a for a, n in counts.items() if n > 1}
    assert twice <= {in_flight[0][0]} and all(n <= 2 for n in counts.values())
    ids = [message_from_bytes(raw)["Message-ID"] for to, raw in sink.messages() if to == in_flight[0]]
    assert len(set(ids)) == 1  # the duplicate, if any, has the same Message-ID
    assert CampaignSend.objects.filter(campaign=campaign, status="sent").count() == 42
    assert Campaign.objects.get(pk=campaign.pk).status == "done"


def test_send_campaign_with_processes_shares_the_rows_and_the_rate_and_sends_each_message_once(
        world: dict[str, Any], sink: RawSink) -> None:
    acme, news = world["acme"], world["news"]
    for i in range(40):
        c = Contact.objects.create(account=acme, name=f"Reader {i}")
        Consent.objects.create(contact=c, purpose=news, status="confirmed", source="import",
                               address=f"reader{i}@example.com", proof="test")
    campaign = new_campaign(world, rate=21.0)  # 7 a second for each of 3 processes
    root = Path(accord.__file__).resolve().parents[1]
    env = subprocess_env(ACCORD_EMAIL_BACKEND=SMTP_BACKEND, ACCORD_SMTP_HOST="127.0.0.1",
                         ACCORD_SMTP_PORT=str(sink.port), ACCORD_MAIL_FROM="news@accord.example")
    command = [sys.executable, "-m", "accord", "outreach", "send-campaign", str(campaign.pk), "--batch", "5"]
    for bad in ("0", "65"):
        refused = subprocess.run([*command, "--processes", bad], env=env, cwd=root, capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode != 0 and f"--processes {bad}: give 1 to 64 sender processes" in refused.stderr
    assert sink.messages() == [] and not CampaignSend.objects.exists()  # refused before anything was written
    done = subprocess.run([*command, "--processes", "3"], env=env, cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    shares = re.search(r"\(3 processes, sent (\d+) \+ (\d+) \+ (\d+)\): sent 42, skipped 4 \(consent pending 1, consent withdrawn 1, "
                       r"suppressed 1, no consent 1\), failed 0", done.stdout)
    assert shares, done.stdout
    assert sum(map(int, shares.groups())) == 42 and sum(int(n) > 0 for n in shares.groups()) >= 2  # they shared
    counts = Counter(to[0] for to, _raw in sink.messages())
    assert set(counts) == {"ada@example.com", "bob@example.com"} | {f"reader{i}@example.com" for i in range(40)}
    assert set(counts.values()) == {1}  # nobody twice
    rows = CampaignSend.objects.filter(campaign=campaign)
    assert rows.filter(status="sent").count() == 42 and not rows.filter(status__in=["queued", "sending"]).exists()
    assert Campaign.objects.get(pk=campaign.pk).status == "done"
    times = sorted(rows.filter(status="sent").values_list("sent_at", flat=True))
    # 42 at 21 a second in all take 2 s (1.9 s once each process's first goes at once); had every process the
    # campaign's whole rate, 0.6 s
    assert (times[-1] - times[0]).total_seconds() >= 1.5


def test_a_campaign_paused_while_sending_stops_its_sender_and_resumed_sends_the_rest_each_once(
        world: dict[str, Any], sink: RawSink) -> None:
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient

    from accord.access import roles, tokens

    acme, news = world["acme"], world["news"]
    for i in range(60):
        c = Contact.objects.create(account=acme, name=f"Reader {i}")
        Consent.objects.create(contact=c, purpose=news, status="confirmed", source="import",
                               address=f"reader{i}@example.com", proof="test")
    campaign = new_campaign(world, rate=25.0)
    manager = User.objects.create_user("mia", "mia@example.com", "pw-long-enough-1", is_staff=True)
    roles.grant(manager, "manager")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.create(manager).secret}")
    root = Path(accord.__file__).resolve().parents[1]
    env = subprocess_env(ACCORD_EMAIL_BACKEND=SMTP_BACKEND, ACCORD_SMTP_HOST="127.0.0.1",
                         ACCORD_SMTP_PORT=str(sink.port), ACCORD_MAIL_FROM="news@accord.example")
    command = [sys.executable, "-m", "accord", "outreach", "send-campaign", str(campaign.pk), "--batch", "200"]
    sender = subprocess.Popen(command, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(sink.messages()) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sink.messages()) >= 5, sender.communicate(timeout=5)
    paused = api.post(f"/api/v1/campaigns/{campaign.pk}/pause/", {}, format="json")
    assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.content
    out, err = sender.communicate(timeout=30)  # it stops by itself, within 50 messages of the pause (2 s at 25/s)
    assert sender.returncode == 0, err
    assert "paused: the rest waits for `accord outreach resume`" in out, out
    first = len(sink.messages())
    assert 5 <= first < 62 - 10, first  # the one claim of 62 was given back in part: many still wait
    rows = CampaignSend.objects.filter(campaign=campaign)
    assert rows.filter(status="sent").count() == first and not rows.filter(status="sending").exists()
    assert rows.filter(status="queued").count() == 62 - first
    # while paused: no sender takes it, the API refuses a second pause, and an edit stays refused
    held = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=60)
    assert held.returncode != 0 and f"Campaign {campaign.pk} is paused: resume it first" in held.stderr
    assert api.post(f"/api/v1/campaigns/{campaign.pk}/pause/", {}, format="json").status_code == 409
    assert len(sink.messages()) == first
    call_command("outreach", "send-due", stdout=StringIO())  # send-due passes it by too
    assert len(sink.messages()) == first
    resumed = api.post(f"/api/v1/campaigns/{campaign.pk}/resume/", {}, format="json")
    assert resumed.status_code == 200 and resumed.json()["status"] == "scheduled"
    assert api.post(f"/api/v1/campaigns/{campaign.pk}/resume/", {}, format="json").status_code == 409
    campaign.refresh_from_db()
    campaign.rate = 1000.0
    campaign.save(update_fields=["rate"])
    done = StringIO()
    call_command("outreach", "send-due", stdout=done)
    assert f"campaign {campaign.pk}: sent {62 - first}," in done.getvalue(), done.getvalue()
    counts = Counter(to[0] for to, _raw in sink.messages())
    assert set(counts) == {"ada@example.com", "bob@example.com"} | {f"reader{i}@example.com" for i in range(60)}
    assert set(counts.values()) == {1}  # each once, across the pause
    assert Campaign.objects.get(pk=campaign.pk).status == "done"
    assert api.post(f"/api/v1/campaigns/{campaign.pk}/pause/", {}, format="json").status_code == 409  # finished


DSN = """\
From: MAILER-DAEMON@mx.example.com
To: bounces@accord.example
Subject: Undelivered Mail Returned to Sender
Date: Mon, 07 Dec 2026 18:00:00 +0000
Message-ID: <dsn-{n}@mx.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com. Your message could not be delivered.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
Arrival-Date: Mon, 07 Dec 2026 17:59:58 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.com
Diagnostic-Code: smtp; {diagnostic}

--BOUNDARY
Content-Type: text/rfc822-headers

From: news@accord.example
To: {recipient}
Subject: News for Acme Travel
Message-ID: {message_id}

--BOUNDARY--
"""


def dsn(tmp_path: Path, n: int, recipient: str, action: str, status: str, diagnostic: str, message_id: str) -> Path:
    path = tmp_path / f"dsn-{n}.eml"
    path.write_text(DSN.format(n=n, recipient=recipient, action=action, status=status, diagnostic=diagnostic,
                               message_id=message_id).replace("\n", "\r\n"))
    return path


def test_hard_bounces_suppress_and_soft_bounces_retry_then_suppress(
        world: dict[str, Any], sink: RawSink, tmp_path: Path, settings: Any) -> None:
    settings.ACCORD_OUTBOX_BACKOFF, settings.ACCORD_OUTBOX_BACKOFF_MAX = 0.01, 0.01
    campaign = new_campaign(world)
    call_command("outreach", "send-campaign", str(campaign.pk), stdout=StringIO())
    ada = CampaignSend.objects.get(address="ada@example.com")
    bob = CampaignSend.objects.get(address="bob@example.com")
    hard = dsn(tmp_path, 1, "ada@example.com", "failed", "5.1.1", "550 5.1.1 <ada@example.com>: user unknown",
               ada.message_id)
    [bounce] = bounces.parse(hard.read_bytes())
    assert (bounce.recipient, bounce.action, bounce.status, bounce.kind) == ("ada@example.com", "failed", "5.1.1", "hard")
    assert bounce.message_id == ada.message_id
    soft = dsn(tmp_path, 2, "bob@example.com", "failed", "4.2.2", "452 4.2.2 mailbox full", bob.message_id)
    not_dsn = tmp_path / "note.eml"
    not_dsn.write_text("From: a@example.com\r\nSubject: hello\r\n\r\nhi\r\n")
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 file"):
        call_command("outreach", "bounces", str(hard), str(soft), str(not_dsn), stdout=out, stderr=err)
    assert "hard 1 (suppressed), soft 1" in out.getvalue() and "not a delivery status notification" in err.getvalue()
    suppression = Suppression.objects.get(address="ada@example.com")
    assert suppression.reason == "hard_bounce" and "5.1.1" in suppression.detail and "user unknown" in suppression.detail
    ada.refresh_from_db()
    bob.refresh_from_db()
    assert ada.status == "bounced" and "5.1.1" in ada.reason
    assert bob.status == "queued" and bob.soft_bounces == 1 and not Suppression.objects.filter(address="bob@example.com")
    # a contact who joined the segment after the campaign finished is not added by a retry
    hal = Contact.objects.create(account=world["acme"], name="Hal Person")
    Consent.objects.create(contact=hal, purpose=world["news"], status="confirmed", source="import",
                           address="hal@example.com", proof="test")
    time.sleep(0.05)
    call_command("outreach", "send-due", stdout=StringIO())  # the soft bounce is retried
    assert Counter(to[0] for to, _ in sink.messages()) == {"ada@example.com": 1, "bob@example.com": 2}
    assert not CampaignSend.objects.filter(contact=hal).exists()
    delayed = dsn(tmp_path, 3, "bob@example.com", "delayed", "4.4.1", "connection timed out", bob.message_id)
    assert [o.result for o in bounces.handle(delayed.read_bytes())] == ["soft"]
    bob.refresh_from_db()
    assert bob.status == "sent" and bob.soft_bounces == 2  # delayed: counted, the remote server is still trying
    third = dsn(tmp_path, 4, "bob@example.com", "failed", "4.2.2", "452 4.2.2 mailbox full", bob.message_id)
    assert [o.result for o in bounces.handle(third.read_bytes())] == ["suppressed"]
    bob.refresh_from_db()
    assert bob.status == "bounced" and Suppression.objects.get(address="bob@example.com").reason == "soft_bounce"
    assert not service.mailable(world["people"]["bob"], world["news"]).ok


def test_staff_pages_show_campaign_progress_and_segment_counts(world: dict[str, Any], sink: RawSink) -> None:
    from django.contrib.auth.models import User

    from accord.access.roles import grant

    campaign = new_campaign(world)
    call_command("outreach", "send-campaign", str(campaign.pk), stdout=StringIO())
    Segment.objects.create(name="nobody", spec={"health": {"min": 99}})
    manager = User.objects.create_user("mgr", is_staff=True)
    grant(manager, "manager")
    client = Client()
    client.force_login(manager)
    listing = client.get("/outreach/campaigns/").content.decode()
    assert f'href="/outreach/campaigns/{campaign.pk}/">December news</a>' in listing
    assert 'href="/outreach/campaigns/"' in re.search(r'<nav aria-label="Main">(.*?)</nav>', listing, re.S).group(1)  # type: ignore[union-attr]
    page = client.get(f"/outreach/campaigns/{campaign.pk}/").content.decode()
    assert 'aria-label="Recipients of December news by status: sent 2; skipped 4."' in page
    assert "consent pending 1" in page and "To Ada Person &lt;ada@example.com&gt;" in page
    segments_page = client.get("/outreach/segments/").content.decode()
    assert re.search(r"gold accounts.*?<td class=\"num\">6</td>", segments_page, re.S)
    assert re.search(r"nobody.*?<td class=\"num\">0</td>", segments_page, re.S)
    client.logout()
    assert client.get("/outreach/campaigns/").status_code == 302  # to the login page


def test_dsns_about_campaign_mail_in_a_desk_mailbox_are_bounces_not_tickets(
        world: dict[str, Any], sink: RawSink, tmp_path: Path, dovecot: Any) -> None:  # noqa: F811
    from accord.desk.models import Ticket
    from accord.desk.tests.test_imap import append, mailbox_for

    call_command("outreach", "send-campaign", str(new_campaign(world).pk), stdout=StringIO())
    ada = CampaignSend.objects.get(address="ada@example.com")
    about_campaign = dsn(tmp_path, 1, "ada@example.com", "failed", "5.1.1", "550 5.1.1 user unknown", ada.message_id)
    about_a_reply = dsn(tmp_path, 2, "someone@example.org", "failed", "5.1.1", "550 5.1.1 user unknown",
                        "<reply-1@accord.example>")
    append(dovecot, about_campaign.read_bytes(), about_a_reply.read_bytes())
    mailbox_for(dovecot)
    out = StringIO()
    call_command("desk", "poll-imap", stdout=out)
    assert "stored 1" in out.getvalue() and "campaign bounces 1" in out.getvalue()
    ada.refresh_from_db()
    assert ada.status == "bounced" and Suppression.objects.get(address="ada@example.com").reason == "hard_bounce"
    assert Ticket.objects.count() == 1  # the bounce of a ticket reply stays the desk's


def test_doctor_warns_when_campaign_mail_would_go_unsigned(world: dict[str, Any], settings: Any,
                                                           tmp_path: Path) -> None:
    from accord.outreach.checks import dkim as dkim_check

    settings.ACCORD_DKIM_KEY_FILE = ""
    assert dkim_check()[0].status == "ok"  # no campaign yet
    Campaign.objects.create(name="n", purpose=world["news"], segment=world["segment"], subject="s", html="h", text="t")
    found = dkim_check()[0]
    assert found.status == "warn" and "without a DKIM signature" in found.message
    settings.ACCORD_DKIM_KEY_FILE = str(tmp_path / "missing.pem")
    dkimsign._load.cache_clear()
    found = dkim_check()[0]
    assert found.status == "fail" and "missing.pem" in found.message
    campaign = Campaign.objects.get()
    campaign.status = "scheduled"
    campaign.save()
    with pytest.raises(CommandError, match="cannot be signed"):
        call_command("outreach", "send-campaign", str(campaign.pk), stdout=StringIO())
    assert not CampaignSend.objects.exists()  # refused before anything was written


def test_sending_in_process_puts_sigterm_back_as_it_found_it(world: dict[str, Any], sink: RawSink) -> None:
    """send-campaign stops on SIGTERM only while it sends: left behind in a longer-lived process, its handler
    kept processes forked later (a multiprocessing pool's workers) from dying of SIGTERM, and the pool's
    terminate() waited for them forever (the PostgreSQL pass of the suite hung in the reports' batch test)."""
    import signal as signals

    before = signals.getsignal(signals.SIGTERM)
    call_command("outreach", "send-campaign", str(new_campaign(world).pk), stdout=StringIO())
    assert by_recipient(sink), "the campaign sent nothing"
    assert signals.getsignal(signals.SIGTERM) is before


def test_the_campaign_page_pauses_and_resumes_with_its_buttons(world: dict[str, Any], alice: Any) -> None:
    from django.test import Client

    campaign = new_campaign(world)  # scheduled
    client = Client()
    client.force_login(alice)
    url = f"/outreach/campaigns/{campaign.pk}/"
    page = client.get(url).content.decode()
    assert 'id="pause-campaign"' in page and 'id="resume-campaign"' not in page
    client.post(f"{url}schedule/", {"do": "pause"})
    assert Campaign.objects.get(pk=campaign.pk).status == "paused"
    page = client.get(url).content.decode()
    assert 'id="resume-campaign"' in page and 'id="pause-campaign"' not in page and "is paused" in page
    again = client.post(f"{url}schedule/", {"do": "pause"}, follow=True).content.decode()
    assert "only a scheduled or sending campaign can be paused" in again  # said, nothing changed
    client.post(f"{url}schedule/", {"do": "resume"})
    assert Campaign.objects.get(pk=campaign.pk).status == "scheduled"
    Campaign.objects.filter(pk=campaign.pk).update(status="done")
    assert 'id="pause-campaign"' not in client.get(url).content.decode()  # a finished campaign has neither
