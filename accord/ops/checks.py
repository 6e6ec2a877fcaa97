"""What `accord doctor` and `/healthz/details` check: each finding says what is wrong and what to do.

Every check is quick (a query, a TCP connect with a short timeout, a `statvfs`), so the whole run takes
seconds even with a mail server that does not answer. A check that cannot apply here (no gateway was ever
run, SQLite shares this host's clock) says so as `ok` with the reason rather than staying silent.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

OK, WARN, FAIL = "ok", "warn", "fail"

# Thresholds, each overridable by the environment (the tests set them to provoke each finding).
CONNECT_TIMEOUT = float(os.environ.get("ACCORD_DOCTOR_CONNECT_TIMEOUT", "3"))
MAX_SKEW_SECONDS = float(os.environ.get("ACCORD_DOCTOR_MAX_SKEW", "5"))
ROLLUPS_STALE_MINUTES = float(os.environ.get("ACCORD_DOCTOR_ROLLUPS_STALE_MINUTES", "5"))


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # ok, warn, fail
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _production() -> bool:
    """Settings that are fine on a laptop (DEBUG, a generated key) are failures only where it matters."""
    return not (settings.DEBUG or getattr(settings, "DEMO", False))


def database() -> list[Finding]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as e:
        where = connection.settings_dict.get("HOST") or connection.settings_dict.get("NAME")
        return [Finding("database", FAIL, f"cannot reach the database ({where}): {' '.join(str(e).split())[:200]}",
                        "start the database server or correct DATABASE_URL")]
    from django.db.migrations.executor import MigrationExecutor

    plan = MigrationExecutor(connection).migration_plan(MigrationExecutor(connection).loader.graph.leaf_nodes())
    vendor = connection.vendor
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _backwards in plan[:5])
        more = f" and {len(plan) - 5} more" if len(plan) > 5 else ""
        return [Finding("database", OK, f"reachable ({vendor})"),
                Finding("migrations", FAIL, f"{len(plan)} migration(s) not applied: {names}{more}", "run `accord migrate`")]
    return [Finding("database", OK, f"reachable ({vendor})"), Finding("migrations", OK, "all applied")]


START = {"mail-poller": "desk poll-imap --loop 60", "mail-sender": "desk send-mail --loop 10",
         "gateway": "gateway --listen HOST:PORT"}


def processes() -> list[Finding]:
    from .heartbeat import REMEMBER, missing
    from .models import Heartbeat

    now = timezone.now()
    gone = missing(now)
    alive = sorted({r.kind for r in Heartbeat.objects.filter(beat_at__gte=now - REMEMBER, stopped_at=None)
                    if r.stale_at() >= now})
    out = [Finding(f"process {m.kind}", FAIL, str(m),
                   f"start `accord {START.get(m.kind, m.kind)}` "
                   "(under its supervisor) and look at its log for why it stopped") for m in gone]
    if not gone:
        out.append(Finding("processes", OK, f"alive: {', '.join(alive)}" if alive
                           else "none expected (ACCORD_EXPECTED_PROCESSES is empty and none ran in the last day)"))
    return out


def reachable(host: str, port: int) -> str:
    """'' when a TCP connection opens within the timeout, else why not."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            return ""
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__


def clock() -> list[Finding]:
    """This host's clock against the database server's: SLA clocks and rollups are stamped by both."""
    if connection.vendor == "sqlite":
        return [Finding("clock", OK, "SQLite runs in this process: one clock")]
    started = time.time()
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())")
        db_now = float(cursor.fetchone()[0])
    here = (started + time.time()) / 2
    skew = here - db_now
    if abs(skew) > MAX_SKEW_SECONDS:
        return [Finding("clock", FAIL, f"this host's clock is {abs(skew):,.1f} s {'ahead of' if skew > 0 else 'behind'} "
                        "the database server's", "run NTP (chrony or systemd-timesyncd) on both hosts")]
    return [Finding("clock", OK, f"within {abs(skew):.2f} s of the database server")]


