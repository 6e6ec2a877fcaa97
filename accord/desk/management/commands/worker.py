"""`accord worker`: the SLA worker loop (warnings, breaches, escalations)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand

from accord.desk.worker import run_once
from accord.ops.heartbeat import Beat


class Command(BaseCommand):
    help = "Run the SLA worker: raise warnings and breaches when clocks come due, and run escalation rules."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between passes (default 5)")
        parser.add_argument("--once", action="store_true", help="run one pass and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # For tests and replays: pretend it is this instant (ISO 8601 with offset).
        fixed_now = os.environ.get("ACCORD_WORKER_NOW")
        now = dt.datetime.fromisoformat(fixed_now) if fixed_now else None
        heartbeat = Beat("worker", interval=max(10.0, options["interval"]))
        while True:
            tick = run_once(now)
            if not options["once"]:
                heartbeat.beat(f"last pass: {tick.warnings} warning(s), {tick.breaches} breach(es)" if tick else None)
            if tick or options["once"]:
                self.stdout.write(
                    f"warnings {tick.warnings}, breaches {tick.breaches}, escalations {tick.escalations}"
                )
            if options["once"]:
                return
            if stopping:
                heartbeat.stop()
                return
            deadline = time.monotonic() + options["interval"]
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.2, options["interval"]))
