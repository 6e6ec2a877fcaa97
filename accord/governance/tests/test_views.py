"""The governance page on a real database: who may see it, what it shows, the override form and live.json."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.customers.models import Tier
from accord.gateway.measure import Sketch
from accord.gateway.models import GatewayAction, LivePool, LiveTraffic
from accord.governance import views
from accord.governance.engine import evaluate_policies
from accord.governance.models import AuditEvent, Override, Policy
from accord.governance.policies import save_policy

from .rollups import add_rollup

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def sketch_of(*latencies: float) -> bytes:
    sketch = Sketch()
    for v in latencies:
        sketch.add(v)
    return sketch.encode()


def policy(name: str, **changes: Any) -> Policy:
    data: dict[str, Any] = {"condition": "pool(booking, primary).utilisation[10s] > 0.8", "action": "route",
                            "params": {"pool": "standby"}, "tiers": ["platinum"], "min_active_seconds": 0}
    return save_policy(name, {**data, **changes})[0]


def row_of(html: str, name: str) -> str:
    match = re.search(rf'<article class="policy[^"]*" id="policy-{name}".*?</article>', html, re.S)
    assert match, name
    return match.group(0)


def test_only_active_staff_see_the_page_and_its_live_data(bob: User) -> None:
    policy("to-standby")
    anonymous = Client()
    response = anonymous.get("/governance/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/governance/"
    live = anonymous.get("/governance/live.json")
    assert live.status_code == 403 and live.json()["error"]["code"] == "permission_denied"
    client = Client()
    client.force_login(bob)
    assert client.get("/governance/")["Location"].startswith("/login/")
    assert client.get("/governance/live.json").status_code == 403
    posted = client.post("/governance/policies/to-standby/override/", {"on": "on", "reason": "x", "minutes": "5"})
    assert posted.status_code == 302 and posted["Location"].startswith("/login/")
    assert not Override.objects.exists() and not GatewayAction.objects.exists()


def test_the_page_shows_policies_their_state_actions_budgets_and_the_audit(staff: Client) -> None:
    now = timezone.now()
    LivePool.objects.create(at=now - dt.timedelta(seconds=2), worker="w1", service="booking", pool="primary",
                            interval_ms=1000, busy_ms=9000, capacity=10)
    policy("to-standby", description="Platinum to the standby pool when the primary is busy")
    policy("would-shed", mode="dry_run", action="shed", params={}, tiers=["standard"])
    policy("broken", condition="budget(nope, nothing).burn_rate[1h] > 2")
    policy("switched-off", enabled=False)
    evaluate_policies(now)
    GatewayAction.objects.create(name="limit-standard", kind="rate_limit", params={"rps": 50}, tiers=["standard"],
                                 reason="load test", set_by="carol")
    calendar = BusinessCalendar.objects.create(name="always", timezone="UTC", hours={"mon": ["00:00-24:00"]})
    tier = Tier.objects.create(name="platinum", rank=1)
    agreement = Agreement.objects.create(name="platinum-sla", tier=tier, calendar=calendar,
                                         effective_from=timezone.localdate() - dt.timedelta(days=10))
    Objective.objects.create(agreement=agreement, name="availability", kind="availability", target=Decimal("99.9"),
                             window="rolling", window_days=30)
    add_rollup(now - dt.timedelta(hours=1), account="ACME", pool="", outcome="ok", tier="platinum", count=9998, errors=2,
               latencies=[10.0], latency_sum=0)

    response = staff.get("/governance/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<a href="/governance/" aria-current="page" class="active">Governance</a>' in html
    active = row_of(html, "to-standby")
    assert 'data-status="active"' in active and "since " in active
    assert "pool(booking, primary).utilisation[10s]" in active and "0.9" in active
    assert "Platinum to the standby pool" in active and "standby" in active
    assert 'data-status="dry_run_active"' in row_of(html, "would-shed")
    assert "dry run: would be active" in row_of(html, "would-shed")
    assert "no objective &#x27;nothing&#x27;" in row_of(html, "broken")
    disabled = row_of(html, "switched-off")
    assert 'data-status="disabled"' in disabled and "disabled>Apply override" in disabled.replace('"', "")
    # gateway actions in force: the manual one and the active policy's, not the dry run's
    shown = re.findall(r'<tr data-action="([^"]+)"', html)
    assert sorted(shown) == ["limit-standard", "policy-to-standby"]
    slo = re.search(r'<tr data-objective="platinum-sla/availability" data-level="(\w+)">(.*?)</tr>', html, re.S)
    # 9,996 good of 9,998 is 99.979996 %: rounded down, never up, so it cannot look better than it is
    assert slo and slo.group(1) == "ok" and "99.979 %" in slo.group(2) and "≥ 99.9 %" in slo.group(2)
    assert 'data-remaining="0.8000"' in slo.group(2) and "80% left" in slo.group(2)
    # the timeline has a lane per policy, the active ones with a period; the events list says who and why
    assert html.count('<g class="lane"') == 4
    lane = re.search(r'<g class="lane" data-policy="to-standby">(.*?)</g>', html, re.S)
    assert lane and '<rect class="active"' in lane.group(1)
    lane = re.search(r'<g class="lane" data-policy="would-shed">(.*?)</g>', html, re.S)
    assert lane and '<rect class="dry-run"' in lane.group(1)
    kinds = re.findall(r'<tr data-kind="(\w+)" data-subject="([^"]+)"', html)
    assert ("activated", "to-standby") in kinds and ("would_activate", "would-shed") in kinds
    assert ("error", "broken") in kinds
    assert 'id="latency-chart"' in html and 'id="utilisation-chart"' in html
    assert '<g class="series" data-series="booking/primary">' in html
    assert not re.findall(r"(?:src|href)=[\"']https?://", html), "no assets from the network"


def test_an_override_from_the_page_applies_at_once_and_says_so(staff: Client) -> None:
    policy("to-standby")
    response = staff.post("/governance/policies/to-standby/override/",
                          {"on": "on", "reason": "incident 42", "minutes": "30"})
    assert response.status_code == 302 and response["Location"] == "/governance/#policy-to-standby"
    assert GatewayAction.live().filter(name="policy-to-standby").exists()
    assert list(AuditEvent.objects.order_by("id").values_list("kind", "actor")) == [
        ("override", "alice"), ("activated", "alice")]
    html = staff.get("/governance/").content.decode()
    assert "to-standby forced on until" in html and "incident 42" in html
    row = row_of(html, "to-standby")
    assert 'data-status="active"' in row and "forced on" in row and "End override" in row
    ended = staff.post("/governance/policies/to-standby/end-override/")
    assert ended.status_code == 302
    assert Override.objects.get().ended_at is not None
    assert "The override of to-standby has ended" in staff.get("/governance/").content.decode()


@pytest.mark.parametrize(("data", "messages"), [
    ({"on": "on", "reason": "", "minutes": "30"}, {"reason": "Give a reason: it goes into the audit trail."}),
    ({"on": "on", "reason": "typed with care", "minutes": "0"},
     {"minutes": "Minutes: Ensure this value is greater than or equal to 1."}),
    ({"on": "on", "reason": "typed with care", "minutes": "10081"},
     {"minutes": "Minutes: Ensure this value is less than or equal to 10080."}),
    ({"on": "sideways", "reason": "typed with care", "minutes": "abc"},
     {"on": "Switch: Select a valid choice. sideways is not one of the available choices.",
      "minutes": "Minutes: Enter a whole number."}),
])
def test_a_bad_override_shows_its_errors_keeps_what_was_typed_and_saves_nothing(
        staff: Client, data: dict[str, str], messages: dict[str, str]) -> None:
    policy("to-standby")
    policy("other")
    response = staff.post("/governance/policies/to-standby/override/", data)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="override-error"' in html
    row = row_of(html, "to-standby")
    for field, message in messages.items():
        assert f'<span class="field-error" data-field="{field}">{message}</span>' in row
    if data["reason"]:
        assert f'value="{data["reason"]}"' in row
    assert f'value="{data["minutes"]}"' in row
    assert "field-error" not in row_of(html, "other")
    assert not Override.objects.exists() and not AuditEvent.objects.exists() and not GatewayAction.objects.exists()


def test_a_disabled_policy_cannot_be_overridden_and_a_get_or_a_missing_token_changes_nothing(
        staff: Client, alice: User) -> None:
    policy("to-standby", enabled=False)
    response = staff.post("/governance/policies/to-standby/override/", {"on": "on", "reason": "x", "minutes": "5"})
    assert response.status_code == 400
    assert "to-standby is disabled: enable it before overriding it." in response.content.decode()
    assert staff.get("/governance/policies/to-standby/override/").status_code == 405
    assert staff.post("/governance/policies/nope/override/", {"on": "on", "reason": "x", "minutes": "5"}).status_code == 404
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    Policy.objects.update(enabled=True)
    assert strict.post("/governance/policies/to-standby/override/",
                       {"on": "on", "reason": "x", "minutes": "5"}).status_code == 403
    assert not Override.objects.exists() and not GatewayAction.objects.exists()


def test_the_timeline_draws_active_periods_from_the_audit() -> None:
    p = policy("to-standby")
    dry = policy("would-shed", mode="dry_run", action="shed", params={})
    now = timezone.now()
    start = now - dt.timedelta(hours=6)

    def event(hours_ago: float, kind: str, on: Policy | None = p, subject: str = "to-standby") -> dt.datetime:
        at = now - dt.timedelta(hours=hours_ago)
        AuditEvent.objects.create(at=at, kind=kind, policy=on, subject=subject, actor="governor", reason=kind)
        return at

    event(8, "activated")  # on before the window: the first period starts at the window's start
    first_end = event(5.5, "deactivated")
    second = event(3, "activated")
    override = event(2.5, "override")
    second_end = event(2, "deactivated", on=None, subject="policy-to-standby")  # retired by the governor
    third = event(1, "activated")
    would = event(0.5, "would_activate", on=dry, subject="would-shed")
    lanes = views.timeline_lanes([p, dry], start, now)
    assert [(x.start, x.end, x.dry_run) for x in lanes[0].periods] == [
        (start, first_end, False), (second, second_end, False), (third, now, False)]
    assert [(m.at, m.kind) for m in lanes[0].marks] == [(override, "override")]
    assert [(x.start, x.end, x.dry_run) for x in lanes[1].periods] == [(would, now, True)]


def live(client: Client) -> dict[str, Any]:
    response = client.get("/governance/live.json")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    return response.json()  # type: ignore[no-any-return]


def last_value(series: list[list[float | None]]) -> float | None:
    return next((v for _t, v in reversed(series) if v is not None), None)


def traffic(seconds_ago: float | dt.datetime, tier: str, latency: float, count: int = 50) -> None:
    at = seconds_ago if isinstance(seconds_ago, dt.datetime) else timezone.now() - dt.timedelta(seconds=seconds_ago)
    LiveTraffic.objects.create(at=at, worker="w1", service="booking",
                               pool="primary", tier=tier, count=count, latency_sum_ms=latency * count,
                               latency_sketch=sketch_of(*[latency] * count))


def test_live_json_follows_the_live_rows_and_keeps_settled_buckets_right(staff: Client) -> None:
    empty = live(staff)
    assert empty["latency_p95_ms"] == {} and "No traffic" in empty["latency_svg"]
    traffic(2, "gold", 40.0)
    traffic(2, "", 90.0)
    LivePool.objects.create(at=timezone.now() - dt.timedelta(seconds=1), worker="w1", service="booking",
                            pool="primary", interval_ms=1000, busy_ms=2500, capacity=5)
    first = live(staff)
    assert set(first["latency_p95_ms"]) == {"gold", "no tier"}
    assert last_value(first["latency_p95_ms"]["gold"]) == pytest.approx(40, rel=0.01)
    assert len(first["latency_p95_ms"]["gold"]) == views.LIVE_SECONDS // views.BUCKET_SECONDS
    assert last_value(first["utilisation"]["booking/primary"]) == pytest.approx(0.5)
    assert 'data-series="gold"' in first["latency_svg"] and "40 ms" in first["latency_svg"]
    # a bucket two minutes ago: computed, then kept; a late row in it is still seen
    settled = timezone.now() - dt.timedelta(seconds=120)
    traffic(settled, "platinum", 20.0)
    assert last_value(live(staff)["latency_p95_ms"]["platinum"]) == pytest.approx(20, rel=0.01)
    assert views._epoch(settled) // views.BUCKET_SECONDS * views.BUCKET_SECONDS in views._settled
    traffic(settled, "platinum", 200.0, count=50)
    assert last_value(live(staff)["latency_p95_ms"]["platinum"]) == pytest.approx(200, rel=0.01)
    assert last_value(live(staff)["latency_p95_ms"]["platinum"]) == pytest.approx(200, rel=0.01)


def test_the_utilisation_chart_and_the_policy_signal_agree_and_a_backlog_reads_as_full_not_100_times_full(
        staff: Client) -> None:
    # A 10-second chart bucket of two workers of a 4-slot pool: w1 is past capacity for two intervals (a backlog
    # of 40 requests in flight, queued at the upstream), w2 is half busy throughout.
    bucket = int(timezone.now().timestamp()) // 10 * 10 - 60  # near now: the login session stays valid
    now = dt.datetime.fromtimestamp(bucket + 9.9, tz=dt.UTC)
    w1 = [2000.0, 40000.0, 40000.0, 3000.0, 1000.0]
    for i, busy in enumerate(w1):
        LivePool.objects.create(at=dt.datetime.fromtimestamp(bucket + 1 + 2 * i, tz=dt.UTC), worker="w1",
                                service="booking", pool="primary", interval_ms=2000, busy_ms=busy, capacity=4,
                                in_flight=40 if busy > 8000 else 1)
        LivePool.objects.create(at=dt.datetime.fromtimestamp(bucket + 1.5 + 2 * i, tz=dt.UTC), worker="w2",
                                service="booking", pool="primary", interval_ms=2000, busy_ms=4000.0, capacity=4)
    # each slot-interval counts at most full: w1 busy 2 + 8 + 8 + 3 + 1 = 22 s, w2 5 x 4 = 20 s, of 80 s
    expected = (22_000 + 20_000) / (10 * 2000 * 4)
    with time_machine.travel(now, tick=False):
        policy("to-standby", condition="pool(booking, primary).utilisation[10s] > 0.8")
        evaluate_policies(now)
        data = live(staff)
        page = staff.get("/governance/").content.decode()
    panel = Policy.objects.get(name="to-standby").state.values["signals"]["pool(booking, primary).utilisation[10s]"]
    chart = dict(data["utilisation"]["booking/primary"])[bucket + views.BUCKET_SECONDS / 2]
    assert panel == pytest.approx(expected, abs=1e-6)
    assert chart == pytest.approx(expected)
    # the chart's axis tops out at 100 % like the pool, instead of scaling to a backlog's 1,000 %
    axis = re.findall(r'class="label">([\d,]+%)</text>', data["utilisation_svg"])
    assert axis and max(int(v.rstrip("%").replace(",", "")) for v in axis) == 100
    assert "0.525" in row_of(page, "to-standby")


def test_the_live_charts_say_their_numbers_and_live_json_each_policys_status(staff: Client) -> None:
    """The charts' text alternative (their aria-label) carries the latest and highest values; live.json the
    policies' statuses, which the page announces when one changes."""
    empty = live(staff)
    assert 'aria-label="p95 latency per tier, last 15 minutes: No traffic' in empty["latency_svg"]
    traffic(2, "gold", 40.0)
    policy("to-standby")
    data = live(staff)
    assert 'aria-label="p95 latency per tier, last 15 minutes: gold 40 ms now, at most 40 ms."' in data["latency_svg"]
    assert data["policies"] == [{"name": "to-standby", "status": "idle", "status_label": views.STATUS_LABELS["idle"]}]
