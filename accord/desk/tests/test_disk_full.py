"""A full disk (SQLite): imports and desk actions fail with a clear error, and nothing is half-written.

The database file is made unable to grow: every page is filled with a filler table, and every connection (this
process's, through a `connection_created` hook, and the `accord` subprocesses', through ACCORD_SQLITE_MAX_PAGES)
gets `PRAGMA max_page_count` at that size: SQLite then answers "database or disk is full" (SQLITE_FULL) exactly
as it does on a full file system. Freeing the filler makes room again, and the same actions then succeed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.db import OperationalError, connection
from django.test import Client

from accord.customers.models import Account
from accord.desk import actions
from accord.desk.actions import Inbound
from accord.desk.forms import SupportRequestForm
from accord.desk.models import Message, OutgoingMail, RawMessage, SlaClock, Ticket
from accord.lib.testing import FullDatabase, accord_command, full_sqlite_database, subprocess_env

from .conftest import Desk
from .test_mail import email

pytestmark = pytest.mark.django_db(transaction=True)
sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="a database file that cannot grow is SQLite's")
BIG = "The booking engine returned error 500 on every retry. " * 300  # ~16 KB: needs new (overflow) pages


@pytest.fixture
def full_disk() -> Iterator[FullDatabase]:
    """Fill the database to its new limit; `free()` makes room again."""
    with full_sqlite_database() as full:
        yield full


def counts() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in (Ticket, Message, OutgoingMail, RawMessage, SlaClock, Account)}


@sqlite_only
def test_desk_actions_on_a_full_database_answer_503_saying_so_and_write_nothing(
    desk: Desk, settings: Any, request: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    ticket = actions.do_open_ticket(Inbound(channel="web", subject="Refund", body_text="Hotel cancelled",
                                            from_address="grace@globetrotter.example", from_name="Grace"))
    clocks = list(ticket.clocks.values_list("kind", "status", "due_at"))
    agent = Client(raise_request_exception=False)
    agent.force_login(desk.agent)
    with time_machine.travel(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60), tick=False):
        token = SupportRequestForm.new_token()  # a minute old: filled in by a person
    form = {"name": "Ada", "email": "ada@example.org", "subject": "Booking lost", "message": BIG, "website": "",
            "token": token}
    full = request.getfixturevalue("full_disk")
    before = counts()
    reply = agent.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": BIG, "kind": "reply", "status": ""})
    assert reply.status_code == 503 and reply["Retry-After"]
    assert "The database is full" in reply.content.decode() and "Traceback" not in reply.content.decode()
    opened = Client(raise_request_exception=False).post("/support/", form)
    assert opened.status_code == 503 and "The database is full" in opened.content.decode()
    # Nothing half-written: no message without its outbox row, no ticket without its clocks, the clocks untouched.
    assert counts() == before
    ticket.refresh_from_db()
    assert ticket.status == "new" and list(ticket.clocks.values_list("kind", "status", "due_at")) == clocks
    full.free()
    again = agent.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": BIG, "kind": "reply", "status": ""})
    assert again.status_code == 302 and ticket.messages.filter(kind="reply").count() == 1
    assert OutgoingMail.objects.filter(message__ticket=ticket).count() == 1


@sqlite_only
def test_imports_on_a_full_database_exit_3_with_a_clear_message_and_write_nothing(
    desk: Desk, tmp_path: Path, request: Any
) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_text("external_id,name,timezone\n" + "".join(f"ACME-{n},Acme {n} {'x' * 150},UTC\n" for n in range(400)))
    mails = tmp_path / "mails"
    mails.mkdir()
    for n in range(20):
        (mails / f"{n}.eml").write_bytes(email(subject=f"Lost booking {n}", body=BIG, message_id=f"<full{n}@ex.org>"))
    full = request.getfixturevalue("full_disk")
    env = subprocess_env(ACCORD_SQLITE_MAX_PAGES=str(full.pages),
                         ACCORD_EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
    before = counts()
    for command in (["import", "accounts", str(csv)], ["desk", "import-mime", str(mails)]):
        done = subprocess.run([*accord_command(), *command], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 3, done.stderr
        assert "The database is full" in done.stderr and "Traceback" not in done.stderr
        assert "nothing of the failed step was written" in done.stderr
        assert counts() == before
    # The disk fills up partway through the step: room for the raw sources (the batch's first statement), not for
    # the tickets' messages after them. The batch's transaction takes the stored raw sources back with the rest;
    # without it they would stay behind, the sources of tickets that were never opened.
    with connection.cursor() as c:
        c.execute("PRAGMA page_size")
        page = c.fetchone()[0]
    raw = sum(p.stat().st_size for p in mails.iterdir())
    room = math.ceil(1.5 * raw / page) + 10  # the raw sources with their overflow pages and index; not 2 x raw
    partly = {**env, "ACCORD_SQLITE_MAX_PAGES": str(full.pages + room)}
    done = subprocess.run([*accord_command(), "desk", "import-mime", str(mails)], env=partly, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 3 and "The database is full" in done.stderr, done.stderr
    assert counts() == before
    full.free()
    env.pop("ACCORD_SQLITE_MAX_PAGES")  # room again: the same commands, run again, import everything
    for command in (["import", "accounts", str(csv)], ["desk", "import-mime", str(mails)]):
        done = subprocess.run([*accord_command(), *command], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    after = counts()
    assert after["Account"] == before["Account"] + 400 and after["Ticket"] == before["Ticket"] + 20
    assert after["Message"] == before["Message"] + 20 and after["RawMessage"] == before["RawMessage"] + 20


@contextlib.contextmanager
def outbox_refused() -> Iterator[list[str]]:
    """The disk fills up at the last write of an action: the database refuses the outbox row (the mail to send),
    as a full disk would (SQLite's SQLITE_FULL, PostgreSQL's "No space left on device"), after the action's other
    rows were written. Every statement refused is noted."""
    table = OutgoingMail._meta.db_table
    full = ("database or disk is full" if connection.vendor == "sqlite"
            else 'could not extend file "base/16384/16385": No space left on device')
    refused: list[str] = []

    def refuse(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip().upper().startswith("INSERT") and table in sql:
            refused.append(sql)
            raise OperationalError(full)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        yield refused


def test_a_reply_or_a_web_form_ticket_whose_outgoing_mail_cannot_be_written_leaves_nothing_behind(
    desk: Desk, settings: Any
) -> None:
    """Nothing half-written: a reply is stored with the mail that carries it, and a web-form ticket with its
    auto-acknowledgement, or neither (a ticket without its acknowledgement, or an acknowledgement never queued,
    would be a customer told nothing while the form said the database was full)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    ticket = actions.do_open_ticket(Inbound(channel="web", subject="Refund", body_text="Hotel cancelled",
                                            from_address="grace@globetrotter.example", from_name="Grace"))
    agent = Client(raise_request_exception=False)
    agent.force_login(desk.agent)
    with time_machine.travel(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60), tick=False):
        token = SupportRequestForm.new_token()  # a minute old: filled in by a person
    form = {"name": "Ada", "email": "ada@example.org", "subject": "Booking lost", "message": "It is gone.",
            "website": "", "token": token}
    before = counts()
    with outbox_refused() as refused:
        reply = agent.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": "Refunded.", "kind": "reply", "status": ""})
        opened = Client(raise_request_exception=False).post("/support/", form)
    assert len(refused) == 2, refused  # each got as far as its mail
    for answer in (reply, opened):
        assert answer.status_code == 503 and "The database is full" in answer.content.decode()
    assert counts() == before
    ticket.refresh_from_db()
    assert ticket.status == "new"
    # Room again: the same form (its token was not spent) and the same reply go through, each with its mail.
    assert Client().post("/support/", form).status_code == 200
    assert agent.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": "Refunded.", "kind": "reply",
                                                            "status": ""}).status_code == 302
    after = counts()
    assert (after["Ticket"], after["Message"], after["OutgoingMail"]) == (
        before["Ticket"] + 1, before["Message"] + 3, before["OutgoingMail"] + 2)
