"""State changes on tickets; each is atomic and keeps the SLA clocks in step (see clocks.py).

Every change to an existing ticket begins with `worker.settled`: the ticket and its clocks are locked, and what
is already due at the instant of the change (warnings, breaches, their escalation rules) is recorded before the
change can stop, cancel or retarget a clock. Clocks are saved with only the fields the change sets.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accord.agreements.models import Agreement
from accord.customers.models import Account, Contact, ContactPoint

from . import clocks, outbound, worker
from .models import Message, RawMessage, SlaClock, Ticket

K = SlaClock.Kind


@dataclass
class Inbound:
    """A customer's message as a channel hands it over."""

    channel: str
    subject: str
    body_text: str = ""
    body_html: str = ""
    from_address: str = ""
    from_name: str = ""
    to_addresses: list[str] = field(default_factory=list)
    cc_addresses: list[str] = field(default_factory=list)
    message_id: str | None = None
    in_reply_to: str = ""
    references: str = ""
    priority: str = Ticket.Priority.NORMAL
    received_at: dt.datetime | None = None
    flagged: bool = False
    flag_reason: str = ""
    auto_generated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    raw: RawMessage | None = None


def match_sender(address: str, name: str = "", kind: str = ContactPoint.Kind.EMAIL) -> tuple[Contact | None, Account | None]:
    """Find the contact (and account) of a sender's address or phone; unknown senders get a new contact."""
    value = address.strip().lower() if kind == ContactPoint.Kind.EMAIL else normalise_phone(address)
    if not value:
        return None, None
    point = ContactPoint.objects.select_related("contact__account").filter(kind=kind, value=value).first()
    if point is not None:
        return point.contact, point.contact.account
    contact = Contact.objects.create(name=(name or value)[:200])
    ContactPoint.objects.create(contact=contact, kind=kind, value=value, primary=True)
    return contact, None


def normalise_phone(raw: str) -> str:
    """Keep a leading + and the digits, so '+44 20 7946-0000' and '+442079460000' match."""
    raw = raw.strip()
    digits = "".join(ch for ch in raw if ch.isdigit())
    return ("+" if raw.startswith("+") else "") + digits


def _refresh(ticket: Ticket, at: dt.datetime, known: list[SlaClock] | None = None) -> None:
    # The badge is about now: an event recorded after the fact (a call logged late) may already be overdue.
    clocks.refresh(ticket, max(at, timezone.now()), known, updated_at=timezone.now())


def _start_clocks(ticket: Ticket, at: dt.datetime, kinds: tuple[str, ...], cycle: int = 1) -> list[SlaClock]:
    started = _plan_clocks(ticket, at, kinds, cycle)
    for clock in started:
        clock.save()
    return started


def do_open_ticket(
    inbound: Inbound, *, contact: Contact | None = None, account: Account | None = None,
    agreement: Agreement | None = None,
) -> Ticket:
    """Create a ticket from a customer's first message and start its clocks. `agreement` applies when the ticket
    has no account (a guest's chat under the company's default chat agreement); an account's own wins."""
    at = inbound.received_at or timezone.now()
    nul_free(inbound)
    # No savepoint: a caller's transaction (a mail import) already isolates each message.
    with transaction.atomic(savepoint=False):
        if contact is None and inbound.from_address:
            kind = ContactPoint.Kind.PHONE if inbound.channel == Ticket.Channel.PHONE else ContactPoint.Kind.EMAIL
            contact, matched_account = match_sender(inbound.from_address, inbound.from_name, kind)
            account = account or matched_account
        if account is None and contact is not None:
            account = contact.account
        agreement = Agreement.for_account(account, timezone.localdate(at)) if account else agreement
        ticket, planned = plan_ticket(inbound, at, contact=contact, account=account, agreement=agreement)
        ticket.save()
        for clock in planned:
            clock.ticket = ticket
        SlaClock.objects.bulk_create(planned)
        ticket.first_message = _store_message(ticket, inbound, Message.Kind.INBOUND, at, contact=contact)  # type: ignore[attr-defined]
        ticket.new_clocks = planned  # type: ignore[attr-defined]
    return ticket


