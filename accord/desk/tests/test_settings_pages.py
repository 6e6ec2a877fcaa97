"""Desk settings in the staff UI: mailboxes, webhook channels, escalation rules, support groups and members.

Each form through Django's test client against the real database: the happy path, bad input refused field by
field with nothing lost, secrets never rendered back, an audit entry per change, and the agent kept out.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accord.access.models import AuditEntry
from accord.access.roles import grant
from accord.customers.models import Tier
from accord.desk.models import EscalationRule, Mailbox, SupportGroup, WebhookChannel


def _login(name: str, role: str) -> tuple[User, Client]:
    user = User.objects.create_user(name, f"{name}@accord.example", "pw", is_staff=True)
    grant(user, role)
    client = Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def manager(db: None) -> Client:
    return _login("mia", "manager")[1]


@pytest.fixture
def agent_user(db: None) -> tuple[User, Client]:
    return _login("aaron", "agent")


MAILBOX = {"name": "support", "enabled": "on", "host": "imap.example.com", "port": "993", "security": "ssl",
           "username": "support@example.com", "password": "s3cret-imap-pass", "folder": "INBOX",
           "address": "support@example.com", "group": ""}


def _field_error(response: Any, field: str) -> str:
    found = re.search(rf'<span class="errors" id="id_{field}_errors">(.*?)</span>', response.content.decode(), re.S)
    assert found, f"no error shown for {field}"
    return found.group(1)


def test_a_mailbox_is_created_and_its_password_is_never_shown_and_kept_when_blank(manager: Client) -> None:
    response = manager.post("/desk/settings/mailboxes/new/", MAILBOX)
    box = Mailbox.objects.get(name="support")
    assert response.status_code == 302 and response["Location"] == f"/desk/settings/mailboxes/{box.pk}/"
    assert box.password == "s3cret-imap-pass" and box.host == "imap.example.com"
    page = manager.get(response["Location"]).content.decode()
    assert "s3cret-imap-pass" not in page and 'type="password"' in page
    entry = AuditEntry.objects.get(action="create")
    assert entry.object_id == str(box.pk) and "s3cret" not in str(entry.changes) + entry.summary
    # Saved again with the password left blank: the stored one stays.
    response = manager.post(f"/desk/settings/mailboxes/{box.pk}/", {**MAILBOX, "password": "", "folder": "Support"})
    box.refresh_from_db()
    assert response.status_code == 302 and box.password == "s3cret-imap-pass" and box.folder == "Support"
    update = AuditEntry.objects.get(action="update")
    assert update.changes == {"folder": ["INBOX", "Support"]}
    # A new password replaces it; the trail says it changed, not what it is.
    manager.post(f"/desk/settings/mailboxes/{box.pk}/", {**MAILBOX, "password": "n3w-pass", "folder": "Support"})
    box.refresh_from_db()
    assert box.password == "n3w-pass"
    last = AuditEntry.objects.filter(action="update").order_by("-id").first()
    assert last is not None and last.changes == {"password": ["(secret)", "(changed)"]}
    assert "n3w-pass" not in manager.get(f"/desk/settings/mailboxes/{box.pk}/").content.decode()


@pytest.mark.parametrize(("field", "value", "says"), [
    ("host", "imaps://mail.example.com", "without a scheme"),
    ("host", "mail example com", "is not a host name"),
    ("host", "mail.example.com:993", "in the Port field"),
    ("port", "70000", "less than or equal to 65535"),
    ("port", "0", "greater than or equal to 1"),
    ("port", "imap", "Enter a whole number"),
    ("address", "not-an-address", "valid email"),
])
def test_bad_mailbox_input_is_refused_by_field_and_nothing_is_lost(manager: Client, field: str, value: str,
                                                                   says: str) -> None:
    response = manager.post("/desk/settings/mailboxes/new/", {**MAILBOX, field: value})
    assert response.status_code == 400
    assert says in _field_error(response, field)
    page = response.content.decode()
    assert f'value="{value}"' in page  # what was typed is still there
    assert "s3cret-imap-pass" not in page  # but never the password
    assert not Mailbox.objects.exists() and not AuditEntry.objects.exists()


def test_a_new_mailbox_needs_a_password(manager: Client) -> None:
    response = manager.post("/desk/settings/mailboxes/new/", {**MAILBOX, "password": ""})
    assert response.status_code == 400 and "needs the password" in _field_error(response, "password")


def test_a_webhook_secret_is_shown_once_and_rotated_on_demand(manager: Client) -> None:
    response = manager.post("/desk/settings/webhooks/new/", {"name": "social", "enabled": "on",
                                                            "reply_url": "https://social.example/replies"})
    channel = WebhookChannel.objects.get(name="social")
    assert len(channel.secret) >= 40
    first = manager.get(response["Location"]).content.decode()
    assert channel.secret in first and 'id="shown-secret"' in first
    again = manager.get(response["Location"]).content.decode()
    assert channel.secret not in again  # once
    old = channel.secret
    response = manager.post(response["Location"], {"name": "social", "enabled": "on", "rotate": "on",
                                                   "reply_url": "https://social.example/replies"})
    channel.refresh_from_db()
    assert channel.secret != old and channel.secret in manager.get(response["Location"]).content.decode()
    entry = AuditEntry.objects.filter(action="update").get()
    assert entry.changes == {"secret": ["(secret)", "(new secret)"]} and old not in str(entry.changes)
    response = manager.post("/desk/settings/webhooks/new/", {"name": "x", "reply_url": "not a url"})
    assert response.status_code == 400 and "valid URL" in _field_error(response, "reply_url")


def test_escalation_rules_are_checked_and_saved(manager: Client) -> None:
    gold = Tier.objects.create(name="gold", rank=2)
    rule = {"name": "breach-to-leads", "enabled": "on", "order": "10", "trigger": "breach", "clock_kind": "",
            "priorities": ["urgent", "high"], "tiers": [str(gold.pk)], "action": "reassign", "assignee": "",
            "group": "", "notify_email": ""}
    response = manager.post("/desk/settings/escalation/new/", rule)
    assert response.status_code == 400
    assert "needs an agent or a group" in _field_error(response, "assignee")
    response = manager.post("/desk/settings/escalation/new/", {**rule, "action": "notify"})
    assert "needs the address" in _field_error(response, "notify_email")
    response = manager.post("/desk/settings/escalation/new/", {**rule, "priorities": ["soon"]})
    assert "not one of the available choices" in _field_error(response, "priorities")
    assert not EscalationRule.objects.exists()
    group = SupportGroup.objects.create(name="leads")
    response = manager.post("/desk/settings/escalation/new/", {**rule, "group": str(group.pk)})
    saved = EscalationRule.objects.get(name="breach-to-leads")
    assert response.status_code == 302 and saved.priorities == ["urgent", "high"] and saved.group == group
    assert list(saved.tiers.all()) == [gold]
    page = manager.get(response["Location"]).content.decode()
    assert 'value="urgent" checked' in page.replace('name="priorities" ', "") or re.search(
        r'value="urgent"[^>]*checked', page)


def test_support_groups_refuse_a_duplicate_name_and_manage_members(manager: Client,
                                                                  agent_user: tuple[User, Client]) -> None:
    agent, _client = agent_user
    SupportGroup.objects.create(name="billing")
    response = manager.post("/desk/settings/groups/new/", {"name": "Billing", "email": ""})
    assert response.status_code == 400 and "There is a group named “billing” already" in _field_error(
        response, "name")
    response = manager.post("/desk/settings/groups/new/", {"name": "tier-2", "email": "t2@example.com",
                                                           "members": [str(agent.pk)]})
    group = SupportGroup.objects.get(name="tier-2")
    assert list(group.members.all()) == [agent]
    response = manager.post(f"/desk/settings/groups/{group.pk}/members/", {"remove": str(agent.pk)})
    assert response.status_code == 302 and not group.members.exists()
    manager.post(f"/desk/settings/groups/{group.pk}/members/", {"user": str(agent.pk)})
    assert list(group.members.all()) == [agent]
    response = manager.post(f"/desk/settings/groups/{group.pk}/members/", {"user": "999999"}, follow=True)
    assert "Select a valid choice" in response.content.decode()
    actions = list(AuditEntry.objects.filter(object_id=str(group.pk)).order_by("id").values_list("action", flat=True))
    assert actions == ["create", "remove-member", "add-member"]
    response = manager.post(f"/desk/settings/groups/{group.pk}/delete/")
    assert response.status_code == 302 and not SupportGroup.objects.filter(name="tier-2").exists()
    assert AuditEntry.objects.filter(action="delete", object_repr="tier-2").exists()


def test_an_agent_reads_the_settings_but_cannot_change_them(agent_user: tuple[User, Client]) -> None:
    _agent, client = agent_user
    box = Mailbox.objects.create(name="support", host="imap.example.com", username="u", password="p")
    page = client.get("/desk/settings/")
    assert page.status_code == 200 and "/desk/settings/mailboxes/new/" not in page.content.decode()
    assert client.get("/desk/settings/mailboxes/new/").status_code == 403
    assert client.post(f"/desk/settings/mailboxes/{box.pk}/", {**MAILBOX, "host": "evil.example"}).status_code == 403
    assert client.post(f"/desk/settings/mailboxes/{box.pk}/delete/").status_code == 403
    group = SupportGroup.objects.create(name="leads")
    assert client.post(f"/desk/settings/groups/{group.pk}/members/", {"user": str(_agent.pk)}).status_code == 403
    box.refresh_from_db()
    assert box.host == "imap.example.com" and not group.members.exists() and not AuditEntry.objects.exists()
