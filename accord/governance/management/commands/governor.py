"""`accord governor`: evaluate governance policies every second, burn-rate alerts and notifications less often."""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from accord.governance.engine import INTERVAL, evaluate_budgets, evaluate_policies
from accord.governance.notify import deliver_due
from accord.ops.heartbeat import Beat


class Command(BaseCommand):
    help = "Evaluate governance policies (switching gateway actions), error-budget burn alerts, and notifications."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--interval", type=float, default=INTERVAL, help="seconds between policy evaluations")
        parser.add_argument("--budget-interval", type=float, default=30.0,
                            help="seconds between error-budget burn-rate checks")
        parser.add_argument("--once", action="store_true", help="evaluate once and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        interval, budget_interval = options["interval"], options["budget_interval"]
        if not 0.05 <= interval <= 3600 or not 1 <= budget_interval <= 86400:
            raise CommandError("--interval must be 0.05-3600 s and --budget-interval 1-86400 s")
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        last_budget = 0.0
        ticks = switches = 0
        heartbeat = Beat("governor", interval=max(10.0, interval))
        while not stopping:
            started = time.monotonic()
            try:
                for t in evaluate_policies():
                    switches += 1
                    self.stdout.write(f"{t.kind}: {t.policy}: {t.reason}")
                if options["once"] or started - last_budget >= budget_interval:
                    last_budget = started
                    for t in evaluate_budgets():
                        self.stdout.write(f"{t.kind}: {t.policy}: {t.reason}")
                sent = deliver_due()
                if sent["sent"] or sent["failed"]:
                    self.stdout.write(f"notifications: sent {sent['sent']}, retrying {sent['retried']}, "
                                      f"failed {sent['failed']}")
            except DatabaseError as e:  # the database may be restarting: try again next tick
                self.stderr.write(f"governor: {type(e).__name__}: {e}")
                connections.close_all()
            self.stdout.flush()
            ticks += 1
            if options["once"]:
                break
            heartbeat.beat(f"{ticks} evaluation(s), {switches} switch(es)")
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
        if not options["once"]:
            heartbeat.stop()
        self.stdout.write(f"governor stopped after {ticks} evaluation(s), {switches} switch(es)")
