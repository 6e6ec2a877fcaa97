"""Campaigns: templates with placeholders, the recipients a campaign may mail, and the resumable, throttled sender.

**Recipients.** `prepare` writes one `CampaignSend` row per contact of the segment (unique per campaign and
contact; running it again adds only contacts that joined the segment since): `queued` for a contact whose consent
to the campaign's purpose is confirmed and whose address is not suppressed, `skipped` with the reason otherwise.
Just before a batch goes out its rows are checked again, so an unsubscribe or a bounce during the campaign is
honoured at once.

**Sending** is claim -> send -> mark. A sender claims a batch of queued rows in one conditional UPDATE (queued ->
sending, with its `host:pid`), then sends them one by one, marking each `sent` right after the server took it.
A sender killed mid-campaign leaves its claimed rows `sending`; the next sender takes back the claims of dead
senders on this host (their pid is gone) or older than ACCORD_CAMPAIGN_LEASE seconds, and sends them. Of those
rows only the one in flight at the kill can have gone out already: it is sent a second time, with the same
Message-ID (which mail clients show once); every other recipient gets exactly one message.

A temporary refusal (4xx, a lost connection) puts the row back in the queue after a backoff, up to
ACCORD_CAMPAIGN_ATTEMPTS attempts; a permanent one (5xx) fails it, and a 5xx refusing the recipient suppresses
the address as a hard bounce. The sender waits so as not to exceed the campaign's rate (messages per second).
"""

from __future__ import annotations

import binascii
import contextlib
import datetime as dt
import hashlib
import os
import re
import smtplib
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import Header
from email.message import Message
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet, Subquery
from django.utils import timezone

from accord.customers.models import Contact
from accord.desk.outbound import mail_domain
from accord.desk.outbox import backoff, describe, permanent
from accord.lib.faults import point

from . import consent as consents
from . import segments
from .dkimsign import DkimError, Signer, configured
from .models import Campaign, CampaignSend, Consent, Suppression
from .templating import Template, TemplateError, check_template

S = CampaignSend.Status
class CampaignError(Exception):
    """A campaign that cannot be sent as it is; the message says why."""



@dataclass
class Recipient:
    """What a message needs about its recipient (read in bulk per batch)."""

    send_id: int
    contact_id: int
    address: str
    name: str
    title: str
    account: str
    consent_id: int
    consent_version: int


def unsubscribe_token(campaign_id: int, consent_id: int, version: int) -> str:
    return signing.dumps({"c": consent_id, "v": version, "k": campaign_id}, salt=consents.SALT["unsubscribe"],
                         compress=True)


def message_id(campaign: Campaign, send_id: int) -> str:
    """The same on every attempt of one send, so a duplicate is recognisable; bounces are matched by it."""
    return f"<campaign{campaign.pk}.{send_id}@{mail_domain()}>"


class Composer:
    """Renders, assembles and (when a key is configured) DKIM-signs the messages of one campaign."""

    def __init__(self, campaign: Campaign, signer: Signer | None = None, *, sign: bool = True) -> None:
        self.campaign = campaign
        self.subject = Template(campaign.subject, escape=False)
        self.html = Template(campaign.html, escape=True)
        self.text = Template(campaign.text, escape=False)
        self.sender = campaign.from_email or settings.DEFAULT_FROM_EMAIL
        self.envelope_from = parseaddr(getattr(settings, "ACCORD_BOUNCE_ADDRESS", "") or self.sender)[1]
        self.signer = signer if signer is not None or not sign else configured()
        self.base = settings.ACCORD_PUBLIC_URL.rstrip("/")
        self.mailto = getattr(settings, "ACCORD_UNSUBSCRIBE_MAILTO", "")
        self.purpose_title = campaign.purpose.title or campaign.purpose.name

    def values(self, r: Recipient, url: str) -> dict[str, str]:
        return {"contact.name": r.name, "contact.first_name": (r.name.split() or [""])[0], "contact.title": r.title,
                "account.name": r.account, "campaign.name": self.campaign.name, "purpose.title": self.purpose_title,
                "unsubscribe_url": url}

    def render(self, r: Recipient, now: dt.datetime | None = None) -> bytes:
        """The message as it goes on the wire (CRLF line ends), signed when a DKIM key is configured.

        Written out directly rather than through the email package, whose header folding alone took longer
        than the DKIM signature: two quoted-printable parts (text, HTML) in a multipart/alternative.
        """
        token = unsubscribe_token(self.campaign.pk, r.consent_id, r.consent_version)
        url = f"{self.base}/u/{token}/"
        values = self.values(r, url)
        unsubscribe = f"<{url}>"
        if self.mailto:
            unsubscribe += f",\r\n <mailto:{self.mailto}?subject=unsubscribe%20{token}>"
        boundary = f"=_accord_{self.campaign.pk}_{r.send_id}"  # "=" never appears in quoted-printable text
        head = "".join([
            _header("From", self.sender),
            _header("To", formataddr((_one_line(r.name), r.address))),
            _header("Subject", self.subject.render(values)),
            f"Date: {format_datetime(now or timezone.now())}\r\n",
            f"Message-ID: {message_id(self.campaign, r.send_id)}\r\n",
            f"List-Unsubscribe: {unsubscribe}\r\n",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            "Precedence: bulk\r\n",
            "MIME-Version: 1.0\r\n",
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n',
        ]).encode("ascii")
        raw = b"".join([
            head, b"\r\n",
            f"--{boundary}\r\n".encode(), _PART % b"plain", _qp(self.text.render(values)), b"\r\n",
            f"--{boundary}\r\n".encode(), _PART % b"html", _qp(self.html.render(values)), b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ])
        return self.signer.sign(raw) if self.signer is not None else raw


