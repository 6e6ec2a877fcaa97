"""IMAP polling against a real Dovecot: store, then mark seen; bad mailboxes reported, nothing lost."""

from __future__ import annotations

import imaplib
import time
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from accord.desk import imap
from accord.desk.models import Mailbox, Message, Ticket
from accord.lib.smtp import SmtpSink

from .conftest import Desk, Imap
from .test_mail import email

pytestmark = pytest.mark.django_db


def append(server: Imap, *messages: bytes) -> None:
    conn = imaplib.IMAP4(server.host, server.port, timeout=10)
    conn.login(server.user, server.password)
    for raw in messages:
        typ, _ = conn.append("INBOX", "", imaplib.Time2Internaldate(time.time()), raw)
        assert typ == "OK"
    conn.logout()


def seen_flags(server: Imap) -> list[bool]:
    conn = imaplib.IMAP4(server.host, server.port, timeout=10)
    conn.login(server.user, server.password)
    conn.select("INBOX", readonly=True)
    _typ, data = conn.fetch("1:*", "(FLAGS)")
    conn.logout()
    return [b"\\Seen" in line for line in data if isinstance(line, bytes)]


def mailbox_for(server: Imap, **overrides: object) -> Mailbox:
    fields = {"name": "support", "host": server.host, "port": server.port, "security": "none",
              "username": server.user, "password": server.password, **overrides}
    return Mailbox.objects.create(**fields)


def test_polling_stores_new_mail_and_only_then_marks_it_seen(desk: Desk, dovecot: Imap) -> None:
    append(dovecot, email(subject="First", message_id="<p1@g.example>"), email(subject="Second", message_id="<p2@g.example>"),
           b"Subject: no sender\r\n\r\nbroken\r\n")
    box = mailbox_for(dovecot)
    result = imap.poll(box)
    assert (result.stored, result.duplicates, result.flagged, result.error) == (3, 0, 1, "")
    assert seen_flags(dovecot) == [True, True, True]
    assert Ticket.objects.count() == 3
    assert set(Message.objects.filter(kind="inbound").values_list("raw__source", flat=True)) >= {
        "imap:support/INBOX#1", "imap:support/INBOX#2",
    }
    again = imap.poll(box)
    assert (again.stored, again.duplicates) == (0, 0)  # nothing unseen left
    box.refresh_from_db()
    assert box.last_polled_at is not None and box.last_error == ""


@pytest.mark.django_db(transaction=True)
def test_polling_acknowledges_new_tickets_as_they_arrive(desk: Desk, dovecot: Imap, settings: Any) -> None:
    append(dovecot, email(subject="First", message_id="<a1@g.example>"),
           email(subject="Out of office", message_id="<a2@g.example>", Auto_Submitted="auto-replied"),
           email(subject="Re: First", message_id="<a3@g.example>", In_Reply_To="<a1@g.example>"))
    mailbox_for(dovecot)
    with SmtpSink() as smtp:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = smtp.host, smtp.port
        out = StringIO()
        call_command("desk", "poll-imap", stdout=out)
        received = smtp.wait_for(1)
    # One new ticket from a person: acknowledged; the auto-reply and the answer on the same ticket are not.
    assert out.getvalue().strip() == "support: stored 3, duplicates 0, flagged 0, acknowledgements sent 1 (ok)"
    (_sender, to, sent), = received
    assert to == ["grace@globetrotter.example"] and sent["Auto-Submitted"] == "auto-replied"
    assert Ticket.objects.get(subject="First").reference in sent["Subject"]


def test_a_message_marked_unseen_again_is_not_stored_twice(desk: Desk, dovecot: Imap) -> None:
    append(dovecot, email(message_id="<dup@g.example>"))
    box = mailbox_for(dovecot)
    imap.poll(box)
    conn = imaplib.IMAP4(dovecot.host, dovecot.port)
    conn.login(dovecot.user, dovecot.password)
    conn.select("INBOX")
    conn.store("1", "-FLAGS", "(\\Seen)")
    conn.logout()
    result = imap.poll(box)
    assert (result.stored, result.duplicates) == (0, 1)
    assert Message.objects.filter(kind="inbound").count() == 1


def test_a_wrong_password_is_reported_and_leaves_mail_unseen(desk: Desk, dovecot: Imap) -> None:
    append(dovecot, email(message_id="<wp@g.example>"))
    box = mailbox_for(dovecot, password="wrong")
    result = imap.poll(box)
    assert (result.stored == 0 and "AUTHENTICATIONFAILED" in result.error.upper()) or "authentication" in result.error.lower()
    assert seen_flags(dovecot) == [False]
    box.refresh_from_db()
    assert box.last_error == result.error
    with pytest.raises(CommandError, match="could not be polled"):
        call_command("desk", "poll-imap", stdout=StringIO())


def test_an_unreachable_server_is_an_error_not_a_crash(desk: Desk) -> None:
    from accord.lib.ports import free_port

    box = Mailbox.objects.create(name="gone", host="127.0.0.1", port=free_port(), security="none", username="u", password="p")
    result = imap.poll(box)
    assert result.error.startswith("ConnectionRefusedError")


def test_the_poll_command_names_unknown_mailboxes(desk: Desk) -> None:
    with pytest.raises(CommandError, match="Unknown or disabled mailbox"):
        call_command("desk", "poll-imap", "--mailbox", "nope")
