"""The insight API: order lines with the import's rules, in the one JSON error shape; values and health read."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accord.customers.models import Account
from accord.insight.models import AccountValue, ClvFit, HealthScore, OrderLine

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(db: None) -> Account:
    return Account.objects.create(name="Acme", external_id="A1", timezone="Asia/Tokyo")


def test_an_order_line_is_created_with_its_local_day_and_listed_by_account(api: APIClient, acme: Account) -> None:
    r = api.post("/api/v1/orders/", {"order_id": "O1", "account": "A1", "ordered_at": "2026-03-01T20:00:00Z",
                                     "amount": "100.00", "sku": "FL-1"}, format="json")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["ordered_on"] == "2026-03-02"  # 05:00 the next day in Tokyo
    assert (body["currency"], body["quantity"]) == ("EUR", 1)
    listed = api.get("/api/v1/orders/?account=A1").json()
    assert [o["order_id"] for o in listed["results"]] == ["O1"]
    assert api.get("/api/v1/orders/?account=NOPE").json()["results"] == []


def test_a_refund_of_nothing_and_a_second_currency_are_refused_in_the_error_shape(api: APIClient, acme: Account) -> None:
    r = api.post("/api/v1/orders/", {"order_id": "O9", "account": "A1", "ordered_at": "2026-03-01T10:00:00Z",
                                     "amount": "-5.00", "quantity": 0}, format="json")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"]["amount"] == ["A negative amount is a refund, and order 'O9' has nothing to refund."]
    OrderLine.objects.create(order_id="O1", sku="FL-1", account=acme, ordered_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
                             ordered_on=dt.date(2026, 3, 1), amount=Decimal(100), currency="EUR")
    r = api.post("/api/v1/orders/", {"order_id": "O1", "account": "A1", "ordered_at": "2026-03-01T10:00:00Z",
                                     "amount": "5.00", "currency": "USD", "sku": "HT"}, format="json")
    assert r.json()["error"]["fields"]["currency"] == ["Order 'O1' is in EUR: one order has one currency."]
    r = api.post("/api/v1/orders/", {"order_id": "O1", "account": "A1", "ordered_at": "2026-03-01T10:00:00Z",
                                     "amount": "-5.00", "quantity": 2, "sku": "FL-1:refund"}, format="json")
    assert r.json()["error"]["fields"]["amount"] == ["a negative amount is a refund: give it a negative quantity (or 0)"]
    r = api.post("/api/v1/orders/", {"order_id": "O1", "account": "A1", "ordered_at": "2026-03-03T10:00:00Z",
                                     "amount": "-40.00", "quantity": 0, "sku": "FL-1:refund"}, format="json")
    assert r.status_code == 201
    assert OrderLine.objects.count() == 2


def test_values_and_health_scores_are_read_only(api: APIClient, acme: Account) -> None:
    fit = ClvFit.objects.create(calibration_end=dt.date(2026, 3, 1), horizon=52, discount_rate=0.1, currency="EUR",
                                bgnbd={}, gamma_gamma={}, customers=1, repeat_customers=0)
    AccountValue.objects.create(fit=fit, account=acme, repeat_purchases=0, expected_purchases=1.5, probability_alive=1,
                                expected_value=Decimal(10), clv=Decimal(15), clv_low=Decimal(9), clv_high=Decimal(21),
                                prior_only=True)
    HealthScore.objects.create(account=acme, score=71, factors=[])
    values = api.get("/api/v1/account-values/?account=A1").json()["results"]
    assert values[0]["clv"] == "15.00" and values[0]["prior_only"] is True
    assert api.get("/api/v1/health-scores/").json()["results"][0]["score"] == 71
    r = api.post("/api/v1/health-scores/", {"score": 5}, format="json")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
