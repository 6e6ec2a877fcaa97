"""Export and erasure of a person: everything in the zip; after erasure no table holds their name, addresses or
phone, the account's report is the same, and what must keep working (suppression, open tickets) does."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from accord.access.audit import record
from accord.access.models import AuditEntry, Strike
from accord.customers.models import Account, Contact
from accord.desk.models import Attachment, Message, RawMessage, SlaClock, Ticket
from accord.outreach import consent as consents
from accord.privacy import person
from accord.reports import render
from accord.reports.builder import build
from accord.reports.periods import current_month

from .conftest import EMAIL, NAME, PASSPORT, PHONE, TERMS

pytestmark = pytest.mark.django_db

def everything_stored() -> str:
    """Every row of every table of the database, as text (binary columns decoded), lower case."""
    out = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("utf-8", "replace")
                    out.append(str(value))
    return "\n".join(out).lower()


def test_the_export_holds_the_person_their_tickets_notes_files_consents_and_is_audited(grace: Contact) -> None:
    data = person.export_zip(grace)
    z = zipfile.ZipFile(io.BytesIO(data))
    me = json.loads(z.read("person.json"))
    assert me["contact"]["name"] == NAME and {a["value"] for a in me["addresses"]} == {EMAIL, PHONE}
    assert me["consents"][0]["purpose"] == "news" and "password" not in me["portal_user"]
    assert me["contact"]["custom_fields"] == {"passport": PASSPORT, "vip": True}
    tickets = json.loads(z.read("tickets.json"))
    kinds = [m["kind"] for m in tickets[0]["messages"]]
    assert tickets[0]["subject"] == f"Refund for {NAME}" and kinds == ["inbound", "reply", "note"]
    assert [z.read(n) for n in z.namelist() if n.startswith("attachments/")] == [b"%PDF-1.4"]
    assert any(NAME in a["summary"] for a in json.loads(z.read("audit.json")))
    assert AuditEntry.objects.filter(action="privacy-export", object_id=str(grace.pk)).exists()


def test_erasure_leaves_no_trace_in_any_table_and_the_report_unchanged(grace: Contact) -> None:
    now = timezone.now()
    before = render.csv_bytes(build(grace.account, current_month(now), now))
    clocks = list(SlaClock.objects.order_by("id").values_list("id", "status", "due_at"))
    assert all(t in everything_stored() for t in TERMS)
    with pytest.raises(person.OpenTickets, match="1 open ticket"):
        person.erase(grace)
    assert NAME.lower() in everything_stored()  # refused: nothing changed
    done = person.erase(grace, confirm_open=True)
    stored = everything_stored()
    for term in TERMS:
        assert term not in stored, term
    assert "hi grace" not in stored  # the first name in their own thread goes too
    assert Contact.objects.get(pk=grace.pk).custom_fields == {"passport": done.pseudonym, "vip": done.pseudonym}
    assert "alan turing" in stored and "alan@globetrotter.example" in stored  # nobody else is touched
    assert done.raw_deleted == 1 and done.attachments_cleared == 1 and done.open_tickets
    assert render.csv_bytes(build(Account.objects.get(pk=grace.account_id), current_month(now), now)) == before
    assert list(SlaClock.objects.order_by("id").values_list("id", "status", "due_at")) == clocks
    ticket = Ticket.objects.get(contact=grace)
    assert ticket.is_open and done.pseudonym in ticket.subject
    assert Message.objects.filter(ticket=ticket).count() == 3
    assert consents.suppressed(EMAIL) is not None  # still never mailed, known only by its hash
    assert AuditEntry.objects.filter(action="privacy-erase", object_id=str(grace.pk)).exists()


def test_a_shared_name_is_kept_in_the_other_persons_rows(grace: Contact) -> None:
    namesake = Contact.objects.create(account=grace.account, name=NAME)
    record(None, "create", namesake, summary=f"{NAME} from the other branch")
    person.erase(grace, confirm_open=True)
    assert Contact.objects.get(pk=namesake.pk).name == NAME
    assert AuditEntry.objects.filter(summary=f"{NAME} from the other branch").exists()
    assert EMAIL not in everything_stored()


def test_the_command_line_refuses_open_tickets_without_confirmation_and_exports(grace: Contact, tmp_path) -> None:
    out = StringIO()
    call_command("privacy", "export", EMAIL, "-o", str(tmp_path / "g.zip"), stdout=out)
    assert zipfile.ZipFile(tmp_path / "g.zip").namelist()[0] == "person.json"
    with pytest.raises(CommandError, match="--confirm-open"):
        call_command("privacy", "erase", "crm-grace")
    call_command("privacy", "erase", "crm-grace", "--confirm-open", stdout=out)
    assert "erased contact" in out.getvalue()
    with pytest.raises(CommandError, match="no contact"):
        call_command("privacy", "erase", EMAIL)  # the address is gone with the person


def test_purge_deletes_what_retention_says_and_keeps_the_tickets(grace: Contact) -> None:
    ticket = Ticket.objects.get(contact=grace)
    old = timezone.now() - dt.timedelta(days=800)
    Ticket.objects.filter(pk=ticket.pk).update(status="closed", closed_at=old)
    Strike.objects.create(key="login:addr:192.0.2.1", at=timezone.now() - dt.timedelta(days=2))
    out = StringIO()
    call_command("privacy", "purge", "--dry-run", stdout=out)
    assert "raw-mail: would delete 1" in out.getvalue() and RawMessage.objects.count() == 1
    call_command("privacy", "purge", stdout=out)
    assert "attachments: deleted 1" in out.getvalue() and "throttle: deleted 1" in out.getvalue()
    assert RawMessage.objects.count() == 0 and Attachment.objects.get().size == 0
    assert Ticket.objects.filter(pk=ticket.pk).exists() and Message.objects.filter(ticket=ticket).count() == 3
