"""FilterSets shared by the API and the staff UI."""

from __future__ import annotations

import django_filters

from .models import ApiCredential, Endpoint, Operation, PartnerService, Pool


class OperationFilterSet(django_filters.FilterSet):
    service = django_filters.CharFilter(field_name="service__name")

    class Meta:
        model = Operation
        fields = ["service", "method"]


class PoolFilterSet(django_filters.FilterSet):
    service = django_filters.CharFilter(field_name="service__name")

    class Meta:
        model = Pool
        fields = ["service", "role"]


class EndpointFilterSet(django_filters.FilterSet):
    service = django_filters.CharFilter(field_name="pool__service__name")

    class Meta:
        model = Endpoint
        fields = ["pool", "service", "enabled"]


class PartnerFilterSet(django_filters.FilterSet):
    service = django_filters.CharFilter(field_name="services__name")

    class Meta:
        model = PartnerService
        fields = ["service"]


class CredentialFilterSet(django_filters.FilterSet):
    account = django_filters.CharFilter(field_name="account__external_id")
    active = django_filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull")

    class Meta:
        model = ApiCredential
        fields = ["account", "active", "prefix"]
