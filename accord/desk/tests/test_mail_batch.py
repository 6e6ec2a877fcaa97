"""The batch e-mail import (`mail.store_many`): the same outcome as storing one by one, in a few statements."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Iterable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
import time_machine
from django.core import mail as django_mail
from django.db import connection, transaction
from django.db.models import Max

from accord.agreements.models import Agreement
from accord.customers.models import Account, Contact, ContactPoint
from accord.desk import actions, mail, mailparse
from accord.desk.models import Message, RawMessage, SlaClock, Ticket

from .conftest import Desk, support_objectives
from .test_mail import email

pytestmark = pytest.mark.django_db

MONDAY = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)  # London working hours are 09:00-17:00 UTC in November
TUESDAY = MONDAY + dt.timedelta(days=1)


def import_all(
    items: Iterable[tuple[str, bytes]], batch: int = mailparse.BATCH_MESSAGES, acknowledge: bool = False
) -> list[mail.StoreResult]:
    return [result for _source, result in mail.store_many(items, batch=batch, acknowledge=acknowledge)]


def next_ticket_pk() -> int:
    """The number the next ticket will get, to quote its reference before it exists."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SELECT pg_get_serial_sequence('desk_ticket', 'id')")
            sequence = cur.fetchone()[0]
            cur.execute("SELECT nextval(%s)", [sequence])
            value = int(cur.fetchone()[0])
            cur.execute("SELECT setval(%s, %s, false)", [sequence, value])  # give the number back
            return value
        cur.execute("SELECT seq FROM sqlite_sequence WHERE name = 'desk_ticket'")
        row = cur.fetchone()
    return max(row[0] if row else 0, Ticket.objects.aggregate(m=Max("pk"))["m"] or 0) + 1


