"""`accord seed-demo`: the demo company (calendars, tiers, services, agreements, a few hundred accounts)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accord.customers.models import Account
from accord.web import demo

MAX_ACCOUNTS = 100_000


class Command(BaseCommand):
    help = (
        "Create the demo travel agency in an empty database: the demo manifest (calendars, tiers, services, "
        "agreements), corporate accounts with commitments, contacts, API keys and a tier history, and a demo/demo "
        "login. Refuses to run when accounts exist, unless --if-empty is given, which then does nothing."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--accounts", type=int, default=300, metavar="N", help=f"how many corporate accounts, 1 to {MAX_ACCOUNTS} (default 300)"
        )
        parser.add_argument(
            "--seed", type=int, default=7, metavar="S", help="random seed (default 7); the same seed gives the same company"
        )
        parser.add_argument("--if-empty", action="store_true", help="do nothing (successfully) when accounts already exist")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["accounts"] <= MAX_ACCOUNTS:
            raise CommandError(f"--accounts must be between 1 and {MAX_ACCOUNTS}, not {options['accounts']}")
        existing = Account.objects.count()
        if existing:
            if options["if_empty"]:
                self.stdout.write(f"{existing} accounts exist already; the demo data is not seeded again")
                return
            raise CommandError(
                f"{existing} accounts exist already; seed-demo fills an empty database (--if-empty skips quietly)"
            )
        from accord.lib.manifest import ManifestError

        # On a terminal, a bar over the seed's phases (a large demo takes a minute); elsewhere nothing.
        bar = tqdm(total=demo.STEPS, desc="seeding", unit="step", file=sys.stderr, disable=None, leave=False)

        def progress(label: str) -> None:
            bar.set_description(label)
            bar.update(1)

        try:
            with bar:
                summary = demo.seed(options["accounts"], options["seed"], progress)
        except FileNotFoundError as e:
            raise CommandError(f"the demo manifest is missing: {e.filename}") from e
        except ManifestError as e:
            for line in e.errors:
                self.stderr.write(line)
            raise CommandError(f"the demo manifest {demo.MANIFEST} is not valid; nothing was changed") from e
        tiers = ", ".join(f"{name} {n}" for name, n in summary.per_tier.items())
        self.stdout.write(f"manifest {demo.MANIFEST.name}: {summary.manifest}")
        self.stdout.write(f"{summary.services} services, {summary.agreements} agreements")
        self.stdout.write(
            f"{summary.accounts} accounts by tier: {tiers}; {summary.overrides} manual overrides"
        )
        self.stdout.write(
            f"{summary.contacts} contacts, {summary.commitments} commitments, {summary.credentials} API keys, "
            f"{summary.tickets} tickets"
        )
        if summary.demo_user_created:
            login = "log in as demo / demo"
        else:
            login = "log in as demo (the user existed already; its password is unchanged)"
        self.stdout.write(
            self.style.SUCCESS(f"{login} at /login/ (e.g. http://127.0.0.1:8000/login/ after `accord serve`)")
        )
