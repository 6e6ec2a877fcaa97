"""Bounces: delivery status notifications (RFC 3464) read with the email package, and what they change.

A DSN is a `multipart/report; report-type=delivery-status` whose `message/delivery-status` part holds one block
of per-message fields and one block per recipient (`Final-Recipient`, `Action`, `Status`, `Diagnostic-Code`),
usually followed by the returned message or its headers, whose Message-ID names our `CampaignSend`.

- **hard**: `Action: failed` with a `5.x.x` status: the address is suppressed (hard bounce, with the status and
  the diagnostic) and the send is marked bounced;
- **soft**: a `4.x.x` status, or `Action: delayed`: counted on the send. A `failed` one is queued again after a
  backoff (the sender retries it); a `delayed` one only counted (the remote server is still trying). At
  ACCORD_SOFT_BOUNCE_LIMIT soft bounces (3) the address is suppressed and the send marked bounced.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.utils import parseaddr

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accord.desk.outbox import backoff

from . import consent as consents
from .campaigns import by_message_id
from .models import CampaignSend, Suppression

S = CampaignSend.Status


class NotADsn(ValueError):
    """A message that is not a delivery status notification (RFC 3464)."""


@dataclass
class Bounce:
    """One recipient's block of a DSN."""

    recipient: str
    action: str
    status: str
    diagnostic: str
    message_id: str

    @property
    def kind(self) -> str:
        """hard, soft, or "" (delivered, relayed, expanded: nothing to do)."""
        if self.action == "failed" and self.status.startswith("5."):
            return "hard"
        if self.action == "delayed" or self.status.startswith("4."):
            return "soft"
        return ""

    def why(self) -> str:
        return f"{self.status} {self.diagnostic}".strip()[:300]


def _field(block: Message, name: str) -> str:
    value = block.get(name, "")
    return " ".join(str(value).split())


def _address(value: str) -> str:
    # "rfc822; ada@example.com" (RFC 3464 2.3.2): the address type, then the address
    _type, _, address = value.partition(";")
    return parseaddr((address or value).strip())[1].strip().lower()


def _returned_message_id(report: Message) -> str:
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get("Message-ID"):
                return str(inner["Message-ID"]).strip()
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if not isinstance(text, bytes):
                continue
            found = re.search(rb"^Message-ID:\s*(<[^>\r\n]+>)", text, re.IGNORECASE | re.MULTILINE)
            if found:
                return found.group(1).decode(errors="replace")
    return ""


def parse(raw: bytes) -> list[Bounce]:
    """The recipients' blocks of a DSN, or NotADsn."""
    report = message_from_bytes(raw, policy=policy.compat32)
    if report.get_content_type() != "multipart/report" or \
            str(report.get_param("report-type") or "").lower() != "delivery-status":
        raise NotADsn(f"not a delivery status notification (Content-Type {report.get_content_type()}, "
                      "expected multipart/report; report-type=delivery-status)")
    status_part = next((p for p in report.walk() if p.get_content_type() == "message/delivery-status"), None)
    if status_part is None:
        raise NotADsn("a report without a message/delivery-status part")
    blocks = status_part.get_payload()
    if not isinstance(blocks, list) or len(blocks) < 2:
        raise NotADsn("the delivery-status part has no per-recipient fields")
    message_id = _returned_message_id(report)
    found = []
    for block in [b for b in blocks[1:] if isinstance(b, Message)]:
        recipient = _address(_field(block, "Final-Recipient") or _field(block, "Original-Recipient"))
        if not recipient:
            continue
        found.append(Bounce(recipient=recipient, action=_field(block, "Action").lower(),
                            status=_field(block, "Status").split(" ")[0],
                            diagnostic=_field(block, "Diagnostic-Code"), message_id=message_id))
    if not found:
        raise NotADsn("the report names no recipient (Final-Recipient)")
    return found


@dataclass
class Outcome:
    """What a bounce changed: `hard`, `soft` (retried or counted), `suppressed` (soft past the limit), `ignored`."""

    bounce: Bounce
    result: str
    send_id: int | None = None


def _send_for(bounce: Bounce) -> CampaignSend | None:
    send = by_message_id(bounce.message_id) if bounce.message_id else None
    if send is not None and send.address.lower() == bounce.recipient:
        return send
    return (CampaignSend.objects.filter(address__iexact=bounce.recipient, status__in=[S.SENT, S.BOUNCED])
            .order_by("-sent_at", "-id").first())


@transaction.atomic
def record(bounce: Bounce, now: dt.datetime | None = None) -> Outcome:
    """Apply one recipient's bounce (see the module's doc)."""
    now = now or timezone.now()
    kind = bounce.kind
    if not kind:
        return Outcome(bounce, "ignored")
    send = _send_for(bounce)
    if kind == "hard":
        consents.suppress(bounce.recipient, Suppression.Reason.HARD_BOUNCE, bounce.why())
        if send is not None:
            CampaignSend.objects.filter(pk=send.pk).update(status=S.BOUNCED, reason=f"hard bounce: {bounce.why()}"[:300])
        return Outcome(bounce, "hard", send.pk if send else None)
    if send is None:
        return Outcome(bounce, "ignored")
    send = CampaignSend.objects.select_for_update().get(pk=send.pk)
    limit = int(getattr(settings, "ACCORD_SOFT_BOUNCE_LIMIT", 3))
    if send.soft_bounces + 1 >= limit:
        consents.suppress(bounce.recipient, Suppression.Reason.SOFT_BOUNCE,
                          f"{send.soft_bounces + 1} soft bounces, the last: {bounce.why()}")
        CampaignSend.objects.filter(pk=send.pk).update(
            status=S.BOUNCED, soft_bounces=F("soft_bounces") + 1,
            reason=f"soft bounce {send.soft_bounces + 1} of {limit}, suppressed: {bounce.why()}"[:300])
        return Outcome(bounce, "suppressed", send.pk)
    changes: dict[str, object] = {"soft_bounces": F("soft_bounces") + 1,
                                  "reason": f"soft bounce {send.soft_bounces + 1} of {limit}: {bounce.why()}"[:300]}
    if bounce.action == "failed" and send.status == S.SENT:  # the remote server gave up: we try again later
        changes.update(status=S.QUEUED, next_attempt_at=now + dt.timedelta(seconds=backoff(send.soft_bounces + 1)))
    CampaignSend.objects.filter(pk=send.pk).update(**changes)
    return Outcome(bounce, "soft", send.pk)


def handle(raw: bytes, now: dt.datetime | None = None) -> list[Outcome]:
    """Parse a DSN and apply each recipient's bounce; NotADsn if it is none."""
    return [record(b, now) for b in parse(raw)]


def looks_like_dsn(raw: bytes) -> bool:
    """A cheap test on the headers alone, for mail arriving in a desk mailbox."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].lower()
    return b"multipart/report" in head and b"delivery-status" in head


def take_from_mailbox(raw: bytes) -> bool:
    """Asked by the desk's IMAP poller for each new message: a DSN about campaign mail is handled here and
    becomes no ticket; any other message (a bounce of a ticket reply included) is left to the desk."""
    if not looks_like_dsn(raw):
        return False
    try:
        found = parse(raw)
    except NotADsn:
        return False
    if not any(_send_for(b) is not None for b in found):
        return False
    for bounce in found:
        record(bounce)
    return True
