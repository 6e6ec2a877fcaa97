"""Indicator maths: merged sketches against exact percentiles, availability, budgets and burn-rate windows."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from django.core import mail

from accord.agreements.burn import burn_rules
from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.catalog.models import Service
from accord.customers.models import Tier
from accord.gateway.measure import Sketch
from accord.gateway.models import LiveTraffic
from accord.governance import indicators
from accord.governance.engine import evaluate_budgets
from accord.governance.models import AuditEvent, BurnAlert, Notification
from accord.governance.notify import deliver_due

from .rollups import add_rollup

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def rollup(minutes_ago: float, count: int, errors: int = 0, tier: str = "platinum", latencies: list[float] | None = None,
           account: str = "ACME", worker: int = 0) -> None:
    add_rollup(NOW - dt.timedelta(minutes=minutes_ago), count=count, errors=errors, latencies=latencies or [10.0] * count,
               latency_sum=sum(latencies or []), account=account, tier=tier, pool=f"p{worker}")


def test_percentiles_of_merged_sketches_from_many_workers_are_within_one_percent_of_exact() -> None:
    rng = random.Random(7)
    everything: list[float] = []
    for worker in range(6):
        for minute in range(5):
            data = [rng.lognormvariate(4 + worker * 0.2, 0.8) for _ in range(400)]
            everything += data
            rollup(minute + 1, len(data), latencies=data, worker=worker, account=f"A{worker}")
    stats = indicators.rollup_stats(NOW - dt.timedelta(minutes=10), NOW, service="booking")
    assert stats.count == len(everything) == 12_000
    ordered = sorted(everything)
    for q in (0.5, 0.9, 0.95, 0.99):
        exact = ordered[round(q * (len(ordered) - 1))]
        got = stats.metric(f"p{round(q * 100)}_ms", 600)
        assert got is not None and abs(got - exact) <= 0.0101 * exact, (q, got, exact)


def test_availability_error_rate_and_rps_from_live_rows_of_two_workers() -> None:
    for worker, (count, errors) in enumerate([(300, 3), (100, 5)]):
        sketch = Sketch()
        for _ in range(count):
            sketch.add(20)
        LiveTraffic.objects.create(at=NOW - dt.timedelta(seconds=5), worker=f"w{worker}", service="booking",
                                   pool="primary", tier="gold", count=count, errors=errors, latency_sum_ms=20 * count,
                                   latency_sketch=sketch.encode())
    stats = indicators.live_traffic(NOW, 10, service="booking", tier="gold")
    assert stats.metric("availability", 10) == pytest.approx(1 - 8 / 400)
    assert stats.metric("error_rate", 10) == pytest.approx(8 / 400)
    assert stats.metric("rps", 10) == pytest.approx(40)
    assert stats.metric("mean_ms", 10) == pytest.approx(20)
    assert indicators.live_traffic(NOW, 10, service="booking", tier="silver").metric("availability", 10) is None
    assert indicators.live_traffic(NOW, 3, service="booking").count == 0  # the rows are 5 s old


@pytest.fixture
def objective() -> Objective:
    calendar = BusinessCalendar.objects.create(name="always", timezone="UTC", hours={d: ["00:00-24:00"] for d in
                                               ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    tier = Tier.objects.create(name="platinum", rank=1)
    service = Service.objects.create(name="booking", base_path="/bookings")
    agreement = Agreement.objects.create(name="platinum-sla", tier=tier, calendar=calendar,
                                         effective_from=dt.date(2026, 1, 1))
    return Objective.objects.create(agreement=agreement, name="availability", kind="availability",
                                    target=Decimal("99.9"), window="rolling", window_days=30, service=service)


def test_the_budget_of_an_availability_objective(objective: Objective) -> None:
    rollup(60, 10_000, errors=4)
    rollup(30, 10_000, errors=6)
    rollup(30, 5_000, errors=500, tier="bronze")  # another tier: not this agreement's traffic
    status = indicators.budget_status(objective, NOW)
    assert status.requests == status.valid == 20_000 and status.bad == 10
    assert status.sli == pytest.approx(99.95)
    assert status.met is True
    assert status.consumed == pytest.approx((10 / 20_000) / 0.001)  # half the budget
    assert status.remaining == pytest.approx(0.5)


def test_a_latency_objective_counts_requests_slower_than_its_target(objective: Objective) -> None:
    objective.kind, objective.target, objective.percentile = "latency", Decimal(300), Decimal(95)
    objective.save()
    rollup(10, 100, latencies=[100.0] * 90 + [500.0] * 10)
    status = indicators.budget_status(objective, NOW)
    assert status.bad == 10 and status.met is False
    assert status.consumed == pytest.approx(0.10 / 0.05)


def test_burn_rates_use_their_windows_and_alerts_need_both_long_and_short(objective: Objective,
                                                                             settings: object) -> None:
    # an hour ago: healthy traffic; the last 5 minutes: 2% errors, i.e. 20x the 0.1% budget
    for minute in range(6, 60):
        rollup(minute, 1000)
    for minute in range(0, 5):
        rollup(minute + 0.5, 1000, errors=20)
    short = indicators.burn_rate(objective, NOW, 300)
    long = indicators.burn_rate(objective, NOW, 3600)
    assert short == pytest.approx(20.0)
    assert long == pytest.approx((100 / 59_000) / 0.001)  # 1.7x: the long window is not burning fast
    first = evaluate_budgets(NOW)  # only the slow 'ticket' rule (1x over 3d and 6h) fires
    assert [(t.kind, "ticket 1x 3d/6h" in str(BurnAlert.objects.values_list("rule", flat=True)[0])) for t in first] \
        == [("burn_alert", True)]
    # keep burning for the whole hour: both windows above 14.4x -> one page, raised once
    for minute in range(5, 60):
        rollup(minute + 0.5, 1000, errors=40)
    settings.ACCORD_ALERT_EMAILS = ["oncall@example.com"]  # type: ignore[attr-defined]
    fired = evaluate_budgets(NOW)
    assert [t.kind for t in fired] == ["burn_alert", "burn_alert"]  # 14.4x 1h/5m and 6x 6h/30m
    assert evaluate_budgets(NOW) == []
    assert BurnAlert.objects.filter(closed_at__isnull=True).count() == 3
    assert Notification.objects.count() == 2, list(AuditEvent.objects.values_list("kind", "reason"))  # the first alert had no recipients configured yet
    assert deliver_due()["sent"] == 2 and "platinum-sla/availability" in mail.outbox[0].subject
    # two hours later nothing new arrived: the 5m and 30m windows are empty, so the pages resolve; the ticket stays
    resolved = evaluate_budgets(NOW + dt.timedelta(hours=2))
    assert [t.kind for t in resolved] == ["burn_resolved", "burn_resolved"]
    assert AuditEvent.objects.filter(kind="burn_resolved").count() == 2


def test_burn_windows_scale_with_the_objective_window() -> None:
    rules = burn_rules(7)
    assert rules[0] == ("page", 14.4, pytest.approx(3600 * 7 / 30), pytest.approx(300 * 7 / 30))
    assert indicators.rule_label(burn_rules(30)[2]) == "ticket 1x 3d/6h"
