"""The `outreach.messages` meter: campaigns sent for real to an SMTP server on loopback, billed per account in
the account's own month (its edge in Tokyo is not UTC's), once per recipient after a sender killed mid-campaign;
a source nobody registered is refused at apply with its path."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command

import accord
from accord.billing import sources
from accord.billing.models import Invoice, Meter
from accord.billing.usage import measure
from accord.customers.models import Account, Contact, ContactPoint, Tier
from accord.lib.manifest import ManifestError, apply_manifest
from accord.lib.smtp import SmtpSink
from accord.lib.testing import subprocess_env
from accord.outreach import campaigns
from accord.outreach.models import Campaign, CampaignSend, Consent, Purpose, Segment

from .conftest import run

pytestmark = pytest.mark.django_db(transaction=True)
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
METERS = "meters:\n  - {name: campaign-messages, source: outreach.messages, unit: messages}\n"
PLAN = """plans:
  - name: outreach
    currency: EUR
    tiers: [gold]
    prices: [{meter: campaign-messages, unit_price: 0.01}]
"""


@pytest.fixture
def sink(settings: Any) -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT = SMTP_BACKEND, s.host, s.port
        settings.ACCORD_PUBLIC_URL = "https://crm.accord.example"
        settings.DEFAULT_FROM_EMAIL = "news@accord.example"
        settings.ACCORD_DKIM_KEY_FILE = ""
        yield s


@pytest.fixture
def readers() -> dict[str, Account]:
    """Two gold accounts, Tokyo (UTC+9) and London (UTC in winter): 3 and 2 confirmed readers, and a pending
    one in London who is never mailed; the plan bills a campaign message at 0.01 EUR."""
    gold = Tier.objects.create(name="gold", rank=1)
    news = Purpose.objects.create(name="newsletter", title="the newsletter")
    tokyo = Account.objects.create(name="Tokyo KK", external_id="TOKYO", tier=gold, timezone="Asia/Tokyo")
    london = Account.objects.create(name="London Ltd", external_id="LONDON", tier=gold, timezone="Europe/London")
    for account, name, status in [(tokyo, "aki", "confirmed"), (tokyo, "ben", "confirmed"), (tokyo, "chi", "confirmed"),
                                  (london, "dan", "confirmed"), (london, "eli", "confirmed"), (london, "fox", "pending")]:
        c = Contact.objects.create(account=account, name=name.title())
        ContactPoint.objects.create(contact=c, kind="email", value=f"{name}@example.com", primary=True)
        Consent.objects.create(contact=c, purpose=news, status=status, source="import", address=f"{name}@example.com",
                               proof="test" if status == "confirmed" else "")
    Segment.objects.create(name="gold", spec={"tier": ["gold"]})
    apply_manifest(METERS)
    apply_manifest(PLAN)
    return {"TOKYO": tokyo, "LONDON": london}


def new_campaign(name: str) -> Campaign:
    c = Campaign(name=name, purpose=Purpose.objects.get(), segment=Segment.objects.get(), subject="News",
                 html="<p>Hi {{ contact.name }} <a href=\"{{ unsubscribe_url }}\">stop</a></p>",
                 text="Hi\n{{ unsubscribe_url }}\n", rate=1000.0)
    c.full_clean()
    c.save()
    return campaigns.schedule(c)


def handed_over(sink: SmtpSink, since: int = 0) -> Counter[str]:
    """Messages the SMTP server took since its message number `since`, by the recipient's account."""
    account_of = dict(ContactPoint.objects.values_list("value", "contact__account__external_id"))
    return Counter(account_of[to[0]] for _f, to, _m in sink.messages[since:])


def usage_line(ext: str, period: str) -> tuple[Decimal, Decimal]:
    inv = Invoice.objects.exclude(status="void").get(account__external_id=ext, period=period, kind="invoice")
    [line] = [x for x in inv.lines.all() if x.key.startswith("usage:campaign-messages:")]
    return line.quantity, line.amount


