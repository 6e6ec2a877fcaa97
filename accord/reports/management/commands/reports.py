"""`accord reports build|close|verify`: period reports per account (HTML, PDF, CSV), frozen periods."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accord.lib.csvio import progress_bar
from accord.reports import render
from accord.reports.builder import accounts_for
from accord.reports.files import build_all
from accord.reports.freeze import FreezeError, close, file_name, pdf_available, verify
from accord.reports.periods import Period, parse_period


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 1 process")
    return value


def period_arg(text: str) -> Period:
    try:
        return parse_period(text)
    except ValueError as e:
        raise CommandError(str(e)) from None


class Command(BaseCommand):
    help = "Build, close (freeze) and verify period reports."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        b = sub.add_parser("build", help="HTML, PDF and CSV per account, and a CSV across all accounts")
        b.add_argument("--period", required=True, help="YYYY-MM, or YYYY-MM-DD..YYYY-MM-DD")
        b.add_argument("--account", help="external id of one account (default: every account with an agreement)")
        b.add_argument("--out", default="reports", help="directory to write to (default: ./reports)")
        b.add_argument("--no-pdf", action="store_true", help="HTML and CSV only")
        b.add_argument("--jobs", type=positive, default=0,
                       help="processes building reports (default: one per CPU core)")
        c = sub.add_parser("close", help="freeze an ended period: store each report with its SHA-256 digest")
        c.add_argument("--period", required=True)
        c.add_argument("--account")
        c.add_argument("--restate", action="store_true", help="build a closed period anew: a new version")
        c.add_argument("--reason", default="", help="why the period is restated (required with --restate)")
        c.add_argument("--out", help="also write the stored files here")
        v = sub.add_parser("verify", help="check a report file against the stored digests")
        v.add_argument("file")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['action']}")(options)

    def _accounts(self, options: dict[str, Any]) -> list[Any]:
        try:
            return accounts_for(options.get("account"))
        except LookupError as e:
            raise CommandError(str(e)) from None

    def do_build(self, options: dict[str, Any]) -> None:
        period = period_arg(options["period"])
        accounts = self._accounts(options)
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        want_pdf = not options["no_pdf"]
        if want_pdf and not pdf_available():
            raise CommandError("WeasyPrint (with Pango) is not installed: install it, or pass --no-pdf")
        jobs = options["jobs"] or (os.cpu_count() or 1)
        now = timezone.now()
        started = time.monotonic()
        every: list[list[str]] = []
        files = 0
        provisional = False
        seconds: dict[str, float] = {}
        bar = progress_bar(len(accounts), options["verbosity"] > 0 and sys.stderr.isatty())
        bar.unit = "report"
        for batch in build_all(accounts, period, now, out, want_pdf=want_pdf, jobs=jobs, progress=bar.update):
            every.extend(batch.rows)
            files += batch.files
            provisional = provisional or batch.provisional
            for stage, value in batch.seconds.items():
                seconds[stage] = seconds.get(stage, 0.0) + value
        bar.close()
        (out / f"all-accounts-{period.label}.csv").write_bytes(render.write_csv(every))
        files += 1
        note = " (provisional: the period has not ended)" if provisional else ""
        stages = ", ".join(f"{stage} {value:.1f} s" for stage, value in seconds.items() if stage != "pdf" or want_pdf)
        self.stdout.write(f"built {len(accounts)} reports for {period.label}: {files} files in {out} "
                          f"in {time.monotonic() - started:.1f} s on {min(jobs, max(1, len(accounts)))} "
                          f"process(es) ({stages} of process time){note}")

    def do_close(self, options: dict[str, Any]) -> None:
        period = period_arg(options["period"])
        accounts = self._accounts(options)
        bar = progress_bar(len(accounts), options["verbosity"] > 0 and sys.stderr.isatty())
        try:
            done = close(accounts, period, reason=options["reason"], restate=options["restate"],
                         progress=lambda _c: bar.update(1))
        except FreezeError as e:
            raise CommandError(str(e)) from None
        finally:
            bar.close()
        if options.get("out"):
            from accord.reports.models import FrozenReport

            out = Path(options["out"])
            out.mkdir(parents=True, exist_ok=True)
            for c in done:
                for f in FrozenReport.objects.filter(account=c.account, period=period.label, version=c.version):
                    (out / file_name(c.account, period, c.version, f.fmt)).write_bytes(bytes(f.content))
        new = [c for c in done if c.new]
        for c in new:
            if c.changes:
                self.stdout.write(f"{file_name(c.account, period, c.version, 'csv')}: restated\n{c.changes}")
        self.stdout.write(f"closed {period.label}: {len(new)} new report versions, "
                          f"{len(done) - len(new)} unchanged of {len(done)} accounts")

    def do_verify(self, options: dict[str, Any]) -> None:
        path = Path(options["file"])
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CommandError(f"cannot read {path}: {e.strerror}") from None
        verdict = verify(data, path.name)
        if not verdict.ok:
            raise CommandError(verdict.message)
        self.stdout.write(verdict.message)
