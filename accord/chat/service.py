"""Starting a chat, checking a visitor's signed identity, deciding online or offline, mailing a transcript.

A chat starts with the widget's pre-chat form (`start`): with an agent online and inside the hours of the
calendar that applies, it is a ticket on the channel `chat` under the visitor's agreement (a known visitor's
account's; a guest's is the agreement named by ACCORD_CHAT_AGREEMENT) whose objectives for the channel `chat`
set its clocks (e.g. a first response within 1 minute), and the visitor gets a token for the WebSocket; otherwise the
message becomes an e-mail ticket and the widget says when we answer. A known visitor comes with their id
signed by the host site: HMAC-SHA256 of `"<id>:<unix time>"` with ACCORD_CHAT_SECRET, at most
`IDENTITY_MAX_AGE` seconds old; a forged, expired or unknown one is refused and the chat goes on anonymously.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accord.agreements.models import Agreement, BusinessCalendar
from accord.customers.models import Contact
from accord.desk.actions import Inbound, do_open_ticket
from accord.desk.clocks import engine
from accord.desk.models import Message, Ticket

from .models import AgentConnection, ChatSession

IDENTITY_MAX_AGE = 300  # seconds a signed identity stays valid (a replay after that is refused)
ONLINE_SECONDS = 60  # an agent's console pings every 20 s; silent for this long, it counts as gone
MAX_TEXT = 2000  # characters of one chat message


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign(visitor_id: str, at: int, secret: str | None = None) -> str:
    """What the host site computes for a known visitor (shown in docs/chat.md, used by the tests)."""
    key = (secret if secret is not None else settings.ACCORD_CHAT_SECRET).encode()
    return hmac.new(key, f"{visitor_id}:{at}".encode(), hashlib.sha256).hexdigest()


def check_identity(visitor_id: str, at: str, signature: str, now: float | None = None) -> tuple[Contact | None, str]:
    """(the contact vouched for, "") or (None, why not)."""
    if not visitor_id:
        return None, ""
    if not settings.ACCORD_CHAT_SECRET:
        return None, "identities are not configured (ACCORD_CHAT_SECRET)"
    try:
        stamp = int(at)
    except (TypeError, ValueError):
        return None, "the identity's time is not a number"
    now = time.time() if now is None else now
    if abs(now - stamp) > IDENTITY_MAX_AGE:
        return None, "the identity's signature has expired"
    if not hmac.compare_digest(sign(visitor_id, stamp), str(signature or "")):
        return None, "the identity's signature does not match"
    contact = Contact.objects.select_related("account").filter(external_id=visitor_id).first()
    if contact is None:
        return None, "no contact has this id"
    return contact, ""


def agents_online(now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
    return (AgentConnection.objects.filter(seen_at__gte=now - dt.timedelta(seconds=ONLINE_SECONDS))
            .values("user").distinct().count())


def chat_calendar(contact: Contact | None, now: dt.datetime) -> BusinessCalendar | None:
    """The hours the chat is staffed: the visitor's agreement's calendar, else ACCORD_CHAT_CALENDAR, else always."""
    if contact is not None and contact.account is not None:
        agreement = Agreement.for_account(contact.account, timezone.localdate(now))
        if agreement is not None and agreement.calendar_id:
            return agreement.calendar
    name = getattr(settings, "ACCORD_CHAT_CALENDAR", "")
    return BusinessCalendar.objects.filter(name=name).first() if name else None


@dataclass
class Started:
    ticket: Ticket
    token: str = ""  # the visitor's bearer for the WebSocket ("" when offline)
    offline: bool = False
    why_offline: str = ""
    identity_note: str = ""


def start(name: str, email: str, text: str, *, identity: tuple[str, str, str] = ("", "", ""), origin: str = "",
          now: dt.datetime | None = None) -> Started:
    """Open a chat (or, offline, an e-mail ticket) from the pre-chat form; the caller validated the fields."""
    now = now or timezone.now()
    contact, note = check_identity(*identity)
    calendar = chat_calendar(contact, now)
    why = ""
    if calendar is not None and not engine(calendar).is_working(now):
        why = "We are outside our chat hours"
    elif not agents_online(now):
        why = "No agent is online right now"
    # A chat's typed address is not proof of who writes: only a signed identity links a contact (and its account's
    # agreement). Offline, the message is an e-mail ticket like the web form's, matched and answered by address.
    inbound = Inbound(channel=Ticket.Channel.EMAIL if why else Ticket.Channel.CHAT,
                      subject=f"Chat with {name}" if not why else f"Chat message from {name}",
                      body_text=text, from_address=email if why else "", from_name=name, received_at=now,
                      meta={"via": "chat widget", "origin": origin[:200], "email": email})
    with transaction.atomic():
        guests = getattr(settings, "ACCORD_CHAT_AGREEMENT", "")
        default = Agreement.objects.filter(name=guests).first() if guests and contact is None else None
        ticket = do_open_ticket(inbound, contact=contact, account=contact.account if contact else None,
                                agreement=default)
        if why:
            return Started(ticket, offline=True, why_offline=why, identity_note=note)
        token = secrets.token_urlsafe(32)
        ChatSession.objects.create(ticket=ticket, token_hash=token_hash(token), visitor_name=name,
                                   visitor_email=email, contact=contact, identity_note=note, origin=origin[:200])
    return Started(ticket, token=token, identity_note=note)


def transcript(session: ChatSession) -> str:
    lines = [f"Chat {session.ticket.reference}, {session.created_at:%Y-%m-%d %H:%M} UTC", ""]
    for m in session.ticket.messages.exclude(kind=Message.Kind.NOTE).order_by("created_at", "id"):
        who = session.visitor_name if m.kind == Message.Kind.INBOUND else "Support"
        lines.append(f"[{m.created_at:%H:%M}] {who}: {m.body_text}")
    return "\n".join(lines) + "\n"


def mail_transcript(session: ChatSession) -> bool:
    if not session.visitor_email:
        return False
    send_mail(f"Your chat {session.ticket.reference}", transcript(session), None, [session.visitor_email])
    return True
