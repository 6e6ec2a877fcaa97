"""`accord prometheus rules`: the agreements' run-time objectives as Prometheus rules (accord/governance/prometheus.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ... import prometheus


class Command(BaseCommand):
    help = (
        "Prometheus: `rules` writes Sloth-style SLO recording rules and multiwindow burn-rate alerts per agreement, "
        "objective and customer over the gateway's /metrics, with the governor's burn rules (docs/prometheus.md)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        gen = sub.add_parser("rules", help="write a Prometheus rules file (standard output without -o)")
        gen.add_argument("-o", "--output", help="the file to write")
        gen.add_argument("--agreement", action="append", default=[], metavar="NAME",
                         help="only this agreement (give it several times for several)")

    def handle(self, *args: Any, **options: Any) -> None:
        from accord.agreements.models import Agreement

        names = options["agreement"]
        unknown = sorted(set(names) - set(Agreement.objects.filter(name__in=names).values_list("name", flat=True)))
        if unknown:
            raise CommandError(f"no agreement named {', '.join(unknown)}")
        made = prometheus.rules(names)
        output = options["output"]
        if output and output != "-":
            try:
                Path(output).write_text(made.text, encoding="utf-8")
            except OSError as e:
                raise CommandError(f"{output}: {e.strerror or e}") from e
            self.stdout.write(f"wrote the rules of {made.objectives} run-time objective(s) to {output}; "
                              f"skipped {len(made.skipped)} support objective(s) (not gateway metrics)")
        else:
            self.stdout.write(made.text, ending="")
            if made.skipped:
                print(f"skipped {len(made.skipped)} support objective(s): not gateway metrics", file=sys.stderr)
