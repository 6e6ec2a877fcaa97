"""Creating and editing in the staff UI (issue 16): each form's happy path, its refusals at the field, the roles,
and the audit entry every change writes in its own transaction."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from accord.access.models import AuditEntry
from accord.access.roles import grant
from accord.catalog.models import ApiCredential, hash_key
from accord.customers.models import Account, Commitment, Contact, ContactPoint, Tier, TierChange, TierOverride

pytestmark = pytest.mark.django_db


def login(username: str, role: str) -> tuple[User, Client]:
    user = User.objects.create_user(username, f"{username}@accord.example", "pw", is_staff=True)
    grant(user, role)
    client = Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def manager() -> tuple[User, Client]:
    return login("mona", "manager")


@pytest.fixture
def agent() -> tuple[User, Client]:
    return login("arno", "agent")


@pytest.fixture
def tiers() -> dict[str, Tier]:
    return {
        "gold": Tier.objects.create(name="gold", rank=1, min_revenue_12m=Decimal("100000")),
        "silver": Tier.objects.create(name="silver", rank=2, min_revenue_12m=Decimal("10000")),
    }


@pytest.fixture
def acme(tiers: dict[str, Tier]) -> Account:
    return Account.objects.create(name="Acme Travel", external_id="ACME", revenue_12m=Decimal("5000"))


def account_data(**overrides: Any) -> dict[str, Any]:
    data = {"name": "Globex Holidays", "external_id": "GLOBEX", "kind": "organisation", "owner": "",
            "timezone": "Europe/Paris", "revenue_12m": "250000.00", "cost_to_serve_12m": "40000.00"}
    data.update(overrides)
    return data


def errors_of(html: str, field_id: str) -> str:
    """The error text shown next to one field (its `_errors` span), or ""."""
    m = re.search(rf'<span class="errors" id="{field_id}_errors">(.*?)</span>', html, re.S)
    return m.group(1) if m else ""


# -- accounts --------------------------------------------------------------------------------------------------


def test_a_manager_creates_an_account_its_tier_follows_and_the_audit_says_who(manager: Any, tiers: Any) -> None:
    user, client = manager
    response = client.post("/accounts/new/", account_data(owner=str(user.pk)))
    account = Account.objects.get(external_id="GLOBEX")
    assert response.status_code == 302 and response["Location"] == f"/accounts/{account.pk}/"
    assert (account.name, account.timezone, account.owner, account.revenue_12m) == (
        "Globex Holidays", "Europe/Paris", user, Decimal("250000.00"))
    assert account.tier == tiers["gold"]
    assert TierChange.objects.filter(account=account, cause="initial", to_tier=tiers["gold"]).count() == 1
    entry = AuditEntry.objects.get(object_type="customers.account", object_id=str(account.pk))
    assert (entry.user, entry.action, entry.source) == (user, "create", "ui")
    assert entry.changes["name"] == [None, "Globex Holidays"] and entry.changes["timezone"] == [None, "Europe/Paris"]
    page = client.get(response["Location"]).content.decode()
    assert "Account “Globex Holidays” created." in page
    assert 'id="audit-history"' in page and "mona" in page


def test_an_account_without_a_name_or_with_a_taken_external_id_is_refused_and_nothing_is_lost(
    manager: Any, acme: Account
) -> None:
    _user, client = manager
    response = client.post("/accounts/new/", account_data(name="  ", external_id="ACME", revenue_12m="-5",
                                                           timezone="Mars/Olympus"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "An account needs a name." in errors_of(html, "id_name")
    assert "already exists" in errors_of(html, "id_external_id")
    assert "greater than or equal to 0" in errors_of(html, "id_revenue_12m")
    assert "Mars/Olympus" in errors_of(html, "id_timezone")
    assert 'value="ACME"' in html and 'value="40000.00"' in html, "what the user typed is kept"
    assert 'aria-invalid="true"' in html and 'id="form-errors"' in html
    assert Account.objects.count() == 1 and not AuditEntry.objects.exists()


def test_editing_an_account_records_only_what_changed(manager: Any, acme: Account, tiers: Any) -> None:
    user, client = manager
    assert acme.tier is None
    response = client.post(f"/accounts/{acme.pk}/edit/", account_data(name="Acme Travel", external_id="ACME",
                                                                        timezone="UTC", revenue_12m="20000"))
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.revenue_12m == Decimal("20000") and acme.tier == tiers["silver"]
    entry = AuditEntry.objects.get(action="update")
    assert entry.user == user
    assert entry.changes == {"revenue_12m": ["5000.00", "20000.00"], "cost_to_serve_12m": ["0.00", "40000.00"]}
    # The edit form shows the stored values.
    html = client.get(f"/accounts/{acme.pk}/edit/").content.decode()
    assert 'value="Acme Travel"' in html and 'value="20000.00"' in html


def test_an_agent_may_not_create_or_edit_accounts_and_sees_no_buttons(agent: Any, acme: Account) -> None:
    _user, client = agent
    assert client.get("/accounts/new/").status_code == 403
    response = client.post("/accounts/new/", account_data())
    assert response.status_code == 403 and b'id="forbidden"' in response.content
    assert client.post(f"/accounts/{acme.pk}/edit/", account_data(name="Hacked")).status_code == 403
    acme.refresh_from_db()
    assert acme.name == "Acme Travel" and Account.objects.count() == 1 and not AuditEntry.objects.exists()
    listing = client.get("/accounts/").content.decode()
    page = client.get(f"/accounts/{acme.pk}/").content.decode()
    assert "new-account" not in listing and "Accounts" in listing
    for button in ("edit-account", "set-override", "add-contact", "add-commitment", "issue-key"):
        assert f'id="{button}"' not in page, button
    assert 'id="audit-history"' in page


def test_a_manager_sees_the_buttons(manager: Any, acme: Account) -> None:
    _user, client = manager
    assert 'id="new-account"' in client.get("/accounts/").content.decode()
    page = client.get(f"/accounts/{acme.pk}/").content.decode()
    for button in ("edit-account", "set-override", "add-contact", "add-commitment", "issue-key"):
        assert f'id="{button}"' in page, button


# -- contacts --------------------------------------------------------------------------------------------------


def contact_data(emails: list[str], phones: list[str], **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "Grace Hopper", "title": "CTO", "external_id": "",
                            "email-TOTAL_FORMS": str(len(emails)), "email-INITIAL_FORMS": "0",
                            "phone-TOTAL_FORMS": str(len(phones)), "phone-INITIAL_FORMS": "0"}
    for i, e in enumerate(emails):
        data[f"email-{i}-value"] = e
    for i, p in enumerate(phones):
        data[f"phone-{i}-value"] = p
    data.update(overrides)
    return data


def test_a_contact_with_two_addresses_and_a_phone(manager: Any, acme: Account) -> None:
    user, client = manager
    response = client.post(f"/accounts/{acme.pk}/contacts/new/",
                           contact_data(["Grace@Acme.example", "ops@acme.example"], ["+44 20 7946 0000"]))
    assert response.status_code == 302 and response["Location"] == f"/accounts/{acme.pk}/#contacts"
    contact = Contact.objects.get(account=acme)
    assert contact.emails == ["grace@acme.example", "ops@acme.example"] and contact.phones == ["+442079460000"]
    assert ContactPoint.objects.get(value="grace@acme.example").primary
    assert not ContactPoint.objects.get(value="ops@acme.example").primary
    entry = AuditEntry.objects.get(object_type="customers.contact")
    assert entry.user == user and entry.action == "create"
    assert entry.changes["emails"] == [None, ["grace@acme.example", "ops@acme.example"]]
    assert "grace@acme.example" in client.get(f"/accounts/{acme.pk}/").content.decode()


def test_bad_and_duplicate_addresses_are_refused_at_their_row(manager: Any, acme: Account) -> None:
    _user, client = manager
    other = Contact.objects.create(name="Someone Else")
    ContactPoint.objects.create(contact=other, kind="email", value="taken@acme.example")
    response = client.post(f"/accounts/{acme.pk}/contacts/new/", contact_data(
        ["grace@acme.example", "not-an-address", "GRACE@acme.example", "taken@acme.example"], ["12ab"]))
    html = response.content.decode()
    assert response.status_code == 200
    assert errors_of(html, "id_email-0-value") == ""
    assert "is not an e-mail address" in errors_of(html, "id_email-1-value")
    assert "is already in row 1" in errors_of(html, "id_email-2-value")
    assert "already belongs to the contact Someone Else" in errors_of(html, "id_email-3-value")
    assert "is not a phone number" in errors_of(html, "id_phone-0-value")
    assert 'value="not-an-address"' in html and 'value="Grace Hopper"' in html
    assert not Contact.objects.filter(account=acme).exists() and not AuditEntry.objects.exists()


def test_editing_a_contact_removes_and_adds_rows_and_records_the_difference(manager: Any, acme: Account) -> None:
    user, client = manager
    contact = Contact.objects.create(account=acme, name="Grace Hopper")
    a = ContactPoint.objects.create(contact=contact, kind="email", value="a@acme.example", primary=True)
    b = ContactPoint.objects.create(contact=contact, kind="email", value="b@acme.example")
    data = contact_data([], [], **{
        "email-TOTAL_FORMS": "3", "email-INITIAL_FORMS": "2",
        "email-0-id": str(a.pk), "email-0-value": "a@acme.example", "email-0-DELETE": "on",
        "email-1-id": str(b.pk), "email-1-value": "b@acme.example",
        "email-2-value": "c@acme.example",
    })
    response = client.post(f"/accounts/{acme.pk}/contacts/{contact.pk}/edit/", data)
    assert response.status_code == 302
    contact.refresh_from_db()
    assert sorted(contact.emails) == ["b@acme.example", "c@acme.example"]
    assert ContactPoint.objects.filter(contact=contact, primary=True).count() == 1
    entry = AuditEntry.objects.get(action="update", object_type="customers.contact")
    assert entry.user == user
    assert entry.changes == {"emails": [["a@acme.example", "b@acme.example"], ["b@acme.example", "c@acme.example"]],
                             "title": ["", "CTO"]}


def test_an_agent_may_not_add_a_contact(agent: Any, acme: Account) -> None:
    _user, client = agent
    response = client.post(f"/accounts/{acme.pk}/contacts/new/", contact_data(["x@acme.example"], []))
    assert response.status_code == 403 and not Contact.objects.exists() and not AuditEntry.objects.exists()


# -- commitments -----------------------------------------------------------------------------------------------


def test_commitments_are_added_edited_and_deleted_and_the_tier_follows(manager: Any, tiers: Any) -> None:
    user, client = manager
    acct = Account.objects.create(name="Initech", external_id="INI")
    Tier.objects.filter(name="gold").update(min_commitment=Decimal("50000"))
    today = timezone.localdate()
    data = {"period_start": (today - dt.timedelta(days=10)).isoformat(),
            "period_end": (today + dt.timedelta(days=300)).isoformat(), "amount": "60000", "volume": "",
            "unit": "", "note": "annual"}
    assert client.post(f"/accounts/{acct.pk}/commitments/new/", data).status_code == 302
    commitment = Commitment.objects.get(account=acct)
    acct.refresh_from_db()
    assert commitment.amount == Decimal("60000") and acct.tier == tiers["gold"]
    assert AuditEntry.objects.get(action="create", object_type="customers.commitment").user == user

    data["amount"] = "70000"
    assert client.post(f"/accounts/{acct.pk}/commitments/{commitment.pk}/edit/", data).status_code == 302
    entry = AuditEntry.objects.get(action="update", object_type="customers.commitment")
    assert entry.changes == {"amount": ["60000.00", "70000.00"]}

    confirm = client.get(f"/accounts/{acct.pk}/commitments/{commitment.pk}/delete/")
    assert confirm.status_code == 200 and b"Delete this commitment?" in confirm.content
    assert Commitment.objects.filter(pk=commitment.pk).exists(), "a GET deletes nothing"
    assert client.post(f"/accounts/{acct.pk}/commitments/{commitment.pk}/delete/").status_code == 302
    assert not Commitment.objects.filter(pk=commitment.pk).exists()
    acct.refresh_from_db()
    assert acct.tier is None
    deleted = AuditEntry.objects.get(action="delete")
    assert deleted.changes["amount"] == ["70000.00", None]
    # The account's history still shows the deleted commitment's entries.
    history = client.get(f"/accounts/{acct.pk}/").content.decode()
    assert history.count("commitment of Initech") == 3


def test_a_commitment_ending_before_it_starts_or_without_a_positive_amount_is_refused(manager: Any,
                                                                                     acme: Account) -> None:
    _user, client = manager
    response = client.post(f"/accounts/{acme.pk}/commitments/new/", {
        "period_start": "2030-06-01", "period_end": "2030-01-31", "amount": "0", "volume": "5", "unit": ""})
    html = response.content.decode()
    assert response.status_code == 200
    assert "The period ends before it starts." in errors_of(html, "id_period_end")
    assert "greater than or equal to 0.01" in errors_of(html, "id_amount")
    assert "Say what the volume counts" in errors_of(html, "id_unit")
    assert 'value="2030-06-01"' in html and 'value="2030-01-31"' in html
    response = client.post(f"/accounts/{acme.pk}/commitments/new/", {"period_start": "", "period_end": "junk",
                                                                     "amount": "10"})
    assert "This field is required." in errors_of(response.content.decode(), "id_period_start")
    assert "Enter a valid date." in errors_of(response.content.decode(), "id_period_end")
    assert not Commitment.objects.exists() and not AuditEntry.objects.exists()


def test_an_agent_may_not_delete_a_commitment(agent: Any, acme: Account) -> None:
    _user, client = agent
    c = Commitment.objects.create(account=acme, period_start=dt.date(2030, 1, 1), period_end=dt.date(2030, 12, 31),
                                  amount=Decimal(10))
    assert client.post(f"/accounts/{acme.pk}/commitments/{c.pk}/delete/").status_code == 403
    assert Commitment.objects.filter(pk=c.pk).exists() and not AuditEntry.objects.exists()


# -- tier overrides --------------------------------------------------------------------------------------------


def test_a_tier_override_is_set_and_ended_with_the_tier_history_and_the_audit(manager: Any, acme: Account,
                                                                             tiers: Any) -> None:
    user, client = manager
    expires = (timezone.localtime() + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(f"/accounts/{acme.pk}/override/", {"tier": tiers["gold"].pk,
                                                              "reason": "strategic renewal", "expires_at": expires})
    assert response.status_code == 302
    acme.refresh_from_db()
    override = TierOverride.objects.get(account=acme)
    assert acme.tier == tiers["gold"] and override.created_by == user and override.reason == "strategic renewal"
    change = TierChange.objects.get(account=acme, cause="override")
    assert change.to_tier == tiers["gold"] and "strategic renewal" in change.detail
    assert AuditEntry.objects.get(action="create", object_type="customers.tieroverride").user == user
    page = client.get(f"/accounts/{acme.pk}/").content.decode()
    assert 'id="end-override"' in page

    response = client.post(f"/accounts/{acme.pk}/override/{override.pk}/end/")
    assert response.status_code == 302
    acme.refresh_from_db()
    override.refresh_from_db()
    assert override.revoked_at is not None and acme.tier is None
    assert TierChange.objects.filter(account=acme, cause="override_ended").count() == 1
    ended = AuditEntry.objects.get(action="end-override")
    assert ended.user == user and ended.changes["revoked_at"][0] is None and ended.changes["revoked_at"][1]
    # Ending it again changes nothing and says so.
    again = client.post(f"/accounts/{acme.pk}/override/{override.pk}/end/", follow=True)
    assert "already been ended" in again.content.decode()
    assert AuditEntry.objects.filter(action="end-override").count() == 1
    assert client.get(f"/accounts/{acme.pk}/override/{override.pk}/end/").status_code == 405


def test_an_override_needs_a_reason_and_an_expiry_in_the_future(manager: Any, acme: Account, tiers: Any) -> None:
    _user, client = manager
    past = (timezone.localtime() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(f"/accounts/{acme.pk}/override/", {"tier": tiers["gold"].pk, "reason": "   ",
                                                              "expires_at": past})
    html = response.content.decode()
    assert response.status_code == 200
    assert "This field is required." in errors_of(html, "id_reason") or "needs a reason" in errors_of(html, "id_reason")
    assert "The expiry must be in the future." in errors_of(html, "id_expires_at")
    assert f'value="{past}"' in html
    assert not TierOverride.objects.exists() and not TierChange.objects.exists() and not AuditEntry.objects.exists()


def test_an_agent_may_not_set_an_override(agent: Any, acme: Account, tiers: Any) -> None:
    _user, client = agent
    expires = (timezone.localtime() + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(f"/accounts/{acme.pk}/override/", {"tier": tiers["gold"].pk, "reason": "x",
                                                              "expires_at": expires})
    assert response.status_code == 403 and not TierOverride.objects.exists()


# -- API keys --------------------------------------------------------------------------------------------------


def test_a_key_is_issued_shown_once_and_revoked(manager: Any, acme: Account) -> None:
    user, client = manager
    response = client.post(f"/accounts/{acme.pk}/keys/new/", {"name": "booking engine"})
    cred = ApiCredential.objects.get(account=acme)
    assert response.status_code == 302 and response["Location"] == f"/accounts/{acme.pk}/keys/{cred.pk}/issued/"
    first = client.get(response["Location"])
    html = first.content.decode()
    key = re.search(r'id="new-key" type="text" value="([^"]+)"', html)
    assert key and cred.key_hash == hash_key(key.group(1)) and key.group(1).startswith(cred.prefix)
    assert 'id="copy-key"' in html and first["Cache-Control"] == "no-store"
    second = client.get(response["Location"]).content.decode()
    assert key.group(1) not in second and 'id="key-gone"' in second
    assert key.group(1) not in client.get(f"/accounts/{acme.pk}/").content.decode()
    issued = AuditEntry.objects.get(action="issue-key")
    assert issued.user == user and "key_hash" not in issued.changes and cred.key_hash not in str(issued.changes)

    confirm = client.get(f"/accounts/{acme.pk}/keys/{cred.pk}/revoke/")
    assert confirm.status_code == 200 and b"Revoke this API key?" in confirm.content
    cred.refresh_from_db()
    assert cred.revoked_at is None, "a GET revokes nothing"
    assert client.post(f"/accounts/{acme.pk}/keys/{cred.pk}/revoke/").status_code == 302
    cred.refresh_from_db()
    assert cred.revoked_at is not None
    assert AuditEntry.objects.get(action="revoke-key").user == user


def test_revoking_a_revoked_key_changes_nothing_and_says_so(manager: Any, acme: Account) -> None:
    _user, client = manager
    cred, _key = ApiCredential.issue(acme, "old")
    cred.revoke()
    revoked_at = cred.revoked_at
    response = client.post(f"/accounts/{acme.pk}/keys/{cred.pk}/revoke/", follow=True)
    assert "was already revoked" in response.content.decode()
    cred.refresh_from_db()
    assert cred.revoked_at == revoked_at and not AuditEntry.objects.exists()


def test_another_accounts_key_is_not_found_under_this_account(manager: Any, acme: Account) -> None:
    _user, client = manager
    other = Account.objects.create(name="Other")
    cred, _key = ApiCredential.issue(other)
    assert client.post(f"/accounts/{acme.pk}/keys/{cred.pk}/revoke/").status_code == 404
    cred.refresh_from_db()
    assert cred.revoked_at is None


def test_an_agent_may_not_issue_or_revoke_keys(agent: Any, acme: Account) -> None:
    _user, client = agent
    cred, _key = ApiCredential.issue(acme)
    assert client.post(f"/accounts/{acme.pk}/keys/new/", {"name": "x"}).status_code == 403
    assert client.post(f"/accounts/{acme.pk}/keys/{cred.pk}/revoke/").status_code == 403
    assert ApiCredential.objects.count() == 1 and ApiCredential.objects.get().revoked_at is None
    assert not AuditEntry.objects.exists()


# -- the audit page --------------------------------------------------------------------------------------------


def test_the_audit_page_filters_by_type_user_and_dates_and_pages(manager: Any, acme: Account) -> None:
    user, client = manager
    other = User.objects.create_user("olga", is_staff=True)
    now = timezone.now()
    for i in range(55):
        AuditEntry.objects.create(user=user, action="update", object_type="customers.account",
                                  object_id=str(acme.pk), object_repr=f"row{i}", at=now - dt.timedelta(minutes=i))
    AuditEntry.objects.create(user=other, action="create", object_type="catalog.apicredential", object_id="1",
                              object_repr="olga's key", at=now - dt.timedelta(days=40))
    first = client.get("/audit/").content.decode()
    assert "56 entries" in first and "page 1 of 2" in first
    assert "olga&#x27;s key" in client.get("/audit/?page=2").content.decode()
    only = client.get("/audit/?object_type=catalog.apicredential").content.decode()
    assert "1 entry" in only and "olga&#x27;s key" in only
    by_user = client.get("/audit/?user=olga").content.decode()
    assert "1 entry" in by_user
    day = timezone.localdate(now - dt.timedelta(days=40)).isoformat()
    dated = client.get(f"/audit/?since={day}&until={day}").content.decode()
    assert "1 entry" in dated and "olga&#x27;s key" in dated
    bad = client.get("/audit/?since=2030-02-01&until=2030-01-01").content.decode()
    assert "The range ends before it starts." in bad and "0 entries" in bad


def test_the_audit_page_needs_its_permission(agent: Any) -> None:
    _user, client = agent
    assert client.get("/audit/").status_code == 403


# -- country and custom fields (issue 20) ----------------------------------------------------------------------


def test_an_account_gets_a_country_and_custom_fields_and_bad_ones_are_refused_at_their_field(
        manager: Any, acme: Account) -> None:
    _user, client = manager
    url = f"/accounts/{acme.pk}/edit/"
    base = account_data(name="Acme Travel", external_id="ACME", revenue_12m="5000", cost_to_serve_12m="0")
    for country, custom, field, says in [
            ("XX", "", "id_country", "is not an ISO 3166-1 alpha-2 country code"),
            ("UK", "", "id_country", "the United Kingdom is &#x27;GB&#x27;"),
            ("DE", "industry travel", "id_custom_fields", "Line 1: write key = value"),
            ("DE", "9lives = 1", "id_custom_fields", "Line 1: “9lives” is not a key"),
            ("DE", "a = 1\na = 2", "id_custom_fields", "Line 2: “a” is given twice"),
            ("DE", "tags = [\"a\", \"b\"]", "id_custom_fields", "custom field “tags”: nested lists are not allowed"),
            ("DE", "address = {\"city\": \"Berlin\"}", "id_custom_fields", "nested objects are not allowed"),
            ("DE", "empty =", "id_custom_fields", "“empty” has no value")]:
        response = client.post(url, {**base, "country": country, "custom_fields": custom})
        assert response.status_code == 200, (country, custom)
        assert says in errors_of(response.content.decode(), field), (country, custom, response.content.decode()[:0])
    acme.refresh_from_db()
    assert (acme.country, acme.custom_fields) == ("", {}) and not AuditEntry.objects.exists()
    response = client.post(url, {**base, "country": "de", "custom_fields": "industry = travel\nemployees = 120\n"
                                                                            "key_account = true\nscore = 2.5"})
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.country == "DE"
    assert acme.custom_fields == {"industry": "travel", "employees": 120, "key_account": True, "score": 2.5}
    assert AuditEntry.objects.get(action="update").changes["country"] == ["", "DE"]
    html = client.get(url).content.decode()  # shown back as lines that save to the same values
    assert "employees = 120\nindustry = travel\nkey_account = true\nscore = 2.5" in html
    page = client.get(f"/accounts/{acme.pk}/").content.decode()
    assert 'id="account-country">Germany (DE)<' in page and "employees: 120" in page


def test_a_contacts_custom_fields_are_edited_and_audited(manager: Any, acme: Account) -> None:
    _user, client = manager
    contact = Contact.objects.create(account=acme, name="Grace Hopper", custom_fields={"language": "en"})
    data = contact_data([], [], custom_fields="language = de\nvip = true")
    response = client.post(f"/accounts/{acme.pk}/contacts/{contact.pk}/edit/", data)
    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.custom_fields == {"language": "de", "vip": True}
    entry = AuditEntry.objects.get(action="update", object_type="customers.contact")
    assert entry.changes["custom_fields"] == [{"language": "en"}, {"language": "de", "vip": True}]
    response = client.post(f"/accounts/{acme.pk}/contacts/{contact.pk}/edit/",
                           contact_data([], [], custom_fields="x = {\"y\": 1}"))
    assert response.status_code == 200
    assert "nested objects are not allowed" in errors_of(response.content.decode(), "id_custom_fields")
