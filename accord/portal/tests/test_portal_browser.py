"""In a browser (Debian's Chromium): a customer signs in on the portal's page, opens a ticket with a file, reads
the clocks and replies; every portal page has no axe-core violation at all and none is wider than a phone."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from accord.billing.models import Invoice
from accord.desk.models import Attachment, Ticket

from .conftest import PASSWORD, Org

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page: Any, base: str, email: str) -> None:
    page.goto(f"{base}/portal/")
    page.fill("#id_email", email)
    page.fill("#id_password", PASSWORD)
    page.click("#password-form button[type=submit]")
    page.wait_for_url(f"{base}/portal/")


def test_a_customer_opens_a_ticket_with_a_file_and_replies(live_server: Any, page: Any, orgs: tuple[Org, Org],
                                                           tmp_path: Path) -> None:
    alpha, _beta = orgs
    base = live_server.url
    sign_in(page, base, alpha.user.email)
    assert "Alpha Travel" in page.inner_text("header")
    page.click("nav >> text=New ticket")
    page.fill("#id_subject", "Seat maps missing")
    page.fill("#id_message", "Since this morning no seat map loads.")
    log = tmp_path / "browser.log"
    log.write_text("GET /seatmap 500\n")
    page.set_input_files("#id_attachments", str(log))
    page.click("#open-button")
    page.wait_for_selector("#ticket-clocks")
    ticket = Ticket.objects.get(subject="Seat maps missing")
    assert page.url.endswith(f"/portal/tickets/{ticket.reference}/")
    assert "First response due in" in page.inner_text("#ticket-clocks")
    assert Attachment.objects.get(message__ticket=ticket).data == b"GET /seatmap 500\n"
    page.fill("#id_message", "It is every flight.")
    page.click("#reply-button")
    page.wait_for_selector("#messages")
    assert "It is every flight." in page.inner_text("#thread")


def test_every_portal_page_has_no_axe_violation_and_fits_a_phone(live_server: Any, browser: Any, axe: Any,
                                                                 orgs: tuple[Org, Org]) -> None:
    alpha, _beta = orgs
    base = live_server.url
    reports: list[str] = []
    paths = ["/portal/", "/portal/tickets/", f"/portal/tickets/{alpha.ticket.reference}/", "/portal/tickets/new/",
             "/portal/reports/", "/portal/credits/", "/portal/invoices/", "/portal/keys/", "/portal/team/"]
    Invoice.objects.create(account=alpha.account, period="2026-11", currency="EUR", status="finalised",
                           number="INV-2026-000001", total=Decimal("123.45"), plan_names="gold")
    for width in (1280, 375):
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{base}/portal/login/")
        found = axe.run(page)
        if found:
            reports.append(axe.describe(f"login at {width}", found))
        sign_in(page, base, alpha.admin.email)
        for path in paths:
            page.goto(f"{base}{path}")
            page.wait_for_load_state("load")
            if found := axe.run(page):
                reports.append(axe.describe(f"{path} at {width}", found))
            if twice := axe.duplicate_ids(page):
                reports.append(f"{path}: duplicate ids {twice}")
            if problems := axe.page_problems(page):
                reports.append(f"{path} at {width}: {'; '.join(problems)}")
            scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            if scroll > inner:
                reports.append(f"{path} at {width} px: {scroll} > {inner}")
        context.close()
    assert not reports, "\n".join(reports)
