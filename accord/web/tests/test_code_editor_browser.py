"""The YAML editor and the desk settings in Debian's Chromium: a manager edits an agreement's YAML with an error,
fixes it, reads the diff and applies it; axe finds no violation (of any impact) on any of the new pages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from accord.access.models import AuditEntry
from accord.access.roles import grant
from accord.agreements.models import Agreement, BusinessCalendar
from accord.desk.models import EscalationRule, Mailbox, SupportGroup, WebhookChannel
from accord.governance.models import Policy
from accord.lib.manifest import apply_manifest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DEMO = Path(__file__).resolve().parents[2] / "agreements" / "fixtures" / "demo.yaml"


def _sign_in(page: Any, base: str) -> User:
    apply_manifest(DEMO.read_text(encoding="utf-8"))
    user = User.objects.create_user("mia", "mia@accord.example", "mia-password", is_staff=True)
    grant(user, "manager")
    page.goto(f"{base}/login/")
    page.fill("#id_username", "mia")
    page.fill("#id_password", "mia-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    return user


def test_a_manager_edits_an_agreement_as_yaml_in_the_browser(live_server: Any, page: Any) -> None:
    base = live_server.url
    _sign_in(page, base)
    ag = Agreement.objects.get(name="gold-sla")
    page.goto(f"{base}/agreements/{ag.pk}/")
    page.click("#edit-yaml")
    page.wait_for_selector("#yaml-text")
    text = page.input_value("#yaml-text")
    assert text.startswith("agreements:\n- name: gold-sla\n")
    fee_line = next(line for line in text.splitlines() if line.startswith("  monthly_fee: "))
    # An error first: a currency that is not a code.
    page.fill("#yaml-text", text.replace("  currency: EUR", "  currency: euro", 1))
    page.click("#check-button")
    page.wait_for_selector("#check-errors")
    assert "agreements[0].currency: 'euro' is not a currency code like EUR" in page.inner_text("#check-errors")
    assert "currency: euro" in page.input_value("#yaml-text")  # the text is kept
    assert page.locator("#apply-button").count() == 0
    # The Tab key indents in the box (two spaces), it does not leave it.
    page.focus("#yaml-text")
    page.evaluate("() => { const t = document.getElementById('yaml-text'); t.setSelectionRange(0, 0); }")
    page.keyboard.press("Tab")
    assert page.input_value("#yaml-text").startswith("  agreements:")
    assert page.evaluate("document.activeElement.id") == "yaml-text"
    # Fixed, and a new fee: the diff shows the change, Apply writes it.
    page.fill("#yaml-text", text.replace(fee_line, "  monthly_fee: 5555", 1))
    page.click("#check-button")
    page.wait_for_selector("#diff")
    assert "1 would be updated" in page.inner_text("#dry-run-summary")
    assert page.inner_text("#diff ins").strip() == "+  monthly_fee: 5555"
    assert page.inner_text("#diff del").strip() == f"-{fee_line}"
    # Typing after the check disables Apply until the text is checked again.
    page.focus("#yaml-text")
    page.keyboard.press("End")
    page.keyboard.type(" ")
    assert page.is_disabled("#apply-button") and page.is_visible("#apply-stale")
    page.keyboard.press("Backspace")
    assert not page.is_disabled("#apply-button")
    page.click("#apply-button")
    page.wait_for_url(f"{base}/agreements/{ag.pk}/")
    assert "Applied: agreement gold-sla: updated" in page.inner_text("#messages")
    assert "5,555" in page.inner_text("#monthly-fee") or "5555" in page.inner_text("#monthly-fee")
    assert "+  monthly_fee: 5555" in (page.text_content("#audit-trail") or "")
    entry = AuditEntry.objects.get(object_type="agreements.agreement", object_id=str(ag.pk))
    assert entry.user is not None and entry.user.username == "mia" and "+  monthly_fee: 5555" in entry.summary


def test_every_new_page_has_no_axe_violation(live_server: Any, page: Any, axe: Any) -> None:
    base = live_server.url
    user = _sign_in(page, base)
    agent = User.objects.create_user("aaron", "aaron@accord.example", "pw", is_staff=True)
    grant(agent, "agent")
    ag = Agreement.objects.get(name="gold-sla")
    cal = BusinessCalendar.objects.order_by("name").first()
    pol = Policy.objects.order_by("name").first()
    assert cal is not None and pol is not None
    group = SupportGroup.objects.create(name="tier-2")
    group.members.add(agent, user)
    box = Mailbox.objects.create(name="support", host="imap.example.com", username="u", password="p", group=group)
    rule = EscalationRule.objects.create(name="breach-notify", trigger="breach", action="notify",
                                         notify_email="leads@example.com")
    reports: list[str] = []
    checked = 0

    def check(name: str) -> None:
        nonlocal checked
        page.wait_for_load_state("load")
        found = axe.run(page)
        checked += 1
        if found:
            reports.append(axe.describe(f"{name} ({page.url.removeprefix(base)})", found))
        if twice := axe.duplicate_ids(page):
            reports.append(f"{name}: duplicate ids {twice}")
        if problems := axe.page_problems(page):
            reports.append(f"{name}: {'; '.join(problems)}")
        wide = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
        if wide:
            reports.append(f"{name}: wider than the window")

    for name, url in {
        "agreement with its code panel": f"/agreements/{ag.pk}/",
        "calendars": "/calendars/",
        "calendar": f"/calendars/{cal.pk}/",
        "policies": "/policies/",
        "policy": f"/policies/{pol.pk}/",
        "editor": "/code/agreements/gold-sla/edit/",
        "new service": "/code/services/new/",
        "desk settings": "/desk/settings/",
        "new mailbox": "/desk/settings/mailboxes/new/",
        "mailbox": f"/desk/settings/mailboxes/{box.pk}/",
        "escalation rule": f"/desk/settings/escalation/{rule.pk}/",
        "new escalation rule": "/desk/settings/escalation/new/",
        "support group with members": f"/desk/settings/groups/{group.pk}/",
        "delete a mailbox": f"/desk/settings/mailboxes/{box.pk}/delete/",
    }.items():
        page.goto(f"{base}{url}")
        check(name)

    page.goto(f"{base}/code/agreements/gold-sla/edit/")
    page.fill("#yaml-text", "agreements:\n- name: gold-sla\n  currency: [\n")
    page.click("#check-button")
    page.wait_for_selector("#check-errors")
    check("editor, refused")
    page.goto(f"{base}/code/agreements/gold-sla/edit/")
    page.fill("#yaml-text", page.input_value("#yaml-text").replace("currency: EUR", "currency: USD"))
    page.click("#check-button")
    page.wait_for_selector("#diff")
    check("editor, diff")

    page.goto(f"{base}/desk/settings/mailboxes/new/")
    page.fill("#id_name", "second")
    page.fill("#id_host", "imaps://bad host")
    page.fill("#id_port", "70000")
    page.click("#save-button")
    page.wait_for_selector("#form-errors")
    check("new mailbox, refused")
    page.goto(f"{base}/desk/settings/webhooks/new/")
    page.fill("#id_name", "social")
    page.click("#save-button")
    page.wait_for_selector("#shown-secret")
    assert WebhookChannel.objects.get(name="social").secret == page.input_value("#secret-value")
    check("webhook channel, secret shown once")

    assert checked == 14 + 4
    assert not reports, "axe-core found WCAG violations on the new pages:\n" + "\n".join(reports)
