"""`accord prometheus rules`: promtool accepts the rules of the demo's agreements, and fed one recorded series,
promtool's page and ticket alerts fire at exactly the minutes Accord's own governor opens its burn alerts.

promtool is Debian's `prometheus` package; without it these tests skip, unless ACCORD_REQUIRE_PROMTOOL=1 (CI).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import time_machine
import yaml
from django.core.management import CommandError, call_command

from accord.agreements.burn import burn_rules
from accord.governance import prometheus
from accord.lib.manifest import apply_manifest

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parents[2] / "agreements" / "fixtures" / "demo.yaml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
T0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)  # Prometheus's time 0 in the unit test is this instant
QUIET, BURST = 400, 30  # minutes: 100 requests a minute all good, then 100 a minute of which 10 are 5xx
PER_MINUTE, BAD_PER_MINUTE = 100, 10
LABELS = 'account="GLOBEX",tier="gold",service="booking",operation=""'


def promtool() -> str:
    if not os.path.exists(PROMTOOL):
        if os.environ.get("ACCORD_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"ACCORD_REQUIRE_PROMTOOL=1 and no promtool at {PROMTOOL} (Debian package prometheus)")
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return PROMTOOL


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_durations_are_written_as_prometheus_reads_them() -> None:
    assert [prometheus.duration(s) for s in (300, 1800, 3600, 5400, 86400 * 3, 280, 2592000)] == [
        "5m", "30m", "1h", "1h30m", "3d", "4m40s", "30d"]


def test_promtool_accepts_the_rules_of_the_demo_agreements(tmp_path: Path) -> None:
    from accord.agreements.models import Agreement, BusinessCalendar, Objective
    from accord.customers.models import Account

    apply_manifest(DEMO.read_text())
    # and an account's own agreement, whose external id holds what PromQL must escape
    acme = Account.objects.create(name="Acme", external_id='ACME "EU"\\1')
    own = Agreement.objects.create(name="acme-sla", account=acme, effective_from=dt.date(2020, 1, 1),
                                   calendar=BusinessCalendar.objects.first())
    Objective.objects.create(agreement=own, name="availability", kind="availability", target=100)
    out = StringIO()
    call_command("prometheus", "rules", "-o", str(tmp_path / "rules.yml"), stdout=out)
    assert "skipped" in out.getvalue()
    text = (tmp_path / "rules.yml").read_text()
    doc = yaml.safe_load(text)
    objectives = {(r["labels"]["accord_agreement"], r["labels"]["accord_objective"]) for g in doc["groups"]
                  for r in g["rules"] if r.get("record") == "accord_slo_info"}
    runtime = set(Objective.objects.filter(kind__in=["availability", "latency", "error_rate"])
                  .values_list("agreement__name", "name"))
    assert objectives == runtime and len(runtime) > 5
    support = Objective.objects.exclude(kind__in=["availability", "latency", "error_rate"])
    assert support.exists()
    for o in support.select_related("agreement"):
        assert f"#   {o.agreement.name}/{o.name} ({o.kind})" in text  # skipped, and said so
    assert 'account="ACME \\"EU\\"\\\\1"' in text  # the selector of acme-sla, quoted as PromQL reads it
    assert "(14.4 * 0.0)" in text  # a 100 % objective: any bad request burns its zero budget, as for the governor
    check = run_promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(r"SUCCESS: \d+ rules found", check.stdout), check.stdout
    # only the named agreement; an unknown one is refused
    call_command("prometheus", "rules", "--agreement", "gold-sla", "-o", str(tmp_path / "gold.yml"), stdout=out)
    gold = yaml.safe_load((tmp_path / "gold.yml").read_text())
    assert {r["labels"]["accord_agreement"] for g in gold["groups"] for r in g["rules"]} == {"gold-sla"}
    with pytest.raises(CommandError, match="no agreement named nope"):
        call_command("prometheus", "rules", "--agreement", "nope", stdout=out)


def _agreement() -> Any:
    from accord.agreements.models import Agreement, BusinessCalendar, Objective
    from accord.catalog.models import Service
    from accord.customers.models import Account, Tier

    gold = Tier.objects.create(name="gold", rank=2)
    Account.objects.create(name="Globex", external_id="GLOBEX", tier=gold)
    service = Service.objects.create(name="booking", base_path="/bookings")
    calendar = BusinessCalendar.objects.create(name="always", timezone="UTC")
    agreement = Agreement.objects.create(name="gold-sla", tier=gold, effective_from=dt.date(2020, 1, 1),
                                         calendar=calendar)
    return Objective.objects.create(agreement=agreement, name="availability", kind="availability", target=99.9,
                                    window="rolling", window_days=30, service=service)


def _write_minutes() -> None:
    """The same per-minute counts as the promtool series, as the gateway's flusher writes them."""
    from accord.gateway.flusher import write_rollups
    from accord.gateway.measure import Tally

    tallies = {}
    for minute in range(QUIET + BURST):
        start = int((T0 + dt.timedelta(minutes=minute)).timestamp())
        bad = BAD_PER_MINUTE if minute >= QUIET else 0
        for outcome, count, errors in (("ok", PER_MINUTE - bad, 0), ("server_error", bad, bad)):
            if count:
                tally = Tally()
                tally.count, tally.errors = count, errors
                for _ in range(count):
                    tally.sketch.add(20.0)
                tallies[(start, "GLOBEX", "booking", "", "primary", outcome, "gold")] = tally
    write_rollups(tallies, 60)