_PART = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'


def _one_line(value: str) -> str:
    """A header value cannot carry a line break (a name with one would add a header of its own)."""
    return " ".join(value.splitlines())


def _header(name: str, value: str) -> str:
    value = _one_line(value)
    if value.isascii() and len(value) < 900:
        return f"{name}: {value}\r\n"
    return f"{name}: {Header(value, 'utf-8', header_name=name).encode(linesep=chr(13) + chr(10))}\r\n"


def _qp(text: str) -> bytes:
    body = binascii.b2a_qp("\n".join(text.splitlines()).encode("utf-8"), istext=True)
    return body.replace(b"\n", b"\r\n")


def preview(campaign: Campaign, contact: Contact) -> Message:
    """The message this contact would get (unsigned), whether or not they may be mailed."""
    consent = Consent.objects.filter(contact=contact, purpose=campaign.purpose).first()
    address = consent.address if consent else (contact.emails or ["(no address)"])[0]
    r = Recipient(0, contact.pk, address, contact.name, contact.title, contact.account.name if contact.account else "",
                  consent.pk if consent else 0, consent.version if consent else 0)
    return message_from_bytes(Composer(campaign, sign=False).render(r))


# -- who gets it ----------------------------------------------------------------------------------------------

def _hashed(address: str) -> str:
    return "sha256:" + hashlib.sha256(address.encode()).hexdigest()


def _suppressed(addresses: set[str]) -> dict[str, str]:
    """address -> suppression reason, for those of these addresses on the list (as themselves or hashed)."""
    hashes = {_hashed(a): a for a in addresses}
    found: dict[str, str] = {}
    keys = list(addresses | set(hashes))
    for i in range(0, len(keys), 900):
        for address, reason in Suppression.objects.filter(address__in=keys[i:i + 900]).values_list("address", "reason"):
            found[hashes.get(address, address)] = reason
    return found


def _skip_reason(status: str | None, address: str, suppressed: dict[str, str]) -> str:
    if status is None:
        return "no consent"
    if status != Consent.Status.CONFIRMED:
        return f"consent {status}"
    if not address:
        return "no address"
    if address.endswith("@" + consents.ERASED_DOMAIN):
        return "erased"
    if address in suppressed:
        return f"suppressed ({suppressed[address]})"
    return ""


