"""The outbox: outgoing e-mail written in the transaction of its ticket change, then sent, retried and tracked.

An agent's e-mail reply and an auto-acknowledgement are stored as an `OutgoingMail` row in the same transaction
as their message: once the change commits, the mail cannot be lost. It is tried right after the commit (so a
reply normally leaves at once) and, should that fail, by `accord desk send-mail --loop N`, the sender, with
exponential backoff: `ACCORD_OUTBOX_BACKOFF` seconds doubled at each attempt, capped at
`ACCORD_OUTBOX_BACKOFF_MAX`, each delay drawn between half and all of that (jitter, so a queue that built up
while the server was down does not hit it in one burst). A permanent refusal (an SMTP 5xx) marks it failed at
once; mail still refused after `ACCORD_OUTBOX_GIVE_UP` seconds (5 days, Postfix's queue lifetime) too. The staff
page /desk/outbox/ lists what is pending or failed with its last error, and retries it on demand.

A reply on a webhook ticket goes through the same outbox (`via` webhook): it is POSTed to the channel's reply
URL (`webhook_reply.post_reply`) instead of e-mailed, with the same claim, backoff, lease and page. A 4xx answer is a
permanent refusal; a refused connection, a timeout or a 5xx is retried. Its `X-Accord-Delivery` id is the same on
every attempt, so a receiver recognises the one duplicate a sender killed mid-POST can cause.

Each attempt is claim → send → mark. The claim (pending → sending, with the attempt counted) commits before a
byte goes out, so two senders never send one mail. A sender that dies between the send and the mark leaves the
row in `sending`; after `ACCORD_OUTBOX_LEASE` seconds it is taken back:

- a reply is sent again, with the same Message-ID: at most the one mail in flight is duplicated, and a mail
  client shows the duplicate once;
- an auto-acknowledgement is never sent again (at most once): it is marked failed, "interrupted while sending",
  for staff to check and retry by hand. So is an acknowledgement whose send failed in a way that does not say
  the server refused it (a connection lost after the data went out): the customer may have it already.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import smtplib
import socket
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accord.lib.faults import point

from .models import Message, OutgoingMail, WebhookChannel
from .webhook_reply import WebhookRefused, post_reply

log = logging.getLogger(__name__)
S = OutgoingMail.Status


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def backoff(attempts: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after `attempts` failed attempts: doubling from the base, capped, with jitter."""
    base = _setting("ACCORD_OUTBOX_BACKOFF", 30.0)
    ceiling = min(_setting("ACCORD_OUTBOX_BACKOFF_MAX", 3600.0), base * 2 ** max(0, min(attempts - 1, 30)))
    return ceiling * (rng or random).uniform(0.5, 1.0)


def email(message: Message, headers: dict[str, str]) -> EmailMessage:
    """The e-mail of a stored message, with its Message-ID (so a duplicate is recognisable as one)."""
    return EmailMessage(
        subject=message.subject,
        body=message.body_text,
        from_email=message.from_address or settings.DEFAULT_FROM_EMAIL,
        to=message.to_addresses,
        headers={"Message-ID": message.message_id or "", **headers},
    )


def enqueue(message: Message, headers: dict[str, str], *, auto: bool = False,
            webhook: WebhookChannel | None = None) -> OutgoingMail:
    """Put a saved message in the outbox, in the caller's transaction; it is tried once that commits. With
    `webhook` it is POSTed to that channel's reply URL instead of e-mailed."""
    now = timezone.now()
    via = OutgoingMail.Via.WEBHOOK if webhook is not None else OutgoingMail.Via.EMAIL
    row = OutgoingMail.objects.create(message=message, headers=headers, auto=auto, created_at=now, next_attempt_at=now,
                                      via=via, channel=webhook)
    _try_on_commit([row.pk])
    return row


def enqueue_many(outgoing: list[tuple[Message, dict[str, str]]], *, auto: bool = False) -> None:
    """`enqueue` for messages saved in bulk (one INSERT)."""
    if not outgoing:
        return
    now = timezone.now()
    rows = OutgoingMail.objects.bulk_create(
        [OutgoingMail(message=m, headers=h, auto=auto, created_at=now, next_attempt_at=now) for m, h in outgoing]
    )
    _try_on_commit([r.pk for r in rows])


def _try_on_commit(pks: list[int]) -> None:
    if getattr(settings, "ACCORD_OUTBOX_SEND_ON_COMMIT", True):
        transaction.on_commit(lambda: [deliver(pk) for pk in pks])


def permanent(error: Exception) -> bool:
    """Whether the server refused for good (SMTP 5xx, webhook 4xx): trying again would be refused again."""
    if isinstance(error, WebhookRefused):
        return True
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code >= 500
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _text in error.recipients.values())
    return False


def refused(error: Exception) -> bool:
    """Whether the server certainly did not take the mail (so sending it again cannot duplicate it)."""
    return isinstance(error, ConnectionRefusedError | socket.gaierror | smtplib.SMTPConnectError
                      | smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused | smtplib.SMTPHeloError)


