"""Changes through the API write audit entries, as the staff UI's and the command line's do (docs/access.md: every
create, update, delete, key issue and revoke): who (the token's user), the source "API", and the changes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework import mixins
from rest_framework.test import APIClient

from accord.access import roles, tokens
from accord.access.audit import Audited
from accord.access.models import AuditEntry
from accord.api.urls import OWN_AUDIT, router
from accord.catalog.models import ApiCredential
from accord.customers.models import Account, Tier
from accord.outreach.models import Segment

pytestmark = pytest.mark.django_db

# Writable viewsets that write their own entries, or whose changes are recorded elsewhere, and why
OWN_RECORDS = {
    "credentials": "issue-key and revoke-key entries of its own (never the key's hash)",
    "me/tokens": "a user's own API tokens: listed with their prefixes, owners and last uses (`accord token list`)",
}


def test_every_writable_api_viewset_writes_audit_entries() -> None:
    assert set(OWN_RECORDS) == OWN_AUDIT  # the router's list of viewsets it leaves alone, each with its reason here
    writable = (mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin)
    missing = [prefix for prefix, viewset, _basename in router.registry
               if issubclass(viewset, writable) and not issubclass(viewset, Audited) and prefix not in OWN_RECORDS]
    assert missing == []


@pytest.fixture
def admin() -> tuple[User, APIClient]:
    user = User.objects.create_user("ada", password="pw-long-enough-1", is_staff=True)
    roles.grant(user, "administrator")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.create(user).secret}")
    return user, client


def entries(**where: Any) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(source=AuditEntry.Source.API, **where).order_by("id"))


def test_create_update_and_delete_through_the_api_are_audited_with_their_changes(
        admin: tuple[User, APIClient]) -> None:
    user, client = admin
    r = client.post("/api/v1/accounts/", {"name": "Acme", "external_id": "ACME"}, format="json")
    assert r.status_code == 201, r.content
    pk = r.json()["id"]
    (created,) = entries(action="create", object_type="customers.account")
    assert created.user == user and created.object_id == str(pk) and created.changes["name"] == [None, "Acme"]
    r = client.patch(f"/api/v1/accounts/{pk}/", {"name": "Acme Travel"}, format="json")
    assert r.status_code == 200, r.content
    (updated,) = entries(action="update", object_type="customers.account")
    assert updated.changes == {"name": ["Acme", "Acme Travel"]}
    # refused input changes nothing and writes no entry
    assert client.patch(f"/api/v1/accounts/{pk}/", {"name": ""}, format="json").status_code == 400
    assert len(entries(object_type="customers.account")) == 2
    segment = Segment.objects.create(name="all", spec={})
    assert client.delete(f"/api/v1/segments/{segment.pk}/").status_code == 204
    (deleted,) = entries(action="delete", object_type="outreach.segment")
    assert deleted.object_id == str(segment.pk) and deleted.object_repr == str(segment)
    assert deleted.changes["name"] == ["all", None]


def test_a_key_issued_and_revoked_through_the_api_is_audited_without_its_hash(admin: tuple[User, APIClient]) -> None:
    _user, client = admin
    Account.objects.create(name="Acme", external_id="ACME")
    r = client.post("/api/v1/credentials/", {"account": "ACME", "name": "ci"}, format="json")
    assert r.status_code == 201, r.content
    credential = ApiCredential.objects.get(pk=r.json()["id"])
    (issued,) = entries(action="issue-key")
    assert issued.changes["prefix"] == [None, credential.prefix]
    assert credential.key_hash not in str(issued.changes) and "key_hash" not in issued.changes
    assert client.post(f"/api/v1/credentials/{credential.pk}/revoke/").status_code == 200
    (revoked,) = entries(action="revoke-key")
    assert revoked.changes["revoked_at"][0] is None and revoked.changes["revoked_at"][1]


def test_a_tier_override_set_through_the_api_is_audited(admin: tuple[User, APIClient]) -> None:
    user, client = admin
    Account.objects.create(name="Acme", external_id="ACME")
    Tier.objects.create(name="gold", rank=1)
    expires = (timezone.now() + dt.timedelta(days=30)).isoformat()
    r = client.post("/api/v1/tier-overrides/", {"account": "ACME", "tier": "gold", "reason": "pilot",
                                                "expires_at": expires}, format="json")
    assert r.status_code == 201, r.content
    (made,) = entries(action="create", object_type="customers.tieroverride")
    assert made.user == user and made.changes["reason"] == [None, "pilot"]
    assert client.post(f"/api/v1/tier-overrides/{r.json()['id']}/revoke/").status_code == 200
