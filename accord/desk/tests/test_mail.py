"""E-mail in and out: import, threading, idempotence, malformed mail kept and flagged, loop-safe acknowledgements."""

from __future__ import annotations

import mailbox
import subprocess
from email.message import EmailMessage
from email.utils import make_msgid
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core import mail as django_mail
from django.core.management import call_command

from accord.desk import actions, mail
from accord.desk.models import Message, RawMessage, Ticket
from accord.lib.smtp import SmtpSink
from accord.lib.testing import accord_command, subprocess_env

from .conftest import Desk

pytestmark = pytest.mark.django_db


def email(subject: str = "Booking 4711 failed", sender: str = "Grace Hopper <grace@globetrotter.example>",
          body: str = "Our booking did not go through.", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@voyager.example"
    msg["Subject"] = subject
    msg["Message-ID"] = headers.pop("message_id", make_msgid(domain="globetrotter.example"))
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def test_a_new_mail_opens_a_ticket_for_the_known_contact_and_acknowledges_it(
    desk: Desk, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        result = mail.store(email(), source="test", acknowledge=True)
    ticket = result.ticket
    assert ticket is not None and not result.duplicate and not result.flagged
    assert (ticket.account, ticket.contact, ticket.channel) == (desk.account, desk.contact, "email")
    inbound = ticket.messages.get(kind="inbound")
    assert inbound.raw is not None and b"Our booking did not go through." in bytes(inbound.raw.data)
    assert [m.to for m in django_mail.outbox] == [["grace@globetrotter.example"]]
    ack = django_mail.outbox[0]
    assert ticket.reference in ack.subject and ticket.reference in ack.body
    assert "within 1 h of our business hours" in ack.body  # the platinum agreement's normal first response
    assert ack.extra_headers["Auto-Submitted"] == "auto-replied"
    assert ack.extra_headers["In-Reply-To"] == inbound.message_id
    # The acknowledgement is not a response: the first-response clock still runs.
    assert ticket.clocks.get(kind="first_response").status == "running"


def test_replies_thread_by_headers_and_by_the_reference_in_the_subject(desk: Desk) -> None:
    first = mail.store(email(message_id="<one@globetrotter.example>"))
    assert first.ticket is not None
    by_header = mail.store(email(subject="Re: anything", message_id="<two@globetrotter.example>",
                                 In_Reply_To="<one@globetrotter.example>"))
    by_subject = mail.store(email(subject=f"Still broken [{first.ticket.reference}]", message_id="<three@x.example>"))
    new = mail.store(email(subject="A different matter", message_id="<four@x.example>"))
    assert by_header.ticket == first.ticket == by_subject.ticket
    assert new.ticket != first.ticket
    assert first.ticket.messages.filter(kind="inbound").count() == 3


def test_importing_the_same_message_twice_stores_it_once(desk: Desk) -> None:
    raw = email(message_id="<same@globetrotter.example>")
    assert not mail.store(raw).duplicate
    assert mail.store(raw).duplicate
    no_id = email().replace(b"Message-ID", b"X-Old-ID")
    assert not mail.store(no_id).duplicate and mail.store(no_id).duplicate
    assert Message.objects.filter(kind="inbound").count() == 2 and RawMessage.objects.count() == 2


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"From: grace@globetrotter.example\r\nSubject: =?x-unknown?Q?caf=E9?=\r\nContent-Type: text/plain; charset=x-martian\r\n\r\nHello \xff\xfe\r\n", "undecodable"),
        (b"Subject: who am I\r\n\r\nno sender at all\r\n", "no usable From address"),
        (b"\x00\x01\x02 total garbage \xff" * 50, "no usable From address"),
        (b"From: a@b.example\r\nDate: the day after tomorrow\r\nSubject: x\r\n\r\nbody\r\n", "unreadable Date header"),
    ],
)
def test_malformed_mail_is_stored_with_its_raw_source_and_flagged(desk: Desk, raw: bytes, reason: str) -> None:
    result = mail.store(raw, source="odd.eml")
    assert result.message is not None and result.message.flagged
    assert reason in result.message.flag_reason
    assert bytes(result.message.raw.data) == raw  # type: ignore[union-attr]


def test_a_huge_message_is_kept_raw_flagged_and_not_parsed(desk: Desk, settings: Any) -> None:
    settings.ACCORD_MAX_EMAIL_BYTES = 50_000
    raw = email(body="x" * 200_000)
    result = mail.store(raw)
    assert result.message is not None and result.message.flagged and "exceeds" in result.message.flag_reason
    assert result.message.raw is not None and result.message.raw.size == len(raw)
    assert result.message.subject == "Booking 4711 failed" and result.message.body_text == ""