def test_a_message_and_its_replies_in_one_batch_thread_onto_one_ticket(
    desk: Desk, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        results = import_all(acknowledge=True, items=[
            ("a.eml", email(message_id="<one@globetrotter.example>")),
            ("b.eml", email(subject="Re: x", message_id="<two@globetrotter.example>",
                            In_Reply_To="<one@globetrotter.example>")),
            ("c.eml", email(subject="Re: y", message_id="<three@globetrotter.example>",
                            References="<one@globetrotter.example> <two@globetrotter.example>")),
        ])
    assert [(r.duplicate, r.flagged) for r in results] == [(False, False)] * 3
    ticket = results[0].ticket
    assert ticket is not None and results[1].ticket == ticket and results[2].ticket == ticket
    assert Ticket.objects.count() == 1
    assert (ticket.account, ticket.contact, ticket.agreement) == (desk.account, desk.contact, desk.agreement)
    thread = list(ticket.messages.values_list("kind", "message_id"))
    assert [kind for kind, _mid in thread] == ["inbound", "reply", "inbound", "inbound"]  # the acknowledgement second
    assert thread[0][1] == "<one@globetrotter.example>" and thread[3][1] == "<three@globetrotter.example>"
    assert all(m.author_contact == desk.contact and m.raw is not None for m in ticket.messages.filter(kind="inbound"))
    # One acknowledgement, for the new ticket only, quoting the promised first response.
    assert [m.to for m in django_mail.outbox] == [["grace@globetrotter.example"]]
    assert ticket.reference in django_mail.outbox[0].subject and "within 1 h of our business hours" in django_mail.outbox[0].body
    first = ticket.clocks.get(kind="first_response")
    assert first.status == "running" and not ticket.clocks.filter(kind="next_response").exists()
    ticket.refresh_from_db()
    assert ticket.next_due_at == first.due_at and ticket.sla_state == "on_track"


def test_duplicates_within_a_batch_and_of_earlier_imports_are_stored_once(desk: Desk) -> None:
    mail.store(email(message_id="<old@globetrotter.example>"))
    no_id = email(subject="No id").replace(b"Message-ID", b"X-Old-ID")
    results = import_all([
        ("1", email(message_id="<old@globetrotter.example>")),
        ("2", email(subject="New", message_id="<new@globetrotter.example>")),
        ("3", email(subject="New again", message_id="<new@globetrotter.example>")),
        ("4", no_id),
        ("5", no_id),
    ])
    assert [r.duplicate for r in results] == [True, False, True, False, True]
    assert [r.message is None for r in results] == [True, False, True, False, True]
    assert Message.objects.filter(kind="inbound").count() == 3 and RawMessage.objects.count() == 3
    assert Message.objects.get(message_id="<new@globetrotter.example>").subject == "New"
    assert import_all([("again", no_id)])[0].duplicate


def test_malformed_and_huge_messages_in_a_batch_are_kept_raw_and_flagged(desk: Desk, settings: Any) -> None:
    settings.ACCORD_MAX_EMAIL_BYTES = 50_000
    items = [
        ("garbage", b"\x00\x01\x02 total garbage \xff" * 50),
        ("good", email(message_id="<fine@globetrotter.example>")),
        ("no-from", b"Subject: who am I\r\n\r\nno sender at all\r\n"),
        ("bad-from", b"From: <\r\nSubject: broken address\r\n\r\nhello\r\n"),
        ("charset", b"From: grace@globetrotter.example\r\nSubject: x\r\nContent-Type: text/plain; charset=x-martian"
                    b"\r\n\r\nHello \xff\xfe\r\n"),
        ("huge", email(body="x" * 200_000, message_id="<huge@globetrotter.example>")),
        ("reply", email(subject="Re: fine", message_id="<fine2@globetrotter.example>",
                        In_Reply_To="<fine@globetrotter.example>")),
    ]
    results = dict(zip([source for source, _raw in items], import_all(items), strict=True))
    assert not any(r.duplicate for r in results.values())
    assert {source for source, r in results.items() if r.flagged} == {"garbage", "no-from", "bad-from", "charset", "huge"}
    reasons = {source: r.message.flag_reason for source, r in results.items() if r.message is not None}
    assert "no usable From address" in reasons["garbage"] and "no usable From address" in reasons["no-from"]
    assert "unreadable From header" in reasons["bad-from"] and "undecodable" in reasons["charset"]
    assert "exceeds" in reasons["huge"]
    for source, raw in items:
        message = results[source].message
        assert message is not None and message.raw is not None and bytes(message.raw.data) == raw
    assert results["reply"].ticket == results["good"].ticket
    assert Message.objects.get(message_id="<huge@globetrotter.example>").body_text == ""


def test_a_subject_quoting_a_ticket_opened_earlier_in_the_same_batch_threads_onto_it(desk: Desk) -> None:
    pk = next_ticket_pk()
    results = import_all([
        ("1", email(subject="Lost luggage", message_id="<l1@globetrotter.example>")),
        ("2", email(subject="Another matter", message_id="<l2@globetrotter.example>")),
        ("3", email(subject=f"More photos [ACC-{pk:06d}]", message_id="<l3@globetrotter.example>")),
        ("4", email(subject=f"And the receipt [ACC-{pk:06d}]", message_id="<l4@globetrotter.example>")),
        ("5", email(subject="Re: nothing [ACC-987654321]", message_id="<l5@globetrotter.example>")),
    ])
    first = results[0].ticket
    assert first is not None and first.pk == pk
    assert results[2].ticket == first and results[3].ticket == first
    assert results[1].ticket != first and results[4].ticket not in (first, results[1].ticket)
    assert first.messages.filter(kind="inbound").count() == 3
    assert Ticket.objects.count() == 3


def test_unknown_senders_get_one_contact_for_all_their_messages_in_a_batch(desk: Desk) -> None:
    results = import_all([
        ("1", email(sender="Ada Lovelace <ada@engine.example>", subject="One", message_id="<a1@engine.example>")),
        ("2", email(sender="A. Lovelace <ADA@engine.example>", subject="Two", message_id="<a2@engine.example>")),
    ])
    contact = Contact.objects.get(points__value="ada@engine.example")
    assert contact.name == "Ada Lovelace" and contact.account is None
    assert ContactPoint.objects.get(value="ada@engine.example").primary
    assert [r.ticket.contact for r in results if r.ticket] == [contact, contact]
    assert all(r.ticket is not None and r.ticket.agreement is None for r in results)  # no account: no clocks
    assert not SlaClock.objects.exists()


def test_a_batch_takes_a_few_statements_not_a_dozen_per_message(
    desk: Desk, django_assert_max_num_queries: Callable[..., Any]
) -> None:
    mail.store(email(message_id="<earlier@globetrotter.example>"))
    items = []
    for i in range(100):
        headers = {"In_Reply_To": f"<m{i - 1}@globetrotter.example>"} if i % 3 == 2 else {}
        if i % 10 == 5:
            headers = {"In_Reply_To": "<earlier@globetrotter.example>"}
        items.append((f"{i}", email(subject=f"Question {i}", message_id=f"<m{i}@globetrotter.example>", **headers)))
    with django_assert_max_num_queries(25):  # it was 13 per message
        results = import_all(items)
    assert not any(r.duplicate or r.flagged for r in results)
    assert Message.objects.filter(kind="inbound").count() == 101


def test_parsing_once_per_header_value_reads_what_the_standard_policy_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = [
        email(),
        email(subject="=?utf-8?q?Caf=C3=A9_cr=C3=A8me?=", sender="=?utf-8?q?Ren=C3=A9?= <rene@example.org>"),
        email(Auto_Submitted="auto-replied", Precedence="bulk"),
        b"From: grace@globetrotter.example\r\nSubject: =?x-unknown?Q?caf=E9?=\r\nContent-Type: text/plain; charset=x-martian"
        b"\r\n\r\nHello \xff\xfe\r\n",
        b"From: <a@b>,,,\"\r\nSubject: x\r\nDate: someday\r\n\r\nbody\r\n",
        b"\x00\x01\x02 total garbage \xff" * 50,
    ]
    with_attachment = EmailMessage()
    with_attachment["From"] = "grace@globetrotter.example"
    with_attachment["Subject"] = "itinerary"
    with_attachment.set_content("see attached")
    with_attachment.add_alternative("<p>see attached</p>", subtype="html")
    with_attachment.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="trip.pdf")
    samples.append(with_attachment.as_bytes())
    ours = [mailparse.parse(raw) for raw in samples + samples]  # the second time from the cache
    monkeypatch.setattr(mailparse, "_PARSER", BytesParser(policy=policy.default))
    standard = [mailparse.parse(raw) for raw in samples + samples]
    assert ours == standard
    assert ours[-1].attachments == [("trip.pdf", "application/pdf", b"%PDF-1.4")]


