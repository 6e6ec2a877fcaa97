"""Replies out: agents' public replies (by e-mail, or to a webhook channel's reply URL) and auto-acknowledgements,
threaded. E-mail goes through the outbox (`outbox.py`: written with the ticket change, sent after the commit,
retried with backoff); a webhook reply is posted after the commit. A send that fails flags its message with the
error."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import make_msgid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from accord.lib.units import instant, minutes

from . import outbox
from .models import Message, SlaClock, Ticket, WebhookChannel

log = logging.getLogger(__name__)


def mail_domain() -> str:
    return str(getattr(settings, "ACCORD_MAIL_DOMAIN", settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or "accord.localhost"))


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


def was_sent(message: Message) -> bool:
    """Whether a message queued with `send_on_commit` went out (or waits in the outbox, not yet refused): asked
    after the commit, when the first attempt has run."""
    return not Message.objects.filter(pk=message.pk, flagged=True).exists()


def send_on_commit(message: Message, extra_headers: dict[str, str], *, auto: bool = False) -> None:
    """Put a saved e-mail in the outbox (`outbox.py`), in this transaction: it is sent once the transaction
    commits, and retried until it goes (an auto-acknowledgement, `auto`, at most once)."""
    outbox.enqueue(message, extra_headers, auto=auto)


def acknowledgement(
    ticket: Ticket, inbound: Message, known: Iterable[SlaClock] | None = None, *, at: dt.datetime | None = None
) -> tuple[Message, dict[str, str]] | None:
    """The acknowledgement of a new ticket, not saved, and the headers to send it with; None without an address.

    It quotes the ticket's reference (so the ticket must be saved) and the first response promised by the
    first-response clock among `known` (the ticket's clocks; read from the database when not given): the
    target, and the due instant in the customer's time zone (their account's; the agreement's calendar's when
    there is none), the zone always named.
    """
    if not is_address(inbound.from_address):
        return None
    clocks = known if known is not None else ticket.clocks.select_related("calendar")
    first = next((c for c in clocks if c.kind == SlaClock.Kind.FIRST_RESPONSE), None)
    if first is not None and first.due_at is not None:
        # The customer's clock, not our office's: a New York customer reads "06:00 EST (America/New_York)".
        zone = ticket.customer_timezone() or first.calendar.timezone
        promise = (
            f"Under your agreement we will respond within {minutes(first.target_minutes, largest='h')} of our "
            f"business hours, by {instant(first.due_at, zone, '%a %d %b %Y %H:%M')}."
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
    send_on_commit(message, headers, auto=True)
    return message


NO_ADDRESS = "This reply cannot be delivered: no e-mail address for this requester."


@dataclass
class Route:
    """Where a public reply on a ticket goes (e-mail or a webhook channel's reply URL), or why it cannot go."""

    via: str = ""  # "email", "webhook", or "" when it cannot be delivered
    to: str = ""  # the e-mail address, or the handle on the webhook channel
    webhook: WebhookChannel | None = None
    parent: Message | None = None  # the customer's message the reply answers (threading)
    problem: str = ""

    def describe(self) -> str:
        """One line for the agent, next to the reply box."""
        if self.via == "webhook" and self.webhook is not None:
            return f"A public reply goes to {self.to} through the {self.webhook.name} channel."
        if self.via == "email":
            return f"A public reply goes by e-mail to {self.to}."
        if self.via == "chat":
            return "A public reply goes to the visitor in the live chat (and into its transcript)."
        return self.problem


def route(ticket: Ticket) -> Route:
    """Where a public reply on this ticket reaches the customer, decided before anything is sent.

    A ticket from a webhook channel with a reply URL is answered there. Every other ticket (and a webhook
    ticket whose channel has none) is answered by e-mail: to the address of the customer's last message (the
    sender of an e-mail, the address typed in the web form), else the contact's first e-mail address. A phone
    ticket from an unknown number has neither: the reply cannot be delivered, and the agent is told so.
    """
    if ticket.channel == Ticket.Channel.CHAT:
        return Route("chat", "the visitor in the chat")
    inbound = list(ticket.messages.filter(kind=Message.Kind.INBOUND).order_by("-created_at", "-id")[:50])
    problem = NO_ADDRESS
    if ticket.channel == Ticket.Channel.SOCIAL:
        parent = next((m for m in inbound if m.meta.get("channel")), None)
        name = parent.meta["channel"] if parent is not None else ""
        channel = WebhookChannel.objects.filter(name=name, enabled=True).first() if name else None
        if parent is not None and channel is not None and channel.reply_url:
            return Route("webhook", parent.from_address, channel, parent)
        if name:
            problem = (f"This reply cannot be delivered: the {name} channel has no reply URL (or is disabled) and "
                       f"there is no e-mail address for this requester.")
    threaded = next((m for m in inbound if m.message_id and is_address(m.from_address)), None)
    if ticket.channel == Ticket.Channel.EMAIL and threaded is not None:
        return Route("email", threaded.from_address, parent=threaded)
    typed = next((m for m in inbound if is_address(m.from_address)), None)
    if typed is not None:
        return Route("email", typed.from_address, parent=typed if typed.message_id else None)
    # A webhook sender's handle ("@globetrotter") is kept as the contact's point too: not an address to mail.
    emails = [e for e in ticket.contact.emails if is_address(e)] if ticket.contact is not None else []
    if emails:
        return Route("email", emails[0])
    return Route(problem=problem)


def is_address(value: str) -> bool:
    """Whether a value is an e-mail address one can send to (a social handle such as "@name" is not)."""
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


def address_reply(reply: Message, to: Route) -> dict[str, str]:
    """Fill in an agent's unsaved reply for its route (sender, recipient, subject, ids); the headers to send it with."""
    ticket = reply.ticket
    reply.to_addresses = [to.to]
    reply.subject = _subject(ticket)
    if to.via == "webhook":
        assert to.webhook is not None
        reply.message_id = f"<reply-{uuid.uuid4().hex}@{to.webhook.name}.webhook>"
        reply.in_reply_to = (to.parent.message_id or "") if to.parent is not None else ""
        reply.meta = {**reply.meta, "channel": to.webhook.name}
        return {}
    headers = _thread_headers(ticket, to.parent)
    reply.from_address = settings.DEFAULT_FROM_EMAIL
    reply.message_id = make_msgid(domain=mail_domain())
    reply.in_reply_to = headers.get("In-Reply-To", "")
    reply.references = headers.get("References", "")
    return headers


def send_reply_on_commit(reply: Message, to: Route, headers: dict[str, str]) -> None:
    """Send a saved reply along its route once the transaction commits; a failure flags it with the error."""
    if to.via == "webhook":
        assert to.webhook is not None
        post_on_commit(reply, to.webhook)
    elif to.via == "chat":
        transaction.on_commit(lambda: chat_broadcast(reply))
    else:
        send_on_commit(reply, headers)


def chat_group(ticket_id: int) -> str:
    """The channel-layer group of a chat ticket's live connections (the visitor's and the agents')."""
    return f"chat-ticket-{ticket_id}"


def chat_broadcast(message: Message) -> None:
    """Hand a reply to the chat's live connections through the channel layer (Channels): the visitor's widget
    and every agent watching. Whoever is not connected reads it from the thread when they reconnect."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(chat_group(message.ticket_id), {
        "type": "chat.message", "id": message.pk, "kind": message.kind, "text": message.body_text,
        "author": (message.author_user.get_full_name() or message.author_user.get_username())
        if message.author_user else "", "at": message.created_at.isoformat()})


def post_on_commit(reply: Message, channel: WebhookChannel) -> None:
    """Put a reply for a webhook channel in the outbox (`outbox.py`), in this transaction: it is POSTed once the
    transaction commits (`post_reply`) and, should that fail, retried with backoff by the sender, shown on
    /desk/outbox/ with its last error meanwhile."""
    outbox.enqueue(reply, {}, webhook=channel)