def plan_ticket(
    inbound: Inbound, at: dt.datetime, *, contact: Contact | None, account: Account | None, agreement: Agreement | None
) -> tuple[Ticket, list[SlaClock]]:
    """A new ticket and its planned clocks, not saved: the ticket carries its due instant and SLA state already,
    so it is written once, and its clocks in one statement (`do_open_ticket`, the batch e-mail import)."""
    ticket = Ticket(
        account=account,
        contact=contact,
        channel=inbound.channel,
        subject=(inbound.subject or "(no subject)")[:300],
        priority=inbound.priority,
        agreement=agreement,
        created_at=at,
    )
    objectives = clocks.targets(agreement, ticket.priority, ticket.channel)
    planned = [clocks.plan(ticket, k, objectives[k], at) for k in (K.FIRST_RESPONSE, K.RESOLUTION) if k in objectives]
    clocks.summarise(ticket, max(at, timezone.now()), planned)
    return ticket, planned


def nul_free(inbound: Inbound) -> None:
    """PostgreSQL text cannot hold NUL; the raw source keeps the exact bytes, the text gets U+FFFD."""
    for name in ("subject", "body_text", "body_html", "from_address", "from_name", "in_reply_to", "references"):
        value = getattr(inbound, name)
        if "\x00" in value:
            setattr(inbound, name, value.replace("\x00", "\ufffd"))
    inbound.to_addresses = [a.replace("\x00", "\ufffd") for a in inbound.to_addresses]
    inbound.cc_addresses = [a.replace("\x00", "\ufffd") for a in inbound.cc_addresses]
    if inbound.message_id and "\x00" in inbound.message_id:
        inbound.message_id = inbound.message_id.replace("\x00", "\ufffd")


def _store_message(
    ticket: Ticket, inbound: Inbound, kind: str, at: dt.datetime, *, contact: Contact | None = None
) -> Message:
    message = new_message(ticket, inbound, kind, at, contact_id=contact.pk if contact is not None else None)
    if contact is not None:
        message.author_contact = contact
    message.save(force_insert=True)
    return message


def new_message(ticket: Ticket, inbound: Inbound, kind: str, at: dt.datetime, *, contact_id: int | None) -> Message:
    """The thread entry of a customer's message, not saved (NUL-free, as PostgreSQL text needs)."""
    nul_free(inbound)
    return Message(
        ticket=ticket,
        kind=kind,
        channel=inbound.channel,
        author_contact_id=contact_id,
        from_address=inbound.from_address,
        to_addresses=inbound.to_addresses,
        cc_addresses=inbound.cc_addresses,
        subject=inbound.subject[:998],
        body_text=inbound.body_text,
        body_html=inbound.body_html,
        message_id=inbound.message_id,
        in_reply_to=inbound.in_reply_to,
        references=inbound.references,
        flagged=inbound.flagged,
        flag_reason=inbound.flag_reason[:300],
        auto_generated=inbound.auto_generated,
        meta=inbound.meta,
        raw=inbound.raw,
        created_at=at,
    )


def do_add_customer_message(ticket: Ticket, inbound: Inbound, contact: Contact | None = None) -> Message:
    """The customer writes on an existing ticket: it reopens or resumes, and a next-response clock starts."""
    at = inbound.received_at or timezone.now()
    with transaction.atomic():
        ticket, known = worker.settled(ticket.pk, at)
        message = _store_message(ticket, inbound, Message.Kind.INBOUND, at, contact=contact or ticket.contact)
        change = customer_wrote(ticket, known, at, inbound.auto_generated)
        if change.status_changed:
            ticket.save(update_fields=["status", "solved_at"])
        for clock in change.changed:
            clock.save(update_fields=clocks.SCHEDULE_FIELDS)
        SlaClock.objects.bulk_create(change.started)
        _refresh(ticket, at, known)
    return message


@dataclass
class CustomerWrote:
    """What a customer's message did to a ticket and its clocks, in memory (see `customer_wrote`)."""

    status_changed: bool = False
    changed: list[SlaClock] = field(default_factory=list)  # existing clocks to save
    started: list[SlaClock] = field(default_factory=list)  # new clocks to insert (also appended to `known`)


