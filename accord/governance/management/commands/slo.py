"""`accord slo status [--account X] [--agreement A] [--json]`: service levels and error budgets right now."""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone

from accord.agreements.models import Agreement
from accord.customers.models import Account
from accord.governance.indicators import budget_status, runtime_objectives


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


class Command(BaseCommand):
    help = "Show service-level indicators and error budgets of agreement objectives."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        status = sub.add_parser("status", help="each run-time objective: SLI, target, budget used and left")
        status.add_argument("--account", help="external id (or id) of an account: its agreement's objectives")
        status.add_argument("--agreement", help="name of an agreement")
        status.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        objectives = runtime_objectives()
        if options.get("agreement"):
            if not Agreement.objects.filter(name=options["agreement"]).exists():
                raise CommandError(f"no agreement named {options['agreement']!r}")
            objectives = objectives.filter(agreement__name=options["agreement"])
        if options.get("account"):
            key = options["account"]
            query = Q(external_id=key) | (Q(pk=int(key)) if key.isdigit() else Q(pk__in=[]))
            account = Account.objects.filter(query).first()
            if account is None:
                raise CommandError(f"no account with external id or id {key!r}")
            agreement = Agreement.for_account(account, timezone.localdate())
            if agreement is None:
                raise CommandError(f"account {key!r} has no agreement in force")
            objectives = objectives.filter(agreement=agreement)
        now = timezone.now()
        objectives = objectives.select_related("agreement")
        rows = [{**budget_status(o, now).as_dict(), "simulated": o.agreement.simulated} for o in objectives]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("no run-time objectives")
            return
        self.stdout.write(f"{'agreement/objective':40} {'kind':12} {'target':>9} {'SLI':>11} {'requests':>9} "
                          f"{'budget used':>11} {'left':>7}  status")
        for r in rows:
            unit = " ms" if r["kind"] == "latency" else " %"
            sli = "-" if r["sli"] is None else f"{r['sli']:.3f}{unit}"
            status = "no data" if r["met"] is None else ("met" if r["met"] else "MISSED")
            name = r["agreement"] + "/" + r["objective"]
            self.stdout.write(
                f"{name:40} {r['kind']:12} {r['target']:>6g}{unit:3} {sli:>11} {r['requests']:>9,} "
                f"{_pct(r['consumed']):>11} {_pct(r['remaining']):>7}  {status}"
                + ("  (simulated: a scenario's account)" if r["simulated"] else "")
            )
