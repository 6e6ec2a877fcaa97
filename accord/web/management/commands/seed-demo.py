"""`accord seed-demo`: the demo company (calendars, tiers, services, agreements, a few hundred accounts)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.customers.models import Account
from accord.web.demo import seed


class Command(BaseCommand):
    help = "Create the demo travel agency: manifest, accounts with commitments and contacts, tiers, a demo/demo login."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--accounts", type=int, default=300, help="how many corporate accounts (default 300)")
        parser.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same company")
        parser.add_argument("--if-empty", action="store_true", help="do nothing when accounts already exist")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["accounts"] <= 100_000:
            raise CommandError("--accounts must be between 1 and 100000")
        if Account.objects.exists():
            if options["if_empty"]:
                self.stdout.write("accounts exist already; the demo data is not seeded again")
                return
            raise CommandError("accounts exist already; seed-demo fills an empty database (use --if-empty to skip)")
        summary = seed(options["accounts"], options["seed"])
        self.stdout.write(f"manifest: {summary.manifest}")
        tiers = ", ".join(f"{name} {n}" for name, n in summary.per_tier.items())
        self.stdout.write(
            f"seeded {summary.accounts} accounts ({tiers}), {summary.contacts} contacts and {summary.tickets} tickets"
        )
        self.stdout.write("log in as demo / demo")
