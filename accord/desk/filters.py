"""FilterSets shared by the agent queue and the desk API."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from django.utils import timezone

from accord.customers.models import Tier

from .models import SupportGroup, Tag, Ticket


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


def agents() -> QuerySet[Any]:
    """Staff who work tickets: users with the agent or manager role."""
    from django.contrib.auth import get_user_model

    return (get_user_model().objects.filter(is_active=True, groups__name__in=("agent", "manager"))
            .distinct().order_by("username"))


def end_of_today() -> dt.datetime:
    """Midnight at the end of today in the agent's zone (the current time zone)."""
    zone = timezone.get_current_timezone()
    today = timezone.localdate(timezone=zone)
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0), tzinfo=zone)


class QueueFilterSet(TicketFilterSet):
    """The agent queue's filters: a choice list (a select) wherever one exists, never a free-text box."""

    tier = django_filters.ModelChoiceFilter(field_name="account__tier", to_field_name="name", label="Tier",
                                            queryset=Tier.objects.order_by("rank", "name"))
    assignee = django_filters.ChoiceFilter(method="by_assignee", label="Assignee", choices=[])
    group = django_filters.ModelChoiceFilter(field_name="group", to_field_name="name", label="Group",
                                             queryset=SupportGroup.objects.order_by("name"))
    tag = django_filters.ModelChoiceFilter(field_name="tags", to_field_name="name", label="Tag",
                                           queryset=Tag.objects.order_by("name"))
    due = django_filters.ChoiceFilter(method="by_due", label="Due", choices=[("today", "breaching today")])

    class Meta:
        model = Ticket
        fields = ["status", "priority", "tier", "group", "assignee", "channel", "tag", "sla_state", "due"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.filters.pop("q", None)  # the search box (full text, accord/desk/search.py) replaces it
        self.filters.pop("account", None)
        choices = [("me", "me"), ("none", "nobody (unassigned)")]
        choices += [(u.username, u.username) for u in agents()]
        self.filters["assignee"].extra["choices"] = choices

    def by_due(self, queryset: QuerySet[Ticket], name: str, value: str) -> QuerySet[Ticket]:
        """A running clock due before the end of today (in the agent's zone), or already breached."""
        if value != "today":
            return queryset
        return queryset.filter(Q(next_due_at__lt=end_of_today()) | Q(sla_state=Ticket.SlaState.BREACHED))
