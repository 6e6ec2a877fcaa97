"""`accord scenario rta --json` at a short duration: the real command, processes and sockets; it must pass its check."""

from __future__ import annotations

import json
import subprocess

import pytest

from accord.lib.testing import accord_command, subprocess_env


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_rta_scenario_passes_its_own_check() -> None:
    proc = subprocess.run([*accord_command(), "scenario", "rta", "--duration", "20", "--json"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["check"] == {"passed": True, "reasons": []}
    without, with_policy = report["runs"]
    assert (without["policy"], with_policy["policy"]) == (False, True)

    def row(run: dict, phase: str, tier: str) -> dict:
        return next(r for r in run["rows"] if r["phase"] == phase and r["tier"] == tier)

    # the peak hurts without the policy, platinum is spared with it
    assert row(without, "peak", "platinum")["p95_ms"] > row(with_policy, "peak", "platinum")["p95_ms"] * 3
    assert row(with_policy, "peak", "platinum")["slo_met"] and not row(without, "peak", "platinum")["slo_met"]
    assert all(r["requests"] > 0 for run in report["runs"] for r in run["rows"])
    assert without["switches"] == []
    on = [s for s in with_policy["switches"] if s["kind"] == "activated"]
    ramp_start = sum(p["seconds"] for p in report["phases"][:1])
    peak_start = sum(p["seconds"] for p in report["phases"][:2])
    assert ramp_start <= on[0]["at_s"] <= peak_start  # switched on during the ramp, before the queue built
    assert with_policy["standby_utilisation_off_peak"] < 0.05  # the standby pool idles off-peak
    assert "run 2: with the policy" in proc.stderr  # progress went to stderr, JSON alone on stdout


@pytest.mark.parametrize("args,message", [
    (["rta", "--duration", "5"], "--duration must be between 12 and 3600"),
    (["rta", "--duration", "99999"], "--duration must be between 12 and 3600"),
])
def test_bad_durations_are_refused(args: list[str], message: str) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=message):
        call_command("scenario", *args)
