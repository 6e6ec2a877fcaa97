"""Editing in a real browser (Debian's Chromium): a manager creates an account and a contact with two addresses,
issues a key (seen once, with a copy button) and revokes it; every new page, also refused, passes axe."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User

from accord.access.models import AuditEntry
from accord.access.roles import grant
from accord.catalog.models import ApiCredential, hash_key
from accord.customers.models import Account, Commitment, Contact, Tier

# Playwright's sync API runs an event loop in the test thread; the ORM calls here are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class Checker:
    """axe on each page the walk reaches; the failures are collected and reported together at the end."""

    def __init__(self, page: Any, axe: Any, base: str) -> None:
        self.page, self.axe, self.base = page, axe, base
        self.reports: list[str] = []
        self.checked: list[str] = []

    def __call__(self, name: str) -> None:
        self.checked.append(name)
        where = f"{name} ({self.page.url.removeprefix(self.base)})"
        if found := self.axe.violations(self.page):
            self.reports.append(self.axe.describe(where, found))
        if twice := self.axe.duplicate_ids(self.page):
            self.reports.append(f"{where}: duplicate ids {twice}")
        if problems := self.axe.page_problems(self.page):
            self.reports.append(f"{where}: {'; '.join(problems)}")
        wide = self.page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
        if wide:
            self.reports.append(f"{where}: wider than the window")


def log_in(page: Any, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_a_manager_creates_an_account_and_a_contact_issues_and_revokes_a_key(live_server: Any, page: Any,
                                                                            axe: Any) -> None:
    Tier.objects.create(name="gold", rank=1, min_revenue_12m=Decimal("100000"))
    Tier.objects.create(name="silver", rank=2, min_revenue_12m=Decimal("1000"))
    manager = User.objects.create_user("mona", "mona@accord.example", "mona-password", is_staff=True)
    grant(manager, "manager")
    base = live_server.url
    check = Checker(page, axe, base)
    log_in(page, base, "mona", "mona-password")

    # The account: refused without a name (what was typed stays), then created.
    page.click("header.top nav >> text=Accounts")
    check("accounts with the new-account button")
    page.click("#new-account")
    page.wait_for_selector("#account-form")
    check("new account")
    page.fill("#id_external_id", "NORTHWIND")
    page.select_option("#id_timezone", "Europe/Berlin")
    page.fill("#id_revenue_12m", "150000")
    page.click("#account-form button[type=submit]")
    page.wait_for_selector("#id_name_errors")
    assert page.locator("#id_name_errors").inner_text() == "An account needs a name."
    assert page.input_value("#id_external_id") == "NORTHWIND"
    assert page.input_value("#id_timezone") == "Europe/Berlin"
    check("new account, refused")
    page.fill("#id_name", "Northwind Trading")
    page.click("#account-form button[type=submit]")
    page.wait_for_selector("#account-tier")
    account = Account.objects.get(external_id="NORTHWIND")
    assert page.url == f"{base}/accounts/{account.pk}/"
    assert page.locator("h1").inner_text().startswith("Northwind Trading")
    assert page.locator("#account-tier").inner_text() == "gold"
    assert "created" in page.locator("#messages").inner_text()
    assert "mona" in page.locator("#audit-history tbody").inner_text()
    check("account with its edit buttons and history")

    page.click("#edit-account")
    page.wait_for_selector("#account-form")
    assert page.input_value("#id_name") == "Northwind Trading"
    check("edit account")

    # A contact with two addresses: a bad one refused at its row, then two good ones.
    page.goto(f"{base}/accounts/{account.pk}/")
    page.click("#add-contact")
    page.wait_for_selector("#contact-form")
    check("new contact")
    page.fill("#id_name", "Nancy Davolio")
    page.fill("#id_email-0-value", "nancy@northwind")
    page.click("text=Add an e-mail address")
    page.fill("#id_email-1-value", "sales@northwind.example")
    page.fill("#id_phone-0-value", "+49 30 1234567")
    page.click("#contact-form button[type=submit]")
    page.wait_for_selector("#id_email-0-value_errors")
    assert "is not an e-mail address" in page.locator("#id_email-0-value_errors").inner_text()
    assert page.input_value("#id_email-1-value") == "sales@northwind.example", "the added row survived the refusal"
    check("new contact, refused")
    page.fill("#id_email-0-value", "Nancy@Northwind.example")
    page.click("#contact-form button[type=submit]")
    page.wait_for_selector("#contacts")
    row = page.locator("#contacts tbody tr", has_text="Nancy Davolio")
    assert "nancy@northwind.example" in row.inner_text() and "sales@northwind.example" in row.inner_text()
    assert Contact.objects.get(account=account).emails == ["nancy@northwind.example", "sales@northwind.example"]

    # The other forms, blank and refused, for axe.
    page.click("#add-commitment")
    page.wait_for_selector("#commitment-form")
    check("new commitment")
    page.fill("#id_period_start", "2031-06-01")
    page.fill("#id_period_end", "2031-01-01")
    page.fill("#id_amount", "100")
    page.click("#commitment-form button[type=submit]")
    page.wait_for_selector("#id_period_end_errors")
    check("new commitment, refused")
    commitment = Commitment.objects.create(account=account, period_start=dt.date(2031, 1, 1),
                                           period_end=dt.date(2031, 12, 31), amount=Decimal(10))
    page.goto(f"{base}/accounts/{account.pk}/commitments/{commitment.pk}/delete/")
    check("delete commitment")
    page.goto(f"{base}/accounts/{account.pk}/")
    page.click("#set-override")
    page.wait_for_selector("#override-form")
    check("set tier by hand")
    page.click("#override-form button[type=submit]")
    page.wait_for_selector("#id_reason_errors")
    check("set tier by hand, refused")

    # A key: issued, seen once with its copy button, gone on reload, then revoked.
    page.goto(f"{base}/accounts/{account.pk}/")
    page.click("#issue-key")
    page.wait_for_selector("#key-form")
    check("issue a key")
    page.fill("#id_name", "booking engine")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#new-key")
    key = page.input_value("#new-key")
    cred = ApiCredential.objects.get(account=account)
    assert cred.key_hash == hash_key(key) and cred.name == "booking engine"
    assert page.locator("#copy-key").is_visible()
    page.click("#copy-key")
    page.wait_for_function("document.getElementById('copy-status').textContent.length > 0")
    check("the new key, shown once")
    page.reload()
    page.wait_for_selector("#key-gone")
    assert key not in page.content() and page.locator("#new-key").count() == 0
    check("the key, not shown again")
    page.goto(f"{base}/accounts/{account.pk}/")
    assert key not in page.content()
    page.click(f"#credentials >> [aria-label='Revoke key {cred.prefix}']")
    page.wait_for_selector("#confirm-form")
    check("revoke a key")
    page.click("#confirm-form button[type=submit]")
    page.wait_for_selector("#credentials")
    assert page.locator("#credentials tbody tr", has_text=cred.prefix).locator(".badge.revoked").count() == 1
    cred.refresh_from_db()
    assert cred.revoked_at is not None

    page.goto(f"{base}/audit/")
    check("audit trail")
    page.select_option("#id_object_type", "catalog.apicredential")
    page.click("#audit-filters button[type=submit]")
    page.wait_for_url("**/audit/?*")
    assert page.locator("#audit-table tbody tr").count() == 2
    check("audit trail, filtered")
    actions = set(AuditEntry.objects.filter(user=manager).values_list("action", flat=True))
    assert actions == {"create", "issue-key", "revoke-key"}

    assert len(check.checked) == 18
    assert not check.reports, "axe-core found critical or serious WCAG violations:\n" + "\n".join(check.reports)


def test_an_agent_sees_no_edit_buttons_and_is_refused_the_pages(live_server: Any, page: Any) -> None:
    account = Account.objects.create(name="Contoso", external_id="CONTOSO")
    agent = User.objects.create_user("arno", "arno@accord.example", "arno-password", is_staff=True)
    grant(agent, "agent")
    base = live_server.url
    log_in(page, base, "arno", "arno-password")
    page.goto(f"{base}/accounts/{account.pk}/")
    page.wait_for_selector("#audit-history")
    for button in ("#edit-account", "#set-override", "#add-contact", "#add-commitment", "#issue-key"):
        assert page.locator(button).count() == 0, button
    page.goto(f"{base}/accounts/{account.pk}/keys/new/")
    assert page.locator("#forbidden h1").inner_text() == "Not allowed"
