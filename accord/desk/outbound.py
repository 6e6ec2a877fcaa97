"""E-mail out: agent replies and auto-acknowledgements, threaded, sent after the database commits."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from email.utils import make_msgid

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from .models import Message, SlaClock, Ticket

log = logging.getLogger(__name__)


def mail_domain() -> str:
    return str(getattr(settings, "ACCORD_MAIL_DOMAIN", settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or "accord.localhost"))


def _humanise(minutes: int) -> str:
    if minutes % (60 * 24) == 0 and minutes >= 60 * 24:
        n = minutes // (60 * 24)
        return f"{n} business day{'s' if n > 1 else ''} (24h)"
    if minutes % 60 == 0:
        n = minutes // 60
        return f"{n} business hour{'s' if n > 1 else ''}"
    return f"{minutes} business minutes"


def _thread_headers(ticket: Ticket, parent: Message | None) -> dict[str, str]:
    refs = []
    if parent is not None:
        refs = [*parent.references.split(), *([parent.message_id] if parent.message_id else [])]
    headers = {}
    if parent is not None and parent.message_id:
        headers["In-Reply-To"] = parent.message_id
    if refs:
        headers["References"] = " ".join(refs[-20:])
    return headers


def _subject(ticket: Ticket) -> str:
    base = ticket.subject if ticket.subject.lower().startswith("re:") else f"Re: {ticket.subject}"
    tag = f"[{ticket.reference}]"
    return base if tag in base else f"{base} {tag}"


def _email(message: Message, extra_headers: dict[str, str]) -> EmailMessage:
    return EmailMessage(
        subject=message.subject,
        body=message.body_text,
        from_email=message.from_address or settings.DEFAULT_FROM_EMAIL,
        to=message.to_addresses,
        headers={"Message-ID": message.message_id or make_msgid(domain=mail_domain()), **extra_headers},
    )


def _not_sent(message: Message, error: OSError) -> None:
    Message.objects.filter(pk=message.pk).update(flagged=True, flag_reason=f"not sent: {error}"[:300])
    log.error("could not send %s for ticket %s: %s", message.message_id, message.ticket_id, error)


def send_on_commit(message: Message, extra_headers: dict[str, str]) -> None:
    email = _email(message, extra_headers)

    def send() -> None:
        try:
            email.send()
        except OSError as e:
            _not_sent(message, e)

    transaction.on_commit(send)


def acknowledgement(
    ticket: Ticket, inbound: Message, known: Iterable[SlaClock] | None = None, *, at: dt.datetime | None = None
) -> tuple[Message, dict[str, str]] | None:
    """The acknowledgement of a new ticket, not saved, and the headers to send it with; None without an address.

    It quotes the ticket's reference (so the ticket must be saved) and the first response promised by the
    first-response clock among `known` (the ticket's clocks; read from the database when not given).
    """
    if "@" not in inbound.from_address:
        return None
    clocks = known if known is not None else ticket.clocks.select_related("calendar")
    first = next((c for c in clocks if c.kind == SlaClock.Kind.FIRST_RESPONSE), None)
    if first is not None and first.due_at is not None:
        due_local = timezone.localtime(first.due_at, first.calendar_tz())
        promise = (
            f"Under your agreement we will respond within {_humanise(first.target_minutes)}, "
            f"by {due_local:%a %d %b %Y %H:%M} ({first.calendar.timezone})."
        )
    else:
        promise = "We will get back to you as soon as we can."
    body = (
        f"Hello,\n\nthank you for your message. We have opened request {ticket.reference} for it.\n"
        f"{promise}\n\nPlease keep {ticket.reference} in the subject when you write about this request.\n"
    )
    headers = {"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All", **_thread_headers(ticket, inbound)}
    message = Message(
        ticket=ticket,
        kind=Message.Kind.REPLY,
        channel=ticket.channel,
        from_address=settings.DEFAULT_FROM_EMAIL,
        to_addresses=[inbound.from_address],
        subject=_subject(ticket),
        body_text=body,
        message_id=make_msgid(domain=mail_domain()),
        in_reply_to=headers.get("In-Reply-To", ""),
        references=headers.get("References", ""),
        auto_generated=True,
        created_at=at or timezone.now(),
    )
    return message, headers


def queue_acknowledgement(ticket: Ticket, inbound: Message, known: list[SlaClock] | None = None) -> Message | None:
    """Acknowledge a new ticket by e-mail, quoting its reference and the promised first response."""
    built = acknowledgement(ticket, inbound, known)
    if built is None:
        return None
    message, headers = built
    message.save(force_insert=True)
    send_on_commit(message, headers)
    return message


def queue_reply_email(reply: Message) -> None:
    """Send an agent's public reply on an e-mail ticket to the customer, threaded on the last inbound."""
    ticket = reply.ticket
    parent = ticket.messages.filter(kind=Message.Kind.INBOUND).exclude(message_id=None).order_by("-created_at").first()
    to = [parent.from_address] if parent and parent.from_address else ticket.contact.emails[:1] if ticket.contact else []
    if not to:
        return
    headers = _thread_headers(ticket, parent)
    Message.objects.filter(pk=reply.pk).update(
        from_address=settings.DEFAULT_FROM_EMAIL,
        to_addresses=to,
        subject=_subject(ticket),
        message_id=make_msgid(domain=mail_domain()),
        in_reply_to=headers.get("In-Reply-To", ""),
        references=headers.get("References", ""),
    )
    reply.refresh_from_db()
    send_on_commit(reply, headers)
