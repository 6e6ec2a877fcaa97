"""`accord doctor`: what a self-hosted operator needs to know, in seconds; exit 1 on any failure."""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accord.ops import checks
from accord.ops.heartbeat import REMEMBER
from accord.ops.models import Heartbeat

MARK = {checks.OK: "ok  ", checks.WARN: "warn", checks.FAIL: "FAIL"}


class Command(BaseCommand):
    help = ("Check the database and its migrations, the background processes' heartbeats, the gateway's rollups, "
            "mail servers, clock skew, disk space and production settings; exit 1 on any failure.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        findings = checks.run()
        result = checks.summary(findings)
        database_up = not any(f.check in ("database", "migrations") and f.status == checks.FAIL for f in findings)
        rows = self._processes() if database_up else []
        if options["json"]:
            result["processes"] = rows
            self.stdout.write(json.dumps(result, indent=2))
        else:
            width = max(len(f.check) for f in findings)
            for f in findings:
                self.stdout.write(f"{MARK[f.status]}  {f.check:<{width}}  {f.message}")
                if f.fix and f.status != checks.OK:
                    self.stdout.write(f"      {'':<{width}}  -> {f.fix}")
            if rows:
                self.stdout.write("\nprocesses seen in the last 24 h:")
                for r in rows:
                    self.stdout.write(f"  {r['kind']:<12} {r['host']}:{r['pid']:<8} {r['state']:<8} last beat "
                                      f"{r['age_seconds']:,.0f} s ago" + (f"  {r['detail']}" if r["detail"] else ""))
            c = result["counts"]
            self.stdout.write(f"\n{c['ok']} ok, {c['warn']} warning(s), {c['fail']} failure(s)")
        if not result["healthy"]:
            raise CommandError(f"{result['counts']['fail']} check(s) failed", returncode=1)

    @staticmethod
    def _processes() -> list[dict[str, Any]]:
        now = timezone.now()
        return [{"kind": r.kind, "host": r.host, "pid": r.pid, "beat_at": r.beat_at.isoformat(), "state": state(r, now),
                 "age_seconds": (now - r.beat_at).total_seconds(), "detail": r.detail}
                for r in Heartbeat.objects.filter(beat_at__gte=now - REMEMBER)]


def state(row: Heartbeat, now: Any) -> str:
    if row.stopped_at is not None:
        return "stopped"
    return "alive" if row.stale_at() >= now else "silent"
