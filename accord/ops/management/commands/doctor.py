"""`accord doctor`: are Accord's background processes alive? (exit 1 when one is missing)"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accord.ops.heartbeat import REMEMBER, missing
from accord.ops.models import Heartbeat


class Command(BaseCommand):
    help = "Show the heartbeats of the background processes (worker, governor, gateway, mail poller); exit 1 if one is missing."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        rows = list(Heartbeat.objects.filter(beat_at__gte=now - REMEMBER))
        gone = missing(now)
        if options["json"]:
            self.stdout.write(json.dumps({
                "processes": [
                    {"kind": r.kind, "host": r.host, "pid": r.pid, "beat_at": r.beat_at.isoformat(),
                     "state": state(r, now), "detail": r.detail} for r in rows
                ],
                "missing": [{"kind": m.kind, "last_seen": m.last_seen.isoformat() if m.last_seen else None}
                            for m in gone],
            }, indent=2))
        else:
            for r in rows:
                age = (now - r.beat_at).total_seconds()
                self.stdout.write(f"{r.kind:<12} {r.host}:{r.pid:<8} {state(r, now):<8} last beat {age:,.0f} s ago"
                                  + (f"  {r.detail}" if r.detail else ""))
            if not rows:
                self.stdout.write("no background process has reported in the last 24 h")
            self.stdout.write(f"{len(rows)} process(es) seen, {len(gone)} kind(s) missing"
                              + "".join(f"\n  missing: {m}" for m in gone))
        if gone:
            raise CommandError(f"{len(gone)} background process kind(s) missing", returncode=1)


def state(row: Heartbeat, now: Any) -> str:
    if row.stopped_at is not None:
        return "stopped"
    return "alive" if row.stale_at() >= now else "silent"
