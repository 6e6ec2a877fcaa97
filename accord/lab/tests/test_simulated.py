"""Simulated data: the scenario's rows are flagged, labelled wherever they are listed, given agreements that the
demo's budgets measure, and removed by `accord scenario clean` without touching a real row."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import models
from django.test import Client
from django.utils import timezone

from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.catalog.models import ApiCredential, Pool, Service
from accord.customers.models import Account, Contact, Tier
from accord.gateway.models import LivePool, Rollup
from accord.governance.models import AuditEvent, Policy
from accord.governance.tests.rollups import add_rollup
from accord.lab.scenario import POLICY, SERVICE, Config, set_up
from accord.lib.manifest import export_manifest
from accord.lib.testing import accord_command, subprocess_env

SIMULATED_MODELS: list[type[models.Model]] = [Account, Service, Agreement, BusinessCalendar, Tier, Policy]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def clean(*args: str) -> str:
    out = StringIO()
    call_command("scenario", "clean", *args, stdout=out)
    return out.getvalue()


def real_rows() -> dict[str, set[int]]:
    """The primary keys of every row that is not simulated, of the models scenarios write to or near."""
    rows: dict[str, set[int]] = {}
    for model in [*SIMULATED_MODELS, Contact, Objective, Pool, ApiCredential, Rollup, LivePool, AuditEvent, User]:
        qs = model._default_manager.all()
        if model in SIMULATED_MODELS:
            qs = qs.filter(simulated=False)
        elif model is Objective:
            qs = qs.filter(agreement__simulated=False)
        elif model is Pool:
            qs = qs.filter(service__simulated=False)
        elif model is ApiCredential:
            qs = qs.filter(account__simulated=False)
        elif model in (Rollup, LivePool):
            qs = qs.exclude(service=SERVICE)
        elif model is AuditEvent:
            qs = qs.exclude(subject=POLICY)
        rows[model.__name__] = set(qs.values_list("pk", flat=True))
    return rows


def simulated_left() -> dict[str, int]:
    left = {m.__name__: m._default_manager.filter(simulated=True).count() for m in SIMULATED_MODELS}
    left["rollups"] = Rollup.objects.filter(service=SERVICE).count()
    left["live pool rows"] = LivePool.objects.filter(service=SERVICE).count()
    left["audit events"] = AuditEvent.objects.filter(subject=POLICY).count()
    return {k: v for k, v in left.items() if v}


@pytest.mark.django_db
def test_the_scenario_refuses_a_real_row_with_one_of_its_names_and_changes_nothing() -> None:
    Account.objects.create(external_id="RTA-GOLD-2", name="A real customer who happens to have this id")
    with pytest.raises(RuntimeError, match="RTA-<TIER>-<n> exists and is not simulated"):
        set_up(Config(), 9101, 9102)
    assert not Service.objects.exists() and Account.objects.count() == 1 and not Policy.objects.exists()
    assert Account.objects.get().name == "A real customer who happens to have this id"


@pytest.mark.django_db
def test_clean_removes_the_scenarios_rows_and_measurements_and_keeps_what_a_real_row_needs() -> None:
    real_tier = Tier.objects.create(name="platinum", rank=1, min_revenue_12m=1_000_000)
    real_account = Account.objects.create(external_id="ACME", name="Acme", tier=real_tier)
    real_service = Service.objects.create(name="booking", base_path="/bookings")
    set_up(Config(accounts_per_tier=3), 9101, 9102)
    keys = set_up(Config(), 9101, 9102)
    assert {len(v) for v in keys.values()} == {2}
    # the third accounts of the earlier run keep no live key
    assert not ApiCredential.objects.filter(account__external_id__endswith="-3", revoked_at__isnull=True).exists()
    Account.objects.filter(external_id__endswith="-3").delete()
    assert Service.objects.get(name=SERVICE).simulated and Policy.objects.get(name=POLICY).simulated
    # tiers the database lacked are made up too; the one it had is used as it is
    assert set(Tier.objects.filter(simulated=True).values_list("name", flat=True)) == {"gold", "silver", "standard"}
    assert not Tier.objects.get(name="platinum").simulated
    sim = Account.objects.get(external_id="RTA-PLATINUM-1")
    assert sim.simulated and sim.tier == real_tier and "(simulated)" in sim.name
    agreement = Agreement.for_account(sim, timezone.localdate())
    assert agreement is not None and agreement.simulated and agreement.name == "rta-platinum-1-sla"
    assert sorted(agreement.objectives.values_list("name", "kind", "target")) == [
        ("availability", "availability", Decimal("99.0000")), ("latency-p95", "latency", Decimal("250.0000"))]
    now = timezone.now()
    add_rollup(now, account="RTA-PLATINUM-1", service=SERVICE, count=10, latencies=[50.0])
    add_rollup(now, account="ACME", service="booking", count=7, latencies=[20.0])
    LivePool.objects.create(at=now, worker="w", service=SERVICE, pool="primary", interval_ms=500, busy_ms=100,
                            capacity=4)
    AuditEvent.objects.create(kind=AuditEvent.Kind.ACTIVATED, subject=POLICY, actor="governor", reason="peak",
                              policy=Policy.objects.get(name=POLICY))
    # a real agreement on the simulated service keeps it (and its pools) in place; a real account keeps its tier
    calendar = BusinessCalendar.objects.create(name="office", timezone="UTC", hours={"mon": ["09:00-17:00"]})
    real_agreement = Agreement.objects.create(name="acme-sla", account=real_account, calendar=calendar,
                                              effective_from=timezone.localdate())
    real_agreement.services.set([real_service, Service.objects.get(name=SERVICE)])
    before = real_rows()

    preview = clean("--dry-run")
    assert "would remove 8 simulated accounts: RTA-PLATINUM-1, RTA-PLATINUM-2" in preview
    assert simulated_left()["Account"] == 8  # a dry run removes nothing

    out = clean()
    assert "removed 1 simulated policy: rta-platinum-standby" in out
    assert "removed 8 simulated agreements: rta-gold-1-sla" in out
    assert "removed 8 simulated accounts" in out and "removed 16 API keys of those accounts" in out  # 2 runs
    assert "removed 3 simulated tiers: gold, silver, standard" in out
    assert "removed 1 simulated calendar: rta-scenario-24x7" in out
    assert "kept simulated service rta-search: the agreement(s) acme-sla refer to it" in out
    assert simulated_left() == {"Service": 1, "rollups": 4, "live pool rows": 1}  # minute, hour, all-accounts
    assert real_rows() == before  # not one real row removed
    assert Account.objects.get(external_id="ACME").tier == real_tier

    # once the real agreement lets go of it, the service and its measurements go too
    real_agreement.services.set([real_service])
    out = clean()
    assert "removed 1 simulated service: rta-search" in out and "removed 4 rollup rows of those services" in out
    assert simulated_left() == {} and real_rows() == before
    assert clean() == "nothing simulated to remove\n"


def live_scenario(seconds_max: float) -> list[str]:
    """`accord scenario rta --live` until its first cycle ends (then SIGTERM, as the demo does); its output."""
    proc = subprocess.Popen([*accord_command(), "scenario", "rta", "--live", "--duration", "20"],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + seconds_max
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("cycle 1:") or time.monotonic() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
        lines += rest.splitlines(keepends=True)
    assert proc.returncode == 0, "".join(lines)
    return lines


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_demo_with_the_live_scenario_answers_are_we_meeting_our_slas(alice: User) -> None:
    call_command("seed-demo", "--accounts", "40", stdout=StringIO())
    before = real_rows()
    lines = live_scenario(300)
    assert any(line.startswith("cycle 1: platinum p95 at peak") for line in lines), "".join(lines)
    assert any("gateway --poll 0.1 s / 0.25 s" in line for line in lines)

    # accord slo status: measured attainment for the customers the scenario serves
    out = StringIO()
    call_command("slo", "status", stdout=out)
    status = out.getvalue()
    served = [line for line in status.splitlines() if line.startswith("rta-")]
    assert len(served) == 16, status  # 8 accounts, availability and p95 latency each
    for line in served:
        # valid, bad, excluded, budget used, left, status
        measured = re.search(r" ([\d,]+) +[\d,]+ +[\d,]+ +[\d.]+ % +-?[\d.]+ % +(met|MISSED)  "
                             r"\(simulated: a scenario's account\)$", line)
        assert measured and int(measured.group(1).replace(",", "")) > 0, line
    platinum = StringIO()
    call_command("slo", "status", "--account", "RTA-PLATINUM-1", stdout=platinum)
    assert "rta-platinum-1-sla/latency-p95" in platinum.getvalue()
    assert re.search(r"p95 ≤ 250 ms\s+p95 [\d.,]+ ms\s+[\d,]+ ", platinum.getvalue()), platinum.getvalue()

    # the governance page: the budgets of the scenario's agreements, measured and labelled; the demo's own too
    client = Client()
    client.force_login(alice)
    html = client.get("/governance/").content.decode()
    rows = re.findall(r'<tr data-objective="(rta-[^"]+)" data-level="(\w+)" data-simulated="true">(.*?)</tr>',
                      html, re.S)
    assert len(rows) == 16
    assert all(level != "none" and "no traffic" not in row and "simulated</span>" in row for _n, level, row in rows)
    assert re.search(r'<tr data-objective="platinum-sla/search-availability" data-level="none">', html)
    only_real = client.get("/governance/?simulated=false").content.decode()
    assert "rta-platinum-1-sla" not in only_real.split('id="slo"')[1].split("</section>")[0]
    assert re.search(r'<h3>rta-platinum-standby</h3> <span class="badge simulated"', html)

    # every staff page and API that lists them labels them, and filters them
    accounts = client.get("/accounts/?simulated=true").content.decode()
    assert accounts.count('<span class="badge simulated"') == 8 and "RTA platinum customer 1" in accounts
    assert "RTA platinum" not in client.get("/accounts/?simulated=false").content.decode()
    assert "simulated" in client.get(f"/accounts/{Account.objects.get(external_id='RTA-GOLD-1').pk}/").content.decode()
    for page, name in (("/agreements/", "RTA scenario: gold customer 1"), ("/services/", "RTA scenario: fare search")):
        listed = client.get(page + "?simulated=true").content.decode()
        assert name in listed and '<span class="badge simulated"' in listed
        assert name not in client.get(page + "?simulated=false").content.decode()
    dashboard = client.get("/").content.decode()
    assert "Not counted here: 8 simulated accounts, 8 agreements and 1 service" in dashboard
    assert re.search(r'id="account-count">40<', dashboard)
    api = client.get("/api/v1/accounts/?simulated=true").json()
    assert api["count"] == 8 and all(a["simulated"] for a in api["results"])
    assert client.get("/api/v1/accounts/?simulated=false").json()["count"] == 40
    assert client.get("/api/v1/services/?simulated=true").json()["results"][0]["name"] == SERVICE
    assert client.get("/api/v1/agreements/?simulated=true").json()["count"] == 8
    assert client.get("/api/v1/governance/policies/?simulated=true").json()["results"][0]["name"] == POLICY
    slo = client.get("/api/v1/governance/slo/?simulated=true&page_size=100").json()
    assert slo["count"] == 16 and all(r["simulated"] and r["requests"] > 0 for r in slo["results"])
    assert SERVICE not in export_manifest()  # the business's configuration holds none of it

    # the run changed none of the business's rows; one command removes the simulated ones and nothing else
    running = real_rows()
    business = [m.__name__ for m in (*SIMULATED_MODELS, Contact, Objective, Pool, ApiCredential)]
    assert {k: running[k] for k in business} == {k: before[k] for k in business}
    out = clean()
    assert "removed 8 simulated accounts" in out and "removed 1 simulated service: rta-search" in out
    assert simulated_left() == {} and real_rows() == running
    assert Account.objects.count() == 40
