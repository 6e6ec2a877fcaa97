"""`accord openslo export|import`: the agreements' run-time objectives as OpenSLO v1 (accord/agreements/openslo.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.lib.manifest import ManifestError, ManifestSyntaxError

from ... import openslo


class Command(BaseCommand):
    help = (
        "OpenSLO v1: `export` writes the agreements' run-time objectives as SLO, Service and AlertPolicy documents; "
        "`import FILE...` reads them back into agreements through `accord apply`'s checks (docs/agreements-as-code.md)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        exp = sub.add_parser("export", help="write OpenSLO YAML (standard output without -o)")
        exp.add_argument("-o", "--output", help="the file to write")
        exp.add_argument("--agreement", action="append", default=[], metavar="NAME",
                         help="only this agreement (give it several times for several)")
        imp = sub.add_parser("import", help="read OpenSLO files into the agreements")
        imp.add_argument("files", nargs="+", metavar="FILE", help="OpenSLO YAML files (- for standard input)")
        imp.add_argument("--dry-run", action="store_true", help="check and show what would change, write nothing")
        imp.add_argument("--replace", action="store_true",
                         help="also delete the run-time objectives of the agreements the files name that they do not list")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "export":
            self._export(options)
        else:
            self._import(options)

    def _export(self, options: dict[str, Any]) -> None:
        from accord.agreements.models import Agreement

        unknown = sorted(set(options["agreement"]) - set(
            Agreement.objects.filter(name__in=options["agreement"]).values_list("name", flat=True)))
        if unknown:
            raise CommandError(f"no agreement named {', '.join(unknown)}")
        text = openslo.export_text(options["agreement"])
        if options["output"] and options["output"] != "-":
            try:
                Path(options["output"]).write_text(text, encoding="utf-8")
            except OSError as e:
                raise CommandError(f"{options['output']}: {e.strerror or e}") from e
            count = text.count("\nkind: SLO\n")
            self.stdout.write(f"wrote {count} SLO{'s' if count != 1 else ''} to {options['output']}")
        else:
            self.stdout.write(text, ending="")

    def _import(self, options: dict[str, Any]) -> None:
        sources: list[tuple[str, str]] = []
        for name in options["files"]:
            try:
                text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise CommandError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})", returncode=1) from e
            except OSError as e:
                raise CommandError(f"{name}: {e.strerror or e}", returncode=1) from e
            sources.append(("<stdin>" if name == "-" else name, text))
        try:
            result = openslo.import_documents(sources, dry_run=options["dry_run"], replace=options["replace"])
        except ManifestSyntaxError as e:
            for line in e.errors:
                self.stderr.write(line)
            raise CommandError("not valid YAML; nothing was changed", returncode=1) from e
        except ManifestError as e:
            for line in e.errors:
                self.stderr.write(line)
            count = len(e.errors)
            raise CommandError(f"{count} error{'s' if count != 1 else ''}; nothing was changed", returncode=2) from e
        for line in result.lines():
            self.stdout.write(line)
        for line in result.warnings:
            self.stdout.write(f"warning: {line}")
        self.stdout.write(result.summary() + (" (dry run: nothing was written)" if result.dry_run else ""))
