"""FilterSets shared by insight's API and pages."""

from __future__ import annotations

import django_filters

from .models import AccountValue, HealthScore, OrderLine


class OrderLineFilterSet(django_filters.FilterSet):
    """Filter order lines by account (external id), order, sku and a range of order days."""

    account = django_filters.CharFilter(field_name="account__external_id", label="Account (external id)")
    ordered_from = django_filters.DateFilter(field_name="ordered_on", lookup_expr="gte", label="Ordered on or after")
    ordered_to = django_filters.DateFilter(field_name="ordered_on", lookup_expr="lte", label="Ordered on or before")

    class Meta:
        model = OrderLine
        fields = ["account", "order_id", "sku", "currency", "ordered_from", "ordered_to"]


class AccountValueFilterSet(django_filters.FilterSet):
    """Filter predictions by account (external id) and the prior-only flag."""

    account = django_filters.CharFilter(field_name="account__external_id", label="Account (external id)")

    class Meta:
        model = AccountValue
        fields = ["account", "prior_only"]


class HealthScoreFilterSet(django_filters.FilterSet):
    """Filter health scores by account (external id) and a score range."""

    account = django_filters.CharFilter(field_name="account__external_id", label="Account (external id)")
    max_score = django_filters.NumberFilter(field_name="score", lookup_expr="lte")

    class Meta:
        model = HealthScore
        fields = ["account", "max_score"]
