"""The health score: 0-100 per account, from factors each scored 0-1 and weighted by data (docs/insight.md).

Each factor is a function of (context, account) that returns a `Factor` (its score 0-1 and a sentence that
says why) or a `Skipped` (with the reason). The weights come from the manifest's `health` section (the set
named `default`, else the built-in weights); a skipped factor's weight is left out of the total, so the score
stays on 0-100 and the page says what was skipped. Factors are pluggable: `settings.ACCORD_HEALTH_FACTORS`
maps a factor name to a dotted path that replaces the built-in one. `credits` reads the service-credit ledger
of the period reports (accord/reports, C7).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from accord.agreements.models import Agreement, Objective
from accord.customers.models import Account
from accord.desk.models import SlaClock, Ticket
from accord.gateway.snapshot import account_key
from accord.governance import indicators
from accord.lib import units
from accord.reports.models import Credit

from .manifest import DEFAULT_WEIGHTS, FACTORS
from .models import AccountValue, ClvFit, HealthScore, HealthWeights
from .orders import Order, orders
from .touchpoints import Timeliness, timeliness_by_account


@dataclass(frozen=True)
class Factor:
    """A factor's score (0 bad - 1 good) and the sentence that explains it."""

    score: float
    text: str


@dataclass(frozen=True)
class Skipped:
    """A factor that cannot be scored for this account, and why."""

    reason: str


@dataclass
class Context:
    """What the factors read, fetched once for all accounts."""

    now: dt.datetime
    window_days: int
    clocks: dict[int, tuple[int, int]] = field(default_factory=dict)  # account -> (clocks, breached)
    responses: dict[int, Timeliness] = field(default_factory=dict)
    tickets_recent: Counter[int] = field(default_factory=Counter)  # last 30 days
    tickets_before: Counter[int] = field(default_factory=Counter)  # the 180 days before
    orders: dict[int, list[Order]] = field(default_factory=dict)
    clv_now: dict[int, AccountValue] = field(default_factory=dict)
    clv_before: dict[int, AccountValue] = field(default_factory=dict)
    budget_cache: dict[tuple[int, int], float | None] = field(default_factory=dict)
    credits: dict[int, list[tuple[str, Decimal, Decimal, str]]] = field(default_factory=dict)  # period, %, amount, cur.

    @property
    def since(self) -> dt.datetime:
        return self.now - dt.timedelta(days=self.window_days)


def load_context(now: dt.datetime, window_days: int, account_ids: list[int] | None = None) -> Context:
    ctx = Context(now, window_days)
    clocks = SlaClock.objects.filter(started_at__gte=ctx.since, ticket__account__isnull=False)
    if account_ids is not None:
        clocks = clocks.filter(ticket__account_id__in=account_ids)
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for account, breached in clocks.values_list("ticket__account_id", "breached_at"):
        counts[account][0] += 1
        counts[account][1] += breached is not None
    ctx.clocks = {pk: (n, b) for pk, (n, b) in counts.items()}
    ctx.responses = timeliness_by_account(ctx.since)
    owed = Credit.objects.filter(end__gt=ctx.since, start__lt=now).exclude(status=Credit.Status.REJECTED)
    if account_ids is not None:
        owed = owed.filter(account_id__in=account_ids)
    for account, period, percent, amount, currency in owed.order_by("period", "id").values_list(
        "account_id", "period", "percent", "amount", "currency"
    ):
        ctx.credits.setdefault(account, []).append((period, percent, amount, currency))
    tickets = Ticket.objects.filter(created_at__gte=now - dt.timedelta(days=210), account__isnull=False)
    for account, created in tickets.values_list("account_id", "created_at"):
        if created >= now - dt.timedelta(days=30):
            ctx.tickets_recent[account] += 1
        elif created < now:
            ctx.tickets_before[account] += 1
    try:
        for o in orders(until=timezone.localdate(now), accounts=account_ids):
            ctx.orders.setdefault(o.account, []).append(o)
    except ValueError:
        pass  # orders in a currency without a rate: the order factors say so below
    fits = list(ClvFit.objects.order_by("-created_at", "-id")[:2])
    if fits:
        ctx.clv_now = {v.account_id: v for v in AccountValue.objects.filter(fit=fits[0])}
    if len(fits) > 1:
        ctx.clv_before = {v.account_id: v for v in AccountValue.objects.filter(fit=fits[1])}
    return ctx


# -- the factors ------------------------------------------------------------------------------------------


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))


def sla_breaches(ctx: Context, account: Account) -> Factor | Skipped:
    total, breached = ctx.clocks.get(account.pk, (0, 0))
    if not total:
        return Skipped(f"no SLA clocks in the last {ctx.window_days} days")
    return Factor(1 - breached / total, f"{breached} of {total} SLA clocks breached in the last {ctx.window_days} days")


