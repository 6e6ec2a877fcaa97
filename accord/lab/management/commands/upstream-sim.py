"""`accord upstream-sim --service NAME=HOST:PORT:CAPACITY:SERVICE_MS ...`: simulated upstream services.

Each service is a queue with CAPACITY servers and a mean service time of SERVICE_MS (see
`accord/governance/sim.py` and docs/scenario-tools.md). Runs until SIGTERM or Ctrl-C (or `--duration`), then
prints a summary per service.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.lab.sim import DISTRIBUTIONS, SimServer, SimSpec, new_event_loop, parse_service, serve_sims

USAGE_ERROR = 2


class Command(BaseCommand):
    help = ("Serve simulated upstream services whose latency grows with load past their capacity (a queue with "
            "CAPACITY servers and a mean service time), until SIGTERM or Ctrl-C.")
    requires_system_checks: list[str] = []  # needs neither the database nor the project's checks

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--service", action="append", default=[], metavar="NAME=HOST:PORT:CAPACITY:SERVICE_MS",
                            help="a simulated service (repeatable); PORT 0 picks a free port, "
                                 "e.g. booking=127.0.0.1:9001:4:20")
        parser.add_argument("--distribution", default="exponential",
                            help=f"service times: {', '.join(DISTRIBUTIONS)} (default exponential)")
        parser.add_argument("--sigma", type=float, default=0.5, help="shape of lognormal service times")
        parser.add_argument("--seed", type=int, default=None, help="seed for repeatable service times")
        parser.add_argument("--max-queue", type=int, default=0,
                            help="answer 503 at once when this many requests wait (default 0: unbounded)")
        parser.add_argument("--error-rate", type=float, default=0.0,
                            help="fraction of served requests answered 500 (default 0)")
        parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: run "
                                                                        "until SIGTERM or Ctrl-C)")
        parser.add_argument("--report", type=float, default=0.0,
                            help="print each service's in-flight and queue every this many seconds (0: never)")
        parser.add_argument("--json", action="store_true", help="print the exit summary as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        specs = self._specs(options)
        for name in ("duration", "report"):
            if not 0 <= options[name] <= 86_400 * 365:
                raise CommandError(f"--{name} must be a number of seconds, 0 or more", returncode=USAGE_ERROR)
        loop = new_event_loop()
        try:
            loop.run_until_complete(self._serve(specs, options))
        finally:
            loop.close()

    def _specs(self, options: dict[str, Any]) -> list[SimSpec]:
        values = options["service"]
        if not values:
            raise CommandError("give at least one --service NAME=HOST:PORT:CAPACITY:SERVICE_MS, "
                               "e.g. --service booking=127.0.0.1:9001:4:20", returncode=USAGE_ERROR)
        specs = []
        for value in values:
            try:
                spec = parse_service(value)
                spec = SimSpec(spec.name, spec.port, spec.capacity, spec.service_ms, host=spec.host,
                               distribution=options["distribution"], sigma=options["sigma"], seed=options["seed"],
                               max_queue=options["max_queue"], error_rate=options["error_rate"])
            except ValueError as e:
                raise CommandError(f"--service {value!r}: {e}", returncode=USAGE_ERROR) from None
            specs.append(spec)
        taken = [(s.host, s.port) for s in specs if s.port]
        if len(set(taken)) != len(taken):
            raise CommandError("two --service values listen on the same HOST:PORT", returncode=USAGE_ERROR)
        return specs

    async def _serve(self, specs: list[SimSpec], options: dict[str, Any]) -> None:
        try:
            servers = await serve_sims(specs)
        except OSError as e:
            raise CommandError(f"cannot listen: {e.strerror or e}") from None
        for server in servers:
            spec = server.spec
            self.stdout.write(f"upstream-sim {spec.name} listening on {server.address} (capacity {spec.capacity}, "
                              f"{spec.distribution} service {spec.service_ms:g} ms)")
        self.stdout.flush()
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        handled = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stopping.set)
                handled.append(sig)
            except (RuntimeError, ValueError):  # not the main thread: --duration or the caller ends it
                pass
        reporter = loop.create_task(self._report(servers, options["report"])) if options["report"] else None
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), options["duration"] or None)
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            if reporter is not None:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
            stats = [s.stats() for s in servers]
            for server in servers:
                await server.wait_closed()
        if options["json"]:
            self.stdout.write(json.dumps([s.as_dict() for s in stats], indent=2))
        else:
            for s in stats:
                self.stdout.write(s.summary())

    async def _report(self, servers: list[SimServer], every: float) -> None:
        while True:
            await asyncio.sleep(every)
            parts = []
            for server in servers:
                s = server.stats()
                parts.append(f"{s.name}: {s.requests} answered, {s.in_flight} in flight, {s.queued} queued")
            self.stdout.write("; ".join(parts))
            self.stdout.flush()
