"""REST API for order lines (read and write), and the stored lifetime values and health scores (read)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db.models import QuerySet
from rest_framework import serializers, viewsets
from rest_framework.routers import DefaultRouter

from accord.customers.models import Account
from accord.lib.api import StrictSerializer

from . import filters
from .models import AccountValue, ClvFit, HealthScore, OrderLine
from .orders import base_currency


class OrderLineSerializer(StrictSerializer):
    account = serializers.SlugRelatedField(slug_field="external_id", queryset=Account.objects.all())
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, error_messages={
        "invalid": "Not a currency code like EUR."})
    quantity = serializers.IntegerField(required=False, min_value=-1_000_000_000, max_value=1_000_000_000)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("-999999999999.99"))

    class Meta:
        model = OrderLine
        fields = ["id", "order_id", "sku", "account", "ordered_at", "ordered_on", "amount", "currency", "quantity",
                  "created_at", "updated_at"]
        read_only_fields = ["ordered_on", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        current = self.instance
        amount = attrs.get("amount", current.amount if current else Decimal(0))
        if "quantity" not in attrs and current is None:
            attrs["quantity"] = 1 if amount >= 0 else 0
        if "currency" not in attrs and current is None:
            attrs["currency"] = base_currency()
        attrs = super().validate(attrs)
        account = attrs.get("account", current.account if current else None)
        order_id = attrs.get("order_id", current.order_id if current else "")
        currency = attrs.get("currency", current.currency if current else base_currency())
        quantity = attrs.get("quantity", current.quantity if current else 1)
        errors: dict[str, list[str]] = {}
        if amount >= 0 and quantity < 0:
            errors["quantity"] = ["Only a refund line (negative amount) returns items."]
        others = OrderLine.objects.filter(order_id=order_id)
        if current is not None:
            others = others.exclude(pk=current.pk)
        first = others.order_by("id").first()
        if first is not None and account is not None and first.account_id != account.pk:
            errors["account"] = [f"Order '{order_id}' belongs to another account."]
        if first is not None and first.currency != currency:
            errors["currency"] = [f"Order '{order_id}' is in {first.currency}: one order has one currency."]
        if amount < 0:
            positive = sum((line.amount for line in others if line.amount >= 0), Decimal(0))
            refunded = sum((line.amount for line in others if line.amount < 0), Decimal(0))
            if positive == 0:
                errors["amount"] = [f"A negative amount is a refund, and order '{order_id}' has nothing to refund."]
            elif positive + refunded + amount < 0:
                errors["amount"] = [f"Refunds would exceed order '{order_id}''s value of {positive}."]
        if errors:
            raise serializers.ValidationError(errors)
        if account is not None and "ordered_at" in attrs:
            attrs["ordered_on"] = attrs["ordered_at"].astimezone(ZoneInfo(account.timezone)).date()
        return attrs


class AccountValueSerializer(serializers.ModelSerializer):
    account = serializers.SlugRelatedField(slug_field="external_id", read_only=True)
    fitted_at = serializers.DateTimeField(source="fit.created_at", read_only=True)
    calibration_end = serializers.DateField(source="fit.calibration_end", read_only=True)

    class Meta:
        model = AccountValue
        fields = ["account", "fitted_at", "calibration_end", "repeat_purchases", "expected_purchases",
                  "probability_alive", "expected_value", "clv", "clv_low", "clv_high", "prior_only"]


class HealthScoreSerializer(serializers.ModelSerializer):
    account = serializers.SlugRelatedField(slug_field="external_id", read_only=True)

    class Meta:
        model = HealthScore
        fields = ["id", "account", "computed_at", "score", "factors"]


class OrderLineViewSet(viewsets.ModelViewSet):
    """Order lines; the lines of one order_id form the order, a negative amount refunds part of it."""

    queryset = OrderLine.objects.select_related("account").order_by("-ordered_at", "order_id", "sku")
    serializer_class = OrderLineSerializer
    filterset_class = filters.OrderLineFilterSet


class AccountValueViewSet(viewsets.ReadOnlyModelViewSet):
    """Each account's predictions in the latest lifetime-value fit (`accord insight clv`)."""

    serializer_class = AccountValueSerializer
    filterset_class = filters.AccountValueFilterSet

    def get_queryset(self) -> QuerySet[AccountValue]:
        fit = ClvFit.objects.first()
        return AccountValue.objects.filter(fit=fit).select_related("account", "fit").order_by("-clv", "id")


class HealthScoreViewSet(viewsets.ReadOnlyModelViewSet):
    """Health scores, newest first; an account's history is its trend."""

    queryset = HealthScore.objects.select_related("account").order_by("-computed_at", "-id")
    serializer_class = HealthScoreSerializer
    filterset_class = filters.HealthScoreFilterSet


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets."""
    router.register("orders", OrderLineViewSet)
    router.register("account-values", AccountValueViewSet, basename="account-value")
    router.register("health-scores", HealthScoreViewSet)