@dataclass
class Prepared:
    queued: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def prepare(campaign: Campaign, chunk: int = 2000) -> Prepared:
    """Write a send row for every contact of the segment not yet in the campaign (see the module's doc)."""
    contact_ids = list(segments.contacts(campaign.segment.spec).values_list("pk", flat=True))
    if not contact_ids and not campaign.sends.exists():
        raise CampaignError(f"The segment {campaign.segment.name!r} matches nobody: there is no one to send "
                            f"{campaign.name!r} to. Change the segment's filter, or choose another segment.")
    have = set(campaign.sends.values_list("contact_id", flat=True))
    new = [c for c in contact_ids if c not in have]
    result = Prepared()
    for i in range(0, len(new), chunk):
        ids = new[i:i + chunk]
        given = {c: (status, address) for c, status, address in Consent.objects.filter(
            purpose=campaign.purpose, contact_id__in=ids).values_list("contact_id", "status", "address")}
        suppressed = _suppressed({a for _s, a in given.values() if a})
        rows = []
        for c in ids:
            status, address = given.get(c, (None, ""))
            why = _skip_reason(status, address, suppressed)
            rows.append(CampaignSend(campaign=campaign, contact_id=c, address=address,
                                     status=S.SKIPPED if why else S.QUEUED, reason=why))
            if why:
                result.skipped[why.split(" (")[0]] += 1
            else:
                result.queued += 1
        CampaignSend.objects.bulk_create(rows, ignore_conflicts=True)
    return result


# -- sending --------------------------------------------------------------------------------------------------

def me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(sender: str) -> bool:
    host, _, pid = sender.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another host's sender: only its lease tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(campaign: Campaign, now: dt.datetime | None = None) -> int:
    """Take back the claims of dead senders: on this host with their pid gone, or older than the lease."""
    now = now or timezone.now()
    lease = float(getattr(settings, "ACCORD_CAMPAIGN_LEASE", 300))
    claimed = campaign.sends.filter(status=S.SENDING)
    dead = {s for s in claimed.values_list("sender", flat=True).distinct() if s != me() and not _alive(s)}
    stale = claimed.filter(Q(sender__in=dead) | Q(claimed_at__lt=now - dt.timedelta(seconds=lease)))
    return stale.update(status=S.QUEUED, sender="", next_attempt_at=None)


def claim(campaign: Campaign, size: int, now: dt.datetime | None = None) -> list[int]:
    """Claim up to `size` due queued rows for this process, in one conditional UPDATE; their ids."""
    now = now or timezone.now()
    ids = Subquery(due(campaign, now).order_by("id").values("pk")[:size])
    won = CampaignSend.objects.filter(pk__in=ids, status=S.QUEUED).update(
        status=S.SENDING, sender=me(), claimed_at=now, attempts=F("attempts") + 1)
    if not won:
        return []
    return list(campaign.sends.filter(status=S.SENDING, sender=me()).order_by("id").values_list("pk", flat=True))


def recipients(campaign: Campaign, ids: list[int]) -> tuple[list[Recipient], dict[int, str]]:
    """The claimed rows still mailable now, and the others with why (an unsubscribe or bounce since)."""
    rows = list(CampaignSend.objects.filter(pk__in=ids).values_list("pk", "contact_id"))
    contact_ids = [c for _p, c in rows]
    people = {c: (name, title, account or "") for c, name, title, account in Contact.objects.filter(
        pk__in=contact_ids).values_list("pk", "name", "title", "account__name")}
    given = {c: (pk, version, status, address) for c, pk, version, status, address in Consent.objects.filter(
        purpose=campaign.purpose, contact_id__in=contact_ids).values_list("contact_id", "pk", "version", "status",
                                                                          "address")}
    suppressed = _suppressed({g[3] for g in given.values() if g[3]})
    ready, skipped = [], {}
    for pk, c in rows:
        consent_id, version, status, address = given.get(c, (0, 0, None, ""))
        why = _skip_reason(status, address, suppressed)
        if why or c not in people:
            skipped[pk] = why or "contact gone"
            continue
        name, title, account = people[c]
        ready.append(Recipient(pk, c, address, name, title, account, consent_id, version))
    return ready, skipped


