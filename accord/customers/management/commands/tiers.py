"""`accord tiers recompute`: re-evaluate every account's tier and print what changed."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.customers import tiers
from accord.customers.models import Account, Tier
from accord.lib.units import money


class Command(BaseCommand):
    help = "Work with tiers: `recompute` re-evaluates all accounts against the tier rules and overrides."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        recompute = sub.add_parser("recompute", help="re-evaluate every account and print the changes")
        recompute.add_argument("--account", action="append", default=[], help="only this external id (repeatable)")
        recompute.add_argument("--quiet", action="store_true", help="print only the summary line")
        sub.add_parser("list", help="print the tier rules in rank order with account counts")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            self._list()
            return
        if not Tier.objects.exists():
            raise CommandError("No tier rules are defined; add them with `accord apply -f FILE.yaml` (section `tiers`).")
        accounts = None
        if options["account"]:
            accounts = Account.objects.filter(external_id__in=options["account"]).select_related("tier")
            missing = set(options["account"]) - set(accounts.values_list("external_id", flat=True))
            if missing:
                raise CommandError(f"Unknown account external id(s): {', '.join(sorted(missing))}")
        changes = tiers.recompute(accounts)
        if not options["quiet"]:
            for c in changes:
                before = c.before.name if c.before else "-"
                after = c.after.name if c.after else "-"
                ident = c.account.external_id or f"#{c.account.pk}"
                self.stdout.write(f"{ident}\t{c.account.name}\t{before} -> {after}\t{c.cause}: {c.detail}")
        total = len(accounts) if accounts is not None else Account.objects.count()
        self.stdout.write(f"evaluated {total} accounts, changed {len(changes)}")

    def _list(self) -> None:
        for t in Tier.objects.order_by("rank"):
            parts = []
            if t.min_commitment is not None:
                parts.append(f"commitment >= {money(t.min_commitment)}")
            if t.min_revenue_12m is not None:
                parts.append(f"12-month revenue >= {money(t.min_revenue_12m)}")
            rule = f" {t.match} ".join(parts) if parts else "everyone else"
            self.stdout.write(f"{t.rank}\t{t.name}\t{rule}\t{t.accounts.count()} accounts")
