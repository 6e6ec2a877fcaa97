"""`accord insight clv|pareto|recommend|health|topics|refresh`: customer insight from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accord.customers.models import Account
from accord.insight import actions, clv, health, recommend
from accord.insight.orders import CurrencyError, base_currency
from accord.insight.pareto import SOURCES, pareto


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a date like 2026-09-30") from None


class Command(BaseCommand):
    help = ("Customer insight (docs/insight.md): `clv` fits lifetime value, `pareto` the 80/20, `recommend` what "
            "to offer next, `health` scores accounts, `topics` clusters tickets, `refresh` does all the pages read.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        c = sub.add_parser("clv", help="fit BG/NBD + Gamma-Gamma on every account's orders and predict")
        c.add_argument("--calibration-end", type=_date, required=True, help="last day of orders fitted (YYYY-MM-DD)")
        c.add_argument("--unit", choices=sorted(clv.UNIT_DAYS), default="week", help="time unit (default week)")
        c.add_argument("--horizon", type=float, default=52, help="prediction horizon in units (default 52)")
        c.add_argument("--discount-rate", type=float, default=0.1, help="yearly discount rate (default 0.1)")
        c.add_argument("--json", action="store_true", help="parameters and every account's predictions as JSON")
        c.add_argument("--no-save", action="store_true", help="print only; keep the stored fit as it is")
        p = sub.add_parser("pareto", help="the 80/20 of revenue and profit; accounts that cost more than they bring")
        p.add_argument("--source", choices=SOURCES, default="accounts",
                       help="accounts: recorded 12-month revenue; orders: net orders of the last 365 days")
        p.add_argument("--json", action="store_true")
        r = sub.add_parser("recommend", help="what to offer each account next")
        r.add_argument("--evaluate", action="store_true", help="precision@k and recall@k on held-out orders")
        r.add_argument("-k", type=int, default=5, help="items per account (default 5)")
        r.add_argument("--account", help="only this account (external id)")
        r.add_argument("--json", action="store_true")
        h = sub.add_parser("health", help="score every account 0-100 and store the scores")
        h.add_argument("--account", help="show this account's factors (external id)")
        h.add_argument("--json", action="store_true")
        sub.add_parser("topics", help="cluster the latest tickets into topics")
        sub.add_parser("refresh", help="fit CLV (orders up to today), topics and health scores")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, "_" + options["action"])(options)

    def _out(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))

    def _clv(self, o: dict[str, Any]) -> None:
        if o["horizon"] <= 0:
            raise CommandError(f"--horizon must be above 0 (got {o['horizon']})")
        if not 0 <= o["discount_rate"] < 10:
            raise CommandError(f"--discount-rate is a yearly rate such as 0.1 (got {o['discount_rate']})")
        run = actions.compute_clv if o["no_save"] else actions.do_fit_clv
        try:
            result = run(o["calibration_end"], o["unit"], o["horizon"], o["discount_rate"])
        except (clv.FitError, CurrencyError) as e:
            raise CommandError(f"no fit: {e}") from e
        p, s = result.predictions, result.summary
        ext = dict(Account.objects.filter(pk__in=[int(i) for i in p.ids]).values_list("pk", "external_id"))
        currency = base_currency()
        rows: list[dict[str, Any]] = [
            {"account": ext.get(int(p.ids[i])) or f"#{int(p.ids[i])}", "repeat_purchases": int(s.x[i]),
             "expected_purchases": round(float(p.purchases[i]), 4), "probability_alive": round(float(p.alive[i]), 4),
             "expected_value": f"{p.value[i]:.2f}", "clv": f"{p.clv[i]:.2f}", "clv_low": f"{p.clv_low[i]:.2f}",
             "clv_high": f"{p.clv_high[i]:.2f}", "prior_only": bool(p.prior_only[i])}
            for i in sorted(range(len(p.ids)), key=lambda i: -p.clv[i])
        ]
        if o["json"]:
            self._out({
                "calibration_end": o["calibration_end"].isoformat(), "unit": o["unit"], "horizon": o["horizon"],
                "discount_rate": o["discount_rate"], "currency": currency, "customers": len(s),
                "repeat_customers": result.gamma_gamma.customers, "bgnbd": result.bgnbd.as_dict(),
                "gamma_gamma": result.gamma_gamma.as_dict(), "accounts": rows,
            })
            return
        m, g = result.bgnbd, result.gamma_gamma
        self.stdout.write(f"BG/NBD on {len(s)} customers ({o['unit']}s): r={m.r:.4f} alpha={m.alpha:.4f} "
                          f"a={m.a:.4f} b={m.b:.4f} log-likelihood={m.log_likelihood:.2f}")
        self.stdout.write(f"Gamma-Gamma on {g.customers} repeat customers: p={g.p:.4f} q={g.q:.4f} "
                          f"gamma={g.gamma:.4f} log-likelihood={g.log_likelihood:.2f}")
        self.stdout.write(f"Top accounts by CLV over {o['horizon']:g} {o['unit']}s ({currency}, "
                          f"{o['discount_rate'] * 100:g}% a year discount, 90% band):")
        for row in rows[:10]:
            self.stdout.write(f"  {row['account']:<16} {float(row['clv']):>14,.2f} {currency} "
                              f"[{float(row['clv_low']):,.2f} - {float(row['clv_high']):,.2f}]  "
                              f"{row['expected_purchases']:.2f} purchases, P(alive) {row['probability_alive']:.0%}")
        flagged = sum(1 for r in rows if r["prior_only"])
        if flagged:
            self.stdout.write(f"{flagged} account(s) with one purchase only: their value per purchase is the "
                              "population's (prior only)")
        self.stdout.write(f"fitted {len(s)} customers" + ("" if o["no_save"] else ", saved"))

    def _pareto(self, o: dict[str, Any]) -> None:
        try:
            result = pareto(o["source"], timezone.localdate())
        except CurrencyError as e:
            raise CommandError(str(e)) from e
        if o["json"]:
            self._out(result.as_dict())
            return
        currency = base_currency()
        self.stdout.write(f"{len(result.rows)} accounts ({o['source']}): revenue {result.total_revenue:,.2f} "
                          f"{currency}, profit {result.total_profit:,.2f} {currency}")
        if result.top_revenue_share is not None:
            self.stdout.write(f"the top 20% ({result.top_n} accounts) bring {result.top_revenue_share:.1%} of revenue")
        if result.top_profit_share is not None:
            self.stdout.write(f"the top 20% by profit bring {result.top_profit_share:.1%} of profit")
        unprofitable = result.unprofitable
        self.stdout.write(f"{len(unprofitable)} account(s) cost more to serve than they bring:")
        for r in unprofitable:
            self.stdout.write(f"  {r.external_id:<16} {r.name[:40]:<40} revenue {r.revenue:>14,.2f}  cost "
                              f"{r.cost:>14,.2f}  profit {r.profit:>14,.2f} {currency}")

    def _recommend(self, o: dict[str, Any]) -> None:
        if o["k"] < 1 or o["k"] > 50:
            raise CommandError(f"-k must be between 1 and 50 (got {o['k']})")
        if o["evaluate"]:
            e = recommend.evaluate(o["k"])
            if o["json"]:
                self._out(e.as_dict())
                return
            if not e.accounts:
                raise CommandError("no account has both earlier orders and new items in the held-out orders: "
                                   "nothing to evaluate")
            self.stdout.write(f"held out: orders from {e.cutoff} (UTC dates) on; {e.accounts} accounts with new items")
            self.stdout.write(f"co-occurrence: precision@{e.k} {e.precision:.3f}, recall@{e.k} {e.recall:.3f}")
            self.stdout.write(f"popularity:    precision@{e.k} {e.baseline_precision:.3f}, "
                              f"recall@{e.k} {e.baseline_recall:.3f}")
            return
        offers = recommend.for_accounts(o["k"])
        accounts = Account.objects.in_bulk(list(offers))
        if o["account"]:
            found = Account.objects.filter(external_id=o["account"]).first()
            if found is None:
                raise CommandError(f"no account with external id '{o['account']}'")
            offers = {found.pk: offers.get(found.pk, [])}
            accounts = {found.pk: found}
        data = {accounts[pk].external_id or f"#{pk}": [
            {"sku": f.sku, "score": round(f.score, 4), "because": f.because, "lift": round(f.lift, 2)} for f in items
        ] for pk, items in offers.items()}
        if o["json"]:
            self._out(data)
            return
        for account, items in data.items():
            shown = "; ".join(f"{i['sku']} (with {i['because']}, lift {i['lift']})" for i in items) or "nothing yet"
            self.stdout.write(f"{account}: {shown}")

    def _health(self, o: dict[str, Any]) -> None:
        targets = None
        if o["account"]:
            found = Account.objects.filter(external_id=o["account"]).first()
            if found is None:
                raise CommandError(f"no account with external id '{o['account']}'")
            targets = [found]
        scores = actions.do_compute_health(accounts=targets)
        if o["json"]:
            self._out([{"account": s.account.external_id, "score": s.score, "factors": s.factors} for s in scores])
            return
        for s in sorted(scores, key=lambda s: (s.score, s.account_id))[: 20 if targets is None else 1]:
            self.stdout.write(f"{s.account.external_id or s.account_id}: {health.describe(s)}")
        self.stdout.write(f"scored {len(scores)} account(s)")

    def _topics(self, o: dict[str, Any]) -> None:
        topics = actions.do_compute_topics()
        for t in topics:
            self.stdout.write(f"{t.size:>6} tickets  {t.name}")
        self.stdout.write(f"{len(topics)} topic(s)")

    def _refresh(self, o: dict[str, Any]) -> None:
        for line in actions.do_refresh():
            self.stdout.write(line)