def error_budget(ctx: Context, account: Account) -> Factor | Skipped:
    agreement = Agreement.for_account(account, timezone.localdate(ctx.now))
    if agreement is None:
        return Skipped("no agreement applies")
    objectives = [o for o in agreement.objectives.select_related("service", "operation") if o.kind in
                  (Objective.Kind.AVAILABILITY, Objective.Kind.ERROR_RATE, Objective.Kind.LATENCY)]
    if not objectives:
        return Skipped(f"agreement '{agreement.name}' has no run-time objectives")
    worst: tuple[float, Objective] | None = None
    key = account_key(account.external_id, account.pk)
    for o in objectives:
        cached = ctx.budget_cache.get((o.pk, account.pk), -1.0)
        if cached == -1.0:
            start, end, _days = indicators.objective_window(o, ctx.now)
            events = indicators.objective_events(o, start, end, account=key)
            cached = indicators.burn(events.bad, events.valid, indicators.allowed_bad(o))  # inf: a zero budget spent
            ctx.budget_cache[(o.pk, account.pk)] = cached
        if cached is not None and (worst is None or cached > worst[0]):
            worst = (cached, o)
    if worst is None:
        return Skipped("no traffic of this account in its objectives' windows")
    consumed, objective = worst
    return Factor(_clamp(1 - consumed), f"{units.share(consumed, 0)} of the error budget of '{objective.name}' spent by "
                                         "this account's traffic (the most of its objectives)")


def _months(start: dt.datetime, end: dt.datetime) -> list[str]:
    """The calendar months (YYYY-MM, UTC) that the interval [start, end] touches."""
    y, m = start.astimezone(dt.UTC).year, start.astimezone(dt.UTC).month
    last = end.astimezone(dt.UTC)
    out = []
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y, m + 1) if m < 12 else (y + 1, 1)
    return out


def credits(ctx: Context, account: Account) -> Factor | Skipped:
    """Service credits owed to the account (computed, approved or applied; not rejected) for the monthly periods
    the window touches: 1 - the share of those periods with a credit."""
    owed = ctx.credits.get(account.pk, [])
    months = _months(ctx.since, ctx.now)
    if not owed:
        if Agreement.for_account(account, timezone.localdate(ctx.now)) is None:
            return Skipped("no agreement applies, so no service credit can be owed")
        return Factor(1.0, f"no service credits for the last {ctx.window_days} days")
    credited = sorted({period for period, _p, _a, _c in owed})
    amounts: dict[str, Decimal] = defaultdict(Decimal)
    for _period, _percent, amount, currency in owed:
        amounts[currency] += amount  # one sum per currency: amounts in different currencies are never added up
    money = ", ".join(f"{amount:,.2f} {currency}" for currency, amount in sorted(amounts.items()))
    share = min(1.0, len(credited) / len(months))
    return Factor(1 - share, f"{len(owed)} service credit(s) ({money}) in {len(credited)} of the {len(months)} "
                             f"monthly periods of the last {ctx.window_days} days ({', '.join(credited)})")


def ticket_volume(ctx: Context, account: Account) -> Factor | Skipped:
    recent = ctx.tickets_recent.get(account.pk, 0)
    norm = ctx.tickets_before.get(account.pk, 0) / 6  # per 30 days over the 180 before
    if not recent and not norm:
        return Factor(1.0, "no tickets in the last 210 days")
    if norm == 0:
        return Factor(0.5, f"{recent} ticket(s) in the last 30 days, where there were none in the 180 days before")
    ratio = recent / norm
    # At or below the norm is healthy; three times the norm or more scores 0.
    return Factor(_clamp(1 - (ratio - 1) / 2), f"{recent} ticket(s) in the last 30 days against a norm of "
                                               f"{norm:.1f} per 30 days ({ratio:.1f}x)")


def response_timeliness(ctx: Context, account: Account) -> Factor | Skipped:
    t = ctx.responses.get(account.pk)
    if t is None or t.rate is None:
        return Skipped(f"no response clocks finished in the last {ctx.window_days} days")
    return Factor(t.rate, f"{t.met} of {t.met + t.breached} responses on time ({t.rate * 100:.0f}%) in the last "
                          f"{ctx.window_days} days")


def order_recency(ctx: Context, account: Account) -> Factor | Skipped:
    found = ctx.orders.get(account.pk)
    if not found:
        return Skipped("no orders")
    last = max(o.day for o in found)
    days = (timezone.localdate(ctx.now) - last).days
    value = ctx.clv_now.get(account.pk)
    if value is not None:
        return Factor(_clamp(value.probability_alive), f"last order {days} day(s) ago; probability still a customer "
                                                       f"{value.probability_alive * 100:.0f}% (BG/NBD)")
    return Factor(_clamp(1 - days / 365), f"last order {days} day(s) ago (no lifetime-value fit yet)")


