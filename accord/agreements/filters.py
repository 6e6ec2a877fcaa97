"""FilterSets shared by the API and the staff UI."""

from __future__ import annotations

import django_filters

from .models import Agreement, Objective


class AgreementFilterSet(django_filters.FilterSet):
    tier = django_filters.CharFilter(field_name="tier__name")
    account = django_filters.CharFilter(field_name="account__external_id")
    calendar = django_filters.CharFilter(field_name="calendar__name")
    service = django_filters.CharFilter(field_name="services__name")
    effective_on = django_filters.DateFilter(method="effective", label="In effect on this day")
    simulated = django_filters.BooleanFilter(label="Simulated (a scenario's)")

    class Meta:
        model = Agreement
        fields = ["tier", "account", "calendar", "service", "effective_on", "simulated"]

    def effective(self, queryset, name, value):  # type: ignore[no-untyped-def]
        if not value:
            return queryset
        return queryset.filter(effective_from__lte=value).exclude(effective_to__lt=value)


class ObjectiveFilterSet(django_filters.FilterSet):
    agreement = django_filters.CharFilter(field_name="agreement__name")
    service = django_filters.CharFilter(field_name="service__name")

    class Meta:
        model = Objective
        fields = ["agreement", "kind", "service", "priority", "channel"]
