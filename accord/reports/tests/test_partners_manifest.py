"""`accord apply` flags an availability promise the partners make impossible (a warning with its path), and
takes the credit schedule's minimum and claim window; bad schedules are refused with their path."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accord.agreements.models import CreditSchedule
from accord.lib.manifest.engine import apply_manifest, export_manifest

MANIFEST = """
calendars:
  - {name: always, timezone: UTC, hours: {mon: ["00:00-24:00"], tue: ["00:00-24:00"], wed: ["00:00-24:00"], thu: ["00:00-24:00"], fri: ["00:00-24:00"], sat: ["00:00-24:00"], sun: ["00:00-24:00"]}}
tiers:
  - {name: gold, rank: 1}
services:
  - {name: booking, base_path: /bookings}
  - {name: search, base_path: /search}
partners:
  - {name: gds, promised_availability: 99.9, services: [booking]}
  - {name: payments, promised_availability: 99.95, services: [booking]}
  - {name: maps, promised_availability: 99.0, services: [search]}
agreements:
  - name: gold-sla
    tier: gold
    effective_from: 2026-01-01
    calendar: always
    services: [booking, search]
    objectives:
      - {name: booking-up, kind: availability, target: TARGET, service: booking}
      - {name: all-up, kind: availability, target: 98.5}
    credits: {cap: 100, minimum: 25, claim_days: 45, bands: [{below: 99.9, credit: 10}, {below: 99.0, credit: 25}]}
"""


@pytest.mark.django_db
def test_a_promise_above_what_the_partners_allow_together_is_flagged_with_its_path(tmp_path: Path) -> None:
    # gds 99.9 % x payments 99.95 % = 99.850050 %: promising 99.9 % on booking cannot be kept
    path = tmp_path / "m.yaml"
    path.write_text(MANIFEST.replace("TARGET", "99.9"))
    out = io.StringIO()
    call_command("apply", "-f", str(path), stdout=out)
    warnings = [line for line in out.getvalue().splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: agreements[0].objectives[0].target: 99.9 % cannot be kept: the partners it "
                        "depends on (gds 99.9 %, payments 99.95 %) promise at most 99.8500 % together"]
    # 98.5 % over both services: 99.9 x 99.95 x 99.0 = 98.85 %, possible: no warning
    assert apply_manifest(textwrap.dedent(MANIFEST.replace("TARGET", "99.85"))).warnings == []


@pytest.mark.django_db
def test_minimum_and_claim_window_round_trip_and_bad_schedules_are_refused() -> None:
    apply_manifest(MANIFEST.replace("TARGET", "99.8"))
    schedule = CreditSchedule.objects.get()
    assert (schedule.minimum_amount, schedule.claim_days) == (25, 45)
    assert "minimum: 25" in export_manifest() and "claim_days: 45" in export_manifest()
    assert not apply_manifest(export_manifest()).changed
    for bad, message in (
        ("{below: 99.0, credit: 25}", "bands[1].credit: must be more than the band before"),
        ("{below: 99.95, credit: 25}", "bands[1].below: must be lower than the band before"),
    ):
        text = MANIFEST.replace("TARGET", "99.8").replace("{below: 99.0, credit: 25}", bad).replace(
            "{below: 99.9, credit: 10}", "{below: 99.9, credit: 30}" if "credit: 25}" in bad else
            "{below: 99.9, credit: 10}")
        with pytest.raises(CommandError):
            p = Path("/tmp") / "accord-reports-bad.yaml"
            p.write_text(text)
            call_command("apply", "-f", str(p), stdout=io.StringIO(), stderr=(err := io.StringIO()))
        assert f"agreements[0].credits.{message}" in err.getvalue()
    claim = MANIFEST.replace("TARGET", "99.8").replace("claim_days: 45", "claim_days: 0")
    with pytest.raises(Exception, match="claim_days"):
        apply_manifest(claim)
