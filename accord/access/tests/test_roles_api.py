"""Roles in the API: what each of agent, manager, finance and administrator may read and change; a staff user
with no role reads nothing (before roles, any staff user had every right and could issue a live API key)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.test import APIClient

from accord.access import roles, tokens
from accord.catalog.models import ApiCredential
from accord.customers.models import Account
from accord.lib.manifest import apply_manifest

pytestmark = pytest.mark.django_db

MANIFEST = """
calendars:
  - {name: office, timezone: Europe/London, hours: {mon: ["09:00-17:00"]}}
tiers:
  - {name: gold, rank: 1}
services:
  - name: booking
    base_path: /bookings
    operations: [{name: book, method: POST, path: /bookings}]
    pools: [{name: primary, capacity: 10, endpoints: [{url: "http://127.0.0.1:9201"}]}]
agreements:
  - {name: gold-sla, tier: gold, effective_from: "2026-01-01", calendar: office, services: [booking]}
"""


@pytest.fixture
def data() -> dict[str, Any]:
    apply_manifest(MANIFEST)
    account = Account.objects.create(name="Acme", external_id="ACME")
    from accord.agreements.models import Agreement

    return {"account": account, "agreement": Agreement.objects.get(name="gold-sla")}


def client_for(role: str | None, name: str | None = None) -> APIClient:
    user = User.objects.create_user(name or f"u-{role}", password="pw-long-enough-1", is_staff=True)
    if role:
        roles.grant(user, role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.create(user).secret}")
    return client


READS = ["/api/v1/accounts/", "/api/v1/agreements/", "/api/v1/services/", "/api/v1/tickets/"]


def test_a_staff_user_without_a_role_reads_nothing_and_issues_no_key(data: dict[str, Any]) -> None:
    nobody = client_for(None, "staff-no-role")
    for url in [*READS, "/api/v1/credentials/", "/api/v1/"]:
        r = nobody.get(url)
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied", (url, r.content)
    issued = nobody.post("/api/v1/credentials/", {"account": "ACME", "name": "stolen"}, format="json")
    assert issued.status_code == 403
    assert not ApiCredential.objects.exists()


def test_agent_reads_and_works_tickets_but_edits_no_agreement_catalog_or_key(data: dict[str, Any]) -> None:
    agent = client_for("agent")
    for url in READS:
        assert agent.get(url).status_code == 200, url
    assert agent.get("/api/v1/credentials/").status_code == 403
    agreement = data["agreement"]
    assert (
        agent.patch(f"/api/v1/agreements/{agreement.pk}/", {"name": "renamed"}, format="json").status_code
        == 403
    )
    assert agent.post("/api/v1/services/", {"name": "x", "base_path": "/x"}, format="json").status_code == 403
    assert agent.post("/api/v1/credentials/", {"account": "ACME"}, format="json").status_code == 403
    assert (
        agent.patch(f"/api/v1/accounts/{data['account'].pk}/", {"name": "X"}, format="json").status_code
        == 403
    )
    call = agent.post(
        "/api/v1/calls/",
        {"caller": "+44 20 7946 0000", "duration_seconds": 60, "notes": "rang"},
        format="json",
    )
    assert call.status_code == 201, call.content
    agreement.refresh_from_db()
    assert agreement.name == "gold-sla" and not ApiCredential.objects.exists()


def test_manager_edits_accounts_agreements_catalog_and_issues_keys(data: dict[str, Any]) -> None:
    manager = client_for("manager")
    r = manager.patch(f"/api/v1/accounts/{data['account'].pk}/", {"name": "Acme Ltd"}, format="json")
    assert r.status_code == 200, r.content
    r = manager.patch(f"/api/v1/agreements/{data['agreement'].pk}/", {"monthly_fee": "10.00"}, format="json")
    assert r.status_code == 200, r.content
    assert (
        manager.post(
            "/api/v1/services/", {"name": "search", "base_path": "/search"}, format="json"
        ).status_code
        == 201
    )
    key = manager.post("/api/v1/credentials/", {"account": "ACME", "name": "prod"}, format="json")
    assert key.status_code == 201 and key.json()["key"], key.content
    assert manager.post(f"/api/v1/credentials/{key.json()['id']}/revoke/").status_code == 200
    assert manager.get("/api/v1/reports/credits/").status_code == 200
    assert manager.post("/api/v1/reports/credits/1/approve/", {}, format="json").status_code == 403


def test_finance_reads_everything_changes_no_account_and_may_approve_credits(data: dict[str, Any]) -> None:
    finance = client_for("finance")
    for url in [
        *READS,
        "/api/v1/credentials/",
        "/api/v1/reports/credits/",
        "/api/v1/governance/policies/",
        "/api/v1/tier-changes/",
        "/api/v1/gateway/rollups/",
    ]:
        assert finance.get(url).status_code == 200, url
    assert (
        finance.patch(f"/api/v1/accounts/{data['account'].pk}/", {"name": "X"}, format="json").status_code
        == 403
    )
    assert finance.post("/api/v1/credentials/", {"account": "ACME"}, format="json").status_code == 403
    # the credit exists not: the permission passes and the lookup answers 404 (a role without it gets 403)
    assert finance.post("/api/v1/reports/credits/999/approve/", {}, format="json").status_code == 404
    assert (
        client_for("agent").post("/api/v1/reports/credits/999/approve/", {}, format="json").status_code == 403
    )


def test_administrator_may_do_everything(data: dict[str, Any]) -> None:
    admin = client_for("administrator")
    assert admin.post("/api/v1/tiers/", {"name": "silver", "rank": 2}, format="json").status_code == 201
    assert admin.post("/api/v1/credentials/", {"account": "ACME"}, format="json").status_code == 201
    assert admin.delete(f"/api/v1/agreements/{data['agreement'].pk}/").status_code == 204
    assert admin.post("/api/v1/reports/credits/999/approve/", {}, format="json").status_code == 404


def test_an_inactive_or_non_staff_user_with_a_role_is_refused(data: dict[str, Any]) -> None:
    user = User.objects.create_user("gone", is_staff=False)
    roles.grant(user, "administrator")
    user.is_staff = False
    user.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.create(user).secret}")
    assert client.get("/api/v1/accounts/").status_code == 403


def test_roles_sync_grant_revoke_and_list_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from django.contrib.auth.models import Group

    Group.objects.filter(name="agent").delete()
    call_command("roles", "sync")
    agent = Group.objects.get(name="agent")
    codes = set(agent.permissions.values_list("codename", flat=True))
    assert {"view_account", "view_agreement", "change_ticket"} <= codes
    assert not codes & {"change_agreement", "add_apicredential", "view_apicredential", "approve_credit"}
    assert "approve_credit" in Group.objects.get(name="finance").permissions.values_list(
        "codename", flat=True
    )
    User.objects.create_user("carol")
    call_command("roles", "grant", "carol", "agent")
    carol = User.objects.get(username="carol")
    assert (
        carol.is_staff
        and carol.has_perm("customers.view_account")
        and not carol.has_perm("agreements.change_agreement")
    )
    call_command("roles", "list")
    out = capsys.readouterr().out
    assert "agent:" in out and "carol" in out
    call_command("roles", "revoke", "carol", "agent")
    carol = User.objects.get(username="carol")
    assert not carol.has_perm("customers.view_account")
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="unknown role"):
        call_command("roles", "grant", "carol", "janitor")
    with pytest.raises(CommandError, match="no user"):
        call_command("roles", "grant", "nobody", "agent")
