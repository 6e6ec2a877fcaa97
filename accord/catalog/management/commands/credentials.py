"""`accord credentials`: issue, list and revoke API keys of accounts."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accord.access.audit import diff, record, snapshot
from accord.access.models import AuditEntry
from accord.catalog.models import ApiCredential
from accord.customers.models import Account


class Command(BaseCommand):
    help = "Issue (key shown once), list and revoke API credentials of accounts."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        issue = sub.add_parser("issue", help="create a key for an account and print it once")
        issue.add_argument("account", help="the account's external id")
        issue.add_argument("--name", default="", help="a label for the key")
        listing = sub.add_parser("list", help="list keys (prefix, account, status)")
        listing.add_argument("--account", help="only this account's external id")
        revoke = sub.add_parser("revoke", help="revoke a key by its prefix")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "issue":
            account = self._account(options["account"])
            with transaction.atomic():
                cred, key = ApiCredential.issue(account, options["name"])
                after = snapshot(cred)
                after.pop("key_hash", None)
                record(None, "issue-key", cred, changes=diff({}, after), summary=f"API key of {account.name}",
                       source=AuditEntry.Source.CLI)
            self.stdout.write(key)
            self.stderr.write(f"issued {cred.prefix}... for {account.name}; store the key now, it is not shown again")
        elif action == "list":
            qs = ApiCredential.objects.select_related("account")
            if options["account"]:
                qs = qs.filter(account=self._account(options["account"]))
            for c in qs:
                status = "revoked" if c.revoked_at else "active"
                used = c.last_used_at.isoformat() if c.last_used_at else "never used"
                self.stdout.write(f"{c.prefix}\t{c.account.external_id or c.account.pk}\t{c.name}\t{status}\t{used}")
        else:
            matches = list(ApiCredential.objects.filter(prefix=options["prefix"]))
            if not matches:
                raise CommandError(f"No credential has the prefix '{options['prefix']}'.")
            if len(matches) > 1:
                raise CommandError(f"Prefix '{options['prefix']}' is ambiguous ({len(matches)} keys).")
            with transaction.atomic():
                before = snapshot(matches[0], ["revoked_at"])
                matches[0].revoke()
                changes = diff(before, snapshot(matches[0], ["revoked_at"]))
                if changes:
                    record(None, "revoke-key", matches[0], changes=changes, source=AuditEntry.Source.CLI,
                           summary=f"API key of {matches[0].account.name}")
            self.stdout.write(f"revoked {matches[0].prefix}...")

    def _account(self, external_id: str) -> Account:
        try:
            return Account.objects.get(external_id=external_id)
        except Account.DoesNotExist:
            raise CommandError(f"No account has the external id '{external_id}'.") from None
