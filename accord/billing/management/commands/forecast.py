"""`accord forecast`: daily volumes forecast eight weeks ahead, per account and meter and per service, with the
alerts where a forecast crosses a plan's included quantity or tier or a pool's capacity, or a day jumps (docs/billing.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from accord.billing import alerting
from accord.billing.forecasting import (
    HISTORY_DAYS,
    HORIZON,
    Outlook,
    account_outlooks,
    service_outlooks,
    store,
)
from accord.billing.models import Meter
from accord.catalog.models import Service
from accord.customers.models import Account


class Command(BaseCommand):
    help = ("Forecast daily volumes eight weeks ahead per account (each meter) and per service, and list the "
            "alerts: a plan's included quantity or tier, a pool's capacity, a sudden change; each new alert is "
            "sent once by e-mail and webhook.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--account", action="append", default=[], help="external id (or id); repeatable")
        parser.add_argument("--service", action="append", default=[], help="service name; repeatable")
        parser.add_argument("--meter", action="append", default=[], help="meter name; repeatable (default: all)")
        parser.add_argument("--horizon", type=int, default=HORIZON, help=f"days ahead (default {HORIZON})")
        parser.add_argument("--history", type=int, default=HISTORY_DAYS,
                            help=f"complete days of history to fit on (default {HISTORY_DAYS})")
        parser.add_argument("--json", action="store_true", help="every series with its forecast, as JSON")
        parser.add_argument("--progress", action="store_true", help="show the progress bar even when not on a TTY")
        parser.add_argument("--dry-run", action="store_true",
                            help="do not keep the forecasts for the account and service pages")

    def handle(self, *args: Any, **options: Any) -> None:
        from tqdm import tqdm

        if not 1 <= options["horizon"] <= 366:
            raise CommandError("--horizon is a number of days from 1 to 366")
        if not 7 <= options["history"] <= 1100:
            raise CommandError("--history is a number of days from 7 to 1100")
        accounts = Account.objects.all()
        if options["account"]:
            keys = options["account"]
            accounts = Account.objects.filter(Q(external_id__in=keys) | Q(pk__in=[k for k in keys if k.isdigit()]))
            found = {a.external_id for a in accounts} | {str(a.pk) for a in accounts}
            missing = [k for k in keys if k not in found]
            if missing:
                raise CommandError(f"no account {', '.join(map(repr, missing))} (give its external id or id)")
        meters = Meter.objects.all()
        if options["meter"]:
            meters = meters.filter(name__in=options["meter"])
            missing = sorted(set(options["meter"]) - {m.name for m in meters})
            if missing:
                raise CommandError(f"no meter {', '.join(map(repr, missing))}; `accord apply` defines meters")
        services = Service.objects.prefetch_related("pools")
        if options["service"]:
            services = services.filter(name__in=options["service"])
            missing = sorted(set(options["service"]) - {s.name for s in services})
            if missing:
                raise CommandError(f"no service {', '.join(map(repr, missing))}")
        only_services = bool(options["service"]) and not options["account"]
        only_accounts = bool(options["account"]) and not options["service"]
        accounts_list = [] if only_services else list(accounts)
        services_list = [] if only_accounts else list(services)
        meters_list = list(meters)
        total = len(accounts_list) * len(meters_list) + len(services_list)
        bar = tqdm(total=total, unit="series", file=sys.stderr, disable=not (options["progress"] or sys.stderr.isatty()))
        try:
            common = {"history_days": options["history"], "horizon": options["horizon"], "progress": bar.update}
            outlooks = [*account_outlooks(accounts_list, meters_list, **common), *service_outlooks(services_list, **common)]
        finally:
            bar.close()
        delivery = None
        if not options["dry_run"]:
            store(outlooks)
            try:
                delivery = alerting.send(outlooks)
            except ValueError as e:  # a bad ACCORD_BILLING_ALERT_WEBHOOKS: the forecasts are kept, nothing is sent
                raise CommandError(f"{e}; the forecasts are stored, the alerts were not recorded or sent") from e
        if options["json"]:
            self.stdout.write(json.dumps({"series": [o.as_dict() for o in outlooks],
                                          "alerts": [a.as_dict() for o in outlooks for a in o.alerts],
                                          "deliveries": delivery.as_dict() if delivery else None}, indent=2) + "\n")
            return
        for o in outlooks:
            self.stdout.write(self.line(o) + "\n")
            for alert in o.alerts:
                self.stdout.write(f"  ALERT {alert.kind}: {alert.message}\n")
        if delivery is not None:
            self.stdout.write(delivery.line() + "\n")
            for n in delivery.undelivered:
                state = "given up" if n.failed_at else "retried next run"
                self.stdout.write(f"  UNDELIVERED {n.channel} to {n.target}: {n.subject} ({n.attempts} attempts, "
                                  f"{state}): {n.last_error}\n")
        self.stdout.write(self.summary(outlooks) + "\n")

    @staticmethod
    def line(o: Outlook) -> str:
        recent = o.history[-7:]
        head = f"{o.subject} {o.meter}: last 7 days {sum(recent) / len(recent):,.0f} {o.unit}/day"
        fc = o.forecast
        if not fc.ok:
            return f"{head}; no forecast: {fc.reason}"
        return (f"{head}; in {fc.horizon} days {fc.mean[-1]:,.0f}/day "
                f"({fc.interval:.0%} interval {fc.lower[-1]:,.0f}-{fc.upper[-1]:,.0f})")

    @staticmethod
    def summary(outlooks: list[Outlook]) -> str:
        kinds = Counter(a.kind for o in outlooks for a in o.alerts)
        short = sum(1 for o in outlooks if not o.forecast.ok)
        said = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
        return (f"forecast {len(outlooks) - short} series, {short} without a forecast (too little history); "
                f"alerts: {said}")
