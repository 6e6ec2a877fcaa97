"""The governance and gateway API on a real database: policies, overrides, audit, error budgets, live
indicators, gateway actions and rollups; every bad input is a 400 in the one error shape and saves nothing."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.catalog.models import Service
from accord.customers.models import Account, Tier
from accord.gateway.measure import Sketch
from accord.gateway.models import GatewayAction, LivePool, LiveTraffic
from accord.governance import expr
from accord.governance.engine import evaluate_policies
from accord.governance.models import AuditEvent, Override, Policy

from .rollups import add_rollup

pytestmark = pytest.mark.django_db

POLICIES = "/api/v1/governance/policies/"
POLICY = {
    "name": "platinum-standby",
    "description": "Send platinum to the standby pool when the primary is busy",
    "condition": "pool(booking, primary).utilisation[10s] > 0.8",
    "hold_seconds": 5,
    "action": "route",
    "params": {"pool": "standby"},
    "tiers": ["platinum"],
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Hash the personas' passwords with a fast hasher: the real one takes a quarter second per user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


def sketch_of(*latencies: float) -> bytes:
    sketch = Sketch()
    for v in latencies:
        sketch.add(v)
    return sketch.encode()


def create_policy(api: APIClient, **changes: Any) -> dict[str, Any]:
    response = api.post(POLICIES, {**POLICY, **changes}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()  # type: ignore[no-any-return]


# -- policies -------------------------------------------------------------------------------------------------


def test_policies_are_created_read_updated_and_deleted_by_name_with_their_state(api: APIClient) -> None:
    created = create_policy(api)
    assert created["name"] == "platinum-standby" and created["mode"] == "enforce" and created["enabled"] is True
    assert created["params"] == {"pool": "standby"} and created["tiers"] == ["platinum"]
    assert created["state"]["status"] == "idle" and created["state"]["active"] is False
    assert created["override"] is None and created["schedule"] is None

    listed = api.get(POLICIES).json()
    assert listed["count"] == 1 and listed["results"][0]["name"] == "platinum-standby"
    assert api.get(POLICIES, {"mode": "dry_run"}).json()["count"] == 0

    patched = api.patch(f"{POLICIES}platinum-standby/", {"hold_seconds": 30}, format="json")
    assert patched.status_code == 200, patched.json()
    assert patched.json()["hold_seconds"] == 30 and patched.json()["params"] == {"pool": "standby"}
    assert patched.json()["condition"] == POLICY["condition"]

    # PUT replaces: what is not sent goes back to its default
    put = api.put(f"{POLICIES}platinum-standby/", {"condition": "tier(gold).p95_ms > 400", "action": "shed"},
                  format="json")
    assert put.status_code == 200, put.json()
    assert put.json()["tiers"] == [] and put.json()["hold_seconds"] == 0 and put.json()["action"] == "shed"

    # the governor's evaluation shows up in the state: active, since when, the signal values
    api.put(f"{POLICIES}platinum-standby/", {**POLICY, "hold_seconds": 0}, format="json")
    now = timezone.now()
    LivePool.objects.create(at=now - dt.timedelta(seconds=2), worker="w1", service="booking", pool="primary",
                            interval_ms=1000, busy_ms=9000, capacity=10)
    evaluate_policies(now)
    state = api.get(f"{POLICIES}platinum-standby/").json()["state"]
    assert state["status"] == "active" and state["active"] is True and state["since"]
    assert state["values"]["signals"] == {"pool(booking, primary).utilisation[10s]": pytest.approx(0.9)}
    assert state["values"]["condition"] is True and state["error"] == ""
    assert GatewayAction.live().filter(name="policy-platinum-standby").exists()

    # deleting it switches its action off at once, and says who did
    assert api.delete(f"{POLICIES}platinum-standby/").status_code == 204
    assert not Policy.objects.exists()
    assert not GatewayAction.live().exists()
    gone = AuditEvent.objects.filter(kind="deactivated", actor="alice").get()
    assert gone.subject == "platinum-standby" and "deleted by alice" in gone.reason
    assert_error(api.get(f"{POLICIES}platinum-standby/"), 404, "not_found")


def test_a_policy_name_is_taken_once_and_cannot_be_renamed(api: APIClient) -> None:
    create_policy(api)
    again = assert_error(api.post(POLICIES, POLICY, format="json"), 400, "invalid")
    assert "already exists" in again["fields"]["name"][0]
    rename = assert_error(api.patch(f"{POLICIES}platinum-standby/", {"name": "other"}, format="json"), 400)
    assert rename["fields"]["name"] == ["A policy cannot be renamed; create a new one and delete this one."]
    assert list(Policy.objects.values_list("name", flat=True)) == ["platinum-standby"]


BAD_CONDITION = "pool(booking, primary).utilisation > high"


@pytest.mark.parametrize(("changes", "field", "fragment"), [
    ({"colour": "red"}, "colour", "Unknown field."),
    ({"state": {"active": True}}, "state", "This field is read-only."),
    ({"condition": BAD_CONDITION}, "condition", f"column {BAD_CONDITION.index('high') + 1}: expected a number"),
    ({"condition": "pool(booking).utilisation > 0.8"}, "condition", "pool() takes 2 argument(s)"),
    ({"condition": ""}, "condition", "a policy needs a condition"),
    ({"clear_condition": "tier(gold).p95_ms <"}, "clear_condition", "column 20: expected a number"),
    ({"params": {}}, "params", "a route action needs a pool name"),
    ({"action": "rate_limit", "params": {"rps": -1}}, "params", "rps must be a number above 0"),
    ({"action": "shed", "params": {"pool": "x"}}, "params", "unknown for shed: pool"),
    ({"action": "explode"}, "action", "'explode' is not a"),
    ({"mode": "sometimes"}, "mode", "must be one of enforce, dry_run"),
    ({"hold_seconds": -1}, "hold_seconds", "whole number of seconds"),
    ({"hold_seconds": "soon"}, "hold_seconds", "A valid integer is required."),
    ({"priority": 5000}, "priority", "between -1000 and 1000"),
    ({"tiers": "platinum"}, "tiers", 'Expected a list of items but got type "str".'),
    ({"schedule": "nowhere"}, "schedule", "no calendar named 'nowhere'"),
    ({"action": "notify", "params": {}}, "notify_emails", "a notify action needs notify_emails"),
    ({"notify_emails": ["not-an-address"]}, "notify_emails", "must be a list of e-mail addresses"),
    ({"notify_webhooks": [{"url": "ftp://x"}]}, "notify_webhooks", "[0].url must start with http"),
    ({"name": "has spaces"}, "name", "letters, numbers, underscores or hyphens"),
    ({"name": "x" * 74}, "name", "no more than 73 characters"),
    ({"description": "\x00"}, "description", "NUL characters are not allowed."),
])
def test_bad_policies_are_400_naming_the_field_and_nothing_is_saved(api: APIClient, changes: dict[str, Any],
                                                                    field: str, fragment: str) -> None:
    error = assert_error(api.post(POLICIES, {**POLICY, **changes}, format="json"), 400, "invalid")
    assert field in error["fields"], error
    assert any(fragment in m for m in error["fields"][field]), error["fields"]
    assert not Policy.objects.exists()


def test_the_condition_error_is_the_parsers_own_message_and_a_bad_update_keeps_the_policy(api: APIClient) -> None:
    with pytest.raises(expr.ExprError) as parsed:
        expr.parse(BAD_CONDITION)
    create_policy(api)
    error = assert_error(api.patch(f"{POLICIES}platinum-standby/", {"condition": BAD_CONDITION, "hold_seconds": 9},
                                   format="json"), 400)
    assert error["fields"] == {"condition": [str(parsed.value)]}
    stored = Policy.objects.get()
    assert stored.condition == POLICY["condition"] and stored.hold_seconds == 5


def test_webhook_secrets_are_write_only_and_kept_when_an_update_omits_them(api: APIClient) -> None:
    created = api.post(POLICIES, {**POLICY, "notify_webhooks": [{"url": "https://hooks.example/a",
                                                                  "secret": "s3cret"}]}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["notify_webhooks"] == [{"url": "https://hooks.example/a"}]
    assert "s3cret" not in created.content.decode()
    # a read-modify-write round trip keeps the secret; a new webhook brings its own
    body = api.get(f"{POLICIES}platinum-standby/").json()
    body["notify_webhooks"].append({"url": "https://hooks.example/b", "secret": "other"})
    writable = {k: v for k, v in body.items() if k not in ("created_at", "updated_at", "state", "override", "simulated")}
    assert api.put(f"{POLICIES}platinum-standby/", writable, format="json").status_code == 200
    assert Policy.objects.get().notify_webhooks == [{"url": "https://hooks.example/a", "secret": "s3cret"},
                                                    {"url": "https://hooks.example/b", "secret": "other"}]


# -- overrides ------------------------------------------------------------------------------------------------


def test_an_override_switches_the_gateway_action_on_at_once_and_is_audited(api: APIClient) -> None:
    create_policy(api)
    response = api.post(f"{POLICIES}platinum-standby/override/",
                        {"on": True, "reason": "incident 42: primary degraded", "minutes": 30}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["state"]["status"] == "active" and body["override"]["on"] is True
    assert body["override"]["created_by"] == "alice" and body["override"]["reason"] == "incident 42: primary degraded"
    expires = dt.datetime.fromisoformat(body["override"]["expires_at"])
    assert abs((expires - timezone.now()).total_seconds() - 1800) < 60

    action = GatewayAction.live().get(name="policy-platinum-standby")
    assert action.kind == "route" and action.params == {"pool": "standby"} and action.tiers == ["platinum"]
    events = list(AuditEvent.objects.order_by("id").values_list("kind", "actor"))
    assert events == [("override", "alice"), ("activated", "alice")]
    assert "incident 42" in AuditEvent.objects.get(kind="activated").reason

    ended = api.delete(f"{POLICIES}platinum-standby/override/")
    assert ended.status_code == 200 and ended.json()["override"] is None
    assert AuditEvent.objects.filter(kind="override_ended", actor="alice").count() == 1
    assert_error(api.delete(f"{POLICIES}platinum-standby/override/"), 404, "not_found")

    off = api.post(f"{POLICIES}platinum-standby/override/", {"on": False, "reason": "false alarm", "minutes": 5},
                   format="json")
    assert off.status_code == 200 and off.json()["state"]["status"] == "idle"
    assert not GatewayAction.live().exists()


@pytest.mark.parametrize(("body", "field"), [
    ({}, "on"),
    ({"on": True, "minutes": 30}, "reason"),
    ({"on": True, "reason": "   ", "minutes": 30}, "reason"),
    ({"on": True, "reason": "x", "minutes": 0}, "minutes"),
    ({"on": True, "reason": "x", "minutes": -5}, "minutes"),
    ({"on": True, "reason": "x", "minutes": 10081}, "minutes"),
    ({"on": True, "reason": "x", "minutes": "soon"}, "minutes"),
    ({"on": True, "reason": "x"}, "minutes"),
    ({"on": "maybe", "reason": "x", "minutes": 5}, "on"),
    ({"on": True, "reason": "x", "minutes": 5, "until": "tomorrow"}, "until"),
    ({"on": True, "reason": "x" * 301, "minutes": 5}, "reason"),
    ([1, 2], "_"),
])
def test_bad_overrides_are_400_and_change_nothing(api: APIClient, body: Any, field: str) -> None:
    create_policy(api)
    error = assert_error(api.post(f"{POLICIES}platinum-standby/override/", body, format="json"), 400, "invalid")
    assert field in error["fields"], error
    assert not Override.objects.exists() and not AuditEvent.objects.exists() and not GatewayAction.objects.exists()


def test_overrides_of_unknown_or_disabled_policies_are_refused(api: APIClient) -> None:
    good = {"on": True, "reason": "x", "minutes": 5}
    assert_error(api.post(f"{POLICIES}nope/override/", good, format="json"), 404, "not_found")
    create_policy(api, enabled=False)
    error = assert_error(api.post(f"{POLICIES}platinum-standby/override/", good, format="json"), 400)
    assert "disabled" in error["message"]
    assert not Override.objects.exists() and not GatewayAction.objects.exists()


# -- audit ----------------------------------------------------------------------------------------------------


def test_the_audit_is_newest_first_and_filters_by_policy_kind_and_time(api: APIClient) -> None:
    create_policy(api)
    policy = Policy.objects.get()
    now = timezone.now()
    for minutes, kind, p in [(50, "activated", policy), (40, "deactivated", policy), (30, "burn_alert", None),
                             (10, "override", policy)]:
        AuditEvent.objects.create(at=now - dt.timedelta(minutes=minutes), kind=kind, policy=p,
                                  subject=p.name if p else "platinum-sla/availability", actor="governor",
                                  reason=f"{kind} reason", values={"signals": {"x": 1.0}})
    rows = api.get("/api/v1/governance/audit/").json()["results"]
    assert [r["kind"] for r in rows] == ["override", "burn_alert", "deactivated", "activated"]
    assert rows[0]["policy"] == "platinum-standby" and rows[0]["values"] == {"signals": {"x": 1.0}}
    by_policy = api.get("/api/v1/governance/audit/", {"policy": "platinum-standby"}).json()
    assert by_policy["count"] == 3
    assert api.get("/api/v1/governance/audit/", {"kind": "burn_alert"}).json()["count"] == 1
    since = (now - dt.timedelta(minutes=45)).isoformat()
    recent = api.get("/api/v1/governance/audit/", {"since": since, "policy": "platinum-standby"}).json()["results"]
    assert [r["kind"] for r in recent] == ["override", "deactivated"]
    assert_error(api.get("/api/v1/governance/audit/", {"kind": "explosion"}), 400, "invalid")
    assert "since" in assert_error(api.get("/api/v1/governance/audit/", {"since": "last tuesday"}), 400)["fields"]
    assert_error(api.post("/api/v1/governance/audit/", {}, format="json"), 405, "method_not_allowed")
    # a deleted policy's events stay findable by its name
    api.delete(f"{POLICIES}platinum-standby/")
    assert api.get("/api/v1/governance/audit/", {"policy": "platinum-standby"}).json()["count"] == 3


# -- error budgets --------------------------------------------------------------------------------------------


@pytest.fixture
def agreements() -> dict[str, Any]:
    calendar = BusinessCalendar.objects.create(name="always", timezone="UTC", hours={
        d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    platinum = Tier.objects.create(name="platinum", rank=1)
    gold = Tier.objects.create(name="gold", rank=2)
    service = Service.objects.create(name="booking", base_path="/bookings")
    start = timezone.localdate() - dt.timedelta(days=60)
    plat = Agreement.objects.create(name="platinum-sla", tier=platinum, calendar=calendar, effective_from=start)
    gld = Agreement.objects.create(name="gold-sla", tier=gold, calendar=calendar, effective_from=start)
    for agreement, target in ((plat, "99.9"), (gld, "99.5")):
        Objective.objects.create(agreement=agreement, name="availability", kind="availability",
                                 target=Decimal(target), window="rolling", window_days=30, service=service)
    Objective.objects.create(agreement=plat, name="p95", kind="latency", target=Decimal(300),
                             percentile=Decimal(95), window="rolling", window_days=30, service=service)
    Objective.objects.create(agreement=plat, name="first-response", kind="first_response", target=Decimal(60))
    Account.objects.create(name="Acme", external_id="ACME", tier=platinum)
    Account.objects.create(name="Nobody", external_id="NOBODY")
    return {"platinum": platinum, "gold": gold}


def rollup(tier: str, count: int, errors: int, latencies: list[float], minutes_ago: int = 60,
           account: str = "ACME") -> None:
    add_rollup(timezone.now() - dt.timedelta(minutes=minutes_ago), count=count, errors=errors, latencies=latencies,
               account=account, tier=tier)


def test_error_budgets_come_from_real_rollups(api: APIClient, agreements: dict[str, Any]) -> None:
    rollup("platinum", 9995, 0, [100.0] * 9995)
    rollup("platinum", 5, 5, [1000.0] * 5)
    rollup("gold", 1000, 10, [50.0] * 1000, account="GLOBEX")
    rows = api.get("/api/v1/governance/slo/").json()
    assert rows["count"] == 3  # the support objective is not a run-time one
    by_name = {(r["agreement"], r["objective"]): r for r in rows["results"]}
    plat = by_name[("platinum-sla", "availability")]
    assert plat["requests"] == 10_000 and plat["bad"] == 5
    assert plat["sli"] == pytest.approx(99.95) and plat["met"] is True
    assert plat["consumed"] == pytest.approx(0.5) and plat["remaining"] == pytest.approx(0.5)
    assert plat["scope"] == {"tier": "platinum", "account": None, "service": "booking", "operation": None}
    latency = by_name[("platinum-sla", "p95")]
    assert latency["sli"] == pytest.approx(100, rel=0.01) and latency["bad"] == 5
    assert latency["consumed"] == pytest.approx(5 / 10_000 / 0.05)
    gold = by_name[("gold-sla", "availability")]
    assert gold["sli"] == pytest.approx(99.0) and gold["met"] is False and gold["remaining"] == pytest.approx(-1.0)

    def names(**params: str) -> list[str]:
        return sorted(f"{r['agreement']}/{r['objective']}" for r in api.get("/api/v1/governance/slo/",
                                                                             params).json()["results"])

    assert names(agreement="gold-sla") == ["gold-sla/availability"]
    assert names(tier="platinum") == ["platinum-sla/availability", "platinum-sla/p95"]
    assert names(account="ACME") == ["platinum-sla/availability", "platinum-sla/p95"]
    assert names(account="NOBODY") == []
    error = assert_error(api.get("/api/v1/governance/slo/", {"account": "NOPE"}), 400)
    assert error["fields"] == {"account": ["No account with external id 'NOPE'."]}


def test_an_objective_without_traffic_has_no_sli_and_a_zero_budget_never_breaks_json(
        api: APIClient, agreements: dict[str, Any]) -> None:
    perfect = Agreement.objects.get(name="gold-sla")
    Objective.objects.create(agreement=perfect, name="perfect", kind="availability", target=Decimal(100),
                             window="rolling", window_days=30)
    rollup("gold", 100, 1, [50.0] * 100, account="GLOBEX")
    rows = {r["objective"]: r for r in api.get("/api/v1/governance/slo/", {"agreement": "gold-sla"}).json()["results"]}
    # a zero budget with a bad event is spent infinitely: JSON has no infinity, so it is the string "Infinity"
    perfect_row = rows["perfect"]
    assert perfect_row["consumed"] == "Infinity" and perfect_row["remaining"] == "-Infinity"
    assert perfect_row["met"] is False and perfect_row["budget"] == 0 and perfect_row["bad"] == 1
    assert float(perfect_row["consumed"]) == float("inf")
    rows = {r["objective"]: r for r in api.get("/api/v1/governance/slo/", {"tier": "platinum"}).json()["results"]}
    assert rows["availability"]["sli"] is None and rows["availability"]["requests"] == 0


# -- live indicators ------------------------------------------------------------------------------------------


def test_live_indicators_come_from_real_live_rows(api: APIClient) -> None:
    now = timezone.now()
    for worker, tier, count, errors, latency in [("w1", "gold", 300, 3, 20.0), ("w2", "platinum", 100, 0, 50.0)]:
        LiveTraffic.objects.create(at=now - dt.timedelta(seconds=4), worker=worker, service="booking",
                                   operation="search", pool="primary", tier=tier, count=count, errors=errors,
                                   latency_sum_ms=latency * count, latency_sketch=sketch_of(*[latency] * count))
    for worker in ("w1", "w2"):
        LivePool.objects.create(at=now - dt.timedelta(seconds=2), worker=worker, service="booking", pool="primary",
                                interval_ms=1000, busy_ms=4000, capacity=5, in_flight=3, waiting=1)
    url = "/api/v1/governance/indicators/"
    everything = api.get(url, {"service": "booking", "window": 10}).json()
    assert everything["count"] == 400 and everything["rps"] == pytest.approx(40)
    assert everything["availability"] == pytest.approx(1 - 3 / 400) and everything["error_rate"] == pytest.approx(3 / 400)
    assert everything["p50_ms"] == pytest.approx(20, rel=0.01) and everything["p99_ms"] == pytest.approx(50, rel=0.01)
    assert everything["utilisation"] is None and everything["window"] == 10
    gold = api.get(url, {"service": "booking", "tier": "gold"}).json()
    assert gold["count"] == 300 and gold["p95_ms"] == pytest.approx(20, rel=0.01) and gold["window"] == 30
    pool = api.get(url, {"service": "booking", "pool": "primary"}).json()
    assert pool["utilisation"] == pytest.approx(0.8) and pool["in_flight"] == 6 and pool["waiting"] == 2
    assert pool["filters"] == {"service": "booking", "pool": "primary"}
    old = api.get(url, {"service": "booking", "window": 1}).json()
    assert old["count"] == 0 and old["availability"] is None and old["p95_ms"] is None
    for window in ("0", "901", "soon", "-3"):
        assert "window" in assert_error(api.get(url, {"window": window}), 400, "invalid")["fields"]


# -- gateway actions and rollups ------------------------------------------------------------------------------


ACTIONS = "/api/v1/gateway/actions/"


def test_gateway_actions_are_created_replaced_listed_and_switched_off(api: APIClient) -> None:
    body = {"name": "shed-standard", "kind": "shed", "params": {"retry_after": 5}, "tiers": ["standard"],
            "reason": "load test", "priority": 20}
    created = api.post(ACTIONS, body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["set_by"] == "alice" and created.json()["active"] is True and created.json()["live"] is True
    replaced = api.post(ACTIONS, {**body, "kind": "rate_limit", "params": {"rps": 50}}, format="json")
    assert replaced.status_code == 200 and replaced.json()["kind"] == "rate_limit"
    assert GatewayAction.objects.get().params == {"rps": 50}
    assert api.delete(f"{ACTIONS}shed-standard/").status_code == 204
    listed = api.get(ACTIONS).json()["results"]
    assert [(a["name"], a["active"], a["live"]) for a in listed] == [("shed-standard", False, False)]
    assert api.get(ACTIONS, {"active": "true"}).json()["count"] == 0
    assert api.get(f"{ACTIONS}shed-standard/").json()["reason"] == "load test"
    assert_error(api.delete(f"{ACTIONS}nothing/"), 404, "not_found")


@pytest.mark.parametrize(("changes", "field"), [
    ({"params": {}}, "params"),
    ({"kind": "rate_limit", "params": {"rps": 0}}, "params"),
    ({"params": {"pool": "standby", "colour": "red"}}, "params"),
    ({"kind": "teleport"}, "kind"),
    ({"tiers": "gold"}, "tiers"),
    ({"tiers": [""]}, "tiers.0"),
    ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
    ({"name": "policy-platinum-standby"}, "name"),
    ({"set_by": "mallory"}, "set_by"),
    ({"priority": "high"}, "priority"),
])
def test_bad_gateway_actions_are_400_and_change_nothing(api: APIClient, changes: dict[str, Any], field: str) -> None:
    GatewayAction.objects.create(name="to-standby", kind="route", params={"pool": "standby"}, set_by="bob")
    body = {"name": "to-standby", "kind": "route", "params": {"pool": "reserve"}, **changes}
    error = assert_error(api.post(ACTIONS, body, format="json"), 400, "invalid")
    assert field in error["fields"], error
    assert list(GatewayAction.objects.values_list("name", "params", "set_by")) == [
        ("to-standby", {"pool": "standby"}, "bob")]


def test_a_policys_own_action_is_changed_through_its_override(api: APIClient) -> None:
    create_policy(api)
    api.post(f"{POLICIES}platinum-standby/override/", {"on": True, "reason": "test", "minutes": 5}, format="json")
    error = assert_error(api.delete(f"{ACTIONS}policy-platinum-standby/"), 400)
    assert "override the policy" in error["message"]
    assert GatewayAction.live().filter(name="policy-platinum-standby").exists()


def test_rollups_list_with_filters_and_show_percentiles_not_bytes(api: APIClient) -> None:
    latencies = [float(v) for v in range(1, 1001)]
    rollup("gold", 1000, 0, latencies, minutes_ago=30)
    rollup("platinum", 10, 2, [5.0] * 10, minutes_ago=90)
    rows = api.get("/api/v1/gateway/rollups/").json()["results"]
    assert [r["tier"] for r in rows] == ["gold", "platinum"]
    gold = rows[0]
    assert "latency_sketch" not in gold and gold["count"] == 1000
    assert gold["p50_ms"] == pytest.approx(500, rel=0.011) and gold["p95_ms"] == pytest.approx(950, rel=0.011)
    assert gold["p99_ms"] == pytest.approx(990, rel=0.011) and gold["mean_ms"] == pytest.approx(500.5)
    assert api.get("/api/v1/gateway/rollups/", {"tier": "platinum", "outcome": "server_error"}).json()["count"] == 1
    since = (timezone.now() - dt.timedelta(minutes=60)).isoformat()
    assert [r["tier"] for r in api.get("/api/v1/gateway/rollups/", {"since": since}).json()["results"]] == ["gold"]
    assert [r["tier"] for r in api.get("/api/v1/gateway/rollups/", {"until": since}).json()["results"]] == ["platinum"]
    assert api.get("/api/v1/gateway/rollups/", {"service": "other"}).json()["count"] == 0
    assert_error(api.get("/api/v1/gateway/rollups/", {"since": "yesterday-ish"}), 400)


# -- everyone else, garbage, schema ---------------------------------------------------------------------------


URLS = [POLICIES, f"{POLICIES}x/", "/api/v1/governance/audit/", "/api/v1/governance/slo/",
        "/api/v1/governance/indicators/", ACTIONS, "/api/v1/gateway/rollups/"]


def test_only_staff_may_use_the_governance_api(bob: User) -> None:
    for url in URLS:
        assert_error(APIClient().get(url), 401, "not_authenticated")
    client = APIClient()
    client.force_authenticate(bob)
    for url in URLS:
        assert_error(client.get(url), 403, "permission_denied")
    assert_error(client.post(f"{POLICIES}x/override/", {"on": True, "reason": "x", "minutes": 5}, format="json"),
                 403)
    assert_error(client.post(ACTIONS, {"name": "x", "kind": "shed"}, format="json"), 403)
    assert not GatewayAction.objects.exists()


GARBAGE: list[Any] = [None, True, -1, 1e308, "", "x" * 5000, [], [1, [2]], {}, {"a": {"b": None}}, "💥", "\x00"]


@pytest.mark.parametrize("url", [POLICIES, ACTIONS, f"{POLICIES}platinum-standby/override/"])
def test_garbage_never_causes_a_500(api: APIClient, url: str) -> None:
    if "override" in url:
        create_policy(api)
    fields = {POLICIES: [*POLICY, "enabled", "mode", "priority", "clear_condition", "clear_seconds",
                         "min_active_seconds", "cooldown_seconds", "accounts", "services", "operations", "schedule",
                         "notify_emails", "notify_webhooks"],
              ACTIONS: ["name", "kind", "params", "tiers", "accounts", "services", "operations", "reason",
                        "expires_at", "priority"]}.get(url, ["on", "reason", "minutes"])
    for value in GARBAGE:
        response = api.post(url, dict.fromkeys(fields, value), format="json")
        assert 400 <= response.status_code < 500, (url, value, response.status_code, response.content[:300])
        assert_error(response, response.status_code)
        for field in fields:
            one = api.post(url, {**POLICY, field: value} if url == POLICIES else {field: value}, format="json")
            assert one.status_code < 500, (url, field, value, one.content[:300])
    assert not Override.objects.exists()


def test_the_schema_has_the_new_endpoints_and_no_warnings() -> None:
    out = StringIO()
    call_command("spectacular", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    spec = json.loads(out.getvalue())
    for path in ("/api/v1/governance/policies/{name}/override/", "/api/v1/governance/audit/",
                 "/api/v1/governance/slo/", "/api/v1/governance/indicators/", "/api/v1/gateway/actions/{name}/",
                 "/api/v1/gateway/rollups/"):
        assert path in spec["paths"], path
    assert set(spec["paths"]["/api/v1/governance/policies/{name}/override/"]) == {"post", "delete"}


@pytest.mark.parametrize(("url", "param"), [
    ("/api/v1/governance/audit/", "policy"), ("/api/v1/governance/slo/", "account"),
    ("/api/v1/governance/slo/", "agreement"), ("/api/v1/governance/indicators/", "service"),
    ("/api/v1/gateway/rollups/", "account"), (POLICIES, "mode"),
])
def test_nul_characters_in_query_parameters_are_400_not_500(api: APIClient, url: str, param: str) -> None:
    assert_error(api.get(url, {param: "a\x00b"}), 400, "invalid")