def order_frequency(ctx: Context, account: Account) -> Factor | Skipped:
    found = ctx.orders.get(account.pk)
    if not found:
        return Skipped("no orders")
    today = timezone.localdate(ctx.now)
    recent = sum(1 for o in found if (today - o.day).days < 180)
    before = sum(1 for o in found if 180 <= (today - o.day).days < 360)
    if not before:
        return Factor(1.0 if recent else 0.0, f"{recent} order(s) in the last 180 days, none in the 180 before")
    ratio = recent / before
    return Factor(_clamp(ratio), f"{recent} order(s) in the last 180 days against {before} in the 180 before")


def clv_trend(ctx: Context, account: Account) -> Factor | Skipped:
    now, before = ctx.clv_now.get(account.pk), ctx.clv_before.get(account.pk)
    if now is None or before is None:
        return Skipped("needs two lifetime-value fits with this account")
    if before.clv <= 0:
        return Factor(1.0 if now.clv > 0 else 0.5, f"lifetime value {now.clv:,.2f} against {before.clv:,.2f} in the "
                                                     "fit before")
    change = float((now.clv - before.clv) / before.clv)
    # Growth or no change is healthy; a fall costs in proportion (half the value lost scores 0.5).
    return Factor(_clamp(1 + min(change, 0.0)), f"lifetime value {change * 100:+.0f}% since the fit before "
                                        f"({before.clv:,.2f} to {now.clv:,.2f})")


BUILT_IN: dict[str, Callable[[Context, Account], Factor | Skipped]] = {
    "sla_breaches": sla_breaches, "error_budget": error_budget, "credits": credits, "ticket_volume": ticket_volume,
    "response_timeliness": response_timeliness, "order_recency": order_recency, "order_frequency": order_frequency,
    "clv_trend": clv_trend,
}
LABELS = {
    "sla_breaches": "SLA breaches", "error_budget": "Error budget", "credits": "Credits", "ticket_volume": "Ticket volume",
    "response_timeliness": "Response timeliness", "order_recency": "Order recency",
    "order_frequency": "Order frequency", "clv_trend": "Lifetime value trend",
}


def factor_functions() -> dict[str, Callable[[Context, Account], Factor | Skipped]]:
    """The built-in factors, with any replaced by settings.ACCORD_HEALTH_FACTORS (name -> dotted path)."""
    found = dict(BUILT_IN)
    for name, dotted in getattr(settings, "ACCORD_HEALTH_FACTORS", {}).items():
        found[name] = import_string(dotted)
    return found


def weights() -> tuple[dict[str, float], int, str]:
    """The weights in force, the window in days, and where they come from."""
    stored = HealthWeights.objects.filter(name="default").first()
    if stored is None:
        return {k: float(v) for k, v in DEFAULT_WEIGHTS.items()}, 90, "built-in weights"
    return {k: float(v) for k, v in stored.weights.items() if k in FACTORS}, stored.window_days, "health 'default'"


def score(ctx: Context, account: Account, weighting: dict[str, float],
          functions: dict[str, Callable[[Context, Account], Factor | Skipped]]) -> tuple[int, list[dict[str, Any]]]:
    """An account's score 0-100 and its factors, each with the points it costs (what moves the score)."""
    parts: list[dict[str, Any]] = []
    scored: list[tuple[str, float, Factor]] = []
    for name in FACTORS:
        weight = weighting.get(name, 0.0)
        if weight <= 0:
            continue
        result = functions[name](ctx, account)
        if isinstance(result, Skipped):
            parts.append({"factor": name, "label": LABELS[name], "weight": weight, "skipped": True,
                          "text": result.reason})
        else:
            scored.append((name, weight, result))
    total = sum(w for _n, w, _f in scored)
    if not total:
        return 100, parts
    value = 0.0
    for name, weight, f in scored:
        value += weight * f.score
        parts.append({"factor": name, "label": LABELS[name], "weight": weight, "score": round(f.score, 3),
                      "lost": round(weight * (1 - f.score) / total * 100, 1), "text": f.text, "skipped": False})
    parts.sort(key=lambda p: (p["skipped"], -p.get("lost", 0), p["factor"]))
    return round(value / total * 100), parts


def describe(health: HealthScore) -> str:
    """The score in words: what costs it the most."""
    costs = [f for f in health.factors if not f.get("skipped") and f.get("lost", 0) >= 1]
    if not costs:
        return f"Health {health.score}/100: nothing costs it a point."
    top = ", ".join(f"{f['label'].lower()} (-{f['lost']:.0f}: {f['text']})" for f in costs[:2])
    return f"Health {health.score}/100; it loses most to {top}."