def test_campaign_messages_are_billed_per_account_in_its_own_month(sink: SmtpSink, readers: dict[str, Account]) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    # Campaign A two minutes before midnight of 30 November in Tokyo; campaign B at midnight of 1 December in Tokyo,
    # which is 15:00 UTC on 30 November: still November in London
    before = dt.datetime(2026, 11, 30, 23, 58, tzinfo=tokyo)
    edge = dt.datetime(2026, 12, 1, 0, 0, tzinfo=tokyo)
    with time_machine.travel(before, tick=True):
        summary = campaigns.send(new_campaign("A"))
        assert summary.sent == 5 and dt.datetime.now(dt.UTC) < edge
    a = handed_over(sink)
    with time_machine.travel(edge, tick=True):
        assert campaigns.send(new_campaign("B")).sent == 5
    b = handed_over(sink, since=sum(a.values()))
    assert a == b == Counter({"TOKYO": 3, "LONDON": 2})  # the pending reader is never mailed
    with time_machine.travel(dt.datetime(2027, 1, 2, tzinfo=dt.UTC), tick=False):
        run("2026-11")
        run("2026-12")
    assert usage_line("TOKYO", "2026-11") == (a["TOKYO"], a["TOKYO"] * Decimal("0.01"))
    assert usage_line("TOKYO", "2026-12") == (b["TOKYO"], Decimal("0.03"))
    assert usage_line("LONDON", "2026-11") == (a["LONDON"] + b["LONDON"], Decimal("0.04"))
    assert usage_line("LONDON", "2026-12") == (0, 0)
    # the month's edge to the microsecond: B's messages were all taken at or after Tokyo's midnight
    meter = Meter.objects.get(name="campaign-messages")
    keys = {readers["TOKYO"].pk: "TOKYO"}
    month_start = edge.astimezone(dt.UTC)
    assert measure(meter, keys, month_start - dt.timedelta(days=30), month_start) == {readers["TOKYO"].pk: Decimal(3)}


def test_a_sender_killed_after_the_server_took_a_message_bills_it_once(sink: SmtpSink,
                                                                      readers: dict[str, Account]) -> None:
    campaign = new_campaign("C")
    root = Path(accord.__file__).resolve().parents[1]
    env = subprocess_env(ACCORD_EMAIL_BACKEND=SMTP_BACKEND, ACCORD_SMTP_HOST=sink.host, ACCORD_SMTP_PORT=str(sink.port),
                         ACCORD_MAIL_FROM="news@accord.example", ACCORD_FAULTS="campaign.sent")
    command = [sys.executable, "-m", "accord", "outreach", "send-campaign", str(campaign.pk)]
    killed = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=60)
    assert killed.returncode == 137, killed.stderr  # died with the first message taken and its row not marked
    assert len(sink.messages) == 1 and not CampaignSend.objects.filter(sent_at__isnull=False).exists()
    call_command("outreach", "send-campaign", str(campaign.pk), stdout=StringIO())
    taken = handed_over(sink)
    assert sum(taken.values()) == 6  # the first message went twice (same Message-ID): the server took 6 for 5 readers
    recipients = Counter(to[0] for _f, to, _m in sink.messages)
    [(twice, _)] = [(r, n) for r, n in recipients.items() if n == 2]
    sent = CampaignSend.objects.filter(sent_at__isnull=False)
    first, last = min(s.sent_at for s in sent), max(s.sent_at for s in sent)
    meter = Meter.objects.get(name="campaign-messages")
    counted = measure(meter, {a.pk: k for k, a in readers.items()}, first, last + dt.timedelta(seconds=1))
    assert counted == {readers["TOKYO"].pk: Decimal(3), readers["LONDON"].pk: Decimal(2)}
    assert {k: counted[a.pk] + (1 if twice.split("@")[0] in names else 0) for k, a, names in
            [("TOKYO", readers["TOKYO"], {"aki", "ben", "chi"}), ("LONDON", readers["LONDON"], {"dan", "eli"})]} \
        == {k: Decimal(n) for k, n in taken.items()}
    # and on the invoice of the Tokyo month the messages went in
    period = f"{first.astimezone(ZoneInfo('Asia/Tokyo')):%Y-%m}"
    if f"{last.astimezone(ZoneInfo('Asia/Tokyo')):%Y-%m}" == period:  # not sent across Tokyo's midnight of a month
        run(period, "TOKYO")
        assert usage_line("TOKYO", period)[0] == 3


def test_a_meter_over_a_source_nobody_registered_is_refused_with_its_path(db: None, monkeypatch: Any) -> None:
    with pytest.raises(ManifestError) as e:
        apply_manifest("meters:\n  - {name: m, source: outreach.mesages}\n"
                       "  - {name: n, source: outreach.messages, aggregation: sum}\n")
    assert e.value.errors[0].startswith("meters[0].source: no meter source 'outreach.mesages' (known: chat.minutes,")
    assert "outreach.messages" in e.value.errors[0]
    assert e.value.errors[1:] == ["meters[1].aggregation: outreach.messages is aggregated by count"]
    # without outreach's registration (the app not installed), the source is unknown too
    monkeypatch.delitem(sources.SOURCES, "outreach.messages")
    with pytest.raises(ManifestError) as e:
        apply_manifest(METERS)
    assert e.value.errors[0].startswith("meters[0].source: no meter source 'outreach.messages'")
    assert not Meter.objects.exists()
