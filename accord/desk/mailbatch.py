"""The batch e-mail import: a batch of parsed messages stored with a few statements per table.

Storing a batch gives what storing its messages one by one, in order, with `mail.store` would give: the same
duplicates, threads, contacts, tickets, clocks, messages and acknowledgements. Instead of a dozen statements
per message, the batch is resolved in memory against look-ups made once per table (Message-IDs, the tickets
and clocks they thread onto, senders, agreements), then each table is written with one bulk statement. The
ticket and clock rules are the ones the single path uses (`actions.plan_ticket`, `actions.customer_wrote`).

A message of the batch can answer one before it: threading looks at the batch's own Message-IDs as well, in
order. A subject can quote the reference of a ticket opened earlier in the same batch, whose number is known
only once it is written: the batch then writes what it has resolved so far and goes on in a new round.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Max, Model, Q
from django.utils import timezone

from accord.agreements.models import Agreement
from accord.customers.models import Account, Contact, ContactPoint
from accord.lib.db import bulk_update_rows

from . import actions, clocks, outbound, outbox, worker
from .mailparse import REFERENCE_RE, Prepared, StoreResult, attachments, thread_ids
from .models import Attachment, Message, RawMessage, SlaClock, Ticket

IN_CHUNK = 500  # values per IN (...) look-up

TICKET_FIELDS = ["status", "solved_at", "next_due_at", "queue_due", "sla_state", "updated_at"]
CLOCK_FIELDS = clocks.SCHEDULE_FIELDS  # never warned_at or breached_at: the worker's alone (worker.alert)


def store_batch(batch: list[Prepared], *, acknowledge: bool = False) -> list[StoreResult]:
    """Store prepared messages in order, in the caller's transaction, as `mail.store_prepared` would one by one
    (with the same `acknowledge`)."""
    results: list[StoreResult | None] = [None] * len(batch)
    seen = set(_values_in(Message.objects.all(), "message_id", [p.inbound.message_id for p in batch]))
    todo: list[int] = []
    for i, p in enumerate(batch):
        if p.inbound.message_id in seen:
            results[i] = StoreResult(None, True, p.inbound.flagged, None)
        else:
            seen.add(p.inbound.message_id)
            todo.append(i)
    # Raw sources first: nothing is lost whatever happens next (and SQLite takes its write lock here).
    raws = [RawMessage(sha256=batch[i].digest, data=batch[i].raw, size=len(batch[i].raw), source=batch[i].source)
            for i in todo]
    RawMessage.objects.bulk_create(raws)
    for i, raw in zip(todo, raws, strict=True):
        batch[i].inbound.raw = raw
    while todo:
        round_ = _Round([batch[i] for i in todo], acknowledge)
        done = round_.resolve()
        round_.write()
        for i, result in zip(todo[:done], round_.results, strict=True):
            results[i] = result
        todo = todo[done:]
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


@dataclass
class _Thread:
    """A ticket the round touches, with all its clocks; `new` ones are inserted at the end of the round."""

    ticket: Ticket
    clocks: list[SlaClock]
    new: bool
    changed: bool = False  # an existing ticket whose status or summary changed
    changed_clocks: dict[int, SlaClock] = field(default_factory=dict)  # existing clocks to update, by pk


@dataclass
class _Entry:
    """One stored message of the round."""

    prepared: Prepared
    message: Message
    thread: _Thread
    acknowledge: list[SlaClock] | None = None  # the new ticket's clocks, when it is to be acknowledged
    acknowledged_at: dt.datetime | None = None


class _Flush(Exception):
    """The message quotes a ticket that may be one this round opens: write the round first."""


class _Round:
    """Resolve messages in order against look-ups made once, then write every table once."""

    def __init__(self, batch: list[Prepared], acknowledge: bool = False) -> None:
        self.batch = batch
        self.acknowledge = acknowledge
        self.entries: list[_Entry] = []
        self.results: list[StoreResult] = []
        self.new_threads: list[_Thread] = []
        self.new_contacts: dict[str, tuple[Contact, ContactPoint]] = {}
        self.in_batch: dict[str, tuple[dt.datetime, int, _Thread]] = {}  # Message-IDs stored in this round
        self._max_ticket: int | None = None
        inbounds = [p.inbound for p in batch]

        # Messages already stored that these answer: (created_at, id) orders them as find_ticket does.
        wanted = {mid for inbound in inbounds for mid in thread_ids(inbound)}
        self.stored: dict[str, tuple[dt.datetime, int, int]] = {
            mid: (created, pk, ticket_id)
            for mid, created, pk, ticket_id in _rows_in(
                Message.objects.all(), "message_id", wanted, "message_id", "created_at", "pk", "ticket_id"
            )
        }
        # The tickets they belong to and those quoted in subjects, locked as do_add_customer_message locks one.
        quoted = {int(m.group(1)) for inbound in inbounds if (m := REFERENCE_RE.search(inbound.subject))}
        ticket_ids = {ticket_id for _c, _p, ticket_id in self.stored.values()} | quoted
        tickets, by_ticket = _locked(ticket_ids)
        # As every change to a ticket does (actions.do_add_customer_message): settle what is due first.
        now = timezone.now()
        due = [pk for pk, known in by_ticket.items() if worker.due_alerts(known, now)]
        for pk in due:
            worker.settle(pk, now, by_ticket[pk])
        if due:
            tickets, by_ticket = _locked(ticket_ids)  # as the alerts and their escalation rules left them
        self.threads = {t.pk: _Thread(t, by_ticket.get(t.pk, []), new=False) for t in tickets}

        # Senders, as match_sender finds them.
        addresses = {inbound.from_address.strip().lower() for inbound in inbounds} - {""}
        self.senders: dict[str, tuple[Contact, Account | None]] = {
            point.value: (point.contact, point.contact.account)
            for point in _objects_in(
                ContactPoint.objects.filter(kind=ContactPoint.Kind.EMAIL).select_related("contact__account"),
                "value", addresses,
            )
        }
        # Agreements: those that may apply to the senders' accounts, and those of the tickets answered.
        accounts = [account for _c, account in self.senders.values() if account is not None]
        scope = (
            Q(account_id__in={a.pk for a in accounts})
            | Q(tier_id__in={a.tier_id for a in accounts if a.tier_id})
            | Q(pk__in={t.agreement_id for t in tickets if t.agreement_id and t.pk in by_ticket})
        )
        self.agreements = list(Agreement.objects.filter(scope).select_related("calendar").prefetch_related("objectives"))
        by_pk = {a.pk: a for a in self.agreements}
        for ticket in tickets:
            if ticket.agreement_id in by_pk and ticket.pk in by_ticket:
                ticket.agreement = by_pk[ticket.agreement_id]
        self._applies: dict[tuple[int, int | None, dt.date], Agreement | None] = {}

    # -- resolving, in order ------------------------------------------------------------------------------------

    def resolve(self) -> int:
        """Resolve the messages in order; returns how many, fewer than all when the round must be written first."""
        for n, prepared in enumerate(self.batch):
            inbound = prepared.inbound
            at = inbound.received_at or timezone.now()
            try:
                thread = self._find(inbound)
            except _Flush:
                return n
            if thread is None or thread.ticket.status == Ticket.Status.CLOSED:
                entry = self._open(prepared, at)
            else:
                entry = self._add(thread, prepared, at)
            self.entries.append(entry)
            assert inbound.message_id is not None
            self.in_batch[inbound.message_id] = (at, n, entry.thread)
        return len(self.batch)

    def _find(self, inbound: actions.Inbound) -> _Thread | None:
        """find_ticket: the thread of the earliest stored message answered, else the ticket quoted in the subject."""
        best: tuple[dt.datetime, int, int] | None = None
        found: _Thread | None = None
        for mid in thread_ids(inbound):
            thread: _Thread | None
            if mid in self.in_batch:
                created, n, thread = self.in_batch[mid]
                key = (created, 1, n)  # stored after everything already in the database
            elif mid in self.stored:
                created, pk, ticket_id = self.stored[mid]
                key = (created, 0, pk)
                thread = self.threads.get(ticket_id)
            else:
                continue
            if best is None or key < best:
                best, found = key, thread
        if best is not None:
            return found
        match = REFERENCE_RE.search(inbound.subject)
        if not match:
            return None
        pk = int(match.group(1))
        if pk in self.threads:
            return self.threads[pk]
        if self.new_threads and pk > self._max_ticket_pk():
            raise _Flush  # perhaps a ticket this round opened (its number is not known yet)
        return None

    def _max_ticket_pk(self) -> int:
        if self._max_ticket is None:
            self._max_ticket = Ticket.objects.aggregate(m=Max("pk"))["m"] or 0
        return self._max_ticket

    def _open(self, prepared: Prepared, at: dt.datetime) -> _Entry:
        """do_open_ticket: the sender's contact (created if unknown), its account's agreement, planned clocks."""
        inbound = prepared.inbound
        contact, account = self._sender(inbound.from_address, inbound.from_name) if inbound.from_address else (None, None)
        agreement = self._agreement(account, timezone.localdate(at)) if account is not None else None
        ticket, planned = actions.plan_ticket(inbound, at, contact=contact, account=account, agreement=agreement)
        thread = _Thread(ticket, list(planned), new=True)
        self.new_threads.append(thread)
        message = actions.new_message(ticket, inbound, Message.Kind.INBOUND, at, contact_id=None)
        message.author_contact = contact
        entry = _Entry(prepared, message, thread)
        if self.acknowledge and not inbound.auto_generated:
            # The acknowledgement quotes the ticket's number, known once written; nothing in a batch of
            # customer messages can change the first-response clock it promises (only an agent's reply can).
            entry.acknowledge, entry.acknowledged_at = planned, timezone.now()
        return entry

    def _add(self, thread: _Thread, prepared: Prepared, at: dt.datetime) -> _Entry:
        """do_add_customer_message on a ticket in memory."""
        ticket = thread.ticket
        message = actions.new_message(ticket, prepared.inbound, Message.Kind.INBOUND, at, contact_id=ticket.contact_id)
        if thread.new:
            message.author_contact = ticket.contact  # perhaps a contact this round creates
        change = actions.customer_wrote(ticket, thread.clocks, at, prepared.inbound.auto_generated)
        for clock in change.changed:
            if clock.pk is not None:
                thread.changed_clocks[clock.pk] = clock
        clocks.summarise(ticket, max(at, timezone.now()), thread.clocks)
        ticket.updated_at = timezone.now()
        thread.changed = True
        return _Entry(prepared, message, thread)

    def _sender(self, address: str, name: str) -> tuple[Contact | None, Account | None]:
        """match_sender for e-mail: the known contact of an address, or a new one (created once per round)."""
        value = address.strip().lower()
        if not value:
            return None, None
        if value in self.senders:
            return self.senders[value]
        contact = Contact(name=(name or value)[:200])
        self.new_contacts[value] = (contact, ContactPoint(contact=contact, kind=ContactPoint.Kind.EMAIL, value=value,
                                                          primary=True))
        self.senders[value] = (contact, None)
        return contact, None

    def _agreement(self, account: Account, day: dt.date) -> Agreement | None:
        """Agreement.for_account on the agreements loaded once: the account's own beats its tier's, newest start."""
        key = (account.pk, account.tier_id, day)
        if key not in self._applies:
            live = [
                a for a in self.agreements
                if (a.account_id == account.pk or (account.tier_id is not None and a.tier_id == account.tier_id))
                and a.effective_from <= day and (a.effective_to is None or a.effective_to >= day)
            ]
            ranked = sorted(live, key=lambda a: (a.account_id is None, -a.effective_from.toordinal(), a.name))
            self._applies[key] = ranked[0] if ranked else None
        return self._applies[key]

    # -- writing, one statement per table -----------------------------------------------------------------------

    def write(self) -> None:
        if self.new_contacts:
            Contact.objects.bulk_create([contact for contact, _point in self.new_contacts.values()])
            ContactPoint.objects.bulk_create([point for _contact, point in self.new_contacts.values()])
        Ticket.objects.bulk_create([thread.ticket for thread in self.new_threads])
        threads = [*self.new_threads, *(t for t in self.threads.values() if t.changed)]
        SlaClock.objects.bulk_create([clock for thread in threads for clock in thread.clocks if clock.pk is None])
        messages: list[Message] = []
        outgoing: list[tuple[Message, dict[str, str]]] = []
        acks: dict[int, Message] = {}
        for n, entry in enumerate(self.entries):
            messages.append(entry.message)
            if entry.acknowledge is not None:
                ack = outbound.acknowledgement(entry.thread.ticket, entry.message, entry.acknowledge,
                                               at=entry.acknowledged_at)
                if ack is not None:
                    messages.append(ack[0])
                    outgoing.append(ack)
                    acks[n] = ack[0]
        Message.objects.bulk_create(messages)
        Attachment.objects.bulk_create([a for entry in self.entries for a in attachments(entry.message, entry.prepared.parsed)])
        changed = [t for t in self.threads.values() if t.changed]
        bulk_update_rows(Ticket, TICKET_FIELDS, [_row(t.ticket, TICKET_FIELDS) for t in changed])
        bulk_update_rows(SlaClock, CLOCK_FIELDS, [_row(c, CLOCK_FIELDS) for t in changed for c in t.changed_clocks.values()])
        outbox.enqueue_many(outgoing, auto=True)
        self.results = [
            StoreResult(entry.message, False, entry.prepared.inbound.flagged, entry.thread.ticket, acks.get(n))
            for n, entry in enumerate(self.entries)
        ]


def _locked(ticket_ids: Iterable[int]) -> tuple[list[Ticket], dict[int, list[SlaClock]]]:
    """Tickets and the clocks of those not closed, locked in the order `clocks.locked` takes (tickets, then clocks)."""
    tickets = list(_objects_in(Ticket.objects.select_for_update().order_by("pk"), "pk", ticket_ids))
    live_ids = [t.pk for t in tickets if t.status != Ticket.Status.CLOSED]
    by_ticket: dict[int, list[SlaClock]] = {pk: [] for pk in live_ids}
    clocks_of = SlaClock.objects.select_for_update(of=("self",)).select_related("calendar").order_by("pk")
    for clock in _objects_in(clocks_of, "ticket_id", live_ids):
        by_ticket[clock.ticket_id].append(clock)
    return tickets, by_ticket


def _row(obj: Model, fields: list[str]) -> tuple[Any, ...]:
    return (*(getattr(obj, f) for f in fields), obj.pk)


def _chunked(values: Iterable[Any]) -> Iterator[list[Any]]:
    values = sorted(set(values))
    for i in range(0, len(values), IN_CHUNK):
        yield values[i : i + IN_CHUNK]


def _objects_in(queryset: Any, name: str, values: Iterable[Any]) -> Iterator[Any]:
    for chunk in _chunked(values):
        yield from queryset.filter(**{f"{name}__in": chunk})


def _rows_in(queryset: Any, name: str, values: Iterable[Any], *fields: str) -> Iterator[tuple[Any, ...]]:
    for chunk in _chunked(values):
        yield from queryset.filter(**{f"{name}__in": chunk}).order_by().values_list(*fields)


def _values_in(queryset: Any, name: str, values: Iterable[Any]) -> Iterator[Any]:
    for chunk in _chunked(values):
        yield from queryset.filter(**{f"{name}__in": chunk}).order_by().values_list(name, flat=True)
