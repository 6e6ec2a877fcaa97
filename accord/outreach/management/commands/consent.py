"""`accord consent`: purposes, consents and the suppression list from the command line."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accord.customers.models import Contact
from accord.outreach import consent as service
from accord.outreach.models import Consent, Purpose, Suppression


class Command(BaseCommand):
    help = ("Marketing consent (docs/outreach.md): `purpose add NAME TITLE`, `request CONTACT PURPOSE` (mails the "
            "double opt-in), `withdraw CONTACT [PURPOSE]`, `list [--contact C]`, `import FILE.csv`, `suppress ADDRESS`.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        p = sub.add_parser("purpose", help="add a purpose contacts can agree to")
        p.add_argument("verb", choices=["add"])
        p.add_argument("name")
        p.add_argument("title")
        p.add_argument("--description", default="")
        r = sub.add_parser("request", help="ask a contact to confirm a purpose (double opt-in mail)")
        r.add_argument("contact", help="the contact's external id, or an e-mail address of theirs")
        r.add_argument("purpose")
        r.add_argument("--address", help="another of the contact's addresses")
        w = sub.add_parser("withdraw", help="stop a purpose (or every purpose) for a contact")
        w.add_argument("contact")
        w.add_argument("purpose", nargs="?")
        ls = sub.add_parser("list", help="consents, with their status and proof")
        ls.add_argument("--contact")
        i = sub.add_parser("import", help="CSV with columns contact,purpose[,address,proof]; without proof: pending")
        i.add_argument("file")
        s = sub.add_parser("suppress", help="put an address on the suppression list")
        s.add_argument("address")
        s.add_argument("--reason", choices=[c for c, _ in Suppression.Reason.choices], default="manual")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "purpose":
            p, created = Purpose.objects.update_or_create(
                name=options["name"], defaults={"title": options["title"], "description": options["description"]})
            self.stdout.write(f"purpose {p.name}: {'created' if created else 'updated'}")
            return
        getattr(self, f"_{action}")(options)

    @staticmethod
    def _contact(ref: str) -> Contact:
        found = Contact.objects.filter(external_id=ref).first() or service.contact_by_address(ref)
        if found is None:
            raise CommandError(f"no contact with external id or e-mail address {ref!r}")
        return found

    @staticmethod
    def _purpose(name: str) -> Purpose:
        found = Purpose.objects.filter(name=name).first()
        if found is None:
            known = ", ".join(Purpose.objects.values_list("name", flat=True)) or "none yet: `accord consent purpose add`"
            raise CommandError(f"no purpose {name!r} (known: {known})")
        return found

    def _request(self, options: dict[str, Any]) -> None:
        contact, purpose = self._contact(options["contact"]), self._purpose(options["purpose"])
        try:
            c = service.request(contact, purpose, "staff", address=options["address"])
        except ValueError as e:
            raise CommandError(str(e)) from e
        self.stdout.write(f"{contact} / {purpose.name}: {c.status} ({c.address})"
                          + (" - confirmation mailed" if c.status == Consent.Status.PENDING else ""))

    def _withdraw(self, options: dict[str, Any]) -> None:
        contact = self._contact(options["contact"])
        if options["purpose"]:
            c = Consent.objects.filter(contact=contact, purpose=self._purpose(options["purpose"])).first()
            if c is None:
                raise CommandError(f"{contact} has no consent for {options['purpose']}")
            service.withdraw(c, "staff")
            self.stdout.write(f"{contact} / {c.purpose.name}: withdrawn")
        else:
            self.stdout.write(f"{contact}: {service.withdraw_all(contact, 'staff')} consent(s) withdrawn")

    def _list(self, options: dict[str, Any]) -> None:
        qs = Consent.objects.select_related("contact", "purpose")
        if options["contact"]:
            qs = qs.filter(contact=self._contact(options["contact"]))
        rows = list(qs)
        for c in rows:
            self.stdout.write(f"{c.contact.name:<30} {c.purpose.name:<16} {c.status:<10} {c.address:<30} {c.proof}")
        self.stdout.write(f"{len(rows)} consent(s)")

    def _import(self, options: dict[str, Any]) -> None:
        path = Path(options["file"])
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise CommandError(f"{path}: {e}") from e
        reader = csv.DictReader(text.splitlines())
        missing = {"contact", "purpose"} - set(reader.fieldnames or [])
        if missing:
            raise CommandError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        done, rejected = {"pending": 0, "confirmed": 0}, []
        with transaction.atomic():
            for line, row in enumerate(reader, start=2):
                try:
                    contact, purpose = self._contact(row["contact"] or ""), self._purpose(row["purpose"] or "")
                    c = service.record_import(contact, purpose, address=row.get("address") or None,
                                              proof=(row.get("proof") or "").strip())
                except (CommandError, ValueError) as e:
                    rejected.append(f"line {line}: {e}")
                    continue
                done[c.status] = done.get(c.status, 0) + 1
        for r in rejected:
            self.stderr.write(r)
        self.stdout.write(f"imported {done['confirmed']} confirmed (with proof), {done['pending']} pending "
                          f"(no proof: they confirm by mail first), rejected {len(rejected)}")

    def _suppress(self, options: dict[str, Any]) -> None:
        row = service.suppress(options["address"], options["reason"], "accord consent suppress")
        self.stdout.write(f"{row.address}: suppressed ({row.reason})")
