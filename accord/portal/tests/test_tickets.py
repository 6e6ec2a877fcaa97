"""A customer's tickets in the portal: open with files, reply, solve, search; their clocks; limits refused."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from accord.catalog.models import ApiCredential, CredentialUsage
from accord.desk.models import Attachment, Message, SlaClock, Ticket
from accord.governance.models import AuditEvent, Policy
from accord.reports.models import FrozenReport
from accord.reports.periods import current_month

from .conftest import Org, signed_in

pytestmark = pytest.mark.django_db


def test_a_customer_opens_a_ticket_with_a_file_and_its_clocks_start(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    client = signed_in(alpha.user)
    before = Ticket.objects.count()
    answer = client.post("/portal/tickets/new/", {
        "subject": "Refunds are slow", "message": "<script>alert(1)</script> since Monday", "priority": "normal",
        "attachments": [SimpleUploadedFile("trace.txt", b"stack trace", content_type="text/plain")]})
    assert answer.status_code == 302
    ticket = Ticket.objects.exclude(pk__in=[alpha.ticket.pk, alpha.admin_ticket.pk]).filter(account=alpha.account).get()
    assert Ticket.objects.count() == before + 1
    assert (ticket.contact, ticket.channel, ticket.subject) == (alpha.user.contact, "web", "Refunds are slow")
    assert Attachment.objects.get(message__ticket=ticket).data == b"stack trace"
    assert {c.kind for c in SlaClock.objects.filter(ticket=ticket)} == {"first_response", "resolution"}
    page = client.get(answer["Location"]).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page  # text, not markup
    assert "First response due in" in page and "around the clock" in page
    assert client.get(f"/portal/tickets/{ticket.reference}/files/{Attachment.objects.get(message__ticket=ticket).pk}/"
                      ).content == b"stack trace"


def test_bad_input_is_refused_with_the_reason_and_nothing_is_stored(orgs: tuple[Org, Org], settings) -> None:
    alpha, _beta = orgs
    client = signed_in(alpha.user)
    settings.ACCORD_PORTAL_MAX_ATTACHMENT = 10
    before = (Ticket.objects.count(), Message.objects.count(), Attachment.objects.count())
    big = client.post("/portal/tickets/new/", {"subject": "Big", "message": "see file", "priority": "normal",
                                               "attachments": [SimpleUploadedFile("big.bin", b"x" * 11)]})
    assert big.status_code == 400 and "the limit is 10 bytes per file" in big.content.decode()
    blank = client.post("/portal/tickets/new/", {"subject": "   ", "message": "x", "priority": "normal"})
    assert blank.status_code == 400 and "This field is required" in blank.content.decode()
    long = client.post("/portal/tickets/new/", {"subject": "Long", "message": "x" * 20_001, "priority": "normal"})
    assert long.status_code == 400
    bad_priority = client.post("/portal/tickets/new/", {"subject": "P", "message": "x", "priority": "yesterday"})
    assert bad_priority.status_code == 400
    nul = client.post(f"/portal/tickets/{alpha.ticket.reference}/", {"message": "a\x00b"})
    assert nul.status_code == 400 and "Null characters are not allowed" in nul.content.decode()
    assert (Ticket.objects.count(), Message.objects.count(), Attachment.objects.count()) == before


def test_a_reply_reopens_the_thread_and_notes_stay_internal(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    client = signed_in(alpha.user)
    page = client.get(f"/portal/tickets/{alpha.ticket.reference}/").content.decode()
    assert alpha.word in page and "difficult customer" not in page  # the agent's note is not shown
    assert client.post(f"/portal/tickets/{alpha.ticket.reference}/", {"message": "any news?"}).status_code == 302
    last = Message.objects.filter(ticket=alpha.ticket).latest("created_at", "id")
    assert (last.kind, last.body_text, last.author_contact) == ("inbound", "any news?", alpha.user.contact)
    assert client.post(f"/portal/tickets/{alpha.ticket.reference}/close/").status_code == 302
    assert Ticket.objects.get(pk=alpha.ticket.pk).status == "solved"
    assert "Mark as solved" not in client.get(f"/portal/tickets/{alpha.ticket.reference}/").content.decode()


def test_a_user_sees_their_own_tickets_and_an_admin_the_organisations(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    user_list = signed_in(alpha.user).get("/portal/tickets/").content.decode()
    assert alpha.ticket.reference in user_list and alpha.admin_ticket.reference not in user_list
    assert signed_in(alpha.user).get(f"/portal/tickets/{alpha.admin_ticket.reference}/").status_code == 404
    admin = signed_in(alpha.admin)
    whole = admin.get("/portal/tickets/").content.decode()
    assert alpha.ticket.reference in whole and alpha.admin_ticket.reference in whole
    mine = admin.get("/portal/tickets/?whose=mine").content.decode()
    assert alpha.admin_ticket.reference in mine and alpha.ticket.reference not in mine
    assert admin.get(f"/portal/tickets/{alpha.ticket.reference}/").status_code == 200


def test_search_finds_words_in_subjects_and_messages_but_not_in_notes(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    admin = signed_in(alpha.admin)
    found = admin.get(f"/portal/tickets/?q={alpha.word}&status=all").content.decode()
    assert alpha.ticket.reference in found and alpha.admin_ticket.reference not in found
    assert "1 ticket of your organisation" in found
    note = admin.get("/portal/tickets/?q=difficult&status=all").content.decode()
    assert "0 tickets" in note
    assert admin.get("/portal/tickets/?status=bogus").status_code == 400


def test_the_home_page_shows_the_objectives_open_tickets_and_their_clocks(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    page = signed_in(alpha.user).get("/portal/").content.decode()
    assert "gold-sla" in page and "first_response-normal" in page  # the agreement's objectives
    assert alpha.ticket.reference in page and "First response due in" in page
    assert "<svg" in page  # the attainment chart


def test_credits_show_the_accounts_own_only(orgs: tuple[Org, Org]) -> None:
    alpha, beta = orgs
    page = signed_in(alpha.user).get("/portal/credits/").content.decode()
    assert alpha.credit.period in page and beta.credit.period not in page and "321.09" in page


def test_reports_download_the_frozen_version_else_a_provisional_one(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    client = signed_in(alpha.user)
    month = current_month().label
    listing = client.get("/portal/reports/").content.decode()
    assert f'data-period="{month}"' in listing and "this month, provisional" in listing
    live = client.get(f"/portal/reports/{month}/csv/")
    assert live.status_code == 200 and f"{month}-provisional.csv" in live["Content-Disposition"]
    assert live.content.decode().startswith("account,period,provisional,")  # the reports app's CSV
    FrozenReport.objects.create(account=alpha.account, period=month, version=2, fmt="csv", content=b"as sent",
                                sha256="0" * 64, closed_at=timezone.now(), closed_by="finance")
    frozen = client.get(f"/portal/reports/{month}/csv/")
    assert frozen.content == b"as sent" and f"{month}-v2.csv" in frozen["Content-Disposition"]
    assert "closed (version 2)" in client.get("/portal/reports/").content.decode()
    assert client.get(f"/portal/reports/{month}/exe/").status_code == 404
    assert client.get("/portal/reports/1999-01/csv/").status_code == 404  # not one of the months listed
    assert client.get("/portal/reports/2026-13/csv/").status_code == 404


def test_an_admin_issues_a_key_shown_once_and_revokes_it_and_a_user_cannot(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    admin = signed_in(alpha.admin)
    page = admin.post("/portal/keys/", {"name": "booking engine"}).content.decode()
    key = ApiCredential.objects.get(account=alpha.account, name="booking engine")
    shown = re.search(r'id="key-value" value="([^"]+)"', page)
    assert shown and key.matches(shown.group(1)) and key.name == "booking engine"
    assert shown.group(1) not in admin.get("/portal/keys/").content.decode()  # once
    assert admin.post("/portal/keys/", {"name": " "}).status_code == 400
    plain = signed_in(alpha.user)
    assert plain.post("/portal/keys/", {"name": "mine"}).status_code == 403
    assert plain.post(f"/portal/keys/{key.pk}/revoke/").status_code == 403
    assert ApiCredential.objects.get(pk=key.pk).revoked_at is None
    assert admin.post(f"/portal/keys/{key.pk}/revoke/").status_code == 302
    assert ApiCredential.objects.get(pk=key.pk).revoked_at is not None
    assert ApiCredential.objects.filter(account=alpha.account).count() == 2  # the fixture's and this one


def test_the_keys_page_shows_each_keys_requests_this_month_and_only_its_own_accounts(orgs: tuple[Org, Org]) -> None:
    alpha, beta = orgs
    today = timezone.now().astimezone(dt.UTC).date()
    first = today.replace(day=1)
    CredentialUsage.objects.create(credential=alpha.key, day=first, requests=40)
    if today != first:
        CredentialUsage.objects.create(credential=alpha.key, day=today, requests=5)
    CredentialUsage.objects.create(credential=alpha.key, day=first - dt.timedelta(days=1), requests=1000)  # last month
    CredentialUsage.objects.create(credential=beta.key, day=today, requests=777)
    page = signed_in(alpha.user).get("/portal/keys/").content.decode()
    row = re.search(rf'<tr data-key="{alpha.key.prefix}">(.*?)</tr>', page, re.S)
    expected = 40 if today == first else 45
    assert row and f'data-usage="{expected}"' in row.group(1), page
    assert "777" not in page and "1040" not in page and "1045" not in page


def test_the_portal_carries_the_chat_widget_vouching_for_the_signed_in_contact(orgs: tuple[Org, Org],
                                                                               settings: Any) -> None:
    from accord.chat.service import check_identity

    alpha, _beta = orgs
    contact = alpha.user.contact
    contact.external_id = "alpha-contact-7"
    contact.save(update_fields=["external_id"])
    client = signed_in(alpha.user)
    settings.ACCORD_CHAT_SECRET = ""
    page = client.get("/portal/").content.decode()
    assert re.search(r'<script src="[^"]*chat/widget\.js" async></script>', page)  # a guest without a secret
    settings.ACCORD_CHAT_SECRET = "portal-secret"
    page = client.get("/portal/tickets/").content.decode()
    tag = re.search(r'chat/widget\.js" async data-visitor-id="([^"]+)" data-visitor-ts="(\d+)" '
                    r'data-visitor-sig="([0-9a-f]{64})"', page)
    assert tag and tag.group(1) == "alpha-contact-7"
    assert check_identity(*tag.groups()) == (contact, "")  # the chat opens as this contact, under their account
    assert "widget.js" not in Client().get("/portal/login/").content.decode()  # not before sign-in


def test_a_clock_shows_whole_minutes_left_and_overdue_once_its_due_instant_passed(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    client = signed_in(alpha.user)
    page = client.get(f"/portal/tickets/{alpha.ticket.reference}/").content.decode()
    due = re.findall(r"Resolution due in ([^(]*) \(", page)
    assert due and re.fullmatch(r"(\d+ d )?(\d+ h )?\d+ min", due[0]), due  # no "31.050169 s"
    # The due instant has passed and the worker has not run yet: overdue, not "due in 1 min".
    past = timezone.now() - dt.timedelta(minutes=5)
    SlaClock.objects.filter(ticket=alpha.ticket, kind="first_response").update(due_at=past)
    for page in (client.get(f"/portal/tickets/{alpha.ticket.reference}/").content.decode(),
                 client.get("/portal/").content.decode()):
        assert "First response: overdue since" in page and "First response due in" not in page


def test_ticket_times_are_in_the_accounts_time_zone_and_say_so(orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    alpha.account.timezone = "Asia/Tokyo"
    alpha.account.save(update_fields=["timezone"])
    opened = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC)  # 08:30 the next day in Tokyo
    Ticket.objects.filter(pk=alpha.ticket.pk).update(created_at=opened)
    Message.objects.filter(pk=alpha.ticket.first_message.pk).update(created_at=opened)  # type: ignore[attr-defined]
    client = signed_in(alpha.user)
    listing = client.get("/portal/tickets/").content.decode()
    assert "Opened (Asia/Tokyo)" in listing and "2026-03-02 08:30" in listing and "2026-03-01 23:30" not in listing
    page = client.get(f"/portal/tickets/{alpha.ticket.reference}/").content.decode()
    assert "opened 2026-03-02 08:30 JST" in page and "· 2026-03-02 08:30 JST" in page
    # The home page's protections say "Times in Asia/Tokyo": so they are.
    assert alpha.account.tier is not None
    policy = Policy.objects.create(name="reroute", description="routed to standby", condition="true",
                                   tiers=[alpha.account.tier.name], action=Policy.Action.ROUTE)
    start = (timezone.now() - dt.timedelta(days=1)).replace(second=0, microsecond=0)
    for kind, at in ((AuditEvent.Kind.ACTIVATED, start), (AuditEvent.Kind.DEACTIVATED, start + dt.timedelta(minutes=7))):
        AuditEvent.objects.create(at=at, kind=kind, policy=policy, subject="reroute", actor="governor", reason="peak")
    home = client.get("/portal/").content.decode()
    tokyo = ZoneInfo("Asia/Tokyo")
    local = start.astimezone(tokyo)
    shown = f"routed to standby: {local:%Y-%m-%d %H:%M}\N{EN DASH}{local + dt.timedelta(minutes=7):%H:%M}"
    assert "Times in Asia/Tokyo" in home and shown in home
