"""FilterSets shared by the API and the staff UI."""

from __future__ import annotations

import datetime as dt

import django_filters
from django.db.models import Q, QuerySet

from .models import Account, Commitment, Contact, Tier, TierChange, TierOverride


class AccountFilterSet(django_filters.FilterSet):
    """Search by name or external id; filter by tier name, kind, owner and whether a scenario made it up."""

    q = django_filters.CharFilter(method="search", label="Name or external id contains")
    tier = django_filters.ModelChoiceFilter(
        field_name="tier", to_field_name="name", queryset=Tier.objects.all(), label="Tier"
    )
    kind = django_filters.ChoiceFilter(choices=Account.Kind.choices)
    owner = django_filters.CharFilter(field_name="owner__username", label="Owner (username)")
    min_revenue_12m = django_filters.NumberFilter(field_name="revenue_12m", lookup_expr="gte")
    simulated = django_filters.BooleanFilter(label="Simulated (made up by a scenario)")

    class Meta:
        model = Account
        fields = ["q", "tier", "kind", "owner", "external_id", "simulated"]

    def search(self, queryset: QuerySet[Account], name: str, value: str) -> QuerySet[Account]:
        return queryset.filter(Q(name__icontains=value) | Q(external_id__icontains=value)) if value else queryset


class ContactFilterSet(django_filters.FilterSet):
    """Search by name; filter by account (external id) and by an exact e-mail or phone."""

    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    account = django_filters.CharFilter(field_name="account__external_id")
    address = django_filters.CharFilter(method="by_address", label="E-mail address or phone")

    class Meta:
        model = Contact
        fields = ["q", "account", "address", "external_id"]

    def by_address(self, queryset: QuerySet[Contact], name: str, value: str) -> QuerySet[Contact]:
        return queryset.filter(points__value=value.strip().lower()).distinct() if value else queryset


class CommitmentFilterSet(django_filters.FilterSet):
    """Filter commitments by account and by a day they cover."""

    account = django_filters.CharFilter(field_name="account__external_id")
    active_on = django_filters.DateFilter(method="covering", label="Covers this day")

    class Meta:
        model = Commitment
        fields = ["account", "active_on"]

    def covering(self, queryset: QuerySet[Commitment], name: str, value: dt.date) -> QuerySet[Commitment]:
        return queryset.filter(period_start__lte=value, period_end__gte=value) if value else queryset


class TierOverrideFilterSet(django_filters.FilterSet):
    account = django_filters.CharFilter(field_name="account__external_id")
    live = django_filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull", label="Not revoked")

    class Meta:
        model = TierOverride
        fields = ["account", "live"]


class TierChangeFilterSet(django_filters.FilterSet):
    account = django_filters.CharFilter(field_name="account__external_id")
    cause = django_filters.ChoiceFilter(choices=TierChange.Cause.choices)
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")

    class Meta:
        model = TierChange
        fields = ["account", "cause", "since"]