def customer_wrote(ticket: Ticket, known: list[SlaClock], at: dt.datetime, auto_generated: bool) -> CustomerWrote:
    """Apply the rules for a customer's message on an existing ticket to the ticket and its clocks, unsaved.

    `known` are all the ticket's clocks (with their calendars); new clocks are appended to it. A solved ticket
    reopens with a new resolution cycle, a pending or on-hold one opens and its clocks resume, and after an
    agent's answer a next-response clock starts unless one is already waiting. A closed ticket stays closed.
    Shared by `do_add_customer_message` and the batch e-mail import, which saves many tickets at once.
    """
    change = CustomerWrote()
    if ticket.status == Ticket.Status.CLOSED:
        return change  # the channel decides whether to open a follow-up
    if ticket.status == Ticket.Status.SOLVED:
        # Reopen: resolution restarts as a new cycle; the old cycle is kept (as _reopen does).
        cycle = sum(1 for c in known if c.kind == K.RESOLUTION) + 1
        ticket.status = Ticket.Status.OPEN
        ticket.solved_at = None
        change.status_changed = True
        started = _plan_clocks(ticket, at, (K.RESOLUTION,), cycle)
        change.started += started
        known += started
    elif ticket.status in Ticket.PAUSED_STATUSES:
        for clock in clocks.live(known):
            if clock.status == SlaClock.Status.PAUSED:
                clocks.resume(clock, at, save=False)
                if clock.status == SlaClock.Status.RUNNING:
                    change.changed.append(clock)
        ticket.status = Ticket.Status.OPEN
        change.status_changed = True
    if not auto_generated:
        answered = any(c.kind == K.FIRST_RESPONSE and c.status == SlaClock.Status.MET for c in known)
        waiting = clocks.live(c for c in known if c.kind in (K.FIRST_RESPONSE, K.NEXT_RESPONSE))
        if answered and not waiting:
            cycle = sum(1 for c in known if c.kind == K.NEXT_RESPONSE) + 1
            started = _plan_clocks(ticket, at, (K.NEXT_RESPONSE,), cycle)
            change.started += started
            known += started
    return change


def _plan_clocks(ticket: Ticket, at: dt.datetime, kinds: tuple[str, ...], cycle: int = 1) -> list[SlaClock]:
    objectives = clocks.targets(ticket.agreement, ticket.priority, ticket.channel)
    return [clocks.plan(ticket, kind, objectives[kind], at, cycle) for kind in kinds if kind in objectives]


def do_reply(
    ticket: Ticket, user: AbstractBaseUser, body_text: str, *, at: dt.datetime | None = None,
    new_status: str | None = None, **fields: Any,
) -> Message:
    """An agent's public reply: it reaches the first or next response milestone and goes to the customer.

    It goes out after the commit on the route `outbound.route` finds (e-mail, or the webhook channel's reply
    URL). A reply that cannot reach the customer (a phone ticket from an unknown number with no e-mail
    address) is refused with the reason, before anything is stored: the agent can add the text as a note.
    """
    if not body_text.strip():
        raise ValidationError({"body_text": "A reply needs some text."})
    at = at or timezone.now()
    with transaction.atomic():
        ticket, known = worker.settled(ticket.pk, at)
        to = outbound.route(ticket)
        if to.problem:
            raise ValidationError({"body_text": to.problem})
        message = Message(
            ticket=ticket, kind=Message.Kind.REPLY, channel=ticket.channel, author_user=user,  # type: ignore[misc]
            body_text=body_text, created_at=at, **fields,
        )
        headers = outbound.address_reply(message, to)
        message.save(force_insert=True)
        for clock in clocks.live(c for c in known if c.kind in (K.FIRST_RESPONSE, K.NEXT_RESPONSE)):
            clocks.stop(clock, at)
        outbound.send_reply_on_commit(message, to, headers)
        if ticket.status == Ticket.Status.NEW:
            ticket.status = Ticket.Status.OPEN
            ticket.save(update_fields=["status"])
        if new_status:
            _set_status(ticket, known, new_status, at)
        _refresh(ticket, at)
    return message


