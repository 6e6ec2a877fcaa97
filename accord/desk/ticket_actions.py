"""Agents' ticket-level actions beside those in actions.py: merge, link a requester, assign, tag, open from
the UI. Each is atomic, locks and settles the ticket first (worker.settled) and moves the clocks with the
rules of clocks.py, so the UI and the API (ticket_api.py) change tickets identically.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accord.access.audit import record
from accord.access.models import AuditEntry
from accord.agreements.models import Agreement
from accord.customers.models import Account, Contact, ContactPoint

from . import actions, clocks, worker
from .actions import Inbound
from .models import REFERENCE_PREFIX, Message, SlaClock, SupportGroup, Tag, Ticket

K = SlaClock.Kind
TAG_NAME = re.compile(r"^[-a-zA-Z0-9_]{1,60}$")


def find_ticket(value: Any) -> Ticket | None:
    """A ticket by id or by reference (`ACC-000042`, `acc-42`, `42`); None when there is none."""
    text = str(value).strip()
    match = re.fullmatch(rf"(?:{REFERENCE_PREFIX}-)?0*(\d{{1,12}})", text, flags=re.IGNORECASE)
    if match is None:
        return None
    return Ticket.objects.filter(pk=int(match.group(1))).first()


def open_from_ui(
    *, user: Any, subject: str, body: str, channel: str, priority: str, contact: Contact | None = None,
    account: Account | None = None, address: str = "", name: str = "", duration_seconds: int | None = None,
    direction: str = "", source: str = AuditEntry.Source.UI,
) -> Ticket:
    """A ticket an agent opens (a call logged, an e-mail forwarded by hand) through the channels' own path,
    `actions.do_open_ticket`: the requester is matched or created as for that channel, the account's agreement
    applies and the clocks start as for any other ticket. A phone call keeps its duration and direction as the
    phone call log does (the message's meta)."""
    meta: dict[str, Any] = {"logged_by": user.get_username()}
    if channel == Ticket.Channel.PHONE:
        meta["duration_seconds"] = int(duration_seconds or 0)
        meta["direction"] = direction or "inbound"
    if contact is not None and not address:
        kind = ContactPoint.Kind.PHONE if channel == Ticket.Channel.PHONE else ContactPoint.Kind.EMAIL
        point = contact.points.filter(kind=kind).order_by("-primary", "pk").first()
        address = point.value if point is not None else ""
    inbound = Inbound(channel=channel, subject=subject, body_text=body, from_address=address, from_name=name,
                      priority=priority, meta=meta, received_at=timezone.now())
    with transaction.atomic():
        ticket = actions.do_open_ticket(inbound, contact=contact, account=account)
        record(user, "create", ticket, summary=f"opened on the {channel} channel", source=source)
    return ticket


def do_assign(ticket: Ticket, *, user: Any = None, group: SupportGroup | None = None,
              by: Any = None, source: str = AuditEntry.Source.UI) -> Ticket:
    """Assign to an agent and/or a group (None clears); the assignee must be active staff who may work tickets."""
    if user is not None and not (user.is_active and user.is_staff and user.has_perm("desk.change_ticket")):
        raise ValidationError({"user": f"{user.get_username()} is not an active agent (no desk role)."})
    with transaction.atomic():
        ticket, _known = worker.settled(ticket.pk, timezone.now())
        before = [ticket.assignee_id, ticket.group_id]
        ticket.assignee = user
        ticket.group = group
        ticket.save(update_fields=["assignee", "group", "updated_at"])
        record(by, "assign", ticket, changes={"assignee, group": [before, [ticket.assignee_id, ticket.group_id]]},
               source=source)
    return ticket


def do_tags(ticket: Ticket, *, add: list[str] | None = None, remove: list[str] | None = None) -> list[str]:
    """Add and remove tags (new names are created); returns the ticket's tags after."""
    add, remove = add or [], remove or []
    bad = [n for n in [*add, *remove] if not TAG_NAME.match(n)]
    if bad:
        raise ValidationError({"tags": f"Not a tag name: {', '.join(repr(b) for b in bad)} (letters, digits, - and _)."})
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        for name in add:
            tag, _ = Tag.objects.get_or_create(name=name.lower())
            ticket.tags.add(tag)
        if remove:
            ticket.tags.remove(*Tag.objects.filter(name__in=[n.lower() for n in remove]))
        Ticket.objects.filter(pk=ticket.pk).update(updated_at=timezone.now())
    return sorted(ticket.tags.values_list("name", flat=True))


def check_merge(source: Ticket, target: Ticket | None, *, confirm_other_account: bool = False) -> Ticket:
    """The refusals of a merge, before anything changes (the UI asks to confirm a merge across accounts)."""
    if target is None:
        raise ValidationError({"into": "There is no such ticket."})
    if target.pk == source.pk:
        raise ValidationError({"into": "A ticket cannot be merged into itself."})
    if target.status == Ticket.Status.CLOSED:
        raise ValidationError({"into": f"{target.reference} is closed: merge into an open ticket."})
    if source.status == Ticket.Status.CLOSED:
        raise ValidationError({"into": f"{source.reference} is closed already."})
    if source.account_id != target.account_id and not confirm_other_account:
        raise ValidationError({"confirm_other_account": (
            f"{source.reference} ({source.account.name if source.account else 'no account'}) and {target.reference} "
            f"({target.account.name if target.account else 'no account'}) belong to different accounts: "
            "confirm to merge them anyway.")})
    return target


def do_merge(source: Ticket, target: Ticket | None, *, by: Any, confirm_other_account: bool = False,
             source_kind: str = AuditEntry.Source.UI) -> Ticket:
    """Merge a duplicate into another ticket: its messages move to the target, its tags join the target's, its
    live clocks are cancelled (a duplicate is neither met nor breached further) and it is closed with a note
    linking the target. Both tickets are locked (lower id first, as every writer does) and settled first."""
    target = check_merge(source, target, confirm_other_account=confirm_other_account)
    at = timezone.now()
    with transaction.atomic():
        first, second = sorted([source.pk, target.pk])
        locked = {first: worker.settled(first, at), second: worker.settled(second, at)}
        source, known = locked[source.pk]
        target, _target_clocks = locked[target.pk]
        check_merge(source, target, confirm_other_account=confirm_other_account)  # as they are now, locked
        moved = Message.objects.filter(ticket=source).update(ticket=target)
        target.tags.add(*source.tags.all())
        for clock in clocks.live(known):
            clocks.cancel(clock)
        Ticket.objects.filter(pk=source.pk).update(status=Ticket.Status.CLOSED, closed_at=at)
        Message.objects.create(
            ticket=source, kind=Message.Kind.NOTE, channel=source.channel, author_user=by, created_at=at,
            body_text=f"Merged into {target.reference}: its {moved} message(s) are there now.",
            meta={"merged_into": target.pk},
        )
        Message.objects.create(
            ticket=target, kind=Message.Kind.NOTE, channel=target.channel, author_user=by, created_at=at,
            body_text=f"{source.reference} ({source.subject}) was merged into this ticket.",
            meta={"merged_from": source.pk},
        )
        source.refresh_from_db()
        clocks.refresh(source, at, updated_at=at)
        clocks.refresh(target, at, updated_at=at)
        record(by, "merge", source, changes={"merged_into": [None, target.reference], "messages_moved": [0, moved]},
               summary=f"{source.reference} merged into {target.reference}", source=source_kind)
    target.refresh_from_db()
    return target


def do_link_requester(ticket: Ticket, contact: Contact, *, by: Any,
                      source: str = AuditEntry.Source.UI) -> Ticket:
    """Link a ticket from an unknown requester to a contact of an account: the ticket takes the account and the
    agreement that applied when it was created, and its clocks start as they would have, from the ticket's
    creation in business time; a first response already given counts, and what is already due is settled."""
    if contact.account_id is None:
        raise ValidationError({"contact": f"{contact.name} belongs to no account: pick or create a contact on an "
                                          "account, so the ticket gets that account's agreement."})
    now = timezone.now()
    with transaction.atomic():
        ticket, known = worker.settled(ticket.pk, now)
        if ticket.account_id is not None:
            raise ValidationError({"contact": f"{ticket.reference} already belongs to an account."})
        placeholder = ticket.contact
        account = contact.account
        assert account is not None
        agreement = Agreement.for_account(account, timezone.localdate(ticket.created_at))
        ticket.contact, ticket.account, ticket.agreement = contact, account, agreement
        ticket.save(update_fields=["contact", "account", "agreement", "updated_at"])
        if placeholder is not None and placeholder.pk != contact.pk and placeholder.account_id is None:
            # The contact made up for the unknown sender: its address now belongs to the real one, so the next
            # message from it is matched to the account.
            placeholder.points.update(contact=contact)
            Message.objects.filter(ticket=ticket, author_contact=placeholder).update(author_contact=contact)
        started = _start_from_creation(ticket, known, now) if not known else []
        worker.settle(ticket.pk, now, [*known, *started])
        clocks.refresh(ticket, now, updated_at=now)
        record(by, "link-requester", ticket, changes={"contact": [placeholder.pk if placeholder else None, contact.pk],
                                                       "account": [None, account.pk],
                                                       "agreement": [None, agreement.pk if agreement else None]},
               summary=f"{ticket.reference} linked to {contact.name} ({account.name})", source=source)
    ticket.refresh_from_db()
    return ticket


def _start_from_creation(ticket: Ticket, known: list[SlaClock], now: dt.datetime) -> list[SlaClock]:
    """The clocks the ticket would have run since its creation; milestones already reached are stopped at the
    instant they were reached (the first public agent reply, the solving)."""
    objectives = clocks.targets(ticket.agreement, ticket.priority, ticket.channel)
    created = ticket.created_at
    started = []
    for kind in (K.FIRST_RESPONSE, K.RESOLUTION):
        if kind not in objectives:
            continue
        clock = clocks.plan(ticket, kind, objectives[kind], created)
        if clock.status == SlaClock.Status.PAUSED:  # pending or on hold now: ran until now, paused from now
            clock.status, clock.paused_since = SlaClock.Status.RUNNING, None
            clocks.schedule(clock)
        clock.save()
        started.append(clock)
    first_reply = (Message.objects.filter(ticket=ticket, kind=Message.Kind.REPLY, author_user__isnull=False,
                                          auto_generated=False).order_by("created_at").first())
    for clock in started:
        if clock.kind == K.FIRST_RESPONSE and first_reply is not None:
            clocks.stop(clock, first_reply.created_at)
        elif clock.kind == K.RESOLUTION and ticket.status in Ticket.DONE_STATUSES:
            clocks.stop(clock, ticket.solved_at or ticket.closed_at or now)
        elif ticket.status in Ticket.PAUSED_STATUSES:
            clocks.pause(clock, now)
        elif ticket.status in Ticket.DONE_STATUSES:
            clocks.cancel(clock)
    return started


def new_contact(name: str, email: str, account: Account) -> Contact:
    """A minimal contact on an account (name and e-mail), for linking a requester."""
    email = email.strip().lower()
    if email and ContactPoint.objects.filter(kind=ContactPoint.Kind.EMAIL, value=email).exclude(
            contact__account__isnull=True).exists():
        raise ValidationError({"email": f"{email} belongs to another contact already: pick that contact."})
    contact = Contact.objects.create(name=name.strip()[:200], account=account)
    # An address held by the made-up contact of the unknown sender moves to it when the ticket is linked.
    if email and not ContactPoint.objects.filter(kind=ContactPoint.Kind.EMAIL, value=email).exists():
        ContactPoint.objects.create(contact=contact, kind=ContactPoint.Kind.EMAIL, value=email, primary=True)
    return contact


def assignable_users() -> Any:
    return get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username")