def _governor_minutes(minutes: range) -> dict[int, set[str]]:
    """At each minute, the severities of the burn alerts Accord's governor has open."""
    from accord.governance.engine import evaluate_budgets
    from accord.governance.models import BurnAlert

    open_at: dict[int, set[str]] = {}
    for minute in minutes:
        now = T0 + dt.timedelta(minutes=minute)
        with time_machine.travel(now, tick=False):
            evaluate_budgets(now)
        open_at[minute] = set(BurnAlert.objects.filter(closed_at__isnull=True).values_list("severity", flat=True))
    return open_at


def _series() -> list[dict[str, str]]:
    """Counters sampled every minute in promtool's expanding notation: at minute m, what minutes 0..m-1 counted."""
    good_quiet, good_burst = PER_MINUTE, PER_MINUTE - BAD_PER_MINUTE
    ok_end = good_quiet * QUIET
    return [
        {"series": f'accord_gateway_account_requests_total{{{LABELS},outcome="ok",code_class="other"}}',
         "values": f"0+{good_quiet}x{QUIET} {ok_end + good_burst}+{good_burst}x{BURST - 1}"},
        {"series": f'accord_gateway_account_requests_total{{{LABELS},outcome="server_error",code_class="5xx"}}',
         "values": f"0+0x{QUIET} {BAD_PER_MINUTE}+{BAD_PER_MINUTE}x{BURST - 1}"},
    ]


def _render(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m[1], ""), template)


def _unit_test(rules: dict[str, Any], expected: dict[int, set[str]]) -> dict[str, Any]:
    alerts = {r["labels"]["severity"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    series_labels = {"account": "GLOBEX", "accord_account": "GLOBEX"}
    tests = []
    for minute, severities in expected.items():
        exp = []
        for severity in sorted(severities):
            labels = {**series_labels, **alerts[severity]["labels"]}
            exp.append({"exp_labels": labels,
                        "exp_annotations": {k: _render(v, labels) for k, v in alerts[severity]["annotations"].items()}})
        for severity in alerts:
            tests.append({"eval_time": f"{minute}m", "alertname": "AccordErrorBudgetBurn",
                          "exp_alerts": [e for e in exp if e["exp_labels"]["severity"] == severity]})
    # the alert rule tests filter by name only: one entry per minute, with both severities' alerts
    merged: dict[str, dict[str, Any]] = {}
    for t in tests:
        merged.setdefault(t["eval_time"], {**t, "exp_alerts": []})["exp_alerts"] += t["exp_alerts"]
    # promtool evaluates the groups in map order unless told: the alerts would then read the recordings of the
    # minute before. (Prometheus runs each group on its own timer; an alert may lag its recordings by one interval.)
    return {"rule_files": ["rules.yml"], "evaluation_interval": "1m",
            "group_eval_order": [g["name"] for g in rules["groups"]],
            "tests": [{"interval": "1m", "input_series": _series(), "alert_rule_test": list(merged.values())}]}


def test_promtools_alerts_fire_when_the_governor_opens_its_burn_alerts(tmp_path: Path) -> None:
    promtool()
    _agreement()
    _write_minutes()
    assert [r[:2] for r in burn_rules(30)] == [("page", 14.4), ("page", 6.0), ("ticket", 1.0)]
    # From a few minutes before the burst to its end: both sides must agree at every minute.
    expected = _governor_minutes(range(QUIET - 3, QUIET + BURST + 1))
    firsts = {sev: min(m for m, s in expected.items() if sev in s) for sev in ("page", "ticket")}
    # 10 % errors against a 0.1 % budget: the ticket (1x over 3d and 6h) opens after 5 minutes of burst (5 x 10 bad of 40,500 > 0.1 %); the page
    # after 9 (14.4x over 1h and 5m: 9 x 10 bad of 6000 = 1.5 % > 1.44 %), well before 6x over 6h (22 minutes).
    assert firsts == {"ticket": QUIET + 5, "page": QUIET + 9}, expected
    assert not expected[QUIET + 8] >= {"page"}
    text = prometheus.rules(["gold-sla"]).text
    (tmp_path / "rules.yml").write_text(text)
    (tmp_path / "test.yml").write_text(yaml.safe_dump(_unit_test(yaml.safe_load(text), expected), sort_keys=False))
    run = run_promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    # It can fail: with another page factor than the governor's, promtool disagrees at the minute it fires.
    (tmp_path / "rules.yml").write_text(text.replace("(14.4 * ", "(20 * "))
    changed = run_promtool("test", "rules", "test.yml", cwd=tmp_path)
    first_page = f"time: {prometheus.duration((QUIET + 9) * 60)}, "  # promtool says "6h49m"
    assert changed.returncode != 0 and first_page in changed.stdout + changed.stderr, changed.stdout + changed.stderr
