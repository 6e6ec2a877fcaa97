"""`accord scenario rta [--duration S] [--json] [--data-plane accord|haproxy]`: the governance demo, measured, without and with the policy;
`accord scenario clean [--dry-run]`: remove what scenarios created (the rows flagged simulated)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.haproxy.run import INSTALL, find_haproxy
from accord.lab.scenario import (
    DATA_PLANES,
    MAX_DURATION,
    MIN_DURATION,
    Config,
    report_text,
    run_live,
    run_scenario,
)
from accord.lab.simulated import do_remove_simulated


class Command(BaseCommand):
    """`accord scenario rta` and `accord scenario clean`."""
    help = ("Run the RTA scenario: simulated services, a real gateway (or HAProxy: --data-plane haproxy), open-loop "
            "traffic of every tier with a peak, once without and once with the platinum-to-standby policy; exit 1 when the check fails. "
            "`clean` removes the simulated rows scenarios created.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name", choices=["rta", "clean"],
                            help="rta: reroute platinum at peak; clean: remove every simulated row (stop the "
                                 "scenario first)")
        parser.add_argument("--dry-run", action="store_true", help="clean: say what would be removed, remove nothing")
        parser.add_argument("--duration", type=float, default=60.0, help="seconds per run (two runs)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
        parser.add_argument("--live", action="store_true",
                            help="run the with-policy profile over and over until stopped (for the dashboard)")
        parser.add_argument("--data-plane", choices=DATA_PLANES, default="accord",
                            help="accord: Accord's own gateway; haproxy: HAProxy driven by `accord haproxy run`, "
                                 "measured by `accord collector`")
        parser.add_argument("--clear-below", type=float, default=Config.clear_below,
                            help="primary pool utilisation (0-1) under which the policy switches platinum back; "
                                 "0 never does, which the check must catch")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["name"] == "clean":
            for line in do_remove_simulated(dry_run=options["dry_run"]).lines():
                self.stdout.write(line)
            return
        duration = options["duration"]
        if not MIN_DURATION <= duration <= MAX_DURATION:
            raise CommandError(f"--duration must be between {MIN_DURATION:g} and {MAX_DURATION:g} seconds "
                               f"(got {duration:g})")
        haproxy = ""
        if options["data_plane"] == "haproxy":
            found, looked = find_haproxy()
            if found is None:
                raise CommandError(f"--data-plane haproxy needs HAProxy, and there is none ({looked}): install it "
                                   f"({INSTALL})", returncode=2)
            haproxy = found
        config = Config(duration=duration, clear_below=options["clear_below"], data_plane=options["data_plane"],
                        haproxy=haproxy)
        if not 0 <= config.clear_below < config.threshold:
            raise CommandError(f"--clear-below must be from 0 to below the switch-on threshold {config.threshold:g} "
                               f"(got {config.clear_below:g})")
        as_json = options["json"]

        def say(line: str) -> None:
            (sys.stderr if as_json else self.stdout).write(line + ("\n" if as_json else ""))
            (sys.stderr if as_json else self.stdout).flush()

        if options["live"]:
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            say("running the RTA profile with the policy until stopped; watch /governance/")
            cycles = run_live(config, say, stop)
            say(f"stopped after {cycles} cycle(s)")
            return
        try:
            report = run_scenario(config, say)
        except RuntimeError as e:
            raise CommandError(str(e)) from e
        if as_json:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.stdout.write(report_text(report))
        if not report["check"]["passed"]:
            sys.exit(1)