class Throttle:
    """Waits so that no more than `rate` messages a second go out, on average since the start."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self.next_at = clock()

    def wait(self) -> None:
        now = self.clock()
        if self.next_at > now:
            time.sleep(self.next_at - now)
        self.next_at = max(self.next_at, now - 1.0) + self.interval  # at most a second of catching up


class _RawEmail(EmailMessage):
    """A finished message handed to a non-SMTP Django backend (file, console, locmem) as it is."""

    def __init__(self, raw: bytes, from_email: str, to: str) -> None:
        super().__init__(from_email=from_email, to=[to])
        self.raw = raw

    def message(self, *, policy: Any = None) -> Any:
        return message_from_bytes(self.raw)


class Transport:
    """The SMTP connection Django's settings describe (EMAIL_HOST ...), kept open; raw bytes go out as signed."""

    def __init__(self) -> None:
        self.backend = get_connection(fail_silently=False)
        self.smtp: smtplib.SMTP | None = None

    def send(self, envelope_from: str, to: str, raw: bytes) -> None:
        if not isinstance(self.backend, SmtpBackend):  # the file, console or test backend: hand it over whole
            self.backend.send_messages([_RawEmail(raw, envelope_from, to)])
            return
        if self.smtp is None:
            self.backend.open()
            self.smtp = self.backend.connection
        assert self.smtp is not None
        try:
            if self.smtp.has_extn("pipelining"):
                self._pipelined(self.smtp, envelope_from, to, raw)
            else:
                self.smtp.sendmail(envelope_from, [to], raw)
        except (smtplib.SMTPServerDisconnected, OSError):
            self.close()
            raise

    @staticmethod
    def _pipelined(smtp: smtplib.SMTP, envelope_from: str, to: str, raw: bytes) -> None:
        """MAIL, RCPT and DATA in one write, their answers read after (RFC 2920): two round trips, not four."""
        smtp.send(f"MAIL FROM:<{envelope_from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n")
        (mail_code, mail_text), (rcpt_code, rcpt_text), (data_code, data_text) = (
            smtp.getreply(), smtp.getreply(), smtp.getreply())
        if data_code == 354 and (mail_code != 250 or rcpt_code not in (250, 251)):
            smtp.send(b".\r\n")  # a server that said yes to DATA anyway: end it empty, then forget it
            smtp.getreply()
        if mail_code != 250:
            smtp.rset()
            raise smtplib.SMTPSenderRefused(mail_code, mail_text, envelope_from)
        if rcpt_code not in (250, 251):
            smtp.rset()
            raise smtplib.SMTPRecipientsRefused({to: (rcpt_code, rcpt_text)})
        if data_code != 354:
            smtp.rset()
            raise smtplib.SMTPDataError(data_code, data_text)
        body = re.sub(rb"(?m)^\.", b"..", raw)  # dot-stuffing (RFC 5321 4.5.2)
        smtp.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        code, text = smtp.getreply()
        if code != 250:
            raise smtplib.SMTPDataError(code, text)

    def close(self) -> None:
        if self.smtp is not None:
            with contextlib.suppress(Exception):  # a connection already gone
                self.backend.close()
        self.smtp = None


@dataclass
class Summary:
    """What one run of the sender did, and where the campaign stands."""

    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    retrying: int = 0
    recovered: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    paused: bool = False  # stopped because the campaign was paused

    def line(self) -> str:
        why = ", ".join(f"{k} {n}" for k, n in self.skipped.most_common())
        totals = ", ".join(f"{k} {v}" for k, v in self.totals.items() if v)
        return (f"sent {self.sent}, skipped {sum(self.skipped.values())}" + (f" ({why})" if why else "")
                + f", failed {self.failed}" + (f", to retry {self.retrying}" if self.retrying else "")
                + (f"; campaign so far: {totals}" if totals else "")
                + ("; paused: the rest waits for `accord outreach resume`" if self.paused else ""))


