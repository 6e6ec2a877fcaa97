"""`accord billing run|finalise|pay|void|list`: the month's invoices (docs/billing.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from accord.billing.actions import do_finalise, do_mark_paid, do_run, do_void
from accord.billing.invoicing import BillingError
from accord.billing.models import FinalisedError, Invoice
from accord.customers.models import Account


class Command(BaseCommand):
    help = "Draft the month's invoices from the meters and plans (accord billing run --period YYYY-MM), finalise them."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("run", help="draft (or re-draft) a month's invoices; finalised ones are left alone")
        run.add_argument("--period", required=True, help="YYYY-MM, each account's own calendar month")
        run.add_argument("--account", help="external id (or id) of one account")
        run.add_argument("--finalise", action="store_true", help="number the drafts (they become immutable)")
        run.add_argument("--progress", action="store_true", help="show the progress bar even when not on a TTY")
        ls = sub.add_parser("list", help="invoices and credit notes of a month")
        ls.add_argument("--period", required=True)
        for name, what in (("finalise", "number a draft invoice"), ("pay", "mark a finalised invoice paid"),
                           ("void", "void a finalised invoice")):
            p = sub.add_parser(name, help=what)
            p.add_argument("id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "run":
            return self.run(options)
        if action == "list":
            for inv in Invoice.objects.filter(period=options["period"]).select_related("account"):
                self.stdout.write(f"{inv.pk}\t{inv.number or '-'}\t{inv.kind}\t{inv.status}\t"
                                  f"{inv.account.external_id or inv.account.pk}\t{inv.total} {inv.currency}\n")
            return None
        try:
            if action == "finalise":
                inv = do_finalise(options["id"])
            else:
                inv = (do_mark_paid if action == "pay" else do_void)(options["id"])
        except (BillingError, FinalisedError) as e:
            raise CommandError(str(e)) from None
        inv.refresh_from_db()
        self.stdout.write(f"invoice {inv.pk}: {inv.status} ({inv.number})\n")
        return None

    def run(self, options: dict[str, Any]) -> None:
        from tqdm import tqdm

        accounts = None
        if options.get("account"):
            key = options["account"]
            match = Q(external_id=key) | (Q(pk=int(key)) if key.isdigit() else Q(pk__in=[]))
            accounts = Account.objects.filter(match)
            if not accounts.exists():
                raise CommandError(f"no account {key!r} (give its external id or id)")
        bar = tqdm(total=0, unit="account", file=sys.stderr,
                   disable=not (options["progress"] or sys.stderr.isatty()))
        try:
            result = do_run(options["period"], accounts, finalise=options["finalise"], progress=bar)
        except (ValueError, BillingError) as e:
            raise CommandError(str(e)) from None
        finally:
            bar.close()
        self.stdout.write(result.summary() + "\n")
        return None
