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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accord.agreements.hours import WEEKDAYS
from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.catalog.models import ApiCredential, Endpoint, Pool, Service
from accord.customers.models import Account, Tier
from accord.gateway.models import LivePool
from accord.gateway.server import WorkerConfig
from accord.governance.engine import INTERVAL as GOVERNOR_INTERVAL
from accord.governance.engine import evaluate_policies
from accord.governance.indicators import slot_busy_ms
from accord.governance.models import AuditEvent, Policy
from accord.haproxy import collector as haproxy_collector
from accord.haproxy import run as haproxy_run
from accord.lib.ports import BOTH, free_port
from accord.lib.processes import accord_command, subprocess_env

from .loadgen import LoadResult, Phase, Sample, SummaryRow, TrafficClass, start_load_in_thread

SERVICE = "rta-search"
BASE_PATH = "/rta"
POLICY = "rta-platinum-standby"
TIERS = ("platinum", "gold", "silver", "standard")
SHARES = {"platinum": 0.1, "gold": 0.2, "silver": 0.3, "standard": 0.4}
# The latency each tier is promised (p95) and the errors it may see, during every phase.
SLO_P95_MS = {"platinum": 250.0, "gold": 600.0, "silver": 1500.0, "standard": 3000.0}
SLO_ERROR_RATE = {"platinum": 0.01, "gold": 0.02, "silver": 0.05, "standard": 0.05}
# Share of the run per phase, and its arrival rate (requests/s). The 'after' phase is the longest: the peak's
# backlog drains (a few seconds), the policy's clear condition must then hold for its clear_after, and the rest
# of the phase shows platinum back on the primary pool with the standby pool idle.
PROFILE = (("normal", 0.2, 60.0), ("ramp", 0.15, 125.0), ("peak", 0.25, 200.0), ("after", 0.4, 60.0))
MIN_DURATION, MAX_DURATION = 20.0, 3600.0
# The simulated servers name themselves POOL@HOST:PORT in this response header: which pool served a request.
SERVED_BY = "X-Sim-Instance"
# After the governor switches the policy off, the gateway routes by its old snapshot until its next version
# poll has loaded the new one; requests sent within this many seconds of the switch may still go to standby.
SWITCH_GRACE_S = 1.0
# Reaction time, from the primary pool's utilisation over the policy's 2 s window crossing the threshold (in the
# data plane's own live signals) to the first platinum request the standby pool served: at most this (issue 21).
REACTION_LIMIT_S = 5.0
CONDITION_WINDOW_S = 2.0  # the policy's utilisation[2s]
DATA_PLANES = ("accord", "haproxy")
SWITCH_TIME_ROUNDING_S = 0.01  # switches' times are rounded to this


@dataclass(frozen=True)
class Timings:
    """How often the scenario's processes look and write: shorter than production's, so that a one-minute run
    switches on and off within its phases. `production()` holds the defaults a deployment runs with."""

    live: float = 0.5  # gateway --live: seconds between live signal writes
    poll: float = 0.1  # gateway --poll: seconds between snapshot version checks
    governor: float = 0.5  # seconds between policy evaluations
    flush: float = 2.0  # gateway --flush: seconds between rollup writes

    @classmethod
    def production(cls) -> Timings:
        gateway = WorkerConfig("", 0)
        return cls(live=gateway.live_interval, poll=gateway.poll, governor=GOVERNOR_INTERVAL,
                   flush=gateway.flush_interval)

    def gateway_args(self) -> list[str]:
        return ["--poll", f"{self.poll:g}", "--live", f"{self.live:g}", "--flush", f"{self.flush:g}"]

    def haproxy_args(self) -> list[str]:
        """`accord haproxy run`'s: the same intervals as the gateway's (map sync and pool signals)."""
        return ["--poll", f"{self.poll:g}", "--live", f"{self.live:g}"]

    def collector_args(self) -> list[str]:
        return ["--live", f"{self.live:g}", "--flush", f"{self.flush:g}"]

    def report(self, data_plane: str = "accord") -> list[dict[str, Any]]:
        """Each timing of the data plane's processes and the governor with its production default, in seconds."""
        production = Timings.production()
        if data_plane == "haproxy":
            return [{"name": name, "what": what, "seconds": getattr(self, key), "production_seconds": default}
                    for key, name, what, default in (
                        ("live", "haproxy run --live", "pool live signal writes (in flight, busy time)",
                         haproxy_run.LIVE),
                        ("poll", "haproxy run --poll", "snapshot version checks, then map sync (Runtime API)",
                         haproxy_run.POLL),
                        ("live", "collector --live", "traffic live signal writes", haproxy_collector.LIVE),
                        ("governor", "governor --interval", "policy evaluations", production.governor),
                        ("flush", "collector --flush", "rollup writes", haproxy_collector.FLUSH))]
        return [{"name": name, "what": what, "seconds": getattr(self, key), "production_seconds": getattr(production, key)}
                for key, name, what in (
                    ("live", "gateway --live", "live signal writes"),
                    ("poll", "gateway --poll", "snapshot version checks"),
                    ("governor", "governor --interval", "policy evaluations"),
                    ("flush", "gateway --flush", "rollup writes"))]


