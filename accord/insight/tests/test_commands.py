"""`accord insight ...` on the database: the CLV fit stored and printed, the 80/20, recommendations, health."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from io import StringIO

import numpy as np
import pytest
import time_machine
from django.core.management import CommandError, call_command

from accord.customers.models import Account
from accord.insight import recommend
from accord.insight.demo import seed_orders
from accord.insight.models import AccountValue, ClvFit, ExchangeRate, OrderLine
from accord.insight.orders import orders

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def run(*args: str) -> str:
    out = StringIO()
    call_command("insight", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def customers() -> list[Account]:
    """120 accounts with two years of orders drawn like the demo's (no refresh)."""
    rng = random.Random(5)
    accounts = [Account.objects.create(name=f"Client {i}", external_id=f"C{i:03d}", revenue_12m=Decimal(50_000 + i * 997),
                                       cost_to_serve_12m=Decimal(30_000 + (i % 7) * 9_000),
                                       timezone="America/New_York" if i % 5 == 0 else "Europe/Paris")  # USD, EUR
                for i in range(120)]
    seed_orders(accounts, rng, now=NOW, refresh=False)
    return accounts


@time_machine.travel(NOW, tick=False)
def test_clv_json_has_the_parameters_and_every_accounts_prediction(customers: list[Account]) -> None:
    data = json.loads(run("clv", "--calibration-end", "2026-05-31", "--json"))
    assert set(data["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood"}
    assert set(data["gamma_gamma"]) == {"p", "q", "gamma", "log_likelihood"}
    with_orders = OrderLine.objects.filter(ordered_on__lte=dt.date(2026, 5, 31)).values("account").distinct().count()
    assert data["customers"] == with_orders == len(data["accounts"])
    row = data["accounts"][0]
    assert Decimal(row["clv_low"]) <= Decimal(row["clv"]) <= Decimal(row["clv_high"])
    assert {"account", "expected_purchases", "probability_alive", "expected_value", "prior_only"} <= set(row)
    single = [r for r in data["accounts"] if r["repeat_purchases"] == 0]
    assert single and all(r["prior_only"] for r in single)
    # Saved: the fit and one row per account, the same numbers as printed.
    fit = ClvFit.objects.get()
    assert fit.bgnbd == data["bgnbd"] and fit.values.count() == data["customers"]
    stored = AccountValue.objects.get(fit=fit, account__external_id=row["account"])
    assert f"{stored.clv:.2f}" == row["clv"]


@time_machine.travel(NOW, tick=False)
def test_clv_refuses_mixed_currencies_without_a_rate_and_too_few_customers(customers: list[Account]) -> None:
    ExchangeRate.objects.all().delete()
    with pytest.raises(CommandError, match=r"no fit: no exchange rate to EUR for USD"):
        run("clv", "--calibration-end", "2026-05-31")
    ExchangeRate.objects.create(currency="USD", rate=Decimal("0.9"))
    with pytest.raises(CommandError, match=r"no fit: \d+ customer\(s\) with orders before the calibration end; a fit "
                                           "needs at least 30"):
        run("clv", "--calibration-end", "2024-07-15")
    assert not ClvFit.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_pareto_lists_the_accounts_that_cost_more_than_they_bring(customers: list[Account]) -> None:
    Account.objects.filter(external_id="C007").update(revenue_12m=Decimal(10_000), cost_to_serve_12m=Decimal(25_000))
    data = json.loads(run("pareto", "--json"))
    losers = {r["account"]: r for r in data["unprofitable"]}
    assert losers["C007"]["profit"] == "-15000.00"
    expected = {a.external_id for a in Account.objects.all() if a.cost_to_serve_12m > a.revenue_12m}
    assert set(losers) == expected
    assert data["deciles"][-1]["revenue_share"] == pytest.approx(100.0)
    text = run("pareto")
    assert "the top 20% (24 accounts) bring" in text and "C007" in text


@time_machine.travel(NOW, tick=False)
def test_pareto_on_orders_nets_the_last_365_days_in_the_base_currency_or_refuses(customers: list[Account]) -> None:
    data = json.loads(run("pareto", "--source", "orders", "--json"))
    assert data["source"] == "orders" and data["accounts"] == 120
    # Revenue: each account's net orders (refunds netted, dollars converted) of the 365 days to today.
    today = NOW.date()
    expected = sum((o.value for o in orders(until=today) if o.day > today - dt.timedelta(days=365)), Decimal(0))
    assert Decimal(data["total_revenue"]) == expected > 0
    cost = sum((a.cost_to_serve_12m for a in Account.objects.all()), Decimal(0))
    assert Decimal(data["total_profit"]) == expected - cost
    # Accounts with no order in the year bring nothing and still cost to serve: they are among the unprofitable.
    buyers = {o.account for o in orders(until=today) if o.day > today - dt.timedelta(days=365)}
    idle = {a.external_id for a in Account.objects.exclude(pk__in=buyers) if a.cost_to_serve_12m > 0}
    assert idle and idle <= {r["account"] for r in data["unprofitable"]}
    ExchangeRate.objects.all().delete()
    with pytest.raises(CommandError, match=r"no exchange rate to EUR for USD \(\d+ orders\)"):
        run("pareto", "--source", "orders")


@time_machine.travel(NOW, tick=False)
def test_recommend_evaluate_beats_the_popularity_baseline(customers: list[Account]) -> None:
    data = json.loads(run("recommend", "--evaluate", "--json"))
    assert data["accounts"] > 10
    assert data["cooccurrence"]["recall"] > data["popularity"]["recall"]
    assert data["cooccurrence"]["precision"] > data["popularity"]["precision"]
    text = run("recommend", "--evaluate")
    assert "precision@5" in text and "popularity" in text


@time_machine.travel(NOW, tick=False)
def test_recommend_offers_only_items_the_account_has_not_bought(customers: list[Account]) -> None:
    data = json.loads(run("recommend", "--json"))
    assert data
    for account, offers in data.items():
        owned = set(OrderLine.objects.filter(account__external_id=account, amount__gt=0).values_list("sku", flat=True))
        assert offers and not {o["sku"] for o in offers} & owned
        assert all(o["because"] in owned and o["lift"] > 1 for o in offers)


def test_the_co_occurrence_model_counts_accounts_that_bought_both() -> None:
    # Accounts 0-2 bought a and b; account 3 only a; account 4 only c.
    x = recommend.baskets(np.array([0, 0, 1, 1, 2, 2, 3, 4]),
                          np.array([0, 1, 0, 1, 0, 1, 0, 2]), 5, 3)
    model = recommend.fit(x, ["a", "b", "c"])
    assert model.confidence[0, 1] == pytest.approx(3 / 4)  # 3 of the 4 buyers of a bought b
    assert model.lift[0, 1] == pytest.approx(3 * 5 / (4 * 3))
    top, _scores = recommend.recommend(model, x, 2)
    assert list(top[3]) == [1, -1]  # account 3 gets b (not c: never bought with a)


@time_machine.travel(NOW, tick=False)
def test_health_scores_every_account_and_says_why(customers: list[Account]) -> None:
    run("clv", "--calibration-end", "2026-05-31")
    text = run("health", "--account", "C001")
    assert text.startswith("C001: Health ") and "scored 1 account(s)" in text
    data = json.loads(run("health", "--json"))
    assert len(data) == 120
    factors = {f["factor"]: f for f in data[0]["factors"]}
    # These accounts have no agreement: no credit can be owed, so the factor is skipped and says why.
    assert factors["credits"]["skipped"] and factors["credits"]["text"].startswith("no agreement applies")
    assert 0 <= data[0]["score"] <= 100


def test_commands_refuse_bad_arguments() -> None:
    with pytest.raises(CommandError, match="--horizon must be above 0"):
        run("clv", "--calibration-end", "2026-05-31", "--horizon", "0")
    with pytest.raises(CommandError, match="no account with external id 'NOPE'"):
        run("health", "--account", "NOPE")
    with pytest.raises(CommandError, match="nothing to evaluate"):
        run("recommend", "--evaluate")
