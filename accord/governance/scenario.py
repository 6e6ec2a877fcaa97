"""`accord scenario rta`: the seeds' demo, run for real on loopback, once without the policy and once with it.

A fare-search service has a primary pool (4 simulated servers, 25 ms mean service time: about 160 requests/s
at most) and a small standby pool (2 servers). Accounts of four tiers call it through a real `accord
gateway` (its own process) with an open-loop load: normal, a ramp, a peak above the primary pool's capacity,
normal again. The simulated servers queue (M/M/c), so the peak really hurts: latency climbs to seconds.

Run 1 has the policy switched off: platinum suffers like everyone. Run 2 has the governor running the policy
"while the primary pool is over 70 % busy, route platinum to standby": it switches on during the ramp, before
the queue builds, and off after the peak. The check: with the policy platinum meets its latency SLO during
the peak; without it, it does not (otherwise the scenario would prove nothing).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
from accord.customers.models import Account, Tier
from accord.gateway.models import LivePool
from accord.lib.processes import accord_command, subprocess_env

from .engine import evaluate_policies
from .loadgen import LoadResult, Phase, SummaryRow, TrafficClass, start_load_in_thread
from .models import AuditEvent, Policy

SERVICE = "rta-search"
BASE_PATH = "/rta"
POLICY = "rta-platinum-standby"
TIERS = ("platinum", "gold", "silver", "standard")
SHARES = {"platinum": 0.1, "gold": 0.2, "silver": 0.3, "standard": 0.4}
# The latency each tier is promised (p95) and the errors it may see, during every phase.
SLO_P95_MS = {"platinum": 250.0, "gold": 600.0, "silver": 1500.0, "standard": 3000.0}
SLO_ERROR_RATE = {"platinum": 0.01, "gold": 0.02, "silver": 0.05, "standard": 0.05}
# Share of the run per phase, and its arrival rate (requests/s).
PROFILE = (("normal", 0.25, 60.0), ("ramp", 0.2, 125.0), ("peak", 0.3, 200.0), ("after", 0.25, 60.0))


@dataclass
class Config:
    duration: float = 60.0  # seconds per run
    primary_servers: int = 4
    standby_servers: int = 2
    service_ms: float = 25.0
    accounts_per_tier: int = 3
    threshold: float = 0.7
    clear_below: float = 0.45
    timeout: float = 5.0
    seed: int = 7

    def phases(self) -> list[Phase]:
        return [Phase(name, round(self.duration * share, 3), rps) for name, share, rps in PROFILE]


@dataclass
class RunResult:
    policy: bool
    load: LoadResult
    switches: list[dict[str, Any]] = field(default_factory=list)
    standby_utilisation_off_peak: float | None = None

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for phase, _share, _rps in PROFILE:
            for tier in TIERS:
                r: SummaryRow = self.load.row(tier, phase)
                met = (r.count > 0 and r.p95_ms is not None and r.p95_ms <= SLO_P95_MS[tier]
                       and r.error_rate <= SLO_ERROR_RATE[tier])
                out.append({"phase": phase, "tier": tier, "requests": r.count, "p95_ms": r.p95_ms,
                            "error_rate": round(r.error_rate, 4), "slo_p95_ms": SLO_P95_MS[tier], "slo_met": met})
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


@contextlib.contextmanager
def _process(args: list[str], port: int, what: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen([*accord_command(), *args], env=subprocess_env(), stdout=out, stderr=out)
        try:
            _wait_port(port, proc, what)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def set_up(config: Config, primary_port: int, standby_port: int) -> dict[str, list[str]]:
    """The scenario's service, tiers, accounts, keys and policy (created or reset); returns new keys per tier."""
    keys: dict[str, list[str]] = {}
    with transaction.atomic():
        service, _ = Service.objects.update_or_create(
            name=SERVICE, defaults={"base_path": BASE_PATH, "title": "RTA scenario: fare search (simulated)"})
        for name, role, capacity, port in (("primary", "primary", config.primary_servers, primary_port),
                                           ("standby", "standby", config.standby_servers, standby_port)):
            pool, _ = Pool.objects.update_or_create(service=service, name=name,
                                                    defaults={"role": role, "capacity": capacity})
            pool.endpoints.all().delete()
            Endpoint.objects.create(pool=pool, url=f"http://127.0.0.1:{port}")
        for tier_name in TIERS:
            tier = Tier.objects.filter(name=tier_name).first()
            if tier is None:
                rank = max(Tier.objects.values_list("rank", flat=True), default=0) + 1
                tier = Tier.objects.create(name=tier_name, rank=rank, description="created by the RTA scenario")
            keys[tier_name] = []
            for i in range(1, config.accounts_per_tier + 1):
                external = f"RTA-{tier_name.upper()}-{i}"
                account, _ = Account.objects.update_or_create(
                    external_id=external, defaults={"name": f"RTA {tier_name} customer {i}", "tier": tier})
                ApiCredential.objects.filter(account=account, revoked_at__isnull=True).update(revoked_at=timezone.now())
                _cred, key = ApiCredential.issue(account, "rta scenario")
                keys[tier_name].append(key)
        from .policies import save_policy

        save_policy(POLICY, {
            "description": "RTA scenario: platinum to standby while the primary pool is busy",
            "enabled": False, "priority": 5,
            "condition": f"pool({SERVICE}, primary).utilisation[2s] > {config.threshold}",
            "clear_condition": f"pool({SERVICE}, primary).utilisation[3s] < {config.clear_below}",
            "hold_seconds": 0, "clear_seconds": 3, "min_active_seconds": 5, "cooldown_seconds": 5,
            "tiers": ["platinum"], "services": [SERVICE], "action": "route", "params": {"pool": "standby"},
        })
    from accord.gateway.signals import bump_snapshot_version

    bump_snapshot_version()  # tier changes made with update() send no signal
    return keys


