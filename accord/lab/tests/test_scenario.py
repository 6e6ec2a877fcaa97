"""`accord scenario rta` at short durations: the real command, processes and sockets.

A normal run must pass its check, which covers both halves of the seeds' point: platinum goes to the standby
pool during the peak, and comes back after it, the standby pool then serving it nothing; the reroute is enforced
within 5 s of the condition. It must pass on Accord's gateway and on HAProxy (`--data-plane haproxy`, issue 21).
A policy whose clear condition never holds must fail the check (exit 1).
"""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from accord.haproxy.run import find_haproxy
from accord.haproxy.tests.conftest import haproxy_bin
from accord.lib.testing import accord_command, subprocess_env

__all__ = ["haproxy_bin"]  # the fixture: skips without HAProxy, fails then with ACCORD_REQUIRE_HAPROXY=1

# Long enough that the policy switches off well inside the 'after' phase even on a busy CI machine. What the
# phase must hold, in seconds: the peak's backlog draining (about 2 s on idle cores, over 3.5 s seen in CI), the
# 2 s utilisation window falling under the clear threshold, the 2 s clear hold, the governor's and the gateway's
# polls, then the 1 s switch grace and some platinum requests after it. At 24 s (9.6 s of 'after') CI once saw
# the switch-off 0.4 s before the end; at 36 s the phase is 14.4 s.
DURATION = "36"


def scenario(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*accord_command(), "scenario", "rta", *args], env=subprocess_env(**(env or {})),
                          capture_output=True, text=True, timeout=600)


def row(run: dict[str, Any], phase: str, tier: str) -> dict[str, Any]:
    return next(r for r in run["rows"] if r["phase"] == phase and r["tier"] == tier)