@dataclass
class Config:
    """The scenario's knobs: run length, pools, service time, accounts per tier, the policy's thresholds."""
    duration: float = 60.0  # seconds per run
    primary_servers: int = 4
    standby_servers: int = 2
    service_ms: float = 25.0
    accounts_per_tier: int = 2
    threshold: float = 0.7  # primary utilisation over 2 s above which platinum goes to standby
    clear_below: float = 0.45  # ... and below which (over 2 s, for clear_seconds) it comes back; 0: never
    clear_seconds: int = 2
    min_active_seconds: int = 5
    cooldown_seconds: int = 5
    timeout: float = 5.0
    seed: int = 7
    timings: Timings = field(default_factory=Timings)
    data_plane: str = "accord"  # accord: `accord gateway`; haproxy: `accord haproxy run` and `accord collector`
    haproxy: str = ""  # the HAProxy binary (data_plane haproxy; see `accord.haproxy.run.find_haproxy`)

    def phases(self) -> list[Phase]:
        return [Phase(name, round(self.duration * share, 3), rps) for name, share, rps in PROFILE]


@dataclass
class Share:
    """Platinum requests answered in some stretch of a run, and how many of them the standby pool served."""

    requests: int = 0
    on_standby: int = 0

    @property
    def share(self) -> float | None:
        return self.on_standby / self.requests if self.requests else None

    def as_dict(self) -> dict[str, Any]:
        share = self.share
        return {"requests": self.requests, "on_standby": self.on_standby,
                "share": None if share is None else round(share, 4)}


@dataclass
class StandbyUse:
    """Where platinum went, by phase and around the policy's switch-off after the peak (times in seconds from
    the start of the run)."""

    by_phase: dict[str, Share]
    peak_end_s: float
    end_s: float
    switched_off_s: float | None  # the deactivation after the peak, within the run; None: still on at the end
    late_switch_off_s: float | None  # a deactivation after the schedule had ended (platinum was on standby)
    switched_on_again_s: float | None  # an activation after the peak: the policy flapped
    after_switch_off: Share  # sent at least SWITCH_GRACE_S after the switch-off
    switching: Share  # sent within SWITCH_GRACE_S of it
    last_on_standby_s: float | None  # the latest send of a platinum request the standby pool served

    def as_dict(self) -> dict[str, Any]:
        off = self.switched_off_s
        return {
            "by_phase": {name: share.as_dict() for name, share in self.by_phase.items()},
            "after_phase": self.by_phase["after"].as_dict(),
            "after_switch_off": self.after_switch_off.as_dict(),
            "switching": self.switching.as_dict(),
            "switch_grace_s": SWITCH_GRACE_S,
            "switch_off": None if off is None else {
                "at_s": round(off, 2), "after_peak_s": round(off - self.peak_end_s, 2)},
            "late_switch_off_s": None if self.late_switch_off_s is None else round(self.late_switch_off_s, 2),
            "switched_on_again_s": None if self.switched_on_again_s is None else round(self.switched_on_again_s, 2),
            "last_on_standby_s": None if self.last_on_standby_s is None else round(self.last_on_standby_s, 3),
            "peak_end_s": round(self.peak_end_s, 3), "end_s": round(self.end_s, 3),
        }


