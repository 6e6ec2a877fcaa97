"""`accord export [-o FILE]` writes the manifest YAML; `accord export accounts|contacts FILE.csv` writes CSV."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError

from accord.lib.manifest import export_manifest


class Command(BaseCommand):
    help = (
        "Export the manifest (calendars, tiers, services, partners, agreements) as YAML that `accord apply` takes "
        "back unchanged, or `export accounts FILE.csv` / `export contacts FILE.csv` as CSV (- for stdout)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("subject", nargs="?", choices=["manifest", "accounts", "contacts"], default="manifest")
        parser.add_argument("path", nargs="?", help="the file to write (- or nothing: standard output)")
        parser.add_argument("-o", "--output", help="the file to write (same as the path argument)")

    def handle(self, *args: Any, **options: Any) -> None:
        subject: str = options["subject"]
        if options["path"] and options["output"] and options["path"] != options["output"]:
            raise CommandError(f"two output files given: {options['path']} and {options['output']}")
        target: str | None = options["path"] or options["output"]
        if subject == "manifest":
            self._write(target, lambda out: out.write(export_manifest()))
            return
        if not target:
            raise CommandError(f"give a file to write, e.g. `accord export {subject} {subject}.csv` (- for stdout)")
        from accord.customers import csvio  # written beside this command; imported when asked for

        writer = csvio.export_accounts if subject == "accounts" else csvio.export_contacts
        count = 0

        def run(out: TextIO) -> None:
            nonlocal count
            count = writer(out)

        self._write(target, run, newline="")
        self.stderr.write(f"exported {count} {subject}")

    def _write(self, target: str | None, fn: Callable[[TextIO], Any], newline: str | None = None) -> None:
        if not target or target == "-":
            fn(getattr(self.stdout, "_out", sys.stdout))  # the real stream: CSV and YAML bring their own newlines
            return
        path = Path(target)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8", newline=newline) as out:
                fn(out)
            tmp.replace(path)  # never leave a half-written file under the real name
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise CommandError(f"{target}: {e.strerror or e}") from e
