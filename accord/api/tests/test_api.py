"""The REST API: CRUD, filters, pagination, credentials, overrides, and one error shape for every failure."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accord.agreements.models import Objective
from accord.catalog.models import ApiCredential, CredentialUsage, Operation, Service, hash_key
from accord.customers.models import Account, Tier, TierChange
from accord.lib.manifest import apply_manifest

pytestmark = pytest.mark.django_db

MANIFEST = """
calendars:
  - {name: office, timezone: Europe/London, hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"]}}
tiers:
  - {name: platinum, rank: 1, min_revenue_12m: 1000000}
  - {name: standard, rank: 2}
services:
  - name: booking
    base_path: /bookings
    operations: [{name: book-trip, method: POST, path: /bookings}]
    pools: [{name: primary, capacity: 10, endpoints: [{url: "http://127.0.0.1:9201"}]}]
"""


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


@pytest.fixture
def catalog() -> None:
    apply_manifest(MANIFEST)


def test_accounts_crud_with_filters_and_pagination(api: APIClient, catalog: None) -> None:
    created = api.post("/api/v1/accounts/", {"name": "Acme Travel", "external_id": "ACME", "timezone": "Europe/Paris",
                                             "revenue_12m": "2500000.00", "owner": "alice"})
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["tier"] is None and body["owner"] == "alice" and body["committed_amount"] == "0.00"
    assert body["currency"] == "EUR"  # of revenue_12m, cost_to_serve_12m and committed_amount (ACCORD_CURRENCY)
    for i in range(60):
        Account.objects.create(name=f"Filler {i:02d}", external_id=f"F{i:02d}")
    page = api.get("/api/v1/accounts/", {"page_size": 25, "ordering": "name"}).json()
    assert page["count"] == 61 and len(page["results"]) == 25 and page["next"]
    assert api.get("/api/v1/accounts/", {"q": "acme"}).json()["count"] == 1
    assert api.get("/api/v1/accounts/", {"q": "F0"}).json()["count"] == 10
    patched = api.patch(f"/api/v1/accounts/{body['id']}/", {"name": "Acme Voyages"})
    assert patched.status_code == 200 and patched.json()["name"] == "Acme Voyages"
    from accord.customers import tiers

    tiers.recompute()
    assert api.get("/api/v1/accounts/", {"tier": "platinum"}).json()["count"] == 1
    assert api.delete(f"/api/v1/accounts/{body['id']}/").status_code == 204
    assert_error(api.get(f"/api/v1/accounts/{body['id']}/"), 404, "not_found")


def test_contacts_carry_several_emails_and_phones_and_refuse_taken_ones(api: APIClient) -> None:
    Account.objects.create(name="Acme", external_id="ACME")
    first = api.post("/api/v1/contacts/", {"name": "Ada", "account": "ACME", "emails": ["Ada@Acme.example", "a2@acme.example"],
                                           "phones": ["+44 20 7946 0000"]})
    assert first.status_code == 201, first.json()
    assert first.json()["emails"] == ["ada@acme.example", "a2@acme.example"]
    assert first.json()["phones"] == ["+442079460000"]
    assert api.get("/api/v1/contacts/", {"address": "ada@acme.example"}).json()["count"] == 1
    taken = api.post("/api/v1/contacts/", {"name": "Eve", "emails": ["ada@acme.example"]})
    err = assert_error(taken, 400, "invalid")
    assert err["fields"]["emails"] == ["'ada@acme.example' belongs to another contact."]
    bad = assert_error(api.post("/api/v1/contacts/", {"name": "Eve", "emails": ["not-mail"]}), 400)
    assert bad["fields"]["emails"] == ["'not-mail' is not an e-mail address"]
    # Updating a contact with its own address is fine.
    ok = api.patch(f"/api/v1/contacts/{first.json()['id']}/", {"emails": ["ada@acme.example"]})
    assert ok.status_code == 200 and ok.json()["emails"] == ["ada@acme.example"]


def test_calendar_hours_get_the_same_messages_as_the_yaml(api: APIClient) -> None:
    bad = api.post("/api/v1/calendars/", {"name": "x", "timezone": "Europe/London",
                                          "hours": {"mon": ["09:00-12:30", "13:30-12:00"]}}, format="json")
    err = assert_error(bad, 400)
    assert err["fields"]["hours"] == ["mon[1]: '13:30-12:00' ends before it starts"]
    zone = assert_error(api.post("/api/v1/calendars/", {"name": "y", "timezone": "Nowhere", "hours": {"mon": ["09:00-10:00"]}}, format="json"), 400)
    assert "not an IANA time zone" in zone["fields"]["timezone"][0]
    good = api.post("/api/v1/calendars/", {"name": "z", "timezone": "Asia/Tokyo", "hours": {"fri": ["18:00-24:00", "08:00-12:00"]}}, format="json")
    assert good.status_code == 201 and good.json()["hours"]["fri"] == ["08:00-12:00", "18:00-24:00"]


def test_agreements_with_objectives_and_credit_schedule(api: APIClient, catalog: None) -> None:
    created = api.post("/api/v1/agreements/", {
        "name": "platinum-sla", "tier": "platinum", "effective_from": "2026-01-01", "monthly_fee": "1000.00",
        "calendar": "office", "services": ["booking"],
        "credit_schedule": {"cap_percent": "100", "bands": [{"below_percent": "99.9", "credit_percent": "10"},
                                                             {"below_percent": "99", "credit_percent": "25"}]},
    }, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["credit_schedule"]["bands"][1] == {"below_percent": "99.0000", "credit_percent": "25.000"}
    objective = api.post("/api/v1/objectives/", {"agreement": "platinum-sla", "name": "p95", "kind": "latency",
                                                 "target": "400", "percentile": "95", "service": "booking"})
    assert objective.status_code == 201, objective.json()
    detail = api.get(f"/api/v1/agreements/{created.json()['id']}/").json()
    assert [o["name"] for o in detail["objectives"]] == ["p95"]
    missing = assert_error(api.post("/api/v1/objectives/", {"agreement": "platinum-sla", "name": "p99", "kind": "latency",
                                                            "target": "400"}), 400)
    assert missing["fields"]["percentile"] == ["a latency objective needs a percentile, e.g. 95"]
    both = assert_error(api.post("/api/v1/agreements/", {"name": "x", "effective_from": "2026-01-01", "calendar": "office"}), 400)
    assert both["fields"]["_"] == ["An agreement applies to exactly one of: a tier, an account."]
    bands = assert_error(api.post("/api/v1/agreements/", {
        "name": "y", "tier": "standard", "effective_from": "2026-01-01", "calendar": "office",
        "credit_schedule": {"bands": [{"below_percent": "99", "credit_percent": "10"}, {"below_percent": "99.5", "credit_percent": "5"}]},
    }, format="json"), 400)
    assert "credit_schedule.bands[1].below_percent" in bands["fields"]


def test_credentials_show_the_key_once_and_store_only_its_hash(api: APIClient) -> None:
    Account.objects.create(name="Acme", external_id="ACME")
    created = api.post("/api/v1/credentials/", {"account": "ACME", "name": "booking robot"})
    assert created.status_code == 201, created.json()
    key = created.json()["key"]
    stored = ApiCredential.objects.get()
    assert stored.key_hash == hash_key(key) and key.startswith(stored.prefix)
    assert created.json()["requests_this_month"] == 0
    today = timezone.now().astimezone(dt.UTC).date()
    CredentialUsage.objects.create(credential=stored, day=today, requests=12)
    CredentialUsage.objects.create(credential=stored, day=today.replace(day=1) - dt.timedelta(days=1), requests=99)
    listed = api.get("/api/v1/credentials/").json()["results"][0]
    assert "key" not in listed and listed["prefix"] == stored.prefix and listed["active"] is True
    assert listed["requests_this_month"] == 12  # last month's 99 not in it
    assert key not in json.dumps(api.get(f"/api/v1/credentials/{stored.pk}/").json())
    revoked = api.post(f"/api/v1/credentials/{stored.pk}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert_error(api.put(f"/api/v1/credentials/{stored.pk}/", {"account": "ACME"}), 405, "method_not_allowed")


def test_tier_overrides_create_and_revoke_with_history(api: APIClient, catalog: None) -> None:
    acct = Account.objects.create(name="Acme", external_id="ACME")
    expires = (timezone.now() + dt.timedelta(days=7)).isoformat()
    created = api.post("/api/v1/tier-overrides/", {"account": "ACME", "tier": "platinum", "reason": "pilot", "expires_at": expires})
    assert created.status_code == 201, created.json()
    assert created.json()["created_by"] == "alice"
    acct.refresh_from_db()
    assert acct.tier == Tier.objects.get(name="platinum")
    revoke = api.post(f"/api/v1/tier-overrides/{created.json()['id']}/revoke/")
    assert revoke.status_code == 200 and revoke.json()["revoked_at"]
    history = api.get("/api/v1/tier-changes/", {"account": "ACME"}).json()["results"]
    assert [(h["cause"], h["to_tier"]) for h in history] == [("override_ended", "standard"), ("override", "platinum")]
    assert TierChange.objects.count() == 2
    past = assert_error(api.post("/api/v1/tier-overrides/", {"account": "ACME", "tier": "platinum", "reason": "x",
                                                             "expires_at": "2020-01-01T00:00:00Z"}), 400)
    assert past["fields"]["expires_at"] == ["The expiry must be in the future."]


def test_unknown_fields_and_wrong_types_are_400_with_field_messages(api: APIClient) -> None:
    unknown = assert_error(api.post("/api/v1/accounts/", {"name": "X", "colour": "red"}), 400, "invalid")
    assert unknown["fields"] == {"colour": ["Unknown field."]}
    readonly = assert_error(api.post("/api/v1/accounts/", {"name": "X", "tier": "platinum"}), 400)
    assert readonly["fields"] == {"tier": ["This field is read-only."]}
    types = assert_error(api.post("/api/v1/accounts/", {"name": ["X"], "revenue_12m": "lots", "kind": 7}, format="json"), 400)
    assert set(types["fields"]) == {"name", "revenue_12m", "kind"}
    missing = assert_error(api.post("/api/v1/accounts/", {}, format="json"), 400)
    assert missing["fields"] == {"name": ["This field is required."]}


def test_malformed_and_non_object_bodies_are_400(api: APIClient) -> None:
    for body in ("{not json", "[]", "3", "null", '"text"'):
        response = api.generic("POST", "/api/v1/accounts/", body, content_type="application/json")
        assert_error(response, 400)
    assert_error(api.generic("POST", "/api/v1/accounts/", "a=b", content_type="text/plain"), 415, "unsupported_media_type")


def test_oversize_payloads_are_413(api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    big = json.dumps({"name": "x" * 20_000})
    assert_error(api.generic("POST", "/api/v1/accounts/", big, content_type="application/json"), 413, "payload_too_large")
    assert not Account.objects.exists()


def test_authentication_and_permission_errors(bob: Any) -> None:
    anonymous = APIClient()
    assert_error(anonymous.get("/api/v1/accounts/"), 401, "not_authenticated")
    assert_error(APIClient(HTTP_AUTHORIZATION="Token nope").get("/api/v1/accounts/"), 401)
    client = APIClient()
    client.force_authenticate(bob)
    assert_error(client.get("/api/v1/accounts/"), 403, "permission_denied")


def test_unknown_urls_under_the_api_are_json_404(api: APIClient) -> None:
    assert_error(api.get("/api/v1/spaceships/"), 404, "not_found")
    assert_error(api.get("/api/v1/accounts/not-a-number/"), 404)


GARBAGE: list[Any] = [None, True, -1, 1e308, "", "x" * 5000, [], [1, [2]], {}, {"a": {"b": None}}, "2026-13-45", "💥", "\x00"]


@pytest.mark.parametrize(
    "endpoint",
    ["tiers", "accounts", "contacts", "commitments", "tier-overrides", "calendars", "agreements", "objectives",
     "services", "operations", "pools", "endpoints", "partners", "credentials"],
)
def test_garbage_never_causes_a_500(api: APIClient, catalog: None, endpoint: str) -> None:
    schema = api.options(f"/api/v1/{endpoint}/").json()
    fields = [name for name, f in schema.get("actions", {}).get("POST", {}).items() if not f.get("read_only")]
    assert fields, schema
    for value in GARBAGE:
        body = dict.fromkeys(fields, value)
        response = api.post(f"/api/v1/{endpoint}/", body, format="json")
        assert 400 <= response.status_code < 500, (endpoint, value, response.status_code, response.content[:300])
        assert_error(response, response.status_code)
        single = api.post(f"/api/v1/{endpoint}/", {fields[0]: value, "zzz": 1}, format="json")
        assert_error(single, 400)


def test_the_openapi_schema_and_docs_are_served_without_external_assets(api: APIClient, alice: Any) -> None:
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    spec = json.loads(schema.content)
    assert spec["openapi"].startswith("3.") and "/api/v1/accounts/" in spec["paths"]
    browser = Client()
    browser.force_login(alice)
    docs = browser.get("/api/v1/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert not re.findall(r"(?:src|href)=[\"']https?://", html), "docs must not load assets from the network"
    assert "/static/drf_spectacular_sidecar/" in html


def test_a_patch_of_a_nested_credit_schedule_is_validated_not_a_500(api: APIClient, catalog: None) -> None:
    created = api.post("/api/v1/agreements/", {
        "name": "std-sla", "tier": "standard", "effective_from": "2026-01-01", "calendar": "office",
        "credit_schedule": {"cap_percent": "50", "bands": [{"below_percent": "99.9", "credit_percent": "10"}]},
    })
    assert created.status_code == 201, created.json()
    url = f"/api/v1/agreements/{created.json()['id']}/"
    empty = assert_error(api.patch(url, {"credit_schedule": {"bands": []}}), 400, "invalid")
    assert empty["fields"] == {"credit_schedule.bands": ["needs at least one band"]}
    missing = assert_error(api.patch(url, {"credit_schedule": {"cap_percent": "20"}}), 400, "invalid")
    assert list(missing["fields"]) == ["credit_schedule.bands"]
    assert api.get(url).json()["credit_schedule"]["cap_percent"] == "50.000"  # nothing changed
    replaced = api.patch(url, {"credit_schedule": {"bands": [{"below_percent": "99", "credit_percent": "25"}]}})
    assert replaced.status_code == 200, replaced.json()
    assert replaced.json()["credit_schedule"] == {"cap_percent": "100.000", "bands": [
        {"below_percent": "99.0000", "credit_percent": "25.000"}]}


def test_deleting_an_object_in_use_is_a_409_that_says_by_what(api: APIClient, catalog: None) -> None:
    tier = Tier.objects.get(name="standard")
    Account.objects.create(name="A", external_id="A", tier=tier)
    Account.objects.create(name="B", external_id="B", tier=tier)
    error = assert_error(api.delete(f"/api/v1/tiers/{tier.pk}/"), 409, "conflict")
    assert error["message"] == "This object cannot be deleted: it is still used by 2 accounts."
    assert Tier.objects.filter(pk=tier.pk).exists()


def test_deleting_a_service_or_operation_an_objective_is_scoped_to_is_a_409_and_the_objective_stays(
        api: APIClient, catalog: None) -> None:
    apply_manifest("""
agreements:
  - name: gold-sla
    tier: platinum
    calendar: office
    effective_from: 2026-01-01
    objectives:
      - {name: booking-availability, kind: availability, target: 99.9, service: booking}
      - {name: book-p95, kind: latency, target: 600, percentile: 95, service: booking, operation: book-trip}
""")
    service, operation = Service.objects.get(name="booking"), Operation.objects.get(name="book-trip")
    error = assert_error(api.delete(f"/api/v1/services/{service.pk}/"), 409, "conflict")
    assert error["message"] == ("This service cannot be deleted: it is still used by 2 objectives of agreements "
                                "(gold-sla/book-p95, gold-sla/booking-availability); change or remove them first.")
    error = assert_error(api.delete(f"/api/v1/operations/{operation.pk}/"), 409, "conflict")
    assert "used by 1 objective of agreements (gold-sla/book-p95)" in error["message"]
    assert Objective.objects.filter(agreement__name="gold-sla").count() == 2
    assert Service.objects.filter(pk=service.pk).exists() and Operation.objects.filter(pk=operation.pk).exists()
    # Once no objective is scoped to them, they go.
    Objective.objects.filter(agreement__name="gold-sla").delete()
    assert api.delete(f"/api/v1/operations/{operation.pk}/").status_code == 204
    assert api.delete(f"/api/v1/services/{service.pk}/").status_code == 204
    assert not Service.objects.filter(name="booking").exists()


def test_unsafe_methods_on_unknown_urls_and_csrf_failures_answer_in_the_api_shape(alice: Any, api: APIClient) -> None:
    for method in ("post", "put", "patch", "delete"):
        assert_error(getattr(api, method)("/api/v1/no-such-thing/", {}), 404, "not_found")
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(alice)
    refused = assert_error(browser.post("/api/v1/accounts/", {"name": "X"}, format="json"), 403)
    assert refused["code"] in ("csrf_failed", "permission_denied") and "CSRF" in refused["message"]


def test_an_unexpected_error_is_a_json_500_not_a_page(api: APIClient, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from accord.customers.api import AccountViewSet

    def broken(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        raise KeyError("cap_percent")

    monkeypatch.setattr(AccountViewSet, "list", broken)
    api.raise_request_exception = False
    error = assert_error(api.get("/api/v1/accounts/"), 500, "server_error")
    assert "cap_percent" not in error["message"]  # no internals leak
    assert any("unhandled error in AccountViewSet" in r.message for r in caplog.records)