def totals(campaign: Campaign) -> dict[str, int]:
    counts = dict(campaign.sends.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return {s: counts.get(s, 0) for s in S.values}


def _give_up_or_retry(pk: int, attempts: int, why: str, now: dt.datetime) -> str:
    limit = int(getattr(settings, "ACCORD_CAMPAIGN_ATTEMPTS", 5))
    if attempts >= limit:
        CampaignSend.objects.filter(pk=pk).update(status=S.FAILED, reason=f"{why} (given up after {attempts} attempts)"[:300])
        return S.FAILED
    CampaignSend.objects.filter(pk=pk).update(status=S.QUEUED, sender="", reason=f"{why} (attempt {attempts})"[:300],
                                              next_attempt_at=now + dt.timedelta(seconds=backoff(attempts)))
    return S.QUEUED


def mark_sent(pk: int, mid: str) -> None:
    """sending -> sent, one row, right after the server took its message (plain SQL: the ORM's statement building
    cost as much as the UPDATE itself, once per message)."""
    with connection.cursor() as cursor:
        cursor.execute(_MARK_SENT.format(table=connection.ops.quote_name(CampaignSend._meta.db_table)),
                       [S.SENT, connection.ops.adapt_datetimefield_value(timezone.now()), mid, pk, S.SENDING])


_MARK_SENT = "UPDATE {table} SET status = %s, sent_at = %s, message_id = %s, reason = '', sender = '' " \
             "WHERE id = %s AND status = %s"


HELD = (Campaign.Status.DRAFT, Campaign.Status.PAUSED)  # no sender may take these
PAUSE_CHECK = 50  # a sender looks whether its campaign was paused before each batch and every this many messages


def paused(campaign: Campaign) -> bool:
    return Campaign.objects.filter(pk=campaign.pk, status__in=HELD).exists()


def give_back(ids: list[int]) -> None:
    """Claimed rows not sent go back to the queue as they were (the claim's attempt not counted)."""
    CampaignSend.objects.filter(pk__in=ids, status=S.SENDING).update(status=S.QUEUED, sender="",
                                                                     attempts=F("attempts") - 1)


def pause(campaign: Campaign) -> int:
    """Hold a scheduled or sending campaign: every sender stops within `PAUSE_CHECK` messages, giving its claim
    back; nothing is lost or sent twice. The number of recipients still waiting."""
    if not Campaign.objects.filter(pk=campaign.pk, status__in=[Campaign.Status.SCHEDULED,
                                                               Campaign.Status.SENDING]).update(
            status=Campaign.Status.PAUSED):
        current = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).first()
        raise CampaignError(f"Campaign {campaign.pk} is {current}: only a scheduled or sending campaign can be "
                            "paused.")
    campaign.status = Campaign.Status.PAUSED
    return campaign.sends.filter(status__in=[S.QUEUED, S.SENDING]).count()


def resume(campaign: Campaign) -> Campaign:
    """A paused campaign goes on: scheduled again, for its own time (or now); `send-due` or `send-campaign` takes
    it where it stopped."""
    if not Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.PAUSED).update(
            status=Campaign.Status.SCHEDULED):
        current = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).first()
        raise CampaignError(f"Campaign {campaign.pk} is {current}, not paused: there is nothing to resume.")
    campaign.refresh_from_db()
    return campaign


def check_sendable(campaign: Campaign) -> None:
    """Refuse a draft, a template with an unknown placeholder, or a campaign whose time has not come."""
    if campaign.status == Campaign.Status.DRAFT:
        raise CampaignError(f"Campaign {campaign.pk} is a draft: schedule it first (accord outreach schedule).")
    if campaign.status == Campaign.Status.PAUSED:
        raise CampaignError(f"Campaign {campaign.pk} is paused: resume it first (accord outreach resume "
                            f"{campaign.pk}).")
    for name in ("subject", "html", "text"):
        try:
            check_template(getattr(campaign, name))
        except TemplateError as e:
            raise CampaignError(f"The campaign's {name}: {e}") from e
    if campaign.send_at and campaign.send_at > timezone.now():
        raise CampaignError(f"Campaign {campaign.pk} is scheduled for {campaign.send_at:%Y-%m-%d %H:%M} UTC; "
                            "`accord outreach send-due --loop 60` sends it then.")


def due(campaign: Campaign, now: dt.datetime) -> QuerySet[CampaignSend]:
    """The campaign's queued rows whose (first or next) attempt is due."""
    return campaign.sends.filter(status=S.QUEUED).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))