def standby_use(samples: Iterable[Sample], phases: list[Phase], switches: list[dict[str, Any]]) -> StandbyUse:
    """Which pool served each platinum request (from the simulated server's answer), by phase and around the
    policy's deactivation after the peak."""
    names = [p.name for p in phases]
    peak_end = sum(p.seconds for p in phases[: names.index("peak") + 1])
    end = sum(p.seconds for p in phases)
    off = late = again = None
    for s in switches:
        if s["kind"] == AuditEvent.Kind.ACTIVATED:
            off = late = None
            if s["at_s"] >= peak_end:
                again = s["at_s"]
        elif s["kind"] == AuditEvent.Kind.DEACTIVATED:
            if s["at_s"] > end:
                late = s["at_s"]
            else:
                off = s["at_s"]
    by_phase = {name: Share() for name in names}
    after_off, switching = Share(), Share()
    last_on_standby = None
    for sample in samples:
        if sample.traffic_class != "platinum" or not sample.header:
            continue  # another tier, or no answer from a pool (a timeout, or an error of the gateway's own)
        on_standby = sample.header.split("@", 1)[0] == "standby"
        sent = sample.sent if sample.sent >= 0 else sample.scheduled
        picked = [by_phase[sample.phase]]
        if off is not None and sent >= off:
            picked.append(after_off if sent >= off + SWITCH_GRACE_S else switching)
        for share in picked:
            share.requests += 1
            share.on_standby += on_standby
        if on_standby and (last_on_standby is None or sent > last_on_standby):
            last_on_standby = sent
    return StandbyUse(by_phase, peak_end, end, off, late, again, after_off, switching, last_on_standby)


@dataclass
class RunResult:
    """One run (without or with the policy): what the load generator saw and when the policy switched."""
    policy: bool
    load: LoadResult
    switches: list[dict[str, Any]] = field(default_factory=list)
    # (s from the start, the primary pool's utilisation over the 2 s up to then, the live interval that ended then)
    utilisation: list[tuple[float, float, float]] = field(default_factory=list)

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

    def standby(self) -> StandbyUse:
        return standby_use(self.load.samples, self.load.phases, self.switches)

    def reaction(self, threshold: float) -> Reaction:
        return reaction(self.utilisation, threshold, self.switches, self.load.samples)


@dataclass
class Reaction:
    """Condition to enforcement, in seconds from the start of the run: when the primary pool's utilisation over
    the policy's window crossed the threshold (and stayed over it until the policy switched on), in the data plane's
    own live signals, at the earliest: the start of the live interval whose row first showed it over (so the
    reaction is overstated, if anything, by up to one live interval); when the governor switched the policy on; when
    the first platinum request the standby pool served was sent."""

    condition_s: float | None
    activated_s: float | None
    enforced_s: float | None

    @property
    def seconds(self) -> float | None:
        if self.condition_s is None or self.enforced_s is None:
            return None
        return self.enforced_s - self.condition_s

    def as_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {"condition_s": r(self.condition_s), "activated_s": r(self.activated_s),
                "enforced_s": r(self.enforced_s), "reaction_s": r(self.seconds),
                "condition_to_activated_s": r(None if self.condition_s is None or self.activated_s is None
                                              else self.activated_s - self.condition_s),
                "activated_to_enforced_s": r(None if self.activated_s is None or self.enforced_s is None
                                             else self.enforced_s - self.activated_s),
                "limit_s": REACTION_LIMIT_S}


def utilisation_series(rows: Iterable[tuple[float, float, float, int]], window: float = CONDITION_WINDOW_S
                       ) -> list[tuple[float, float, float]]:
    """The primary pool's utilisation over `window` seconds as the governor would have read it at any moment:
    (t, utilisation over the rows in (t - window, t], the live interval of the latest of them), at every moment that
    set of rows changes (a row arriving, a row leaving the window). Computed as governance computes
    `pool(...).utilisation[window]` (`indicators.live_pool`: busy time, at most capacity, over capacity time, summed
    over workers). Rows are (at, busy_ms, interval_ms, capacity), `at` in any seconds scale."""
    ordered = sorted(rows)
    out = []
    for t in sorted({r[0] for r in ordered} | {r[0] + window + 1e-6 for r in ordered}):
        inside = [r for r in ordered if t - window < r[0] <= t]
        capacity_time = sum(r[2] * r[3] for r in inside)
        if capacity_time:
            latest = max(r[0] for r in inside)
            interval = max(r[2] for r in inside if r[0] == latest) / 1000.0
            out.append((t, sum(slot_busy_ms(r[1], r[2], r[3]) for r in inside) / capacity_time, interval))
    return out