def test_a_message_id_with_a_nul_is_stored_once(desk: Desk) -> None:
    raw = email(message_id="<odd\x00id@globetrotter.example>")
    assert not mail.store(raw).duplicate
    assert mail.store(raw).duplicate and import_all([("again", raw)])[0].duplicate
    assert Message.objects.filter(kind="inbound").count() == 1


# -- the batch stores what storing one by one stores ------------------------------------------------------------


def _snapshot() -> dict[str, Any]:
    """Everything an import writes, with ticket numbers and generated Message-IDs made comparable across runs."""
    order = {pk: f"T{i}" for i, pk in enumerate(Ticket.objects.order_by("pk").values_list("pk", flat=True))}

    def norm(text: str) -> str:
        text = re.sub(r"<[^<>\s]+@accord\.localhost>", "<generated>", text)  # ids of our own replies
        return re.sub(r"ACC-(\d+)", lambda m: order.get(int(m.group(1)), "ACC-?"), text)

    def mid(m: Message) -> str | None:
        return norm(m.message_id) if m.message_id else None

    tickets = []
    for t in Ticket.objects.order_by("pk").select_related("contact", "account", "agreement"):
        tickets.append((
            norm(t.subject), t.status, t.priority, t.channel, t.contact.name if t.contact else None,
            t.account.external_id if t.account else None, t.agreement.name if t.agreement else None,
            t.next_due_at, t.queue_due, t.sla_state, t.solved_at, t.closed_at, t.created_at, t.updated_at,
            [(m.kind, mid(m), norm(m.subject), norm(m.body_text), m.body_html,
              m.author_contact.name if m.author_contact else None, m.from_address, m.to_addresses, m.cc_addresses,
              norm(m.in_reply_to), norm(m.references), m.flagged, m.flag_reason, m.auto_generated, m.meta, m.created_at,
              norm(bytes(m.raw.data).decode("latin-1")) if m.raw else None,
              [(a.filename, a.content_type, a.size, bytes(a.data)) for a in m.attachments.order_by("pk")])
             for m in t.messages.select_related("author_contact", "raw")],
            [(c.kind, c.cycle, c.status, c.target_minutes, c.objective_id, c.calendar_id, c.started_at, c.pauses,
              c.paused_since, c.due_at, c.warn_at, c.stopped_at, c.breached_at) for c in t.clocks.all()],
        ))
    return {
        "tickets": tickets,
        "contacts": sorted((c.name, c.account_id, c.title, tuple(sorted((p.kind, p.value, p.primary) for p in c.points.all())))
                           for c in Contact.objects.all()),
        "raw": sorted(norm(bytes(r.data).decode("latin-1")) for r in RawMessage.objects.all()),
        "sent": [(m.to, norm(m.subject), norm(m.body), norm(m.extra_headers.get("In-Reply-To", "")),
                  norm(m.extra_headers.get("References", "")), m.extra_headers.get("Auto-Submitted"))
                 for m in django_mail.outbox],
    }


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """Where two snapshots differ first, readably."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}[{key!r}]")
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
        if len(a) != len(b):
            return f"{path}: {len(a)} items, not {len(b)}"
    return f"{path}: {a!r} != {b!r}"


def _existing_tickets(desk: Desk) -> dict[str, Ticket]:
    """Tickets stored before the import, one in each state a customer can write to."""
    tickets = {}
    with time_machine.travel(MONDAY, tick=False):
        for name in ("pending", "solved", "closed", "answered", "stranger"):
            sender = "Bob <bob@nowhere.example>" if name == "stranger" else "Grace Hopper <grace@globetrotter.example>"
            stored = mail.store(email(subject=f"The {name} one", sender=sender, message_id=f"<{name}@x.example>"),
                                acknowledge=True)
            assert stored.ticket is not None
            tickets[name] = stored.ticket
        actions.do_reply(tickets["pending"], desk.agent, "Your PNR?", at=MONDAY + dt.timedelta(minutes=10),
                         new_status="pending")
        actions.do_set_status(tickets["solved"], "solved", at=MONDAY + dt.timedelta(minutes=20))
        actions.do_set_status(tickets["closed"], "closed", at=MONDAY + dt.timedelta(minutes=30))
        actions.do_reply(tickets["answered"], desk.agent, "On it", at=MONDAY + dt.timedelta(minutes=40))
    return tickets


def _the_import(tickets: dict[str, Ticket]) -> list[tuple[str, bytes]]:
    ack = Message.objects.get(ticket=tickets["answered"], kind="reply", auto_generated=True).message_id or ""
    new_pk = next_ticket_pk()  # the first ticket this import opens (the answer to the closed one)
    grace = "Grace Hopper <grace@globetrotter.example>"
    attached = EmailMessage()
    attached["From"] = grace
    attached["Subject"] = "Itinerary attached"
    attached["Message-ID"] = "<att@x.example>"
    attached.set_content("see the PDF")
    attached.add_attachment(b"%PDF-1.4 trip" * 50, maintype="application", subtype="pdf", filename="trip.pdf")
    attached.set_boundary("frontier")  # the same bytes in both runs
    return [(name, raw) for name, raw in [
        ("to-closed", email(subject="Re: closed", message_id="<r-closed@x.example>", In_Reply_To="<closed@x.example>")),
        ("to-pending", email(subject="Re: pending", message_id="<r-pending@x.example>", In_Reply_To="<pending@x.example>")),
        ("to-solved", email(subject="Re: solved", message_id="<r-solved@x.example>", References="<solved@x.example>")),
        ("to-answered", email(subject="Re: answered", message_id="<r-ans1@x.example>", In_Reply_To="<answered@x.example>")),
        ("to-answered-again", email(subject="Re: answered", message_id="<r-ans2@x.example>",
                                    In_Reply_To="<r-ans1@x.example>")),
        ("to-the-ack", email(subject="Re: your request", message_id="<r-ack@x.example>", In_Reply_To=ack)),
        ("by-reference", email(subject=f"About [{tickets['answered'].reference}]", message_id="<r-ref@x.example>")),
        ("new", email(subject="A new matter", message_id="<new@x.example>")),
        ("new-reply", email(subject="Re: new", message_id="<new2@x.example>", References="<x@else.example> <new@x.example>")),
        ("two-threads", email(subject="Re: both", message_id="<both@x.example>", In_Reply_To="<new@x.example>",
                              References="<pending@x.example>")),  # the earliest stored message wins
        ("same-instant", email(subject="Re: two", message_id="<tie@x.example>", In_Reply_To="<solved@x.example>",
                               References="<pending@x.example>")),  # stored at one instant: the first stored wins
        ("same-instant-here", email(subject="Re: two", message_id="<tie2@x.example>", In_Reply_To="<tie@x.example>",
                                    References="<new@x.example>")),  # in batches of 4: one stored, one in the batch
        ("new-duplicate", email(subject="A new matter", message_id="<new@x.example>")),
        ("old-duplicate", email(subject="The pending one", message_id="<pending@x.example>")),
        ("quoting-new", email(subject=f"Also [ACC-{new_pk:06d}]", message_id="<q-new@x.example>")),
        ("quoting-nothing", email(subject="Re: [ACC-987654321]", message_id="<q-none@x.example>")),
        ("carol", email(sender="Carol <carol@else.example>", subject="Hello", message_id="<c1@else.example>")),
        ("carol-again", email(sender="Carol C. <carol@else.example>", subject="Hello again", message_id="<c2@else.example>")),
        ("dave", email(sender="Dave <dave@new.example>", subject="First time", message_id="<d1@new.example>")),
        ("dave-replies", email(sender="Dave <dave@new.example>", subject="Re: first", message_id="<d2@new.example>",
                               In_Reply_To="<d1@new.example>")),
        ("bob-replies", email(sender="Bob <bob@nowhere.example>", subject="Re: stranger", message_id="<b2@x.example>",
                              In_Reply_To="<stranger@x.example>")),
        ("ada", email(sender="Ada <ada@engine.example>", subject="Own agreement", message_id="<ada@engine.example>")),
        ("gilbert", email(sender="Gilbert <gilbert@gold.example>", subject="Gold", message_id="<g@gold.example>")),
        ("auto-reply", email(subject="Out of office", message_id="<ooo@x.example>", Auto_Submitted="auto-replied")),
        ("auto-reply-to-pending", email(subject="Out of office", message_id="<ooo2@x.example>",
                                        In_Reply_To="<r-pending@x.example>", Auto_Submitted="auto-replied")),
        ("bounce", email(sender="MAILER-DAEMON@mx.example", subject="Undelivered", message_id="<bounce@mx.example>")),
        ("garbage", b"\x00\x01\x02 total garbage \xff" * 50),
        ("no-from", b"Subject: who am I\r\n\r\nno sender at all\r\n"),
        ("bad-from", b"From: <\r\nSubject: broken address\r\n\r\nhello\r\n"),
        ("attachment", attached.as_bytes()),
        ("no-id", email(subject="Without an id", message_id="<old@x.example>").replace(b"Message-ID", b"X-Old-ID")),
    ]]


@pytest.mark.parametrize("batch", [1, 4, 200])
def test_a_batch_import_stores_exactly_what_storing_one_by_one_stores(
    desk: Desk, batch: int, django_capture_on_commit_callbacks: Any
) -> None:
    # An account with its own agreement (it beats the tier's; an expired one of its own does not apply) and one
    # on the gold tier, so the batch's agreement look-up is compared with Agreement.for_account as well.
    engine = Account.objects.create(name="Analytical Engines", external_id="ENGINE", tier=desk.platinum)
    own = Agreement.objects.create(name="engine-own", account=engine, effective_from=dt.date(2026, 6, 1),
                                   calendar=desk.calendar)
    support_objectives(own, first={"normal": 15}, nxt={"normal": 30}, res={"normal": 120})
    expired = Agreement.objects.create(name="engine-expired", account=engine, effective_from=dt.date(2026, 9, 1),
                                       effective_to=dt.date(2026, 10, 31), calendar=desk.calendar)
    support_objectives(expired, first={"normal": 5}, nxt={"normal": 5}, res={"normal": 5})
    ada = Contact.objects.create(name="Ada", account=engine)
    ContactPoint.objects.create(contact=ada, kind="email", value="ada@engine.example")
    gold = Account.objects.create(name="Gold Travel", external_id="GOLD", tier=desk.gold)
    gilbert = Contact.objects.create(name="Gilbert", account=gold)
    ContactPoint.objects.create(contact=gilbert, kind="email", value="gilbert@gold.example")
    assert Agreement.for_account(engine, TUESDAY.date()) == own

    def run(importer: Callable[[list[tuple[str, bytes]]], list[mail.StoreResult]]) -> tuple[Any, list[Any]]:
        django_mail.outbox.clear()
        savepoint = transaction.savepoint()
        try:
            with django_capture_on_commit_callbacks(execute=True):
                tickets = _existing_tickets(desk)
                items = _the_import(tickets)
                with time_machine.travel(TUESDAY, tick=False):
                    results = importer(items)
            outcome = [(r.duplicate, r.flagged, r.message is None, r.ticket is None) for r in results]
            return _snapshot(), outcome
        finally:
            transaction.savepoint_rollback(savepoint)

    one_by_one = run(lambda items: [mail.store(raw, source=source, acknowledge=True) for source, raw in items])
    batched = run(lambda items: import_all(items, batch=batch, acknowledge=True))
    assert batched == one_by_one, _first_difference(batched, one_by_one)
    # And the scenario did what it is meant to cover.
    snapshot, outcome = batched
    kinds = [sorted({c[0] for c in t[-1]}) for t in snapshot["tickets"]]
    assert ["first_response", "next_response", "resolution"] in kinds  # the answered ticket's next response
    assert any(c[0] == "resolution" and c[1] == 2 for t in snapshot["tickets"] for c in t[-1])  # reopened
    assert any(c[7] for t in snapshot["tickets"] for c in t[-1])  # a pause recorded when pending resumed
    assert sum(1 for d, *_ in outcome if d) == 2
    assert len(snapshot["sent"]) >= 5  # acknowledgements were compared too (the earlier tickets' and the new ones')


@pytest.mark.django_db(transaction=True)
def test_a_message_stored_by_another_importer_during_the_batch_is_a_duplicate(desk: Desk) -> None:
    """A concurrent importer commits a Message-ID after our look-up: the batch is stored again one by one."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite lets one writer in at a time: a second importer waits for the first to commit")
    other = Ticket.objects.create(channel="email", subject="Taken by the other importer")
    inserted, go, we_waited = threading.Event(), threading.Event(), threading.Event()

    def other_importer() -> None:
        from django.db import connection as own

        try:
            with transaction.atomic():
                Message.objects.create(ticket=other, kind="inbound", channel="email", message_id="<race@x.example>")
                inserted.set()
                go.wait(30)
        finally:
            own.close()

    def release_when_we_wait() -> None:
        from django.db import connection as own

        try:
            deadline = time.monotonic() + 30
            with own.cursor() as cur:
                while time.monotonic() < deadline:
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND wait_event_type = 'Lock'")
                    if cur.fetchone()[0]:
                        we_waited.set()  # our insert waits on the other's uncommitted Message-ID
                        break
                    time.sleep(0.05)
        finally:
            own.close()
            go.set()

    threads = [threading.Thread(target=other_importer), threading.Thread(target=release_when_we_wait)]
    threads[0].start()
    assert inserted.wait(30)
    threads[1].start()
    results = import_all([("1", email(subject="Mine", message_id="<mine@x.example>")),
                          ("2", email(subject="Raced", message_id="<race@x.example>"))])
    for thread in threads:
        thread.join(30)
    assert we_waited.is_set()
    assert [r.duplicate for r in results] == [False, True]
    assert Message.objects.get(message_id="<race@x.example>").ticket == other
    assert RawMessage.objects.count() == 1 and Ticket.objects.count() == 2