def send(campaign: Campaign, *, batch: int = 200, progress: Callable[[int], None] | None = None,
         started: Callable[[int], None] | None = None, signer: Signer | None = None,
         stop: Callable[[], bool] | None = None, add_recipients: bool = True, rate: float | None = None) -> Summary:
    """Send every due queued message of the campaign, throttled; see the module's doc. First `prepare` adds the
    segment's contacts not yet in the campaign, unless `add_recipients` is off (retries of a finished one).
    `rate` is this sender's share of the campaign's rate when several senders share the campaign."""
    check_sendable(campaign)
    try:
        composer = Composer(campaign, signer)
    except DkimError as e:
        raise CampaignError(f"Campaign mail cannot be signed: {e}") from e
    summary = Summary()
    if add_recipients:
        summary.skipped.update(prepare(campaign).skipped)
    now = timezone.now()
    if not Campaign.objects.filter(pk=campaign.pk).exclude(status__in=HELD).update(
            status=Campaign.Status.SENDING, started_at=campaign.started_at or now):
        raise CampaignError(f"Campaign {campaign.pk} was paused or taken back to draft just now: nothing was sent.")
    summary.recovered = recover(campaign)
    if started is not None:
        started(due(campaign, now).count())
    throttle = Throttle(campaign.rate if rate is None else rate)
    transport = Transport()
    attempts: dict[int, int] = {}
    try:
        while not (stop and stop()) and not summary.paused:
            ids = claim(campaign, batch)
            if not ids:
                break
            if paused(campaign):  # held since the last batch: the claim goes back untouched
                give_back(ids)
                summary.paused = True
                break
            ready, gone = recipients(campaign, ids)
            for pk, why in gone.items():
                CampaignSend.objects.filter(pk=pk).update(status=S.SKIPPED, reason=why, sender="")
                summary.skipped[why.split(" (")[0]] += 1
            if gone and progress:
                progress(len(gone))
            attempts = dict(CampaignSend.objects.filter(pk__in=[r.send_id for r in ready]).values_list("pk", "attempts"))
            for i, r in enumerate(ready):
                if (stop and stop()) or (i and i % PAUSE_CHECK == 0 and paused(campaign)):
                    give_back([x.send_id for x in ready[i:]])  # the rest of the claim
                    summary.paused = not (stop and stop())
                    break
                throttle.wait()
                raw = composer.render(r)
                mid = message_id(campaign, r.send_id)
                try:
                    transport.send(composer.envelope_from, r.address, raw)
                except Exception as e:  # whatever the server or the network said is kept on the row
                    now = timezone.now()
                    why = describe(e)
                    if permanent(e):
                        CampaignSend.objects.filter(pk=r.send_id).update(status=S.FAILED, reason=why[:300],
                                                                         message_id=mid)
                        if isinstance(e, smtplib.SMTPRecipientsRefused):
                            consents.suppress(r.address, Suppression.Reason.HARD_BOUNCE, f"refused at sending: {why}")
                        summary.failed += 1
                    elif _give_up_or_retry(r.send_id, attempts.get(r.send_id, 1), why, now) == S.FAILED:
                        summary.failed += 1
                    else:
                        summary.retrying += 1
                    if progress:
                        progress(1)
                    continue
                point("campaign.sent")  # tests: die with the message sent and not yet marked
                mark_sent(r.send_id, mid)
                summary.sent += 1
                if progress:
                    progress(1)
    finally:
        transport.close()
    summary.totals = totals(campaign)
    if not campaign.sends.filter(status__in=[S.QUEUED, S.SENDING]).exists():
        Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.DONE, finished_at=timezone.now())
    return summary


def due_campaigns(now: dt.datetime | None = None) -> Iterator[Campaign]:
    """Scheduled campaigns whose time has come, and sent ones with retries due."""
    now = now or timezone.now()
    started = Q(status=Campaign.Status.SENDING) | Q(
        status=Campaign.Status.DONE, sends__status=S.QUEUED, sends__next_attempt_at__lte=now)
    yield from Campaign.objects.filter(
        Q(status=Campaign.Status.SCHEDULED) & (Q(send_at__isnull=True) | Q(send_at__lte=now)) | started
    ).distinct().select_related("purpose", "segment").order_by("pk")


def schedule(campaign: Campaign, send_at: dt.datetime | None = None) -> Campaign:
    """Check the campaign and let it go at `send_at` (now if None): templates, segment, rate."""
    campaign.full_clean()
    if not segments.contacts(campaign.segment.spec).exists():
        raise CampaignError(f"The segment {campaign.segment.name!r} matches nobody: there is no one to send "
                            f"{campaign.name!r} to.")
    with transaction.atomic():
        campaign.send_at = send_at or campaign.send_at or timezone.now()
        campaign.status = Campaign.Status.SCHEDULED
        campaign.save(update_fields=["send_at", "status"])
    return campaign


def by_message_id(value: str) -> CampaignSend | None:
    value = value.strip()
    if not value:
        return None
    if not value.startswith("<"):
        value = f"<{value}>"
    return CampaignSend.objects.filter(message_id=value).select_related("campaign").first()