def reaction(utilisation: list[tuple[float, float, float]], threshold: float, switches: list[dict[str, Any]],
             samples: Iterable[Sample]) -> Reaction:
    """The policy's first switch-on in a run, the onset of the condition that led to it, and the first platinum
    request sent to the standby pool."""
    on = next((s["at_s"] for s in switches if s["kind"] == AuditEvent.Kind.ACTIVATED), None)
    condition = None
    if on is not None:
        onset = None
        for at, value, interval in utilisation:
            if at > on + SWITCH_TIME_ROUNDING_S:
                break
            if value > threshold:
                if onset is None:
                    onset = at - interval
                condition = onset
            else:
                onset = None
    enforced = None
    for sample in samples:
        if sample.traffic_class == "platinum" and sample.header.split("@", 1)[0] == "standby":
            sent = sample.sent if sample.sent >= 0 else sample.scheduled
            if enforced is None or sent < enforced:
                enforced = sent
    return Reaction(condition, on, enforced)


def _listening(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        return False

    return ready


def _said(log: Path, text: str) -> Callable[[], bool]:
    return lambda: text in log.read_text(errors="replace")


def _wait_ready(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path,
                timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready: {' / '.join(said)}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} was not ready within {timeout:.0f} s (its log: {log})")


@contextlib.contextmanager
def _process(args: list[str], port: int | Callable[[], bool], what: str, log: Path,
             env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """An `accord` subprocess, ready when it listens on `port` (TCP) or when `port()` says so."""
    with log.open("wb") as out:
        proc = subprocess.Popen([*accord_command(), *args], env=subprocess_env(**(env or {})), stdout=out,
                                stderr=out)
        try:
            _wait_ready(_listening(port) if isinstance(port, int) else port, proc, what, log)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


CALENDAR = "rta-scenario-24x7"
# The agreements' measurement window: a day, so that a demo left running shows today's simulated traffic.
AGREEMENT_WINDOW_DAYS = 1


def external_id(tier: str, i: int) -> str:
    """The external id of the scenario's i-th simulated account of a tier."""
    return f"RTA-{tier.upper()}-{i}"


def agreement_name(tier: str, i: int) -> str:
    """The name of the agreement of the scenario's i-th simulated account of a tier."""
    return f"rta-{tier}-{i}-sla"


def _refuse_real(rows: QuerySet[Any], what: str) -> None:
    """The scenario creates and resets only simulated rows: a real row in its way stops it, untouched."""
    if rows.filter(simulated=False).exists():
        raise RuntimeError(f"{what} exists and is not simulated: the scenario changes only the rows it created "
                           "(rename it, or run the scenario against another database)")


def set_up(config: Config, primary_port: int, standby_port: int) -> dict[str, list[str]]:
    """The scenario's service, calendar, accounts with their agreements and keys, and policy (created or reset),
    every row flagged `simulated`; returns new keys per tier. Existing tiers are used (tiers it has to create are
    simulated too). Raises RuntimeError, changing nothing, when a real row has one of the names it uses."""
    keys: dict[str, list[str]] = {}
    today = timezone.localdate()
    with transaction.atomic():
        _refuse_real(Service.objects.filter(Q(name=SERVICE) | Q(base_path=BASE_PATH)),
                     f"a service named {SERVICE} or under {BASE_PATH}")
        _refuse_real(BusinessCalendar.objects.filter(name=CALENDAR), f"the calendar {CALENDAR}")
        _refuse_real(Policy.objects.filter(name=POLICY), f"the policy {POLICY}")
        pairs = [(t, i) for t in TIERS for i in range(1, config.accounts_per_tier + 1)]
        _refuse_real(Account.objects.filter(external_id__in=[external_id(t, i) for t, i in pairs]),
                     "an account with an external id RTA-<TIER>-<n>")
        _refuse_real(Agreement.objects.filter(name__in=[agreement_name(t, i) for t, i in pairs]),
                     "an agreement named rta-<tier>-<n>-sla")
        service, _ = Service.objects.update_or_create(
            name=SERVICE, defaults={"base_path": BASE_PATH, "title": "RTA scenario: fare search (simulated)",
                                    "simulated": True})
        for name, role, capacity, port in (("primary", "primary", config.primary_servers, primary_port),
                                           ("standby", "standby", config.standby_servers, standby_port)):
            pool, _ = Pool.objects.update_or_create(service=service, name=name,
                                                    defaults={"role": role, "capacity": capacity})
            pool.endpoints.all().delete()
            Endpoint.objects.create(pool=pool, url=f"http://127.0.0.1:{port}")
        calendar, _ = BusinessCalendar.objects.update_or_create(
            name=CALENDAR, defaults={"timezone": "UTC", "hours": {day: ["00:00-24:00"] for day in WEEKDAYS},
                                     "holiday_country": "", "simulated": True})
        for tier_name in TIERS:
            tier = Tier.objects.filter(name=tier_name).first()
            if tier is None:
                rank = max(Tier.objects.values_list("rank", flat=True), default=0) + 1
                tier = Tier.objects.create(name=tier_name, rank=rank, description="created by the RTA scenario",
                                           simulated=True)
            keys[tier_name] = []
            for i in range(1, config.accounts_per_tier + 1):
                account, _ = Account.objects.update_or_create(
                    external_id=external_id(tier_name, i),
                    defaults={"name": f"RTA {tier_name} customer {i} (simulated)", "tier": tier, "simulated": True})
                ApiCredential.objects.filter(account=account, revoked_at__isnull=True).update(revoked_at=timezone.now())
                _cred, key = ApiCredential.issue(account, "rta scenario")
                keys[tier_name].append(key)
                _agreement(account, tier_name, i, service, calendar, today)
        # a run with fewer accounts per tier than an earlier one: the earlier extra accounts send nothing now
        ApiCredential.objects.filter(account__simulated=True, account__external_id__startswith="RTA-",
                                     revoked_at__isnull=True).exclude(
            account__external_id__in=[external_id(t, i) for t, i in pairs]).update(revoked_at=timezone.now())
        from accord.governance.policies import save_policy

        save_policy(POLICY, {
            "description": "RTA scenario: platinum to standby while the primary pool is busy",
            "enabled": False, "priority": 5,
            "condition": f"pool({SERVICE}, primary).utilisation[2s] > {config.threshold}",
            "clear_condition": f"pool({SERVICE}, primary).utilisation[2s] < {config.clear_below}",
            "hold_seconds": 0, "clear_seconds": config.clear_seconds,
            "min_active_seconds": config.min_active_seconds, "cooldown_seconds": config.cooldown_seconds,
            "tiers": ["platinum"], "services": [SERVICE], "action": "route", "params": {"pool": "standby"},
        })
        Policy.objects.filter(name=POLICY).update(simulated=True)
    from accord.gateway.signals import bump_snapshot_version

    bump_snapshot_version()  # tier changes made with update() send no signal
    return keys


def _agreement(account: Account, tier: str, i: int, service: Service, calendar: BusinessCalendar,
               today: dt.date) -> Agreement:
    """The simulated account's own agreement: the scenario's SLO of its tier (availability and p95 latency on
    the scenario's service), measured over a rolling day, so `accord slo status` and the governance page show
    what the scenario's traffic attained."""
    agreement, _ = Agreement.objects.update_or_create(
        name=agreement_name(tier, i),
        defaults={"title": f"RTA scenario: {tier} customer {i} (simulated)", "account": account, "tier": None,
                  "calendar": calendar, "effective_to": None, "monthly_fee": Decimal(0), "simulated": True},
        create_defaults={"title": f"RTA scenario: {tier} customer {i} (simulated)", "account": account,
                         "calendar": calendar, "effective_from": today, "monthly_fee": Decimal(0),
                         "simulated": True},
    )
    if agreement.effective_from > today:
        agreement.effective_from = today
        agreement.save(update_fields=["effective_from"])
    agreement.services.set([service])
    window = {"window": Objective.Window.ROLLING, "window_days": AGREEMENT_WINDOW_DAYS, "service": service,
              "operation": None}
    availability = Decimal(str(round(100 - SLO_ERROR_RATE[tier] * 100, 4)))
    Objective.objects.update_or_create(agreement=agreement, name="availability", defaults={
        "kind": Objective.Kind.AVAILABILITY, "target": availability, "percentile": None, **window})
    Objective.objects.update_or_create(agreement=agreement, name="latency-p95", defaults={
        "kind": Objective.Kind.LATENCY, "target": Decimal(str(SLO_P95_MS[tier])), "percentile": Decimal(95),
        **window})
    return agreement


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


def one_run(config: Config, gateway_port: int, keys: dict[str, list[str]], with_policy: bool,
            say: Callable[[str], None], stop: threading.Event | None = None) -> RunResult:
    """Drive one run of the load through the gateway, with or without the policy, and collect what it did."""
    classes = [TrafficClass(t, SHARES[t], keys[t], [f"{BASE_PATH}/fares?from=PAR&to=NYC"]) for t in TIERS]
    phases = config.phases()
    _set_policy(with_policy)
    governor = Governor(config.timings.governor) if with_policy else None
    if governor is not None:
        governor.start()
    started = timezone.now()
    load = start_load_in_thread("127.0.0.1", gateway_port, classes, phases, timeout=config.timeout,
                                max_connections=2000, seed=config.seed, record_header=SERVED_BY)
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
    # seconds from the start of the load's schedule, the clock of its samples
    switches = [
        {"at_s": round(e.at.timestamp() - result.started_at, 2), "kind": e.kind, "reason": e.reason}
        for e in AuditEvent.objects.filter(subject=POLICY, at__gte=started, at__lte=ended).order_by("at", "id")
        if e.kind in (AuditEvent.Kind.ACTIVATED, AuditEvent.Kind.DEACTIVATED)
    ]
    # the primary pool's utilisation as the data plane reported it (the governor's input), for the reaction time
    live = [(at.timestamp() - result.started_at, busy, interval, capacity) for at, busy, interval, capacity in
            LivePool.objects.filter(service=SERVICE, pool="primary", at__gte=started, at__lte=ended)
            .values_list("at", "busy_ms", "interval_ms", "capacity")]
    run = RunResult(with_policy, result, switches, utilisation_series(live))
    if governor is not None and governor.errors:
        say(f"  governor errors: {governor.errors[:3]}")
    return run


def check(without: RunResult, with_policy: RunResult, threshold: float = Config.threshold
          ) -> tuple[bool, list[str]]:
    """The scenario proves its point: platinum meets its peak SLO with the policy, and misses it without; the
    data plane enforced the reroute within REACTION_LIMIT_S of the condition."""
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
    else:
        react = with_policy.reaction(threshold)
        if react.condition_s is None:
            reasons.append("the policy switched on but the data plane's live signals never showed the primary pool "
                           f"over {threshold:g}: the reaction time is not measured")
        elif react.enforced_s is None:
            reasons.append("the policy switched on but the standby pool served no platinum request")
        elif react.seconds is not None and react.seconds > REACTION_LIMIT_S:
            reasons.append(f"reaction time {react.seconds:.2f} s (condition at {react.condition_s:.1f} s, enforced "
                           f"at {react.enforced_s:.1f} s) is over {REACTION_LIMIT_S:g} s")
    # the other half: the standby pool serves platinum only around the peak, and is idle again after it
    idle = without.standby()
    if sum(share.on_standby for share in idle.by_phase.values()):
        reasons.append("without the policy the standby pool still served platinum requests")
    use = with_policy.standby()
    if use.switched_on_again_s is not None:
        reasons.append(f"the policy switched on again at {use.switched_on_again_s:.1f} s, after the peak "
                       f"(ended at {use.peak_end_s:.1f} s): it flapped")
    if use.switched_off_s is None:
        late = "" if use.late_switch_off_s is None else (
            f" (it switched off at {use.late_switch_off_s:.1f} s, after the traffic had ended at {use.end_s:.1f} s)")
        reasons.append("platinum was still on the standby pool when the run ended: the policy did not switch off "
                       f"after the peak{late}")
    else:
        after = use.after_switch_off
        if after.on_standby:
            reasons.append(f"the standby pool served {after.on_standby} of {after.requests} platinum requests sent "
                           f"more than {SWITCH_GRACE_S:g} s after the policy switched off at {use.switched_off_s:.1f} s")
        elif not after.requests:
            reasons.append(f"the policy switched off at {use.switched_off_s:.1f} s, too late in the run to see "
                           "platinum back on the primary pool")
    return not reasons, reasons


def _sims(config: Config, primary: int, standby: int) -> list[str]:
    return ["upstream-sim", "--seed", str(config.seed),
            "--service", f"primary=127.0.0.1:{primary}:{config.primary_servers}:{config.service_ms}",
            "--service", f"standby=127.0.0.1:{standby}:{config.standby_servers}:{config.service_ms}"]


@contextlib.contextmanager
def _data_plane(config: Config, port: int, log_dir: Path) -> Iterator[str]:
    """The data plane listening on `port`: `accord gateway`, or `accord collector` and `accord haproxy run` (one
    instance); yields what it is, for people."""
    if config.data_plane != "haproxy":
        gw = ["gateway", "--listen", f"127.0.0.1:{port}", "--workers", "1", *config.timings.gateway_args()]
        with _process(gw, port, "accord gateway", log_dir / "gateway.log"):
            yield f"gateway on :{port}"
        return
    udp = free_port(kind=BOTH)  # the collector takes TCP (HAProxy's ring) and UDP on it
    collector_log, haproxy_log = log_dir / "collector.log", log_dir / "haproxy.log"
    collector = ["collector", "--listen", f"127.0.0.1:{udp}", *config.timings.collector_args()]
    runner = ["haproxy", "run", "--dir", str(log_dir / "haproxy"), "--listen", f"127.0.0.1:{port}", "--collector",
              f"127.0.0.1:{udp}", "--instances", "1", *config.timings.haproxy_args()]
    with _process(collector, _said(collector_log, "collector: listening"), "accord collector", collector_log), \
            _process(runner, port, "accord haproxy run", haproxy_log, env={"ACCORD_HAPROXY": config.haproxy}):
        yield f"HAProxy ({config.haproxy}) on :{port}, collector on :{udp} (TCP, from HAProxy's ring)"


def run_report(run: RunResult, threshold: float = Config.threshold) -> dict[str, Any]:
    """One run as plain data (JSON): its table, switches, where platinum went and, with the policy, the reaction."""
    out = {"policy": run.policy, "rows": run.rows(), "switches": run.switches,
           "platinum_on_standby": run.standby().as_dict(), "send_lag": run.load.send_lag()}
    if run.policy:
        out["reaction"] = run.reaction(threshold).as_dict()
    return out


def run_scenario(config: Config, say: Callable[[str], None]) -> dict[str, Any]:
    """Both runs; returns the report (see `report_text` for the table)."""
    log_dir = Path(settings.VAR_DIR) / "scenario"
    log_dir.mkdir(parents=True, exist_ok=True)
    primary, standby, gateway = free_port(), free_port(), free_port()
    keys = set_up(config, primary, standby)
    runs = []
    with _process(_sims(config, primary, standby), standby, "upstream-sim", log_dir / "upstream-sim.log"), \
            _data_plane(config, gateway, log_dir) as plane:
        say(f"simulated servers on :{primary} (primary, {config.primary_servers} servers) and :{standby} (standby, "
            f"{config.standby_servers}); {plane}; logs in {log_dir}")
        for with_policy in (False, True):
            say(f"run {'2: with' if with_policy else '1: without'} the policy "
                f"({' -> '.join(f'{p.name} {p.rps:g}/s for {p.seconds:g}s' for p in config.phases())})")
            runs.append(one_run(config, gateway, keys, with_policy, say))
            time.sleep(min(5.0, config.duration / 6))  # let the queues drain between the runs
        _set_policy(False)
    passed, reasons = check(runs[0], runs[1], config.threshold)
    return {
        "data_plane": config.data_plane,
        "duration_s": config.duration,
        "phases": [{"name": p.name, "seconds": p.seconds, "rps": p.rps} for p in config.phases()],
        "slo": {t: {"p95_ms": SLO_P95_MS[t], "error_rate": SLO_ERROR_RATE[t]} for t in TIERS},
        "policy": {"threshold": config.threshold, "clear_below": config.clear_below,
                   "clear_seconds": config.clear_seconds, "min_active_seconds": config.min_active_seconds,
                   "cooldown_seconds": config.cooldown_seconds},
        "timings": config.timings.report(config.data_plane),
        "runs": [run_report(r, config.threshold) for r in runs],
        "check": {"passed": passed, "reasons": reasons},
    }


def run_live(config: Config, say: Callable[[str], None], stop: threading.Event) -> int:
    """The with-policy run over and over (for the dashboard) until `stop` is set; returns the cycles run."""
    log_dir = Path(settings.VAR_DIR) / "scenario"
    log_dir.mkdir(parents=True, exist_ok=True)
    primary, standby, gateway = free_port(), free_port(), free_port()
    keys = set_up(config, primary, standby)
    say(timings_text(config.timings.report(config.data_plane)))
    cycles = 0
    with _process(_sims(config, primary, standby), standby, "upstream-sim", log_dir / "upstream-sim.log"), \
            _data_plane(config, gateway, log_dir):
        while not stop.is_set():
            run = one_run(config, gateway, keys, True, lambda line: None, stop)
            if stop.is_set():
                break  # a cut-short cycle proves nothing either way
            cycles += 1
            peak = next(r for r in run.rows() if r["phase"] == "peak" and r["tier"] == "platinum")
            verdict = "met" if peak["slo_met"] else "MISSED"
            p95 = "-" if peak["p95_ms"] is None else f"{peak['p95_ms']:.0f}"
            use = run.standby()
            off = ("still on at the end" if use.switched_off_s is None else
                   f"off {use.switched_off_s - use.peak_end_s:.1f} s after the peak")
            after = use.after_switch_off
            say(f"cycle {cycles}: platinum p95 at peak {p95} ms ({verdict}); reroute {off}; platinum on standby "
                f"after switching off: {after.on_standby} of {after.requests}")
        _set_policy(False)
    return cycles


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def timings_text(timings: list[dict[str, Any]]) -> str:
    """The scenario's timings next to production's defaults, one line each."""
    return "timings (this scenario / production default): " + ", ".join(
        f"{t['name']} {t['seconds']:g} s / {t['production_seconds']:g} s" for t in timings)


def standby_text(use: dict[str, Any]) -> list[str]:
    """Where platinum went, for people."""
    phases = ", ".join(f"{name} {v['on_standby']} of {v['requests']} ({_pct(v['share'])})"
                       for name, v in use["by_phase"].items())
    lines = [f"  platinum requests on the standby pool: {phases}"]
    off, after, switching = use["switch_off"], use["after_switch_off"], use["switching"]
    if off is None:
        lines.append("  reroute still on when the traffic ended: platinum never came back to the primary pool")
    else:
        lines.append(f"  after switching off ({off['at_s']:.1f} s, {off['after_peak_s']:.1f} s after the peak ended): "
                     f"{after['on_standby']} of {after['requests']} ({_pct(after['share'])}), and "
                     f"{switching['on_standby']} of {switching['requests']} in the {use['switch_grace_s']:g} s "
                     "the data plane takes to follow")
    return lines


def reaction_text(r: dict[str, Any]) -> str:
    """Condition to enforcement, for people."""
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    return (f"  reaction (condition -> enforced): {s(r['reaction_s'])} (limit {r['limit_s']:g} s): primary over the "
            f"threshold at {s(r['condition_s'])}, policy on at {s(r['activated_s'])} "
            f"(+{s(r['condition_to_activated_s'])}), first platinum request to standby sent at {s(r['enforced_s'])} "
            f"(+{s(r['activated_to_enforced_s'])})")


def report_text(report: dict[str, Any]) -> str:
    """The report as people read it: phases, per-tier table of each run, switches and the check."""
    starts, t = [], 0.0
    for phase in report["phases"]:
        starts.append(f"{phase['name']} {phase['rps']:g}/s from {t:g} s")
        t += phase["seconds"]
    lines = [f"data plane: {report.get('data_plane', 'accord')}", "phases: " + ", ".join(starts),
             timings_text(report["timings"])]
    for run in report["runs"]:
        lines.append(f"\n{'WITH' if run['policy'] else 'WITHOUT'} the policy")
        lines.append(f"  {'phase':7} {'tier':9} {'requests':>8} {'p95 ms':>9} {'errors':>7} {'SLO p95':>8}  SLO")
        for r in run["rows"]:
            p95 = "-" if r["p95_ms"] is None else f"{r['p95_ms']:.1f}"
            lines.append(f"  {r['phase']:7} {r['tier']:9} {r['requests']:>8} {p95:>9} {r['error_rate']:>7.2%} "
                         f"{r['slo_p95_ms']:>8.0f}  {'met' if r['slo_met'] else 'MISSED'}")
        for s in run["switches"]:
            lines.append(f"  reroute {'on ' if s['kind'] == 'activated' else 'off'} at {s['at_s']:6.1f} s: {s['reason']}")
        if run["policy"]:
            lines += standby_text(run["platinum_on_standby"])
            if "reaction" in run:
                lines.append(reaction_text(run["reaction"]))
    check = report["check"]
    lines.append("\ncheck: " + ("PASSED: platinum kept its SLO through the peak only with the policy, and the "
                                "standby pool served it only around the peak"
                                if check["passed"] else "FAILED: " + "; ".join(check["reasons"])))
    return "\n".join(lines)
