"""REST API of the gateway: the actions it enforces (switched by governance, or by hand) and its rollups."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from accord.lib.api import field_errors, name_list, refuse_unknown
from accord.lib.units import significant

from .actions import do_clear_action, do_set_action
from .measure import Sketch
from .models import ALL_ACCOUNTS, HOUR, MINUTE, PARAMS, GatewayAction, Rollup, action_errors

NAME_REGEX = r"[-a-zA-Z0-9_]+"


# -- gateway actions --------------------------------------------------------------------------------------------


class GatewayActionSerializer(serializers.ModelSerializer):
    """A gateway action as the API lists it, with whether the gateways enforce it now."""
    kind = serializers.CharField(help_text=", ".join(PARAMS))
    live = serializers.SerializerMethodField(help_text="Active and not expired: the gateways enforce it.")

    class Meta:
        model = GatewayAction
        fields = ["name", "kind", "params", "tiers", "accounts", "services", "operations", "priority", "active",
                  "live", "reason", "expires_at", "set_by", "created_at", "updated_at"]
        read_only_fields = fields

    def get_live(self, obj: GatewayAction) -> bool:
        return obj.active and (obj.expires_at is None or obj.expires_at > timezone.now())


@extend_schema_field({"type": "string", "enum": list(PARAMS)})
class ActionKindField(serializers.CharField):
    """An action's kind: one of PARAMS (checked with the rest by action_errors, which names the kinds)."""


class GatewayActionRequestSerializer(serializers.Serializer):
    """The body that creates or replaces a gateway action by name."""
    name = serializers.SlugField(max_length=80)
    kind = ActionKindField(max_length=12, help_text=", ".join(PARAMS))
    params = serializers.DictField(required=False, default=dict, help_text="Per kind: " + "; ".join(
        f"{kind}: {', '.join(names)}" for kind, names in PARAMS.items()))
    tiers = name_list(default=list, help_text="Tier names; empty: any.")
    accounts = name_list(default=list, help_text="Account keys (external id or id); empty: any.")
    services = name_list(default=list, help_text="Service names; empty: any.")
    operations = name_list(default=list, help_text="Operation names; empty: any.")
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    priority = serializers.IntegerField(required=False, default=100, min_value=-1000, max_value=1000)

    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown(self, data)
        return super().to_internal_value(data)

    def validate_name(self, value: str) -> str:
        if value.startswith("policy-"):
            raise ValidationError(f"'{value}' belongs to policy '{value[7:]}': override the policy instead "
                                  f"(/api/v1/governance/policies/{value[7:]}/override/).")
        return value

    def validate_expires_at(self, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value <= timezone.now():
            raise ValidationError("The expiry must be in the future.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = action_errors(attrs["kind"], attrs["params"], attrs["tiers"], attrs["accounts"], attrs["services"],
                               attrs["operations"])
        if errors:
            raise ValidationError(field_errors(errors))
        return attrs


class GatewayActionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """What the gateways enforce, active and inactive. POST creates or replaces an action by name and switches
    it on; DELETE switches it off (the row stays, inactive). Policies' own actions (policy-*) are changed
    through their policy's override."""

    queryset = GatewayAction.objects.all()
    serializer_class = GatewayActionSerializer
    lookup_field = "name"
    lookup_value_regex = NAME_REGEX
    filterset_fields = ["active", "kind"]
    ordering_fields = ["name", "priority", "updated_at"]

    @extend_schema(request=GatewayActionRequestSerializer, responses={200: GatewayActionSerializer,
                                                                       201: GatewayActionSerializer})
    def create(self, request: Request) -> Response:
        body = GatewayActionRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        d = dict(body.validated_data)
        existed = GatewayAction.objects.filter(name=d["name"]).exists()
        saved = do_set_action(d.pop("name"), d.pop("kind"), set_by=request.user.get_username()[:150], **d)
        return Response(GatewayActionSerializer(saved).data, status=status.HTTP_200_OK if existed
                        else status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, name: str | None = None) -> Response:
        gateway_action = self.get_object()
        if gateway_action.name.startswith("policy-"):
            raise ValidationError({"_": [f"'{gateway_action.name}' belongs to a policy: override the policy instead."]})
        do_clear_action(gateway_action.name)
        return Response(status=status.HTTP_204_NO_CONTENT)


# -- rollups ----------------------------------------------------------------------------------------------------


class RollupFilterSet(django_filters.FilterSet):
    """Filters of the rollup list: resolution, the key's parts and a time range."""
    resolution = django_filters.ChoiceFilter(
        choices=[("minute", "minute"), ("hour", "hour")], method="filter_resolution", empty_label=None,
        label="minute (default): the gateways' per-minute rows; hour: the same per hour")
    account = django_filters.CharFilter()
    tier = django_filters.CharFilter()
    service = django_filters.CharFilter()
    operation = django_filters.CharFilter()
    pool = django_filters.CharFilter()
    outcome = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="window_start", lookup_expr="gte",
                                             label="Windows starting at or after (ISO 8601)")
    until = django_filters.IsoDateTimeFilter(field_name="window_start", lookup_expr="lt",
                                             label="Windows starting before (ISO 8601)")

    class Meta:
        model = Rollup
        fields = ["resolution", "account", "tier", "service", "operation", "pool", "outcome", "since", "until"]

    def filter_resolution(self, queryset: QuerySet[Rollup], name: str, value: str) -> QuerySet[Rollup]:
        return queryset  # applied in filter_queryset, which also sets the default

    def filter_queryset(self, queryset: QuerySet[Rollup]) -> QuerySet[Rollup]:
        seconds = HOUR if self.form.cleaned_data.get("resolution") == "hour" else MINUTE
        return super().filter_queryset(queryset.filter(window_seconds=seconds))


