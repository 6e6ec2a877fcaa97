"""`accord import SUBJECT FILE.csv [--strict]`: accounts, contacts, and what other apps register (orders)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.customers import tiers
from accord.lib.csvio import CsvFileError, importers


class Command(BaseCommand):
    help = (
        "Import accounts, contacts or orders from CSV (docs/csv.md). Every rejected row is reported with its line number; "
        "the last line is `imported N, updated M, rejected K`. Exit codes: 0 all rows imported, 1 some rows rejected "
        "(the others were imported), 2 nothing imported (--strict with rejections, or a file that cannot be read)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("subject", choices=sorted(importers()))
        parser.add_argument("file", type=Path, help="the CSV file (- for stdin)")
        parser.add_argument("--strict", action="store_true", help="import nothing if any row is rejected (exit 2)")
        parser.add_argument("--encoding", default="utf-8", help="the file's encoding (default utf-8, BOM allowed)")
        parser.add_argument("--progress", action="store_true", help="show a progress bar even when not on a TTY")
        parser.add_argument(
            "--recompute-tiers", action="store_true", help="re-evaluate all tiers after importing accounts"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        except OSError as e:
            raise CommandError(f"{path}: {e.strerror or e}", returncode=2) from e
        try:
            report = importers()[options["subject"]](
                data,
                strict=options["strict"],
                encoding=options["encoding"],
                progress=options["progress"] or sys.stderr.isatty(),
            )
        except CsvFileError as e:
            raise CommandError(f"{path}: {e}; nothing was imported", returncode=2) from e
        for line, reason in report.rejected:
            self.stderr.write(f"{path}:{line}: rejected: {reason}")
        if not report.written:
            self.stdout.write(report.summary())
            raise CommandError(
                f"{len(report.rejected)} row(s) rejected with --strict; nothing was imported", returncode=2
            )
        self.stdout.write(report.summary())
        if options["recompute_tiers"] and options["subject"] == "accounts":
            changes = tiers.recompute()
            self.stdout.write(f"tiers recomputed: {len(changes)} changed")
        if report.rejected:
            raise CommandError(f"{len(report.rejected)} row(s) rejected; the other rows were imported", returncode=1)
