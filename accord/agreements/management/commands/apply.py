"""`accord apply -f FILE.yaml`: create or update calendars, tiers, services, partners and agreements."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accord.access.models import AuditEntry
from accord.lib.manifest import ManifestError, ManifestSyntaxError, apply_manifests

from ...applylog import record_apply


def _who() -> str:
    """The operating-system user running the command, for the audit trail (the command has no Accord user)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


class Command(BaseCommand):
    help = (
        "Apply YAML manifests (see docs/agreements-as-code.md): every file is validated first and everything is "
        "written in one transaction; on any error nothing changes and every error is printed with its path. "
        "Exit codes: 0 applied or nothing to do, 1 a file cannot be read or is not valid YAML, 2 invalid manifest."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-f", "--file", action="append", required=True, metavar="FILE",
            help="a YAML manifest, or - for standard input; give -f several times to apply files together",
        )
        parser.add_argument("--dry-run", action="store_true", help="validate and show what would change, write nothing")
        parser.add_argument(
            "--prune", action="store_true",
            help="also delete stored objects of the sections the files name that the files do not list",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sources: list[tuple[str, str]] = []
        for name in options["file"]:
            if name == "-" and any(label == "<stdin>" for label, _ in sources):
                raise CommandError("-f - is given twice: standard input can be read once", returncode=1)
            try:
                if name == "-":
                    sources.append(("<stdin>", sys.stdin.read()))
                else:
                    sources.append((name, Path(name).read_text(encoding="utf-8")))
            except UnicodeDecodeError as e:
                raise CommandError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})", returncode=1) from e
            except OSError as e:
                raise CommandError(f"{name}: {e.strerror or e}", returncode=1) from e
        try:
            with transaction.atomic():  # the changes and their audit entries land together, or neither
                result = apply_manifests(sources, dry_run=options["dry_run"], prune=options["prune"])
                if not result.dry_run:
                    files = " ".join(f"-f {label}" for label, _ in sources)
                    record_apply(result, None, source=AuditEntry.Source.CLI,
                                 note=f"accord apply {files}{' --prune' if options['prune'] else ''} "
                                      f"(system user {_who()})")
        except ManifestSyntaxError as e:
            for line in e.errors:
                self.stderr.write(line)
            raise CommandError("the file is not valid YAML; nothing was changed", returncode=1) from e
        except ManifestError as e:
            for line in e.errors:
                self.stderr.write(line)
            count = len(e.errors)
            raise CommandError(f"{count} error{'s' if count != 1 else ''}; nothing was changed", returncode=2) from e
        if not result.outcomes:
            self.stdout.write("nothing to do: no calendars, tiers, services, partners or agreements in "
                              + ", ".join(label for label, _ in sources))
            return
        for line in result.lines():
            self.stdout.write(line)
        for line in result.warnings:
            self.stdout.write(f"warning: {line}")
        self.stdout.write(result.summary() + (" (dry run: nothing was written)" if result.dry_run else ""))
