"""`accord loadgen --target HOST:PORT --class ... --phase ... [--json]`: open-loop HTTP load.

Requests go out at a constant rate per phase whatever the answers do; latency counts from each request's
scheduled time. Prints progress every second (to stderr with --json) and a summary per class and phase. See
`accord/governance/loadgen.py` and docs/scenario-tools.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from accord.lab.loadgen import (
    LoadResult,
    Phase,
    Progress,
    TrafficClass,
    parse_class,
    parse_phase,
    parse_target,
    run_load,
)
from accord.lab.sim import new_event_loop

USAGE_ERROR = 2


def _phase_at(phases: list[Phase], elapsed: float) -> str:
    end = 0.0
    for phase in phases:
        end += phase.seconds
        if elapsed < end:
            return phase.name
    return phases[-1].name


class Command(BaseCommand):
    help = ("Send open-loop HTTP load (a fixed arrival rate per phase, split between traffic classes) and "
            "report latency from each request's scheduled time, per class and phase.")
    requires_system_checks: list[str] = []  # needs neither the database nor the project's checks

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--target", default="", metavar="HOST:PORT", help="where to send, e.g. 127.0.0.1:8080")
        parser.add_argument(
            "--class", dest="classes", action="append", default=[],
            metavar="NAME:SHARE:KEYFILE_OR_KEY[,KEY...]:PATH[,PATH...]",
            help="a traffic class (repeatable): its share of the rate, its API keys (a file with one a line, a "
                 "comma-separated list, or - for none; sent as Authorization: Bearer, round robin) and paths",
        )
        parser.add_argument("--phase", dest="phases", action="append", default=[], metavar="NAME:SECONDS:RPS",
                            help="a stretch of the profile (repeatable, in order), e.g. peak:10:200")
        parser.add_argument("--timeout", type=float, default=5.0,
                            help="seconds from a request's scheduled time until it counts as a timeout (default 5)")
        parser.add_argument("--max-connections", type=int, default=1000,
                            help="open connections at most; beyond, requests are dropped (default 1000)")
        parser.add_argument("--poisson", action="store_true", help="Poisson arrivals instead of a constant rate")
        parser.add_argument("--seed", type=int, default=None, help="seed for repeatable Poisson arrivals")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON (progress to stderr)")
        parser.add_argument("--quiet", action="store_true", help="no progress lines")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port, classes, phases = self._parse(options)
        progress_out = self.stderr if options["json"] else self.stdout  # with --json, stdout is only the JSON
        loop = new_event_loop()
        try:
            result = loop.run_until_complete(self._run(host, port, classes, phases, options, progress_out))
        finally:
            loop.close()
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        else:
            self.stdout.write(self._heading(result))
            self.stdout.write(result.table())

    def _parse(self, options: dict[str, Any]) -> tuple[str, int, list[TrafficClass], list[Phase]]:
        if not options["target"]:
            raise CommandError("give --target HOST:PORT, e.g. --target 127.0.0.1:8080", returncode=USAGE_ERROR)
        try:
            host, port = parse_target(options["target"])
        except ValueError as e:
            raise CommandError(f"--target {options['target']!r}: {e}", returncode=USAGE_ERROR) from None
        if not options["classes"]:
            raise CommandError("give at least one --class NAME:SHARE:KEYFILE_OR_KEY[,KEY...]:PATH, "
                               "e.g. --class gold:20:keys-gold.txt:/bookings", returncode=USAGE_ERROR)
        if not options["phases"]:
            raise CommandError("give at least one --phase NAME:SECONDS:RPS, e.g. --phase normal:10:50",
                               returncode=USAGE_ERROR)
        classes, phases = [], []
        for value in options["classes"]:
            try:
                classes.append(parse_class(value))
            except ValueError as e:
                raise CommandError(f"--class {value!r}: {e}", returncode=USAGE_ERROR) from None
        names = [c.name for c in classes]
        if len(set(names)) != len(names):
            raise CommandError(f"--class names must differ (got {', '.join(names)})", returncode=USAGE_ERROR)
        for value in options["phases"]:
            try:
                phases.append(parse_phase(value))
            except ValueError as e:
                raise CommandError(f"--phase {value!r}: {e}", returncode=USAGE_ERROR) from None
        if not 0 < options["timeout"] <= 3600:
            raise CommandError("--timeout must be a number of seconds above 0 (at most 3600)", returncode=USAGE_ERROR)
        if not 1 <= options["max_connections"] <= 1_000_000:
            raise CommandError("--max-connections must be at least 1", returncode=USAGE_ERROR)
        return host, port, classes, phases

    async def _run(self, host: str, port: int, classes: list[TrafficClass], phases: list[Phase],
                   options: dict[str, Any], progress_out: OutputWrapper) -> LoadResult:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        handled = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)  # a summary of what was sent, then exit
                handled.append(sig)
            except (RuntimeError, ValueError):  # not the main thread
                pass
        last = Progress(0.0, "", 0, 0, 0, 0, 0, 0, 0)

        def show(p: Progress) -> None:
            nonlocal last
            if options["quiet"]:
                return
            label = _phase_at(phases, p.elapsed - 0.5) if p.phase else "-"  # most of the past second
            line = (f"{p.elapsed:6.1f}s {label:<10} sent {p.sent - last.sent:>6}  "
                    f"answered {p.answered - last.answered:>6}  errors {p.errors - last.errors:>5}  "
                    f"dropped {p.dropped - last.dropped:>5}  in flight {p.in_flight:>5}  conns {p.connections}")
            last = p
            progress_out.write(line)
            progress_out.flush()

        try:
            return await run_load(host, port, classes, phases, timeout=options["timeout"],
                                  max_connections=options["max_connections"], seed=options["seed"],
                                  poisson=options["poisson"], progress=show, stop=stop)
        except ValueError as e:
            raise CommandError(str(e), returncode=USAGE_ERROR) from None
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    @staticmethod
    def _heading(result: LoadResult) -> str:
        total = result.totals()[-1]
        profile = sum(p.seconds for p in result.phases)
        lag = result.send_lag()
        late = f"; send lag p99 {lag['p99_ms']:.1f} ms" if lag["p99_ms"] is not None else ""
        return (f"\n{result.target}: {total.count} requests scheduled over {profile:g} s, {total.sent} sent{late}; "
                f"the last answer came at {result.duration:.1f} s; connections opened: {result.connections_opened}"
                + (" (stopped early)" if result.stopped else "") + "\n")
