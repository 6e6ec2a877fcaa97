"""`accord credits compute|list|approve|reject|apply`: the service-credit ledger."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accord.lib import units
from accord.reports.builder import accounts_for
from accord.reports.credits import CreditError, compute, credit_dict, decide, total
from accord.reports.models import Credit
from accord.reports.periods import parse_period


class Command(BaseCommand):
    help = "Compute service credits into the ledger, list them, approve, reject or apply them."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        c = sub.add_parser("compute", help="judge each account's period and record the credits owed")
        c.add_argument("--period", required=True, help="YYYY-MM")
        c.add_argument("--account", help="external id of one account")
        c.add_argument("--json", action="store_true")
        c.add_argument("--dry-run", action="store_true", help="show, store nothing")
        ls = sub.add_parser("list", help="the ledger")
        ls.add_argument("--period")
        ls.add_argument("--status", choices=[s.value for s in Credit.Status])
        ls.add_argument("--json", action="store_true")
        for name, what in (("approve", "approve a computed credit"), ("apply", "mark an approved credit applied"),
                           ("reject", "reject a credit, with a reason")):
            p = sub.add_parser(name, help=what)
            p.add_argument("id", type=int)
            p.add_argument("--by", default="accord", help="who decides (recorded in the audit trail)")
            p.add_argument("--reason", default="", required=name == "reject")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "compute":
            return self.do_compute(options)
        if action == "list":
            return self.do_list(options)
        status = {"approve": Credit.Status.APPROVED, "apply": Credit.Status.APPLIED,
                  "reject": Credit.Status.REJECTED}[action]
        try:
            credit = decide(options["id"], status, options["by"], options["reason"])
        except CreditError as e:
            raise CommandError(str(e)) from None
        self.stdout.write(f"credit {credit.pk}: {credit.status} by {options['by']} "
                          f"({units.money(credit.amount, credit.currency)})")
        return None

    def do_compute(self, options: dict[str, Any]) -> None:
        try:
            period = parse_period(options["period"])
            accounts = accounts_for(options.get("account"))
        except (ValueError, LookupError) as e:
            raise CommandError(str(e)) from None
        rows = compute(accounts, period, store=not options["dry_run"])
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2, allow_nan=False))
            return
        owed = [r for r in rows if r["status"] != "none"]
        for r in rows:
            attained = units.MISSING if r["attained"] is None else units.percent(r["attained"], 3)
            self.stdout.write(f"{r['account']:16} {r['agreement'] or '-':24} {r['objective']:20} "
                              f"target {units.percent(r['target']):>9} attained {attained:>10} "
                              f"credit {units.percent(r['percent']):>7} {units.money(r['amount'], r['currency']):>14} "
                              f"{r['status']}")
        sums = ", ".join(units.money(v, c) for c, v in sorted(total(owed).items())) or units.money(0)
        self.stdout.write(f"{len(owed)} credits owed for {period.label} across {len(accounts)} accounts: {sums}")
        sys.stdout.flush()

    def do_list(self, options: dict[str, Any]) -> None:
        credits = Credit.objects.select_related("account", "agreement").prefetch_related("steps")
        if options.get("period"):
            credits = credits.filter(period=options["period"])
        if options.get("status"):
            credits = credits.filter(status=options["status"])
        rows = [credit_dict(c) for c in credits]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        for r in rows:
            self.stdout.write(f"{r['id']:>6} {r['period']} {r['account']:16} {r['agreement']:24} {r['objective']:20} "
                              f"{r['percent']:>6} % {r['amount']:>12} {r['currency']} {r['status']}")
        self.stdout.write(f"{len(rows)} credits")