def passes(proc: subprocess.CompletedProcess[str], data_plane: str) -> dict[str, Any]:
    """What every data plane must show: the check passed, platinum spared at the peak, the policy on once in the
    ramp and off once after the peak, platinum back on the primary pool after it, a reaction under 5 s."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["check"] == {"passed": True, "reasons": []}
    assert report["data_plane"] == data_plane
    without, with_policy = report["runs"]
    assert (without["policy"], with_policy["policy"]) == (False, True)

    # the peak hurts without the policy, platinum is spared with it
    assert row(without, "peak", "platinum")["p95_ms"] > row(with_policy, "peak", "platinum")["p95_ms"] * 3
    assert row(with_policy, "peak", "platinum")["slo_met"] and not row(without, "peak", "platinum")["slo_met"]
    assert all(r["requests"] > 0 for run in report["runs"] for r in run["rows"])
    assert without["switches"] == []
    ends = {}
    t = 0.0
    for phase in report["phases"]:
        t += phase["seconds"]
        ends[phase["name"]] = t
    on = [s for s in with_policy["switches"] if s["kind"] == "activated"]
    off = [s for s in with_policy["switches"] if s["kind"] == "deactivated"]
    assert len(on) == 1 and len(off) == 1  # on once, off once: no flapping
    assert ends["normal"] <= on[0]["at_s"] <= ends["ramp"]  # switched on during the ramp, before the queue built
    assert ends["peak"] < off[0]["at_s"] < ends["after"]  # ... and off within the phase after the peak

    use = with_policy["platinum_on_standby"]
    assert use["switch_off"] == {"at_s": off[0]["at_s"],
                                 "after_peak_s": pytest.approx(off[0]["at_s"] - ends["peak"], abs=0.01)}
    assert use["by_phase"]["normal"]["on_standby"] == 0  # the standby pool idles before the peak
    assert use["by_phase"]["peak"]["share"] > 0.95  # ... carries platinum through it
    after, after_off = use["after_phase"], use["after_switch_off"]
    assert 0 < after["on_standby"] < after["requests"]  # ... while the backlog drains, and no longer
    assert after_off["requests"] > 0 and after_off["on_standby"] == 0 and after_off["share"] == 0
    assert use["last_on_standby_s"] < off[0]["at_s"] + use["switch_grace_s"]
    assert all(v["on_standby"] == 0 for v in without["platinum_on_standby"]["by_phase"].values())

    # condition -> enforced: the data plane's own signal crossed the threshold during the ramp, the governor
    # switched on after it, and the first platinum request to the standby pool was sent after that, within 5 s
    reaction = with_policy["reaction"]
    assert "reaction" not in without
    assert ends["normal"] - 1 <= reaction["condition_s"] <= reaction["activated_s"] <= reaction["enforced_s"]
    assert reaction["activated_s"] == on[0]["at_s"]
    assert 0 < reaction["reaction_s"] < 5.0 and reaction["limit_s"] == 5.0
    assert reaction["reaction_s"] == pytest.approx(reaction["condition_to_activated_s"]
                                                   + reaction["activated_to_enforced_s"], abs=0.002)
    return report


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_rta_scenario_passes_its_own_check_and_platinum_comes_back_after_the_peak() -> None:
    proc = scenario("--duration", DURATION, "--json")
    report = passes(proc, "accord")
    # the scenario's short intervals are stated next to production's
    timings = {t["name"]: (t["seconds"], t["production_seconds"]) for t in report["timings"]}
    assert timings == {"gateway --live": (0.5, 1.0), "gateway --poll": (0.1, 0.25),
                       "governor --interval": (0.5, 1.0), "gateway --flush": (2.0, 2.0)}
    assert "run 2: with the policy" in proc.stderr  # progress went to stderr, JSON alone on stdout


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_rta_scenario_passes_the_same_check_on_haproxy(haproxy_bin: str) -> None:
    proc = scenario("--duration", DURATION, "--json", "--data-plane", "haproxy", env={"ACCORD_HAPROXY": haproxy_bin})
    report = passes(proc, "haproxy")
    # HAProxy's own intervals (the runner's map sync and pool signals, the collector's) next to production's
    timings = {t["name"]: (t["seconds"], t["production_seconds"]) for t in report["timings"]}
    assert timings == {"haproxy run --live": (0.5, 1.0), "haproxy run --poll": (0.1, 0.25),
                       "collector --live": (0.5, 1.0), "governor --interval": (0.5, 1.0),
                       "collector --flush": (2.0, 2.0)}
    assert "HAProxy (" in proc.stderr and "collector on :" in proc.stderr


def test_haproxy_is_found_on_path_then_in_sbin_or_where_accord_haproxy_says(tmp_path: Path) -> None:
    empty, bin_dir, sbin = tmp_path / "empty", tmp_path / "bin", tmp_path / "sbin"
    for d in (empty, bin_dir, sbin):
        d.mkdir()
    assert find_haproxy({"PATH": str(empty)}, sbin) == (None, f"`haproxy` on PATH or in {sbin}")
    for d in (bin_dir, sbin):
        (d / "haproxy").write_text("#!/bin/sh\n")
    assert find_haproxy({"PATH": str(bin_dir)}, sbin)[0] is None  # not executable: not HAProxy
    (sbin / "haproxy").chmod(stat.S_IRWXU)
    assert find_haproxy({"PATH": str(empty)}, sbin)[0] == str(sbin / "haproxy")
    (bin_dir / "haproxy").chmod(stat.S_IRWXU)
    assert find_haproxy({"PATH": str(bin_dir)}, sbin)[0] == str(bin_dir / "haproxy")  # PATH first
    named = {"PATH": str(bin_dir), "ACCORD_HAPROXY": str(tmp_path / "nowhere")}
    assert find_haproxy(named, sbin) == (None, f"ACCORD_HAPROXY={tmp_path / 'nowhere'}")  # no fallback then


@pytest.mark.django_db(transaction=True)
def test_without_haproxy_the_haproxy_data_plane_exits_2_saying_what_to_install(tmp_path: Path) -> None:
    from accord.catalog.models import Service

    missing = tmp_path / "no-haproxy-here"
    proc = scenario("--duration", "20", "--data-plane", "haproxy", env={"ACCORD_HAPROXY": str(missing)})
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (f"--data-plane haproxy needs HAProxy, and there is none (ACCORD_HAPROXY={missing}): install it "
            "(apt-get install haproxy") in proc.stderr
    assert not Service.objects.filter(name="rta-search").exists()  # nothing was set up


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_policy_that_never_switches_off_fails_the_check() -> None:
    proc = scenario("--duration", "20", "--clear-below", "0")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ("check: FAILED: platinum was still on the standby pool when the run ended: the policy did not switch "
            "off after the peak") in proc.stdout
    assert "reroute still on when the traffic ended" in proc.stdout
    assert "gateway --poll 0.1 s / 0.25 s" in proc.stdout  # the timings are in the text report too


@pytest.mark.parametrize("args,message", [
    (["rta", "--duration", "5"], "--duration must be between 20 and 3600 seconds"),
    (["rta", "--duration", "99999"], "--duration must be between 20 and 3600 seconds"),
    (["rta", "--clear-below", "0.8"], "--clear-below must be from 0 to below the switch-on threshold 0.7"),
    (["rta", "--clear-below", "-1"], "--clear-below must be from 0"),
    (["rta", "--data-plane", "nginx"], "invalid choice: 'nginx'"),
])
def test_bad_options_are_refused(args: list[str], message: str) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=message):
        call_command("scenario", *args)


def test_the_reaction_runs_from_the_onset_of_the_condition_that_switched_the_policy_on_to_the_first_standby_answer(
        ) -> None:
    from accord.lab.loadgen import Sample
    from accord.lab.scenario import reaction, utilisation_series

    # one worker's rows every 0.5 s on a pool of 4: 1, 3.6 (0.9) busy ... as (at, busy_ms, interval_ms, capacity)
    busy = [1.0, 1.0, 3.6, 1.0, 1.0, 1.0, 1.0, 3.8, 3.8, 3.8, 3.8, 3.8]
    rows = [(0.5 * (i + 1), b * 500, 500.0, 4) for i, b in enumerate(busy)]
    series = utilisation_series(rows)
    assert series[0] == (0.5, 0.25, 0.5)
    # over 2 s (the 4 rows up to each time): a spike alone stays under 0.7 (0.47 at 1.5 s), as do 2 busy rows of 4
    over = sorted({round(at, 3) for at, value, _interval in series if value > 0.7 and at <= 6.0})
    assert over == [5.0, 5.5, 6.0]
    switches = [{"at_s": 5.2, "kind": "activated", "reason": ""}, {"at_s": 9.0, "kind": "deactivated", "reason": ""}]
    samples = [Sample("ramp", "gold", 0, "/", 5.3, sent=5.3, header="standby@x"),  # not platinum
               Sample("ramp", "platinum", 0, "/", 5.25, sent=5.26, header="primary@x"),
               Sample("ramp", "platinum", 0, "/", 5.6, sent=5.61, header="standby@x"),
               Sample("ramp", "platinum", 0, "/", 5.4, sent=5.41, header="standby@x")]
    react = reaction(series, 0.7, switches, samples)
    # the condition at the earliest: the start of the interval whose row first showed it (5.0 - 0.5)
    assert (react.condition_s, react.activated_s, react.enforced_s) == (4.5, 5.2, 5.41)
    assert react.as_dict() == {"condition_s": 4.5, "activated_s": 5.2, "enforced_s": 5.41, "reaction_s": 0.91,
                               "condition_to_activated_s": 0.7, "activated_to_enforced_s": 0.21, "limit_s": 5.0}
    # a window that goes over when an idle row leaves it, not when a row arrives: the governor reads it so at any
    # moment, not only at the rows' times
    late = utilisation_series([(1.0, 0, 500.0, 4), (1.5, 2000, 500.0, 4), (2.0, 2000, 500.0, 4),
                               (2.5, 1600, 500.0, 4), (3.4, 1600, 500.0, 4)])
    assert next(round(t, 3) for t, value, _i in late if value > 0.7) == 3.0
    assert reaction(late, 0.7, [{"at_s": 3.2, "kind": "activated", "reason": ""}], samples).condition_s == \
        pytest.approx(2.5)  # from the start of the latest row's interval: at the earliest
    # no activation: nothing to measure; no platinum on standby: not enforced
    assert reaction(series, 0.7, [], samples).condition_s is None
    assert reaction(series, 0.7, switches, samples[:2]).enforced_s is None