def do_add_note(
    ticket: Ticket, user: AbstractBaseUser, body_text: str, *, at: dt.datetime | None = None,
    new_status: str | None = None,
) -> Message:
    """An internal note: visible to agents only, and no response for any clock; with a new status, in one step."""
    if not body_text.strip():
        raise ValidationError({"body_text": "A note needs some text."})
    at = at or timezone.now()
    with transaction.atomic():
        if new_status:
            ticket, known = worker.settled(ticket.pk, at)
            _set_status(ticket, known, new_status, at)
            _refresh(ticket, at)
        return Message.objects.create(
            ticket=ticket, kind=Message.Kind.NOTE, channel=ticket.channel, author_user=user,  # type: ignore[misc]
            body_text=body_text, created_at=at,
        )


def do_set_status(ticket: Ticket, status: str, *, at: dt.datetime | None = None) -> Ticket:
    """Move a ticket to a status; clocks pause, resume, stop or restart as the rules say."""
    if status not in Ticket.Status.values:
        raise ValidationError({"status": f"'{status}' is not a status ({', '.join(Ticket.Status.values)})."})
    at = at or timezone.now()
    with transaction.atomic():
        ticket, known = worker.settled(ticket.pk, at)
        _set_status(ticket, known, status, at)
        _refresh(ticket, at)
    return ticket


def _set_status(ticket: Ticket, known: list[SlaClock], status: str, at: dt.datetime) -> None:
    """The status rules on a locked, settled ticket; `known` are its clocks (new ones are appended)."""
    old = ticket.status
    if old == status:
        return
    if old == Ticket.Status.CLOSED:
        raise ValidationError({"status": "A closed ticket cannot change; open a follow-up instead."})
    if old == Ticket.Status.SOLVED and status not in Ticket.DONE_STATUSES:
        _reopen(ticket, known, at, status)
        return
    live = clocks.live(known)
    if status in Ticket.PAUSED_STATUSES:
        for clock in live:
            clocks.pause(clock, at)
    elif status in (Ticket.Status.OPEN, Ticket.Status.NEW):
        for clock in live:
            clocks.resume(clock, at)
    else:  # solved or closed
        for clock in live:
            if clock.kind == K.RESOLUTION:
                clocks.stop(clock, at)
            else:
                clocks.cancel(clock)  # nobody waits for an answer on a solved ticket
        if status == Ticket.Status.SOLVED:
            ticket.solved_at = at
        else:
            ticket.closed_at = at
    ticket.status = status
    ticket.save(update_fields=["status", "solved_at", "closed_at"])


def _reopen(ticket: Ticket, known: list[SlaClock], at: dt.datetime, status: str = Ticket.Status.OPEN) -> None:
    """A solved ticket comes back: resolution restarts as a new cycle; the old cycle is kept."""
    cycle = sum(1 for c in known if c.kind == K.RESOLUTION) + 1
    ticket.status = status
    ticket.solved_at = None
    ticket.save(update_fields=["status", "solved_at"])
    known += _start_clocks(ticket, at, (K.RESOLUTION,), cycle)


def do_set_priority(ticket: Ticket, priority: str, *, at: dt.datetime | None = None) -> Ticket:
    """Change priority: clocks not yet reached take the new targets; reached ones keep their result."""
    if priority not in Ticket.Priority.values:
        raise ValidationError({"priority": f"'{priority}' is not a priority ({', '.join(Ticket.Priority.values)})."})
    return _change_terms(ticket, "priority", priority, at)


def do_set_agreement(ticket: Ticket, agreement: Agreement | None, *, at: dt.datetime | None = None) -> Ticket:
    """Put a ticket under another agreement (e.g. the account moved tier); reached milestones stay."""
    return _change_terms(ticket, "agreement", agreement, at)


def _change_terms(ticket: Ticket, field: str, value: Any, at: dt.datetime | None) -> Ticket:
    """Change what the clocks' targets depend on (priority or agreement) and retarget the running clocks."""
    at = at or timezone.now()
    with transaction.atomic():
        ticket, known = worker.settled(ticket.pk, at)
        setattr(ticket, field, value)
        ticket.save(update_fields=[field])
        clocks.retarget_all(ticket, known)
        _refresh(ticket, at, known)
    return ticket