@pytest.mark.parametrize(
    "headers",
    [{"Auto_Submitted": "auto-replied"}, {"Precedence": "bulk"}, {"X_Autoreply": "yes"}],
)
def test_auto_replies_are_stored_but_never_acknowledged(
    desk: Desk, headers: dict[str, str], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        result = mail.store(email(**headers), acknowledge=True)
    assert result.message is not None and result.message.auto_generated
    assert django_mail.outbox == []


def test_a_bounce_from_the_mailer_daemon_is_not_acknowledged(desk: Desk, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        mail.store(email(sender="MAILER-DAEMON@mx.example", subject="Undelivered Mail Returned to Sender"),
                   acknowledge=True)
    assert django_mail.outbox == []


def test_an_agents_reply_goes_out_threaded(desk: Desk, django_capture_on_commit_callbacks: Any) -> None:
    stored = mail.store(email(message_id="<q1@globetrotter.example>"))
    assert stored.ticket is not None
    with django_capture_on_commit_callbacks(execute=True):
        reply = actions.do_reply(stored.ticket, desk.agent, "We have rebooked you on the 14:05.")
    sent = django_mail.outbox[-1]
    assert sent.to == ["grace@globetrotter.example"]
    assert sent.extra_headers["In-Reply-To"] == "<q1@globetrotter.example>"
    assert "<q1@globetrotter.example>" in sent.extra_headers["References"]
    assert f"[{stored.ticket.reference}]" in sent.subject
    reply.refresh_from_db()
    assert reply.message_id == sent.extra_headers["Message-ID"]
    # The customer answers our reply: it threads back onto the same ticket.
    answer = mail.store(email(subject="Re: thanks", In_Reply_To=reply.message_id or ""))
    assert answer.ticket == stored.ticket


def test_import_mime_reads_eml_mbox_and_maildir_and_ends_with_a_summary(desk: Desk, tmp_path: Path) -> None:
    (tmp_path / "one.eml").write_bytes(email(message_id="<e1@x.example>"))
    box = mailbox.mbox(tmp_path / "archive.mbox")
    for i in range(3):
        box.add(email(subject=f"Mbox {i}", message_id=f"<m{i}@x.example>"))
    box.add(email(subject="Mbox again", message_id="<e1@x.example>"))  # duplicate of one.eml
    box.flush()
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(b"Subject: broken\r\n\r\nno from\r\n")
    out, err = StringIO(), StringIO()
    call_command("desk", "import-mime", str(tmp_path / "one.eml"), str(tmp_path / "archive.mbox"),
                 str(tmp_path / "Maildir"), stdout=out, stderr=err)
    assert out.getvalue().strip() == "stored 5, duplicates 1, flagged 1, acknowledgements sent 0"
    assert "flagged" in err.getvalue() and Ticket.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_the_real_command_writes_to_no_old_sender_unless_asked_and_is_idempotent(desk: Desk, tmp_path: Path) -> None:
    archive, live = tmp_path / "archive", tmp_path / "live"
    for folder in (archive, live):
        folder.mkdir()
        for i in range(4):
            (folder / f"{i}.eml").write_bytes(email(subject=f"Question {i}", message_id=f"<{folder.name}{i}@globetrotter.example>"))
    with SmtpSink() as smtp:
        env = subprocess_env(ACCORD_SMTP_HOST=smtp.host, ACCORD_SMTP_PORT=str(smtp.port))
        archived = subprocess.run([*accord_command(), "desk", "import-mime", str(archive)], env=env, capture_output=True, text=True)
        # The process has ended, and with it every send it made: an archive import writes to nobody.
        assert smtp.messages == []
        first = subprocess.run([*accord_command(), "desk", "import-mime", "--acknowledge", str(live)], env=env,
                               capture_output=True, text=True)
        again = subprocess.run([*accord_command(), "desk", "import-mime", "--acknowledge", str(live)], env=env,
                               capture_output=True, text=True)
        received = smtp.wait_for(4, timeout=30)
    assert archived.returncode == 0, archived.stderr
    assert archived.stdout.strip() == "stored 4, duplicates 0, flagged 0, acknowledgements sent 0"
    assert first.returncode == 0 and first.stdout.strip() == "stored 4, duplicates 0, flagged 0, acknowledgements sent 4", first.stderr
    assert again.stdout.strip() == "stored 0, duplicates 4, flagged 0, acknowledgements sent 0"
    assert len(received) == 4
    assert all(m["Auto-Submitted"] == "auto-replied" and "ACC-" in m["Subject"] for _f, _t, m in received)
    assert Ticket.objects.count() == 8
    missing = subprocess.run([*accord_command(), "desk", "import-mime", str(tmp_path / "nope")], env=env, capture_output=True, text=True)
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr


@pytest.mark.django_db(transaction=True)
def test_an_acknowledgement_that_cannot_be_sent_is_counted_and_the_command_fails(desk: Desk, tmp_path: Path) -> None:
    from accord.lib.ports import free_port

    (tmp_path / "one.eml").write_bytes(email(message_id="<down@globetrotter.example>"))
    env = subprocess_env(ACCORD_SMTP_HOST="127.0.0.1", ACCORD_SMTP_PORT=str(free_port()))  # nothing listens there
    run = subprocess.run([*accord_command(), "desk", "import-mime", "--acknowledge", str(tmp_path)], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stdout.strip() == "stored 1, duplicates 0, flagged 0, acknowledgements sent 0, acknowledgements not sent 1"
    assert "could not be sent" in run.stderr
    ack = Message.objects.get(kind="reply", auto_generated=True)
    assert ack.flagged and ack.flag_reason.startswith("not sent:")
