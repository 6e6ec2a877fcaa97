"""REST API for tiers, accounts, contacts, commitments, tier overrides and tier history."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from accord.lib.api import StrictSerializer

from . import filters
from .actions import do_override_tier, do_revoke_override
from .csvio import RowError, _emails, _phones
from .models import (
    Account,
    Commitment,
    Contact,
    ContactPoint,
    Tier,
    TierChange,
    TierOverride,
    validate_country,
    validate_custom_fields,
)

CUSTOM_FIELDS_SCHEMA = {
    "type": "object",
    "maxProperties": 50,
    "additionalProperties": {"oneOf": [{"type": "string", "maxLength": 500}, {"type": "number"}, {"type": "boolean"}]},
    "description": "Your own fields: keys (a letter, then letters, digits or _, at most 60) to text, numbers or "
                   "true/false; nested objects and lists are refused, naming the key.",
}


@extend_schema_field(CUSTOM_FIELDS_SCHEMA)
class CustomFieldsField(serializers.JSONField):
    """A flat JSON object of custom fields (the model's validator checks keys and values)."""


class TierSerializer(StrictSerializer):
    class Meta:
        model = Tier
        fields = ["id", "name", "rank", "min_commitment", "min_revenue_12m", "match", "description", "simulated"]
        read_only_fields = ["simulated"]


class AccountSerializer(StrictSerializer):
    tier = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    owner = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.all(), required=False, allow_null=True
    )
    committed_amount = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField(
        help_text="The currency of revenue_12m, cost_to_serve_12m and committed_amount (the setting ACCORD_CURRENCY)."
    )
    country = serializers.CharField(
        max_length=2, required=False, allow_blank=True, validators=[validate_country],
        help_text="ISO 3166-1 alpha-2 code in upper case (DE, FR, GB); blank: not known.")
    custom_fields = CustomFieldsField(required=False, validators=[validate_custom_fields])

    class Meta:
        model = Account
        fields = [
            "id", "external_id", "name", "kind", "owner", "timezone", "revenue_12m", "cost_to_serve_12m",
            "committed_amount", "currency", "tier", "country", "custom_fields", "simulated", "created_at", "updated_at",
        ]
        read_only_fields = ["simulated"]

    def get_currency(self, obj: Account) -> str:
        return str(settings.ACCORD_CURRENCY)

    @extend_schema_field(serializers.DecimalField(max_digits=14, decimal_places=2))
    def get_committed_amount(self, obj: Account) -> str:
        return f"{obj.committed_amount():.2f}"


