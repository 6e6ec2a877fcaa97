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
from accord.lib import units


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
        statuses = [budget_status(o, now) for o in objectives.select_related("agreement")]
        if options["json"]:
            # as_dict is JSON-safe (infinity as "Infinity"); allow_nan=False proves it
            rows = [{**s.as_dict(), "simulated": s.objective.agreement.simulated} for s in statuses]
            self.stdout.write(json.dumps(rows, indent=2, allow_nan=False))
            return
        if not statuses:
            self.stdout.write("no run-time objectives")
            return
        self.stdout.write(f"{'agreement/objective':40} {'target':>18} {'measured':>18} {'valid':>9} {'bad':>7} "
                          f"{'excluded':>8} {'budget used':>11} {'left':>9}  status")
        for s in statuses:
            o = s.objective
            status = "no data" if s.met is None else ("met" if s.met else "MISSED")
            self.stdout.write(
                f"{o.agreement.name + '/' + o.name:40} {o.target_label():>18} {s.sli_label():>18} "
                f"{units.number(s.valid):>9} {units.number(s.bad):>7} {units.number(s.excluded):>8} "
                f"{units.share(s.consumed, 1):>11} {units.share(s.remaining, 1):>9}  {status}"
                + ("  (simulated: a scenario's account)" if o.agreement.simulated else "")
            )
        self.stdout.write("valid: requests the SLI counts; excluded: refused by the customer's rate limit (429) or "
                          "abandoned (499) before the objective's latency threshold (docs/governance.md)")