class Governor(threading.Thread):
    """Evaluates policies every `interval` seconds in this process until stopped."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(name="rta-governor", daemon=True)
        self.interval = interval
        self.stopping = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    evaluate_policies()
                except Exception as e:  # keep governing; report what went wrong
                    self.errors.append(f"{type(e).__name__}: {e}")
                self.stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


def _set_policy(enabled: bool) -> None:
    Policy.objects.filter(name=POLICY).update(enabled=enabled)
    evaluate_policies()  # a disabled policy's action is switched off at once


def _standby_utilisation(since: dt.datetime, until: dt.datetime) -> float:
    rows = LivePool.objects.filter(service=SERVICE, pool="standby", at__gt=since, at__lte=until)
    busy = sum(r.busy_ms for r in rows)
    capacity = sum(r.interval_ms * r.capacity for r in rows)
    return busy / capacity if capacity else 0.0


def one_run(config: Config, gateway_port: int, keys: dict[str, list[str]], with_policy: bool,
            say: Callable[[str], None], stop: threading.Event | None = None) -> RunResult:
    classes = [TrafficClass(t, SHARES[t], keys[t], [f"{BASE_PATH}/fares?from=PAR&to=NYC"]) for t in TIERS]
    phases = config.phases()
    _set_policy(with_policy)
    governor = Governor() if with_policy else None
    if governor is not None:
        governor.start()
    started = timezone.now()
    load = start_load_in_thread("127.0.0.1", gateway_port, classes, phases, timeout=config.timeout,
                                max_connections=2000, seed=config.seed)
    deadline = time.monotonic() + config.duration * 3 + 60
    try:
        while not load.done() and time.monotonic() < deadline:
            time.sleep(1.0)
            if stop is not None and stop.is_set():
                load.stop(60)
                break
            p = load.progress()
            if p is not None:
                on = with_policy and Policy.objects.filter(name=POLICY, state__active=True).exists()
                say(f"  {p.phase:7} sent {p.sent:6} answered {p.answered:6} errors {p.errors:5}"
                    + ("  reroute ON" if on else ""))
        result = load.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if governor is not None:
            governor.stop()
    ended = timezone.now()
    switches = [
        {"at_s": round((e.at - started).total_seconds(), 2), "kind": e.kind, "reason": e.reason}
        for e in AuditEvent.objects.filter(subject=POLICY, at__gte=started, at__lte=ended).order_by("at", "id")
        if e.kind in (AuditEvent.Kind.ACTIVATED, AuditEvent.Kind.DEACTIVATED)
    ]
    # off-peak: the first normal phase (the 'after' phase may still carry the peak's backlog)
    normal_end = started + dt.timedelta(seconds=phases[0].seconds)
    run = RunResult(with_policy, result, switches, _standby_utilisation(started, normal_end))
    if governor is not None and governor.errors:
        say(f"  governor errors: {governor.errors[:3]}")
    return run


def check(without: RunResult, with_policy: RunResult) -> tuple[bool, list[str]]:
    """The scenario proves its point: platinum meets its peak SLO with the policy, and misses it without."""
    reasons = []
    peak_without = next(r for r in without.rows() if r["phase"] == "peak" and r["tier"] == "platinum")
    peak_with = next(r for r in with_policy.rows() if r["phase"] == "peak" and r["tier"] == "platinum")
    if peak_without["slo_met"]:
        reasons.append(f"without the policy platinum met its SLO at peak (p95 {peak_without['p95_ms']} ms): "
                       "the peak did not hurt, the scenario proves nothing")
    if not peak_with["slo_met"]:
        reasons.append(f"with the policy platinum missed its SLO at peak (p95 {peak_with['p95_ms']} ms, "
                       f"errors {peak_with['error_rate']:.2%})")
    if not any(s["kind"] == AuditEvent.Kind.ACTIVATED for s in with_policy.switches):
        reasons.append("the policy never switched on")
    return not reasons, reasons


def run_scenario(config: Config, say: Callable[[str], None]) -> dict[str, Any]:
    """Both runs; returns the report (see `report_text` for the table)."""
    log_dir = Path(settings.VAR_DIR) / "scenario"
    log_dir.mkdir(parents=True, exist_ok=True)
    primary, standby, gateway = free_port(), free_port(), free_port()
    keys = set_up(config, primary, standby)
    sims = ["upstream-sim", "--seed", str(config.seed),
            "--service", f"primary=127.0.0.1:{primary}:{config.primary_servers}:{config.service_ms}",
            "--service", f"standby=127.0.0.1:{standby}:{config.standby_servers}:{config.service_ms}"]
    gw = ["gateway", "--listen", f"127.0.0.1:{gateway}", "--workers", "1", "--poll", "0.1", "--live", "0.5",
          "--flush", "2"]
    say(f"simulated servers on :{primary} (primary, {config.primary_servers} servers) and :{standby} (standby, "
        f"{config.standby_servers}); gateway on :{gateway}; logs in {log_dir}")
    runs = []
    with _process(sims, standby, "upstream-sim", log_dir / "upstream-sim.log"), \
            _process(gw, gateway, "accord gateway", log_dir / "gateway.log"):
        for with_policy in (False, True):
            say(f"run {'2: with' if with_policy else '1: without'} the policy "
                f"({' -> '.join(f'{p.name} {p.rps:g}/s for {p.seconds:g}s' for p in config.phases())})")
            runs.append(one_run(config, gateway, keys, with_policy, say))
            time.sleep(min(5.0, config.duration / 6))  # let the queues drain between the runs
        _set_policy(False)
    passed, reasons = check(runs[0], runs[1])
    return {
        "duration_s": config.duration,
        "phases": [{"name": p.name, "seconds": p.seconds, "rps": p.rps} for p in config.phases()],
        "slo": {t: {"p95_ms": SLO_P95_MS[t], "error_rate": SLO_ERROR_RATE[t]} for t in TIERS},
        "runs": [{"policy": r.policy, "rows": r.rows(), "switches": r.switches,
                  "standby_utilisation_off_peak": round(r.standby_utilisation_off_peak or 0.0, 4),
                  "send_lag": r.load.send_lag()} for r in runs],
        "check": {"passed": passed, "reasons": reasons},
    }


def run_live(config: Config, say: Callable[[str], None], stop: threading.Event) -> int:
    """The with-policy run over and over (for the dashboard) until `stop` is set; returns the cycles run."""
    log_dir = Path(settings.VAR_DIR) / "scenario"
    log_dir.mkdir(parents=True, exist_ok=True)
    primary, standby, gateway = free_port(), free_port(), free_port()
    keys = set_up(config, primary, standby)
    sims = ["upstream-sim", "--seed", str(config.seed),
            "--service", f"primary=127.0.0.1:{primary}:{config.primary_servers}:{config.service_ms}",
            "--service", f"standby=127.0.0.1:{standby}:{config.standby_servers}:{config.service_ms}"]
    gw = ["gateway", "--listen", f"127.0.0.1:{gateway}", "--workers", "1", "--poll", "0.1", "--live", "0.5",
          "--flush", "2"]
    cycles = 0
    with _process(sims, standby, "upstream-sim", log_dir / "upstream-sim.log"), \
            _process(gw, gateway, "accord gateway", log_dir / "gateway.log"):
        while not stop.is_set():
            run = one_run(config, gateway, keys, True, lambda line: None, stop)
            cycles += 1
            peak = next(r for r in run.rows() if r["phase"] == "peak" and r["tier"] == "platinum")
            switches = ", ".join(f"{s['kind']} at {s['at_s']} s" for s in run.switches) or "none"
            verdict = "met" if peak["slo_met"] else "MISSED"
            p95 = "-" if peak["p95_ms"] is None else f"{peak['p95_ms']:.0f}"
            say(f"cycle {cycles}: platinum p95 at peak {p95} ms ({verdict}); switches: {switches}")
        _set_policy(False)
    return cycles


def report_text(report: dict[str, Any]) -> str:
    starts, t = [], 0.0
    for phase in report["phases"]:
        starts.append(f"{phase['name']} {phase['rps']:g}/s from {t:g} s")
        t += phase["seconds"]
    lines = ["phases: " + ", ".join(starts)]
    for run in report["runs"]:
        lines.append(f"\n{'WITH' if run['policy'] else 'WITHOUT'} the policy")
        lines.append(f"  {'phase':7} {'tier':9} {'requests':>8} {'p95 ms':>9} {'errors':>7} {'SLO p95':>8}  SLO")
        for r in run["rows"]:
            p95 = "-" if r["p95_ms"] is None else f"{r['p95_ms']:.1f}"
            lines.append(f"  {r['phase']:7} {r['tier']:9} {r['requests']:>8} {p95:>9} {r['error_rate']:>7.2%} "
                         f"{r['slo_p95_ms']:>8.0f}  {'met' if r['slo_met'] else 'MISSED'}")
        for s in run["switches"]:
            lines.append(f"  reroute {'on ' if s['kind'] == 'activated' else 'off'} at {s['at_s']:6.1f} s: {s['reason']}")
        if run["switches"] and run["switches"][-1]["kind"] == "activated":
            lines.append("  reroute still on when the run ended (the peak's backlog was still draining)")
        if run["policy"]:
            lines.append(f"  standby pool utilisation off-peak: {run['standby_utilisation_off_peak']:.1%}")
    check = report["check"]
    lines.append("\ncheck: " + ("PASSED: platinum kept its SLO through the peak only with the policy"
                                if check["passed"] else "FAILED: " + "; ".join(check["reasons"])))
    return "\n".join(lines)