class RollupSerializer(serializers.ModelSerializer):
    """A rollup row with its latency percentiles instead of its encoded sketch."""
    mean_ms = serializers.SerializerMethodField()
    p50_ms = serializers.SerializerMethodField()
    p95_ms = serializers.SerializerMethodField()
    p99_ms = serializers.SerializerMethodField()

    class Meta:
        model = Rollup
        fields = ["id", "window_start", "window_seconds", "account", "tier", "service", "operation", "pool",
                  "outcome", "count", "errors", "bytes_in", "bytes_out", "latency_sum_ms", "mean_ms", "p50_ms",
                  "p95_ms", "p99_ms"]

    def _sketch(self, obj: Rollup) -> Sketch | None:
        cache: dict[int, Sketch | None] = self.context.setdefault("sketches", {})
        if obj.pk not in cache:
            try:
                cache[obj.pk] = Sketch.decode(obj.latency_sketch)
            except ValueError:
                cache[obj.pk] = None
        return cache[obj.pk]

    def to_representation(self, instance: Rollup) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["latency_sum_ms"] = round(instance.latency_sum_ms, 3)  # a float sum: no noise past the microsecond
        return data

    def _quantile(self, obj: Rollup, q: float) -> float | None:
        sketch = self._sketch(obj)
        return significant(sketch.quantile(q)) if sketch is not None else None  # a sketch is within 1 %

    def get_mean_ms(self, obj: Rollup) -> float | None:
        return round(obj.latency_sum_ms / obj.count, 3) if obj.count else None

    def get_p50_ms(self, obj: Rollup) -> float | None:
        return self._quantile(obj, 0.50)

    def get_p95_ms(self, obj: Rollup) -> float | None:
        return self._quantile(obj, 0.95)

    def get_p99_ms(self, obj: Rollup) -> float | None:
        return self._quantile(obj, 0.99)


class RollupViewSet(viewsets.ReadOnlyModelViewSet):
    """The gateways' per-minute measurements per account, operation, pool, outcome and tier (`resolution=hour`:
    per hour); latency percentiles from the merged sketch (within 1%)."""

    queryset = Rollup.objects.exclude(account=ALL_ACCOUNTS)  # the rows adding up all accounts are the indicators'

    serializer_class = RollupSerializer
    filterset_class = RollupFilterSet
    ordering_fields = ["window_start", "count", "errors"]


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets."""
    router.register("gateway/actions", GatewayActionViewSet, basename="gateway-action")
    router.register("gateway/rollups", RollupViewSet, basename="gateway-rollup")
