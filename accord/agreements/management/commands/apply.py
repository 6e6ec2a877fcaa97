"""`accord apply -f FILE.yaml`: create or update calendars, tiers, services, partners and agreements."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.agreements.manifest import ManifestError, apply_manifest


class Command(BaseCommand):
    help = (
        "Apply a YAML manifest (see docs/agreements-as-code.md): everything is validated first and written in one "
        "transaction; on any error nothing changes and every error is printed with its path. Exit codes: 0 applied, "
        "1 unreadable file, 2 invalid manifest."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-f", "--file", action="append", required=True, help="a YAML file, or - for stdin")
        parser.add_argument("--dry-run", action="store_true", help="validate and show what would change")

    def handle(self, *args: Any, **options: Any) -> None:
        texts = []
        for name in options["file"]:
            try:
                text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise CommandError(f"{name}: {e}", returncode=1) from e
            texts.append((name, text))
        results = []
        errors: list[str] = []
        # Validate every file before writing any.
        from accord.agreements.manifest import load_manifest

        for name, text in texts:
            try:
                load_manifest(text, source=name)
            except ManifestError as e:
                errors.extend(f"{name}: {line}" if len(texts) > 1 else line for line in e.errors)
        if errors:
            for line in errors:
                self.stderr.write(line)
            raise CommandError(f"{len(errors)} error(s); nothing was changed", returncode=2)
        for name, text in texts:
            try:
                results.append(apply_manifest(text, dry_run=options["dry_run"], source=name))
            except ManifestError as e:  # a later file may depend on an earlier one being applied
                for line in e.errors:
                    self.stderr.write(line)
                raise CommandError("nothing more was changed", returncode=2) from e
        for result in results:
            for section, obj, outcome in result.outcomes:
                if outcome != "unchanged" or options["verbosity"] > 1:
                    self.stdout.write(f"{section} {obj}: {'would be ' if result.dry_run and outcome != 'unchanged' else ''}{outcome}")
            self.stdout.write(result.summary())
