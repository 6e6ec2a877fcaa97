"""`accord privacy`: export or erase a person's data, and the daily retention purge (docs/privacy.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.privacy import person, retention


class Command(BaseCommand):
    help = ("A person's data (docs/privacy.md): `export CONTACT [-o FILE.zip]`, `erase CONTACT [--confirm-open]` "
            "(pseudonymise everywhere; statistics stay), `purge [--dry-run]` (retention, run daily). CONTACT: its "
            "number, external id, e-mail address or phone number.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        e = sub.add_parser("export", help="a zip of everything held about the person")
        e.add_argument("contact")
        e.add_argument("-o", "--output", help="default: contact-<number>.zip here")
        r = sub.add_parser("erase", help="replace the person by a pseudonym everywhere")
        r.add_argument("contact")
        r.add_argument("--confirm-open", action="store_true",
                       help="erase although they have open tickets (which go on under the pseudonym)")
        p = sub.add_parser("purge", help="delete what the retention rules say is no longer needed")
        p.add_argument("--dry-run", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "purge":
            self._purge(options["dry_run"])
            return
        contact = person.find(options["contact"])
        if contact is None:
            raise CommandError(f"no contact {options['contact']!r} (give its number, external id, address or phone)")
        if options["action"] == "export":
            out = Path(options["output"] or f"contact-{contact.pk}.zip")
            data = person.export_zip(contact)
            out.write_bytes(data)
            self.stdout.write(f"wrote {out} ({len(data):,} bytes): everything held about contact {contact.pk}")
            return
        try:
            done = person.erase(contact, confirm_open=options["confirm_open"])
        except person.OpenTickets as e:
            raise CommandError(f"contact {contact.pk} has {e}; they go on under a pseudonym if you erase: "
                               "run again with --confirm-open") from None
        self.stdout.write(f"erased contact {done.contact_id} as {done.pseudonym}: {done.rows} row(s) rewritten, "
                          f"{done.raw_deleted} raw e-mail(s) deleted, {done.attachments_cleared} attachment(s) "
                          f"cleared{f', {len(done.open_tickets)} open ticket(s) go on' if done.open_tickets else ''}")

    def _purge(self, dry: bool) -> None:
        verb = "would delete" if dry else "deleted"

        def progress(name: str, n: int) -> None:
            self.stdout.write(f"  {name}: {verb} {n:,}")

        self.stdout.write("retention rules" + (" (dry run: nothing changes)" if dry else ""))
        counts = retention.purge(dry_run=dry, progress=progress)
        self.stdout.write(f"{verb} {sum(counts.values()):,} row(s) in {len(counts)} rule(s)")