def describe(error: Exception) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else str(error.smtp_error)
        return f"SMTP {error.smtp_code} {text}"
    if isinstance(error, WebhookRefused):
        return str(error)
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "recipients refused: " + "; ".join(
            f"{addr}: {code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
            for addr, (code, text) in error.recipients.items())
    return f"{type(error).__name__}: {error}"


def deliver(pk: int, now: dt.datetime | None = None) -> str:
    """One attempt at one outgoing mail if it is due: claim, send, mark. Returns its status after ("" if not due)."""
    now = now or timezone.now()
    won = OutgoingMail.objects.filter(pk=pk, status=S.PENDING, next_attempt_at__lte=now).update(
        status=S.SENDING, claimed_at=now, attempts=F("attempts") + 1)
    if not won:
        return ""
    row = OutgoingMail.objects.select_related("message", "channel").get(pk=pk)
    point("outbox.claimed")  # tests: die with the mail claimed and not sent
    try:
        if row.via == OutgoingMail.Via.WEBHOOK:
            if row.channel is None:
                raise WebhookRefused("the webhook channel was deleted")
            post_reply(row.message, row.channel)
        else:
            get_connection(fail_silently=False).send_messages([email(row.message, row.headers)])
    except Exception as e:  # whatever the backend raises is recorded on the row, not lost
        return _failed(row, e)
    point("outbox.sent")  # tests: die with the mail sent and not yet marked
    OutgoingMail.objects.filter(pk=pk, status=S.SENDING).update(status=S.SENT, sent_at=timezone.now(), last_error="")
    Message.objects.filter(pk=row.message_id, flagged=True, flag_reason__startswith="not sent").update(
        flagged=False, flag_reason="")
    return S.SENT


def _failed(row: OutgoingMail, error: Exception) -> str:
    now = timezone.now()
    why = describe(error)
    give_up = now - row.created_at > dt.timedelta(seconds=_setting("ACCORD_OUTBOX_GIVE_UP", 5 * 86400.0))
    if permanent(error):
        status, note = S.FAILED, "refused for good; not retried"
    elif row.auto and not refused(error):
        status, note = S.FAILED, "an acknowledgement that may have been delivered is not sent again"
    elif give_up:
        status, note = S.FAILED, f"given up after {row.attempts} attempts"
    else:
        status, note = S.PENDING, f"attempt {row.attempts}, retried later"
    wait = backoff(row.attempts)
    OutgoingMail.objects.filter(pk=row.pk, status=S.SENDING).update(
        status=status, last_error=f"{why} ({note})"[:500], next_attempt_at=now + dt.timedelta(seconds=wait))
    Message.objects.filter(pk=row.message_id).update(flagged=True, flag_reason=f"not sent: {why} ({note})"[:300])
    log.warning("mail %s for ticket %s not sent: %s (%s)", row.message.message_id, row.message.ticket_id, why, note)
    return status


@dataclass
class Pass:
    """What one pass of the sender did."""

    sent: int = 0
    retrying: int = 0  # failed this time, to be tried again
    failed: int = 0  # failed for good this time
    recovered: int = 0  # claims of a dead sender taken back


def recover(now: dt.datetime | None = None) -> int:
    """Take back the claims of senders that died mid-send (older than the lease); see the module's doc."""
    now = now or timezone.now()
    stale = OutgoingMail.objects.filter(status=S.SENDING,
                                        claimed_at__lt=now - dt.timedelta(seconds=_setting("ACCORD_OUTBOX_LEASE", 300.0)))
    acks = stale.filter(auto=True).update(
        status=S.FAILED, last_error="interrupted while sending: it may have been delivered, so an acknowledgement is "
                                    "not sent again automatically (retry by hand if the customer did not get it)")
    replies = stale.filter(auto=False).update(status=S.PENDING, next_attempt_at=now,
                                              last_error="interrupted while sending; sent again (same Message-ID)")
    return acks + replies


def send_due(limit: int = 200, now: dt.datetime | None = None) -> Pass:
    """One pass of the sender: take back dead claims, then try every mail whose next attempt is due."""
    now = now or timezone.now()
    result = Pass(recovered=recover(now))
    due = list(OutgoingMail.objects.filter(status=S.PENDING, next_attempt_at__lte=now)
               .order_by("next_attempt_at", "id").values_list("pk", flat=True)[:limit])
    for pk in due:
        status = deliver(pk)
        if status == S.SENT:
            result.sent += 1
        elif status == S.PENDING:
            result.retrying += 1
        elif status == S.FAILED:
            result.failed += 1
    return result


def retry_now(pks: list[int]) -> int:
    """Staff: try these pending or failed mails again now (a failed acknowledgement too: a person decided)."""
    return OutgoingMail.objects.filter(Q(status=S.PENDING) | Q(status=S.FAILED), pk__in=pks).update(
        status=S.PENDING, next_attempt_at=timezone.now())
