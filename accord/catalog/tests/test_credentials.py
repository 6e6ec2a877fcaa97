"""API credentials: shown once, stored hashed, revocable."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accord.catalog.models import ApiCredential, hash_key
from accord.customers.models import Account

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme() -> Account:
    return Account.objects.create(name="Acme Travel", external_id="ACME")


def test_a_key_is_stored_only_as_its_hash(acme: Account) -> None:
    cred, key = ApiCredential.issue(acme, "booking robot")
    stored = ApiCredential.objects.get(pk=cred.pk)
    assert key.startswith("acc_") and len(key) > 40
    assert stored.key_hash == hash_key(key) and key not in {stored.key_hash, stored.prefix}
    assert stored.prefix == key[:12]
    assert stored.matches(key) and not stored.matches(key + "x")


def test_two_keys_differ(acme: Account) -> None:
    keys = {ApiCredential.issue(acme)[1] for _ in range(5)}
    assert len(keys) == 5


def test_the_cli_prints_the_key_once_lists_and_revokes(acme: Account) -> None:
    out, err = StringIO(), StringIO()
    call_command("credentials", "issue", "ACME", "--name", "ci", stdout=out, stderr=err)
    key = out.getvalue().strip()
    cred = ApiCredential.objects.get()
    assert cred.matches(key) and "not shown again" in err.getvalue()

    out = StringIO()
    call_command("credentials", "list", stdout=out)
    assert out.getvalue().split("\t")[:4] == [cred.prefix, "ACME", "ci", "active"]
    assert key not in out.getvalue()

    call_command("credentials", "revoke", cred.prefix, stdout=StringIO())
    cred.refresh_from_db()
    assert cred.revoked_at is not None and not cred.active

    # Both changes are in the audit trail, said to come from the command line, without the key or its hash.
    from accord.access.models import AuditEntry

    entries = list(AuditEntry.objects.filter(object_type="catalog.apicredential", object_id=str(cred.pk))
                   .order_by("at", "id"))
    assert [(e.action, e.source, e.user) for e in entries] == [("issue-key", "cli", None), ("revoke-key", "cli", None)]
    assert entries[0].changes["prefix"] == [None, cred.prefix] and cred.key_hash not in str(entries[0].changes)
    assert entries[1].changes["revoked_at"][0] is None and entries[1].changes["revoked_at"][1]
    call_command("credentials", "revoke", cred.prefix, stdout=StringIO())
    assert AuditEntry.objects.filter(action="revoke-key").count() == 1, "revoking again records nothing"


def test_the_cli_explains_unknown_accounts_and_prefixes(acme: Account) -> None:
    with pytest.raises(CommandError, match="No account has the external id 'NOPE'"):
        call_command("credentials", "issue", "NOPE")
    with pytest.raises(CommandError, match="No credential has the prefix"):
        call_command("credentials", "revoke", "acc_missing")