class ContactSerializer(StrictSerializer):
    account = serializers.SlugRelatedField(
        slug_field="external_id", queryset=Account.objects.all(), required=False, allow_null=True
    )
    emails = serializers.ListField(child=serializers.CharField(max_length=254), required=False, max_length=50)
    phones = serializers.ListField(child=serializers.CharField(max_length=40), required=False, max_length=50)
    custom_fields = CustomFieldsField(required=False, validators=[validate_custom_fields])
    clean_exclude = ("emails", "phones")

    class Meta:
        model = Contact
        fields = ["id", "external_id", "name", "title", "account", "emails", "phones", "custom_fields", "created_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        points = attrs.pop("emails", None), attrs.pop("phones", None)
        attrs = super().validate(attrs)
        errors: dict[str, list[str]] = {}
        for field, parse, raw in (("emails", _emails, points[0]), ("phones", _phones, points[1])):
            if raw is None:
                continue
            try:
                values = parse({field: ";".join(raw)})
            except RowError as e:
                errors.setdefault(field, []).append(str(e))
                continue
            kind = "email" if field == "emails" else "phone"
            taken = ContactPoint.objects.filter(kind=kind, value__in=values)
            if self.instance is not None:
                taken = taken.exclude(contact=self.instance)
            for value in taken.values_list("value", flat=True):
                errors.setdefault(field, []).append(f"'{value}' belongs to another contact.")
            attrs[field] = values
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def _save_points(self, contact: Contact, attrs: dict[str, Any]) -> None:
        for field, kind in (("emails", "email"), ("phones", "phone")):
            if field in attrs:
                contact.points.filter(kind=kind).delete()
                ContactPoint.objects.bulk_create(
                    [ContactPoint(contact=contact, kind=kind, value=v, primary=i == 0) for i, v in enumerate(attrs[field])]
                )

    def create(self, validated_data: dict[str, Any]) -> Contact:
        points: dict[str, Any] = {k: validated_data.pop(k) for k in ("emails", "phones") if k in validated_data}
        with transaction.atomic():
            contact = super().create(validated_data)
            self._save_points(contact, points)
        return contact

    def update(self, instance: Contact, validated_data: dict[str, Any]) -> Contact:
        points: dict[str, Any] = {k: validated_data.pop(k) for k in ("emails", "phones") if k in validated_data}
        with transaction.atomic():
            contact = super().update(instance, validated_data)
            self._save_points(contact, points)
        return contact


class CommitmentSerializer(StrictSerializer):
    account = serializers.SlugRelatedField(slug_field="external_id", queryset=Account.objects.all())

    class Meta:
        model = Commitment
        fields = ["id", "account", "period_start", "period_end", "amount", "volume", "unit", "note"]


class TierOverrideSerializer(StrictSerializer):
    account = serializers.SlugRelatedField(slug_field="external_id", queryset=Account.objects.all())
    tier = serializers.SlugRelatedField(slug_field="name", queryset=Tier.objects.all())
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = TierOverride
        fields = ["id", "account", "tier", "reason", "expires_at", "created_by", "created_at", "revoked_at"]
        read_only_fields = ["created_at", "revoked_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("reason", "").strip():
            raise serializers.ValidationError({"reason": ["A manual override needs a reason."]})
        if attrs["expires_at"] <= timezone.now():
            raise serializers.ValidationError({"expires_at": ["The expiry must be in the future."]})
        return attrs

    def create(self, validated_data: dict[str, Any]) -> TierOverride:
        request = self.context.get("request")
        try:
            return do_override_tier(
                validated_data["account"], validated_data["tier"], validated_data["reason"],
                validated_data["expires_at"], request.user if request else None,
            )
        except DjangoValidationError as e:
            raise serializers.ValidationError(e.message_dict) from e


class TierChangeSerializer(serializers.ModelSerializer):
    account = serializers.SlugRelatedField(slug_field="external_id", read_only=True)
    from_tier = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    to_tier = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = TierChange
        fields = ["id", "account", "from_tier", "to_tier", "cause", "detail", "at"]


class TierViewSet(viewsets.ModelViewSet):
    """Tier rules, tried in rank order."""

    queryset = Tier.objects.all()
    serializer_class = TierSerializer
    ordering_fields = ["rank", "name"]
    filterset_fields = ["name", "match", "simulated"]


class AccountViewSet(viewsets.ModelViewSet):
    """Customers: organisations and people."""

    queryset = Account.objects.select_related("tier", "owner")
    serializer_class = AccountSerializer
    filterset_class = filters.AccountFilterSet
    ordering_fields = ["name", "revenue_12m", "cost_to_serve_12m", "created_at"]


class ContactViewSet(viewsets.ModelViewSet):
    """People at accounts with their e-mail addresses and phone numbers."""

    queryset = Contact.objects.select_related("account").prefetch_related("points")
    serializer_class = ContactSerializer
    filterset_class = filters.ContactFilterSet
    ordering_fields = ["name", "created_at"]


class CommitmentViewSet(viewsets.ModelViewSet):
    """Amounts and volumes committed by accounts for periods."""

    queryset = Commitment.objects.select_related("account")
    serializer_class = CommitmentSerializer
    filterset_class = filters.CommitmentFilterSet
    ordering_fields = ["period_start", "amount"]


class TierOverrideViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Manual tier overrides: create one with a reason and an expiry; revoke it to fall back to the rules."""

    queryset = TierOverride.objects.select_related("account", "tier", "created_by")
    serializer_class = TierOverrideSerializer
    filterset_class = filters.TierOverrideFilterSet

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        override = self.get_object()
        do_revoke_override(override)
        override.refresh_from_db()
        return Response(self.get_serializer(override).data)


class TierChangeViewSet(viewsets.ReadOnlyModelViewSet):
    """Every tier change of every account, with its cause."""

    queryset = TierChange.objects.select_related("account", "from_tier", "to_tier")
    serializer_class = TierChangeSerializer
    filterset_class = filters.TierChangeFilterSet
    ordering_fields = ["at"]


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets."""
    router.register("tiers", TierViewSet)
    router.register("accounts", AccountViewSet)
    router.register("contacts", ContactViewSet)
    router.register("commitments", CommitmentViewSet)
    router.register("tier-overrides", TierOverrideViewSet)
    router.register("tier-changes", TierChangeViewSet)
