"""The 80/20 of revenue and of profit across accounts, and the accounts that cost more than they bring."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from accord.customers.models import Account

from .orders import orders

TOP = Decimal("0.2")
SOURCES = ("accounts", "orders")


@dataclass(frozen=True)
class Row:
    """One account's revenue, cost to serve and profit (revenue minus cost to serve) in the base currency."""

    account_id: int
    external_id: str
    name: str
    revenue: Decimal
    cost: Decimal

    @property
    def profit(self) -> Decimal:
        return self.revenue - self.cost


@dataclass
class Pareto:
    """Accounts ranked by revenue and by profit, with the cumulative curves (share of accounts -> share)."""

    rows: list[Row]
    source: str
    revenue_curve: list[tuple[float, float]]  # (share of accounts, share of revenue), both 0-1, best first
    profit_curve: list[tuple[float, float]]  # (share of accounts, share of total profit; may pass 1)
    top_n: int
    top_revenue_share: float | None
    top_profit_share: float | None

    @property
    def total_revenue(self) -> Decimal:
        return sum((r.revenue for r in self.rows), Decimal(0))

    @property
    def total_profit(self) -> Decimal:
        return sum((r.profit for r in self.rows), Decimal(0))

    @property
    def unprofitable(self) -> list[Row]:
        """Accounts that cost more to serve than they bring, the costliest first."""
        return sorted((r for r in self.rows if r.profit < 0), key=lambda r: (r.profit, r.account_id))

    def deciles(self) -> list[tuple[int, float, float]]:
        """(top %, share of revenue %, share of profit %) at 10%, 20% ... 100% of the accounts."""
        out = []
        for pct in range(10, 101, 10):
            out.append((pct, _at(self.revenue_curve, pct / 100) * 100, _at(self.profit_curve, pct / 100) * 100))
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source, "accounts": len(self.rows), "total_revenue": f"{self.total_revenue:.2f}",
            "total_profit": f"{self.total_profit:.2f}", "top_share_of_accounts": float(TOP), "top_accounts": self.top_n,
            "top_revenue_share": self.top_revenue_share, "top_profit_share": self.top_profit_share,
            "deciles": [{"top_percent": p, "revenue_share": r, "profit_share": q} for p, r, q in self.deciles()],
            "unprofitable": [
                {"account": r.external_id, "name": r.name, "revenue": f"{r.revenue:.2f}", "cost_to_serve": f"{r.cost:.2f}",
                 "profit": f"{r.profit:.2f}"}
                for r in self.unprofitable
            ],
        }


def _at(curve: list[tuple[float, float]], share: float) -> float:
    """The curve's value at a share of the accounts (the last point at or before it)."""
    value = 0.0
    for x, y in curve:
        if x > share + 1e-12:
            break
        value = y
    return value


def _curve(values: list[Decimal]) -> list[tuple[float, float]]:
    total = sum(values, Decimal(0))
    n = len(values)
    points, running = [(0.0, 0.0)], Decimal(0)
    for i, v in enumerate(sorted(values, reverse=True), start=1):
        running += v
        points.append((i / n, float(running / total) if total else 0.0))
    return points


def _share_of_top(values: list[Decimal], k: int) -> float | None:
    total = sum(values, Decimal(0))
    if not values or total <= 0:
        return None
    return float(sum(sorted(values, reverse=True)[:k], Decimal(0)) / total)


def pareto(source: str = "accounts", today: dt.date | None = None) -> Pareto:
    """The 80/20 view. `accounts`: each account's 12-month revenue and cost to serve, as recorded on it;
    `orders`: net order value of the last 365 days (base currency) against the recorded cost to serve."""
    if source not in SOURCES:
        raise ValueError(f"source '{source}' must be one of {', '.join(SOURCES)}")
    accounts = list(Account.objects.order_by("id").values_list("id", "external_id", "name", "revenue_12m",
                                                                  "cost_to_serve_12m"))
    revenue: dict[int, Decimal] = {}
    if source == "orders":
        today = today or dt.date.today()
        totals: dict[int, Decimal] = defaultdict(Decimal)
        for o in orders(until=today):
            if o.day > today - dt.timedelta(days=365):
                totals[o.account] += o.value
        revenue = dict(totals)
    rows = [
        Row(pk, ext or "", name, revenue.get(pk, Decimal(0)) if source == "orders" else rev, cost)
        for pk, ext, name, rev, cost in accounts
    ]
    k = max(1, int(len(rows) * TOP)) if rows else 0
    return Pareto(
        rows=rows, source=source, revenue_curve=_curve([r.revenue for r in rows]),
        profit_curve=_curve([r.profit for r in rows]), top_n=k,
        top_revenue_share=_share_of_top([r.revenue for r in rows], k),
        top_profit_share=_share_of_top([r.profit for r in rows], k),
    )
