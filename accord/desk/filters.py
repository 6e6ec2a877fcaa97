"""FilterSets shared by the agent queue and the desk API."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet

from .models import Ticket


class TicketFilterSet(django_filters.FilterSet):
    """Filter tickets by channel, tier, assignee (a username, `me` or `none`), SLA state, status and priority."""

    channel = django_filters.ChoiceFilter(choices=Ticket.Channel.choices)
    tier = django_filters.CharFilter(field_name="account__tier__name", label="Tier")
    assignee = django_filters.CharFilter(method="by_assignee", label="Assignee (username, me or none)")
    sla_state = django_filters.ChoiceFilter(choices=Ticket.SlaState.choices, label="SLA")
    status = django_filters.ChoiceFilter(choices=Ticket.Status.choices)
    priority = django_filters.ChoiceFilter(choices=Ticket.Priority.choices)
    account = django_filters.CharFilter(field_name="account__external_id")
    q = django_filters.CharFilter(field_name="subject", lookup_expr="icontains", label="Subject contains")

    class Meta:
        model = Ticket
        fields = ["channel", "tier", "assignee", "sla_state", "status", "priority", "account", "q"]

    def by_assignee(self, queryset: QuerySet[Ticket], name: str, value: str) -> QuerySet[Ticket]:
        if not value:
            return queryset
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        if value == "me":
            user: Any = getattr(self.request, "user", None)
            return queryset.filter(assignee=user) if user is not None and user.is_authenticated else queryset.none()
        return queryset.filter(assignee__username=value)