def disk() -> list[Finding]:
    out = []
    places = {"var": Path(settings.VAR_DIR)}
    if connection.vendor == "sqlite":
        places["database"] = Path(str(connection.settings_dict["NAME"])).resolve().parent
    seen: set[int] = set()
    min_free = float(os.environ.get("ACCORD_DOCTOR_MIN_FREE_MB", "500")) * 1024 * 1024
    for name, place in places.items():
        while not place.exists() and place != place.parent:
            place = place.parent
        try:
            dev = place.stat().st_dev
            if dev in seen:
                continue
            seen.add(dev)
            usage = shutil.disk_usage(place)
        except OSError as e:
            out.append(Finding(f"disk {name}", WARN, f"cannot read free space of {place}: {e}"))
            continue
        free_mb = usage.free / 1024 / 1024
        share = usage.free / usage.total if usage.total else 0
        if usage.free < min_free:
            out.append(Finding(f"disk {name}", FAIL, f"{free_mb:,.0f} MB free on {place} ({share:.0%})",
                               "free disk space: `accord rollups prune`, old reports and logs; SQLite refuses writes "
                               "when the disk is full"))
        elif share < 0.05:
            out.append(Finding(f"disk {name}", WARN, f"{free_mb:,.0f} MB free on {place} ({share:.0%})",
                               "free disk space before it runs out"))
        else:
            out.append(Finding(f"disk {name}", OK, f"{free_mb:,.0f} MB free on {place} ({share:.0%})"))
    return out


def deployment() -> list[Finding]:
    """Django's `check --deploy` and Accord's own: a warning on a laptop, a failure in production."""
    from django.core import checks

    level = FAIL if _production() else WARN
    why = "" if _production() else " (fine for development: DEBUG or ACCORD_DEMO is on)"
    out = []
    if not os.environ.get("SECRET_KEY"):
        out.append(Finding("secret key", level, f"SECRET_KEY is not set: using the key generated into var/{why}",
                           "set SECRET_KEY to 50 or more random characters, the same on every host (README, Production)"))
    elif len(set(settings.SECRET_KEY)) < 5 or len(settings.SECRET_KEY) < 50:
        out.append(Finding("secret key", level, "SECRET_KEY is short or repetitive",
                           "set SECRET_KEY to 50 or more random characters"))
    problems = [m for m in checks.run_checks(include_deployment_checks=True, tags=[checks.Tags.security])
                if m.level >= checks.WARNING]
    for m in problems:
        if m.id == "security.W009" and any(f.check == "secret key" for f in out):
            continue  # the same weak-key finding, said once
        out.append(Finding(f"setting {m.id}", level, " ".join(str(m.msg).split())[:300] + why,
                           "see README, Production, for the settings `accord check --deploy` accepts"))
    if not out:
        out.append(Finding("deployment", OK, "`check --deploy` is clean"))
    return out


# The apps' own checks (the gateway's rollups, the desk's mail) register here from their AppConfig.ready(), so
# this lower layer never imports them; they run after the processes and before the host's clock and disk.
APP_CHECKS: list[Callable[[], list[Finding]]] = []


def register(check: Callable[[], list[Finding]]) -> Callable[[], list[Finding]]:
    """Add an app's check to `accord doctor` and `/healthz/details` (used as a decorator)."""
    if check not in APP_CHECKS:
        APP_CHECKS.append(check)
    return check


def all_checks() -> list[Callable[[], list[Finding]]]:
    return [database, processes, *APP_CHECKS, clock, disk, deployment]


def run() -> list[Finding]:
    """Every check, in order; after a database failure the checks that need the database are skipped."""
    findings = database()
    if any(f.status == FAIL for f in findings):  # unreachable, or its tables not there yet
        return findings + disk() + deployment()
    for check in all_checks()[1:]:
        try:
            findings += check()
        except DatabaseError as e:
            findings.append(Finding(check.__name__, FAIL, f"the database failed during the check: {e}",
                                    "see the database finding above"))
    return findings


def summary(findings: list[Finding]) -> dict[str, Any]:
    counts = {s: sum(1 for f in findings if f.status == s) for s in (OK, WARN, FAIL)}
    return {"healthy": counts[FAIL] == 0, "counts": counts, "findings": [f.as_dict() for f in findings]}
