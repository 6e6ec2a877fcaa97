"""`accord rollups prune`: delete rollup rows past their retention, minute rows long before hour rows.

Minute rows answer questions about the last days to the minute; hour rows (per account and for all accounts)
answer the 30-day budgets and anything older. Pruning deletes in batches, each its own transaction, so the
gateways' flushers keep writing while it runs. Schedule it daily (cron, a systemd timer).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accord.gateway.models import HOUR, Rollup

# Defaults, overridable in the environment (docs/governance.md)
KEEP_MINUTES = "14d"
KEEP_HOURS = "400d"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, what: str) -> dt.timedelta:
    """'90m', '36h', '14d', '2w' -> a timedelta; anything else (or zero) is a CommandError naming `what`."""
    value = text.strip()
    if len(value) < 2 or value[-1] not in _UNITS or not value[:-1].isdigit() or int(value[:-1]) <= 0:
        raise CommandError(f"{what}: '{text}' is not a duration like 90m, 36h, 14d or 2w")
    return dt.timedelta(seconds=int(value[:-1]) * _UNITS[value[-1]])


def _hour_before(moment: dt.datetime) -> dt.datetime:
    """The start of the hour `moment` falls in (UTC), so that an hour keeps all its minute rows or none."""
    epoch = int(moment.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % HOUR, tz=dt.UTC)


class Command(BaseCommand):
    help = "Maintain the gateway's rollups: `prune` deletes minute and hour rows past their retention."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="command", required=True)
        prune = sub.add_parser("prune", help="delete rollup rows older than their retention, in batches")
        prune.add_argument("--minutes-older-than", metavar="DURATION",
                           help="delete minute rows whose window started longer ago than this, rounded down to "
                                f"the hour (default: $ACCORD_ROLLUP_KEEP_MINUTES or {KEEP_MINUTES})")
        prune.add_argument("--hours-older-than", metavar="DURATION",
                           help="delete hour rows whose window started longer ago than this (default: "
                                f"$ACCORD_ROLLUP_KEEP_HOURS or {KEEP_HOURS}); at least the minutes' retention")
        prune.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
        prune.add_argument("--batch", type=int, default=10_000, help="rows per delete (default 10000)")

    def handle(self, *args: Any, **options: Any) -> None:
        minutes_text = options["minutes_older_than"] or os.environ.get("ACCORD_ROLLUP_KEEP_MINUTES", KEEP_MINUTES)
        hours_text = options["hours_older_than"] or os.environ.get("ACCORD_ROLLUP_KEEP_HOURS", KEEP_HOURS)
        keep_minutes = parse_duration(minutes_text, "--minutes-older-than")
        keep_hours = parse_duration(hours_text, "--hours-older-than")
        if keep_hours < keep_minutes:
            raise CommandError(f"--hours-older-than ({hours_text}) must be at least --minutes-older-than "
                               f"({minutes_text}): indicators read hour rows where minute rows are gone")
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1")
        now = timezone.now()
        started = time.monotonic()
        plans = [("minute", Rollup.objects.filter(window_seconds__lt=HOUR), _hour_before(now - keep_minutes)),
                 ("hour", Rollup.objects.filter(window_seconds__gte=HOUR), _hour_before(now - keep_hours))]
        done = []
        for label, rows, cutoff in plans:
            old = rows.filter(window_start__lt=cutoff)
            total = old.count()
            when = f"{cutoff:%Y-%m-%d %H:%M} UTC"
            if options["dry_run"] or total == 0:
                done.append(f"{total:,} {label} rows before {when}")
                continue
            deleted = 0
            while True:
                pks = list(old.order_by("pk").values_list("pk", flat=True)[: options["batch"]])
                if not pks:
                    break
                deleted += Rollup.objects.filter(pk__in=pks).delete()[0]
                self.stdout.write(f"{label} rows before {when}: deleted {deleted:,} of {total:,}")
            done.append(f"{deleted:,} {label} rows before {when}")
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(f"{verb} {' and '.join(done)} in {time.monotonic() - started:.1f} s"
                          + (" (dry run: nothing deleted)" if options["dry_run"] else ""))
