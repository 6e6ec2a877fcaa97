"""REST API for calendars, agreements, objectives and credit schedules."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from rest_framework import serializers, viewsets
from rest_framework.routers import DefaultRouter

from accord.catalog.models import Operation, Service
from accord.customers.models import Account, Tier
from accord.lib.api import StrictSerializer

from . import filters
from .models import Agreement, BusinessCalendar, CreditBand, CreditSchedule, Objective, credit_errors


class CalendarSerializer(StrictSerializer):
    class Meta:
        model = BusinessCalendar
        fields = [
            "id", "name", "timezone", "hours", "holiday_country", "holiday_subdivision",
            "extra_holidays", "removed_holidays", "simulated",
        ]
        read_only_fields = ["simulated"]


class CreditBandSerializer(serializers.Serializer):
    below_percent = serializers.DecimalField(max_digits=7, decimal_places=4)
    credit_percent = serializers.DecimalField(max_digits=6, decimal_places=3)


class CreditScheduleSerializer(serializers.Serializer):
    cap_percent = serializers.DecimalField(max_digits=6, decimal_places=3, default=Decimal(100))
    bands = CreditBandSerializer(many=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A schedule is always replaced whole, also in a PATCH of its agreement (where DRF skips defaults and
        # required fields of nested serializers): say what is missing instead of failing on it.
        if "bands" not in attrs:
            raise serializers.ValidationError({"bands": ["This field is required: a credit schedule is replaced "
                                                         "whole, with all its bands."]})
        attrs.setdefault("cap_percent", Decimal(100))
        bands = [(b["below_percent"], b["credit_percent"]) for b in attrs["bands"]]
        errors: dict[str, list[str]] = {}
        for path, message in credit_errors(attrs["cap_percent"], bands):
            errors.setdefault(path.replace(".below", ".below_percent").replace(".credit", ".credit_percent").replace("cap", "cap_percent"), []).append(message)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class ObjectiveSerializer(StrictSerializer):
    agreement = serializers.SlugRelatedField(slug_field="name", queryset=Agreement.objects.all())
    service = serializers.SlugRelatedField(slug_field="name", queryset=Service.objects.all(), required=False, allow_null=True)
    operation = serializers.PrimaryKeyRelatedField(queryset=Operation.objects.all(), required=False, allow_null=True)

    class Meta:
        model = Objective
        fields = [
            "id", "agreement", "name", "kind", "target", "percentile", "window", "window_days",
            "service", "operation", "channel", "priority",
        ]


class NestedObjectiveSerializer(ObjectiveSerializer):
    class Meta(ObjectiveSerializer.Meta):
        fields = [f for f in ObjectiveSerializer.Meta.fields if f != "agreement"]


class AgreementSerializer(StrictSerializer):
    tier = serializers.SlugRelatedField(slug_field="name", queryset=Tier.objects.all(), required=False, allow_null=True)
    account = serializers.SlugRelatedField(
        slug_field="external_id", queryset=Account.objects.all(), required=False, allow_null=True
    )
    calendar = serializers.SlugRelatedField(slug_field="name", queryset=BusinessCalendar.objects.all())
    services = serializers.SlugRelatedField(slug_field="name", queryset=Service.objects.all(), many=True, required=False)
    objectives = NestedObjectiveSerializer(many=True, read_only=True)
    credit_schedule = CreditScheduleSerializer(required=False, allow_null=True)
    clean_exclude = ("credit_schedule",)

    class Meta:
        model = Agreement
        fields = [
            "id", "name", "title", "tier", "account", "effective_from", "effective_to", "monthly_fee", "currency",
            "calendar", "services", "objectives", "credit_schedule", "simulated",
        ]
        read_only_fields = ["simulated"]

    def to_representation(self, instance: Agreement) -> dict[str, Any]:
        data = super().to_representation(instance)
        schedule = CreditSchedule.objects.filter(agreement=instance).first()
        data["credit_schedule"] = (
            {
                "cap_percent": str(schedule.cap_percent),
                "bands": [
                    {"below_percent": str(b.below_percent), "credit_percent": str(b.credit_percent)}
                    for b in schedule.bands.all()
                ],
            }
            if schedule
            else None
        )
        return data

    def _save_schedule(self, agreement: Agreement, schedule: dict[str, Any] | None) -> None:
        CreditSchedule.objects.filter(agreement=agreement).delete()
        if schedule:
            saved = CreditSchedule.objects.create(agreement=agreement, cap_percent=schedule["cap_percent"])
            CreditBand.objects.bulk_create(
                [CreditBand(schedule=saved, below_percent=b["below_percent"], credit_percent=b["credit_percent"])
                 for b in schedule["bands"]]
            )

    def create(self, validated_data: dict[str, Any]) -> Agreement:
        has_schedule = "credit_schedule" in validated_data
        schedule = validated_data.pop("credit_schedule", None)
        with transaction.atomic():
            agreement = super().create(validated_data)
            if has_schedule:
                self._save_schedule(agreement, schedule)
        return agreement

    def update(self, instance: Agreement, validated_data: dict[str, Any]) -> Agreement:
        has_schedule = "credit_schedule" in validated_data
        schedule = validated_data.pop("credit_schedule", None)
        with transaction.atomic():
            agreement = super().update(instance, validated_data)
            if has_schedule:
                self._save_schedule(agreement, schedule)
        return agreement


class CalendarViewSet(viewsets.ModelViewSet):
    """Business calendars: working windows per weekday in a time zone, minus holidays."""

    queryset = BusinessCalendar.objects.all()
    serializer_class = CalendarSerializer
    filterset_fields = ["name", "timezone", "holiday_country", "simulated"]


class AgreementViewSet(viewsets.ModelViewSet):
    """Service-level agreements per tier or per account, with objectives and a credit schedule."""

    queryset = Agreement.objects.select_related("tier", "account", "calendar").prefetch_related(
        "services", "objectives__service"
    )
    serializer_class = AgreementSerializer
    filterset_class = filters.AgreementFilterSet
    ordering_fields = ["name", "effective_from", "monthly_fee"]


class ObjectiveViewSet(viewsets.ModelViewSet):
    """The objectives of agreements."""

    queryset = Objective.objects.select_related("agreement", "service", "operation")
    serializer_class = ObjectiveSerializer
    filterset_class = filters.ObjectiveFilterSet


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets."""
    router.register("calendars", CalendarViewSet)
    router.register("agreements", AgreementViewSet)
    router.register("objectives", ObjectiveViewSet)
