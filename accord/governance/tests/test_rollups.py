"""Indicators over hour and all-accounts rollups: the same answers as every minute row of every account, cheaper.

The flusher writes each measured key into its minute row, its account's hour row and the all-accounts minute
and hour rows; `rollup_stats` reads the coarsest rows that are exact. These tests write random traffic through
the real flusher (in several flushes, also from two writers at once) and compare every answer with the
computation over the per-account minute rows alone; they also check that availability never touches a sketch,
that the rollup API still lists per-account minute rows, and `accord rollups prune`.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.catalog.models import Service
from accord.customers.models import Tier
from accord.gateway import measure
from accord.gateway.flusher import write_rollups
from accord.gateway.measure import Accumulator, Sketch
from accord.gateway.models import ALL_ACCOUNTS, LiveTraffic, Rollup
from accord.governance import indicators

from .rollups import add_rollup

H0 = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)
HOURS = 5
ACCOUNTS = ["ACME", "GLOBEX", "INITECH", "", "anonymous"]  # '' and 'anonymous' are accounts too, for rollups
TIERS = ["platinum", "gold", ""]
SERVICES = ["booking", "search"]


def random_traffic(rng: random.Random, flushes: int, per_flush: int) -> None:
    """Requests at random times over HOURS hours (plus a minute before and after), in flushes of random order."""
    base = H0.timestamp()
    for _ in range(flushes):
        acc = Accumulator()
        for _ in range(per_flush):
            at = base + rng.uniform(-60, HOURS * 3600 + 60)
            status = rng.choice([200, 200, 200, 404, 503])
            outcome = "ok" if status < 400 else "client_error" if status < 500 else "server_error"
            acc.record(at, rng.choice(ACCOUNTS), rng.choice(SERVICES), rng.choice(["read", "write"]),
                       rng.choice(["primary", "standby"]), outcome, status, rng.randrange(100), rng.randrange(1000),
                       rng.lognormvariate(3, 1.2) if rng.random() > 0.02 else 0.0, tier=rng.choice(TIERS))
        write_rollups(acc.take(), 60)


def minute_rows_only(start: dt.datetime, end: dt.datetime, **filters: str | None) -> tuple[int, int, float, Sketch]:
    """The computation before hour rows: every per-account minute row whose window starts in [start, end)."""
    rows = Rollup.objects.per_account_minutes().filter(window_start__gte=start, window_start__lt=end,
                                                       **{k: v for k, v in filters.items() if v})
    count = errors = 0
    latency = 0.0
    sketch = Sketch()
    for row in rows:
        count += row.count
        errors += row.errors
        latency += row.latency_sum_ms
        sketch.merge(Sketch.decode(row.latency_sketch))
    return count, errors, latency, sketch


def random_moment(rng: random.Random) -> dt.datetime:
    hours = rng.randrange(-1, HOURS + 2)
    kind = rng.randrange(4)
    if kind == 0:  # on the hour
        return H0 + dt.timedelta(hours=hours)
    if kind == 1:  # on a minute
        return H0 + dt.timedelta(hours=hours, minutes=rng.randrange(60))
    if kind == 2:  # a minute and some seconds
        return H0 + dt.timedelta(hours=hours, minutes=rng.randrange(60), seconds=rng.randrange(1, 60))
    return H0 + dt.timedelta(seconds=rng.uniform(-120, (HOURS + 1) * 3600))  # anywhere, microseconds too


def random_filters(rng: random.Random) -> dict[str, str | None]:
    filters: dict[str, str | None] = {}
    if rng.random() < 0.4:
        filters["account"] = rng.choice(ACCOUNTS[:3])
    if rng.random() < 0.5:
        filters["tier"] = rng.choice(TIERS[:2])
    if rng.random() < 0.5:
        filters["service"] = rng.choice(SERVICES)
    if rng.random() < 0.2:
        filters["operation"] = "read"
    if rng.random() < 0.2:
        filters["pool"] = "standby"
    return filters


def check_random_windows(rng: random.Random, n: int) -> int:
    """Compare rollup_stats with the minute rows over n random windows; returns how many read hour rows."""
    used_hours = 0
    windows = [(H0, H0 + dt.timedelta(hours=HOURS)), (H0 - dt.timedelta(minutes=1), H0 + dt.timedelta(days=1))]
    while len(windows) < n:
        a, b = random_moment(rng), random_moment(rng)
        if a != b:
            windows.append((min(a, b), max(a, b)))
    for i, (start, end) in enumerate(windows):
        filters = random_filters(rng) if i >= 2 else {}
        stats = indicators.rollup_stats(start, end, **filters)
        count, errors, latency, sketch = minute_rows_only(start, end, **filters)
        where = (start, end, filters)
        assert (stats.count, stats.errors) == (count, errors), where
        assert stats.latency_sum == pytest.approx(latency, rel=1e-9, abs=1e-6), where
        assert stats.sketch == sketch, where  # bucket for bucket
        assert stats.metric("availability", 1) == ((count - errors) / count if count else None)  # no noise
        eager = indicators.rollup_stats(start, end, sketch=True, **filters)  # counts and sketches in one read
        assert (eager.count, eager.errors, eager.sketch) == (count, errors, sketch), where
        used_hours += any(seconds == 3600 for seconds, _low, _high in indicators.rollup_windows(start, end))
    return used_hours


@pytest.mark.django_db
def test_indicators_over_hour_and_all_accounts_rows_equal_the_minute_rows_of_every_account() -> None:
    rng = random.Random(20261123)
    random_traffic(rng, flushes=6, per_flush=400)
    assert Rollup.objects.filter(account=ALL_ACCOUNTS, window_seconds=3600).exists()
    assert check_random_windows(rng, 150) > 40
    # a whole-hours window without filters reads a handful of all-accounts hour rows, not every minute row
    (whole,) = indicators.rollup_rows(H0, H0 + dt.timedelta(hours=HOURS))
    assert set(whole.values_list("window_seconds", "account").distinct()) == {(3600, ALL_ACCOUNTS)}
    assert whole.count() * 5 < Rollup.objects.per_account_minutes().count()
    # a ragged window reads the minutes of its ends and the hours between
    assert [(s, f"{a:%H:%M}", f"{b:%H:%M}") for s, a, b in indicators.rollup_windows(
        H0 + dt.timedelta(minutes=10, seconds=1), H0 + dt.timedelta(hours=3, minutes=5))] == [
        (60, "06:10", "07:00"), (3600, "07:00", "09:00"), (60, "09:00", "09:05")]
    assert indicators.rollup_windows(H0 + dt.timedelta(seconds=1), H0 + dt.timedelta(seconds=59)) == []


@pytest.mark.django_db(transaction=True)
def test_two_writers_at_once_still_add_up_exactly() -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def writer(seed: int) -> None:
        try:
            barrier.wait(30)
            random_traffic(random.Random(seed), flushes=4, per_flush=250)
        except BaseException as e:
            errors.append(e)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    assert sum(Rollup.objects.per_account_minutes().values_list("count", flat=True)) == 2 * 4 * 250
    assert check_random_windows(random.Random(3), 60) > 10


# -- no sketch unless a percentile is asked for ---------------------------------------------------------------


@pytest.fixture
def objectives() -> dict[str, Objective]:
    calendar = BusinessCalendar.objects.create(name="always", timezone="UTC", hours={
        d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    tier = Tier.objects.create(name="platinum", rank=1)
    service = Service.objects.create(name="booking", base_path="/bookings")
    agreement = Agreement.objects.create(name="platinum-sla", tier=tier, calendar=calendar,
                                         effective_from=dt.date(2026, 1, 1))
    return {
        "availability": Objective.objects.create(agreement=agreement, name="availability", kind="availability",
                                                 target=Decimal("99.9"), window="rolling", window_days=30,
                                                 service=service),
        "errors": Objective.objects.create(agreement=agreement, name="errors", kind="error_rate", target=Decimal(1),
                                           window="rolling", window_days=30, service=service),
        "p95": Objective.objects.create(agreement=agreement, name="p95", kind="latency", target=Decimal(300),
                                        percentile=Decimal(95), window="rolling", window_days=30, service=service),
    }


@pytest.mark.django_db
def test_availability_error_rates_and_counts_never_decode_a_sketch(objectives: dict[str, Objective],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    now = H0 + dt.timedelta(days=2, minutes=17, seconds=30)
    for hours_ago in (1, 30, 47):
        add_rollup(now - dt.timedelta(hours=hours_ago), count=1000, errors=3, latencies=[100.0] * 990 + [900.0] * 10)
    LiveTraffic.objects.create(at=now - dt.timedelta(seconds=5), worker="w1", service="booking", pool="primary",
                               tier="platinum", count=10, errors=1, latency_sum_ms=100,
                               latency_sketch=Sketch().encode())
    decoded: list[int] = []
    real = measure._decode_bins

    def forbidden(data: bytes | memoryview) -> Any:
        decoded.append(len(data))
        raise AssertionError("a sketch was decoded for a query that needs none")

    monkeypatch.setattr(measure, "_decode_bins", forbidden)
    with CaptureQueriesContext(connection) as queries:
        stats = indicators.rollup_stats(now - dt.timedelta(days=30), now, tier="platinum")
        assert (stats.count, stats.errors) == (3000, 9)
        assert stats.metric("availability", 1) == pytest.approx(1 - 9 / 3000)
        assert stats.metric("error_rate", 1) == pytest.approx(9 / 3000)
        assert stats.metric("rps", 3600) == pytest.approx(3000 / 3600) and stats.metric("mean_ms", 1) == 108.0
        for name in ("availability", "errors"):
            status = indicators.budget_status(objectives[name], now)
            assert status.valid == 3000 and status.bad == 9
        assert indicators.burn_rate(objectives["availability"], now, 3 * 86400) == pytest.approx(3.0)
        assert indicators.live_traffic(now, 30, service="booking").metric("availability", 30) == pytest.approx(0.9)
    assert decoded == []
    assert not [q["sql"] for q in queries.captured_queries if "latency_sketch" in q["sql"]]
    # a percentile, or requests over a latency target, merges the sketches: once
    monkeypatch.setattr(measure, "_decode_bins", lambda data: (decoded.append(len(data)), real(data))[1])
    status = indicators.budget_status(objectives["p95"], now)
    assert status.bad == 30 and status.sli == pytest.approx(100, rel=0.01)
    assert 0 < len(decoded) <= 3


# -- the rollup API -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_rollup_api_lists_per_account_minute_rows_unless_asked_for_hours(api: APIClient) -> None:
    now = timezone.now().replace(minute=30)
    add_rollup(now - dt.timedelta(minutes=1), account="ACME", count=10, latencies=[5.0] * 10)
    add_rollup(now - dt.timedelta(minutes=2), account="ACME", count=5, latencies=[5.0] * 5)
    add_rollup(now - dt.timedelta(minutes=2), account="GLOBEX", tier="gold", count=1, latencies=[7.0])
    assert Rollup.objects.count() == 3 + 2 + 3 + 2  # minute rows, hour rows, all-accounts minute and hour rows
    url = "/api/v1/gateway/rollups/"
    rows = api.get(url).json()["results"]
    assert sorted((r["account"], r["window_seconds"], r["count"]) for r in rows) == [
        ("ACME", 60, 5), ("ACME", 60, 10), ("GLOBEX", 60, 1)]
    hours = api.get(url, {"resolution": "hour"}).json()["results"]
    assert sorted((r["account"], r["window_seconds"], r["count"]) for r in hours) == [("ACME", 3600, 15),
                                                                                     ("GLOBEX", 3600, 1)]
    assert api.get(url, {"resolution": "hour", "tier": "gold"}).json()["count"] == 1
    assert api.get(url, {"account": ALL_ACCOUNTS}).json()["count"] == 0
    hidden = Rollup.objects.get(account=ALL_ACCOUNTS, window_seconds=60, window_start=rows[0]["window_start"])
    assert api.get(f"{url}{hidden.pk}/").status_code == 404
    bad = api.get(url, {"resolution": "second"})
    assert bad.status_code == 400 and "resolution" in bad.json()["error"]["fields"]


# -- retention ------------------------------------------------------------------------------------------------


def prune(*args: str) -> str:
    out = StringIO()
    call_command("rollups", "prune", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_prune_deletes_old_minute_rows_sooner_than_old_hour_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    now = timezone.now()
    for days in (1, 13, 20, 100, 500):
        add_rollup(now - dt.timedelta(days=days), count=days, latencies=[1.0])

    def ages(**filters: Any) -> list[int]:
        return sorted(Rollup.objects.filter(**filters).values_list("count", flat=True))

    before = Rollup.objects.count()
    dry = prune("--dry-run")
    assert "would delete 6 minute rows" in dry and "2 hour rows" in dry and "nothing deleted" in dry
    assert Rollup.objects.count() == before
    out = prune("--batch", "4")  # the defaults: minute rows 14 days, hour rows 400 days
    assert "deleted 4 of 6" in out and "deleted 6 minute rows" in out and "2 hour rows" in out, out
    assert ages(window_seconds=60, account="ACME") == [1, 13]
    assert ages(window_seconds=60, account=ALL_ACCOUNTS) == [1, 13]
    assert ages(window_seconds=3600, account="ACME") == [1, 13, 20, 100]
    assert ages(window_seconds=3600, account=ALL_ACCOUNTS) == [1, 13, 20, 100]
    monkeypatch.setenv("ACCORD_ROLLUP_KEEP_MINUTES", "2d")
    prune("--hours-older-than", "50d")
    assert ages(window_seconds=60) == [1, 1] and ages(window_seconds=3600) == [1, 1, 13, 13, 20, 20]
    assert "deleted 0 minute rows" in prune()  # nothing left to do


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (["--minutes-older-than", "14"], "'14' is not a duration"),
    (["--minutes-older-than", "two weeks"], "--minutes-older-than: 'two weeks' is not a duration like 90m"),
    (["--hours-older-than", "0d"], "--hours-older-than: '0d' is not a duration"),
    (["--hours-older-than=-3d"], "is not a duration"),
    (["--minutes-older-than", "30d", "--hours-older-than", "7d"], "must be at least --minutes-older-than"),
])
def test_prune_refuses_bad_durations_and_deletes_nothing(args: list[str], message: str) -> None:
    add_rollup(timezone.now() - dt.timedelta(days=900), count=1, latencies=[1.0])
    with pytest.raises(CommandError, match=message):
        prune(*args)
    assert Rollup.objects.count() == 4
