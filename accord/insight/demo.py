"""The demo's orders: two years of bookings of each demo client, drawn from the models insight fits.

Each client buys at its own rate until it drops out (BG/NBD: rates from a gamma, drop-out chances from a beta),
each booking worth around its own mean (Gamma-Gamma), scaled to the client's size. A booking's lines come mostly
from the client's travel pattern (European business trips, long haul, events ...), so "bought together" means
something; a few bookings are refunded in part, and clients in the Americas book in US dollars.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Sequence
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils import timezone

from accord.customers.models import Account

from .actions import do_refresh
from .models import ExchangeRate, OrderLine
from .orders import base_currency

PATTERNS = {
    "europe": ["FL-EU", "RAIL-EU", "HT-CITY", "CAR-CITY"],
    "longhaul": ["FL-INTL", "HT-CITY", "INS-TRAVEL", "VISA", "LOUNGE"],
    "events": ["EVENT-VENUE", "HT-RESORT", "COACH", "FL-EU"],
    "domestic": ["RAIL-DOM", "HT-BUDGET", "CAR-CITY"],
}
ALL_ITEMS = sorted({item for items in PATTERNS.values() for item in items})
USD_RATE = Decimal("0.92")  # EUR per USD in the demo's rate table
DAYS = 730


def seed_orders(accounts: Sequence[Account], rng: random.Random, now: dt.datetime | None = None,
                refresh: bool = True) -> int:
    """Order lines for the demo accounts over the last two years; returns how many were created.

    Also records the demo's exchange rate (USD) so the orders in dollars are converted, not summed, and (with
    `refresh`) computes what the insight pages show: the CLV fit, the ticket topics and the health scores.
    """
    now = now or timezone.now()
    today = now.date()
    if base_currency() != "USD":
        ExchangeRate.objects.update_or_create(currency="USD", defaults={"rate": USD_RATE})
    lines: list[OrderLine] = []
    for account in accounts:
        american = account.timezone.startswith("America/")
        currency = "USD" if american and base_currency() != "USD" else base_currency()
        zone = ZoneInfo(account.timezone)
        rate = rng.gammavariate(0.6, 1 / 3.5)  # bookings per week: most book now and then, a few every week
        drop = rng.betavariate(0.8, 3.0)  # chance of leaving after each booking
        size = max(float(account.revenue_12m), 20_000.0) / 60.0  # a booking's scale follows the account's size
        mean_value = size * rng.gammavariate(6.0, 1 / 5.0)
        patterns = rng.sample(sorted(PATTERNS), k=rng.choice((1, 1, 2)))
        day = today - dt.timedelta(days=rng.randint(60, DAYS))
        number = 0
        while day <= today:
            number += 1
            order_id = f"{account.external_id}-B{number:04d}"
            at = dt.datetime.combine(day, dt.time(rng.randint(8, 18), rng.randint(0, 59)), tzinfo=zone)
            preferred = PATTERNS[rng.choice(patterns)]
            count = rng.choice((1, 2, 2, 3))
            chosen = rng.sample(preferred, k=min(count, len(preferred)))
            if rng.random() < 0.15:
                chosen.append(rng.choice(ALL_ITEMS))
            value = mean_value * rng.gammavariate(4.0, 0.25)
            skus = list(dict.fromkeys(chosen))
            for sku in skus:
                amount = Decimal(repr(round(value / len(skus) * rng.uniform(0.6, 1.4), 2))).quantize(Decimal("0.01"))
                lines.append(OrderLine(order_id=order_id, sku=sku, account=account, ordered_at=at, ordered_on=day,
                                       amount=amount, currency=currency, quantity=rng.randint(1, 4)))
            if rng.random() < 0.04:  # a partial refund, a few days later
                refund = -(lines[-1].amount * Decimal("0.5")).quantize(Decimal("0.01"))
                lines.append(OrderLine(order_id=order_id, sku=f"{skus[-1]}:refund", account=account,
                                       ordered_at=at + dt.timedelta(days=3), ordered_on=day + dt.timedelta(days=3),
                                       amount=refund,
                                       currency=currency, quantity=0))
            if rng.random() < drop:
                break
            gap = rng.expovariate(rate) * 7 if rate > 0 else math.inf
            if not math.isfinite(gap):
                break
            day += dt.timedelta(days=max(1, round(gap)))
    OrderLine.objects.bulk_create(lines, batch_size=1000)
    if refresh:
        do_refresh(today)
    return len(lines)
