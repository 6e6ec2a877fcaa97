"""`accord gateway-compile [--if-stale] [--check]`: build the gateway's data plane as a C extension with mypyc.

Optional: without a build (or with a build of an older proxy.py) the gateway runs proxy.py as Python. Needs
mypy (a dependency; it ships mypyc), a C compiler and Python's headers. `accord gateway` runs it at start when the
build is stale.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.gateway import dataplane


class Command(BaseCommand):
    help = "Compile the gateway's data plane (proxy.py) with mypyc; the gateway uses it while it is current."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--if-stale", action="store_true",
                            help="do nothing when a build of the current proxy.py is in place")
        parser.add_argument("--check", action="store_true",
                            help="only say which data plane `accord gateway` would run; exit 1 unless compiled")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check"]:
            try:
                choice = dataplane.choose()
            except dataplane.DataPlaneError as e:
                raise CommandError(str(e)) from e
            self.stdout.write(f"data plane: {choice.name} ({choice.reason})")
            if not choice.compiled:
                raise CommandError("the gateway would run the Python data plane")
            return
        if options["if_stale"] and dataplane.built_on_disk() and dataplane.current():
            self.stdout.write("data plane: compiled build is current; nothing to do")
            return
        try:
            written = dataplane.build(progress=self._progress)
        except dataplane.DataPlaneError as e:
            raise CommandError(f"could not compile the data plane: {e}") from e
        loads, reason = dataplane.loads_in_a_new_process()
        if not loads:
            raise CommandError(f"built {', '.join(p.name for p in written)} but a new process would not run it: "
                               f"{reason}")
        self.stdout.write(self.style.SUCCESS(
            f"data plane compiled: {len(written)} file(s) in {written[0].parent}; `accord gateway` now runs it"))

    def _progress(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
