"""The state changes of insight: storing a lifetime-value fit, the health scores and the ticket topics."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from django.db import transaction
from django.utils import timezone

from accord.customers.models import Account
from accord.desk.models import Ticket

from . import clv, health, touchpoints
from .models import AccountValue, ClvFit, HealthScore, Topic
from .orders import base_currency, orders

CENT = Decimal("0.01")


@dataclass
class ClvResult:
    """A fit with its predictions; `fit` is the stored row (None when not saved)."""

    bgnbd: clv.BgNbd
    gamma_gamma: clv.GammaGamma
    summary: clv.Summary
    predictions: clv.Predictions
    fit: ClvFit | None


def _money(value: float) -> Decimal:
    return Decimal(repr(round(float(value), 2))).quantize(CENT) if np.isfinite(value) else Decimal(0)


def compute_clv(calibration_end: dt.date, unit: str = "week", horizon: float = 52,
                discount_rate: float = 0.1) -> ClvResult:
    """Fit both models on every account's orders up to `calibration_end` and predict `horizon` units ahead.

    Raises clv.FitError (too few customers, no repeats, no convergence) or orders.CurrencyError.
    """
    if horizon <= 0:
        raise clv.FitError(f"the horizon must be above 0 {unit}s")
    found = orders(until=calibration_end)
    epoch = calibration_end.toordinal()
    customer = np.fromiter((o.account for o in found), dtype=np.int64, count=len(found))
    day = np.fromiter((o.day.toordinal() - epoch for o in found), dtype=np.int64, count=len(found))
    value = np.fromiter((float(o.value) for o in found), dtype=np.float64, count=len(found))
    summary = clv.summarise(customer, day, value, 0, unit)
    model = clv.fit_bgnbd(summary)
    money = clv.fit_gamma_gamma(summary)
    return ClvResult(model, money, summary, clv.predict(model, money, summary, horizon, discount_rate), None)


@transaction.atomic
def do_fit_clv(calibration_end: dt.date, unit: str = "week", horizon: float = 52,
               discount_rate: float = 0.1) -> ClvResult:
    """`compute_clv`, then store the fit and every account's predictions."""
    result = compute_clv(calibration_end, unit, horizon, discount_rate)
    fit = ClvFit.objects.create(
        created_at=timezone.now(), calibration_end=calibration_end, unit=unit, horizon=horizon,
        discount_rate=discount_rate, currency=base_currency(), bgnbd=result.bgnbd.as_dict(),
        gamma_gamma=result.gamma_gamma.as_dict(), customers=len(result.summary),
        repeat_customers=int((result.summary.x > 0).sum()),
    )
    p, s = result.predictions, result.summary
    AccountValue.objects.bulk_create(
        [
            AccountValue(
                fit=fit, account_id=int(p.ids[i]), repeat_purchases=int(s.x[i]),
                expected_purchases=float(p.purchases[i]), probability_alive=float(p.alive[i]),
                expected_value=_money(p.value[i]), clv=_money(p.clv[i]), clv_low=_money(p.clv_low[i]),
                clv_high=_money(p.clv_high[i]), prior_only=bool(p.prior_only[i]),
            )
            for i in range(len(p.ids))
        ],
        batch_size=1000,
    )
    result.fit = fit
    return result


@transaction.atomic
def do_compute_topics(n_topics: int | None = None) -> list[Topic]:
    """Replace the topics with a clustering of the latest tickets (at most 5,000); none below 10 tickets."""
    tickets = list(Ticket.objects.order_by("-created_at", "-id")[:touchpoints.MAX_TICKETS])
    Topic.objects.all().delete()
    if len(tickets) < touchpoints.MIN_TICKETS:
        return []
    labels, names = touchpoints.cluster(touchpoints.documents(tickets), n_topics)
    now = timezone.now()
    topics = []
    for i, terms in enumerate(names):
        members = [t for t, label in zip(tickets, labels, strict=True) if label == i]
        if not members:
            continue
        topic = Topic.objects.create(name=" / ".join(terms) or "other", terms=terms, size=len(members), computed_at=now)
        topic.tickets.set(members)
        topics.append(topic)
    return topics


@transaction.atomic
def do_compute_health(now: dt.datetime | None = None, accounts: list[Account] | None = None) -> list[HealthScore]:
    """Score every account (or the given ones) and store the scores; the history of scores is the trend."""
    now = now or timezone.now()
    weighting, window, _source = health.weights()
    targets = accounts if accounts is not None else list(Account.objects.select_related("tier").order_by("id"))
    ctx = health.load_context(now, window, [a.pk for a in targets] if accounts is not None else None)
    functions = health.factor_functions()
    rows = []
    for account in targets:
        value, parts = health.score(ctx, account, weighting, functions)
        rows.append(HealthScore(account=account, computed_at=now, score=value, factors=parts))
    HealthScore.objects.bulk_create(rows, batch_size=1000)
    return rows


def do_refresh(calibration_end: dt.date | None = None) -> list[str]:
    """Everything the pages read, recomputed: the CLV fit, the topics, the health scores; returns what was
    done and what could not be, in words (a refused fit does not stop the rest)."""
    done = []
    try:
        result = do_fit_clv(calibration_end or timezone.localdate())
        done.append(f"lifetime value fitted on {len(result.summary)} customers")
    except (clv.FitError, ValueError) as e:
        done.append(f"lifetime value not fitted: {e}")
    done.append(f"{len(do_compute_topics())} ticket topics")
    done.append(f"{len(do_compute_health())} health scores")
    return done
