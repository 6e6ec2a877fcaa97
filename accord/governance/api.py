"""REST API of governance: policies, overrides, audit, error budgets, live indicators.

Policies are validated by `policies.policy_errors` / `save_policy`, the same rules as `accord apply` and the
admin, so the API answers every bad policy with a 400 naming the field (a condition that does not parse names
its column). Webhook secrets are write-only: a policy shows its webhooks' URLs, and an update that sends a
webhook without a `secret` keeps the secret stored for that URL.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, cast

import django_filters
from django.db import transaction
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.views import APIView

from accord.agreements.models import Agreement
from accord.customers.models import Account
from accord.gateway.actions import do_clear_action
from accord.gateway.models import PARAMS
from accord.lib.api import field_errors, name_list, refuse_unknown
from accord.lib.units import significant

from . import engine
from .indicators import budget_status, live_pool, live_traffic, objective_scope, runtime_objectives
from .models import AuditEvent, Override, Policy, PolicyState
from .notify import webhook_list
from .policies import FIELDS, MAX_SECONDS, PolicyError, save_policy

NAME_REGEX = r"[-a-zA-Z0-9_]+"
# A policy's gateway action is "policy-<name>" cut at 80 characters: longer names would share an action.
POLICY_NAME_MAX = 80 - len("policy-")
MAX_OVERRIDE_MINUTES = 7 * 24 * 60
MAX_LIVE_WINDOW = 900


def _finite(value: Any) -> Any:
    """JSON has no infinity or NaN: such a number is shown as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@extend_schema_field({"type": "string", "enum": list(Policy.Mode.values)})
class ModeField(serializers.CharField):
    """A policy mode; checked by policy_errors, so the message lists the modes."""


@extend_schema_field({"type": "string", "enum": list(Policy.Action.values)})
class PolicyActionField(serializers.CharField):
    """A policy action; checked by policy_errors, so the message lists the actions."""


# -- policies -------------------------------------------------------------------------------------------------


class PolicyStateSerializer(serializers.Serializer):
    """Where a policy is in its cycle (written by the governor)."""

    status = serializers.ChoiceField(
        choices=["active", "idle", "dry_run_active", "dry_run_idle", "disabled"],
        help_text="active/idle; dry_run_active: a dry-run policy that would be active; disabled.",
    )
    active = serializers.BooleanField()
    since = serializers.DateTimeField(allow_null=True, help_text="When it last switched on (active) or off (idle).")
    evaluated_at = serializers.DateTimeField(allow_null=True)
    condition_since = serializers.DateTimeField(allow_null=True, help_text="Since when the condition holds (idle).")
    clear_since = serializers.DateTimeField(allow_null=True, help_text="Since when the clear condition holds (active).")
    cooldown_until = serializers.DateTimeField(allow_null=True)
    values = serializers.DictField(help_text='The last evaluation: {"signals": {signal: value}, "condition": bool, '
                                             '"clear": bool}.')
    error = serializers.CharField(help_text="Why the last evaluation failed; empty when it did not.")


class OverrideSerializer(serializers.Serializer):
    on = serializers.BooleanField(help_text="True: forced on; false: forced off.")
    reason = serializers.CharField()
    expires_at = serializers.DateTimeField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()


def policy_status(policy: Policy, state: PolicyState | None) -> str:
    if not policy.enabled:
        return "disabled"
    active = bool(state and state.active)
    if policy.mode == Policy.Mode.DRY_RUN:
        return "dry_run_active" if active else "dry_run_idle"
    return "active" if active else "idle"


def state_dict(policy: Policy) -> dict[str, Any]:
    state = state_of(policy)
    since = None
    if state is not None:
        since = state.activated_at if state.active else state.deactivated_at
    return {
        "status": policy_status(policy, state),
        "active": bool(state and state.active),
        "since": since,
        "evaluated_at": state.evaluated_at if state else None,
        "condition_since": state.true_since if state else None,
        "clear_since": state.clear_since if state else None,
        "cooldown_until": state.cooldown_until if state else None,
        "values": state.values if state else {},
        "error": state.error if state else "",
    }


def state_of(policy: Policy) -> PolicyState | None:
    try:
        return policy.state
    except PolicyState.DoesNotExist:
        return None


def current_override(policy: Policy) -> Override | None:
    prefetched = getattr(policy, "live_overrides", None)
    if prefetched is not None:
        now = timezone.now()
        return next((o for o in prefetched if o.expires_at > now), None)
    return Override.current(policy)


def live_overrides() -> Prefetch[Any]:
    """Prefetch of the overrides that may still be in force (filtered again at display time)."""
    return Prefetch("overrides", queryset=Override.objects.filter(ended_at__isnull=True,
                                                                  expires_at__gt=timezone.now()),
                    to_attr="live_overrides")


def _policy_data(policy: Policy) -> dict[str, Any]:
    """A policy as the plain data save_policy takes (schedule by calendar name)."""
    data = {f: getattr(policy, f) for f in FIELDS if f != "schedule"}
    data["schedule"] = policy.schedule.name if policy.schedule_id and policy.schedule else None
    return data


def _keep_secrets(hooks: Any, stored: list[dict[str, str]]) -> Any:
    """Webhooks sent without a secret keep the one stored for the same URL; then normalised if valid."""
    if not isinstance(hooks, list):
        return hooks
    secrets = {h.get("url"): h.get("secret", "") for h in stored if isinstance(h, dict)}
    merged = [{**h, "secret": secrets[h["url"]]} if isinstance(h, dict) and "secret" not in h
              and h.get("url") in secrets else h for h in hooks]
    try:
        return webhook_list(merged)
    except ValueError:
        return merged  # policy_errors reports it with the entry's index


class RangeIntegerField(serializers.IntegerField):
    """An integer whose range policy_errors checks (its message names the range); the schema states it."""

    def __init__(self, low: int, high: int, **kwargs: Any) -> None:
        self.low, self.high = low, high
        super().__init__(**kwargs)


class SecondsField(RangeIntegerField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(0, MAX_SECONDS, **kwargs)


class RangeIntegerFieldExtension(OpenApiSerializerFieldExtension):
    target_class = RangeIntegerField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.target.low, "maximum": self.target.high}


class PolicySerializer(serializers.Serializer):
    """A governance policy and its current state."""

    name = serializers.SlugField(max_length=POLICY_NAME_MAX, help_text="Unique; the policy's gateway action is "
                                 "policy-<name>.")
    description = serializers.CharField(max_length=300, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    mode = ModeField(required=False, help_text="enforce, or dry_run: record what it would do, touch nothing.")
    priority = RangeIntegerField(-1000, 1000, required=False,
                                 help_text="-1000..1000; lower wins when actions overlap.")
    condition = serializers.CharField(required=False, allow_blank=True,
                                      help_text="e.g. pool(booking, primary).utilisation > 0.8")
    hold_seconds = SecondsField(required=False)
    clear_condition = serializers.CharField(required=False, allow_blank=True,
                                            help_text="Default: the condition no longer holds.")
    clear_seconds = SecondsField(required=False)
    min_active_seconds = SecondsField(required=False)
    cooldown_seconds = SecondsField(required=False)
    tiers = name_list(help_text="Tier names; empty: any.")
    accounts = name_list(help_text="Account external ids; empty: any.")
    services = name_list(help_text="Service names; empty: any.")
    operations = name_list(help_text="Operation names; empty: any.")
    action = PolicyActionField(required=False)
    params = serializers.DictField(required=False, help_text="Per action: " + "; ".join(
        f"{kind}: {', '.join(names)}" for kind, names in PARAMS.items()))
    schedule = serializers.CharField(max_length=80, required=False, allow_null=True, allow_blank=True,
                                     help_text="A business calendar's name: only in its working time.")
    notify_emails = serializers.ListField(child=serializers.CharField(max_length=254), required=False,
                                          max_length=50)
    notify_webhooks = serializers.ListField(
        child=serializers.DictField(), required=False, max_length=20,
        help_text='[{"url": ..., "secret": ...}]; secrets are write-only and kept when an update omits them.',
    )
    simulated = serializers.BooleanField(read_only=True, help_text="Created by a scenario (accord scenario rta); "
                                         "`accord scenario clean` removes it.")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    state = serializers.SerializerMethodField()
    override = serializers.SerializerMethodField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance is not None and not isinstance(self.instance, list | QuerySet):
            self.fields["name"].required = False

    @extend_schema_field(PolicyStateSerializer)
    def get_state(self, policy: Policy) -> dict[str, Any]:
        return PolicyStateSerializer(state_dict(policy)).data

    @extend_schema_field(OverrideSerializer(allow_null=True))
    def get_override(self, policy: Policy) -> dict[str, Any] | None:
        override = current_override(policy)
        if override is None:
            return None
        return OverrideSerializer({"on": override.force_on, "reason": override.reason,
                                   "expires_at": override.expires_at, "created_by": override.created_by,
                                   "created_at": override.created_at}).data

    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown(self, data)
        return super().to_internal_value(data)

    def to_representation(self, instance: Policy) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["schedule"] = instance.schedule.name if instance.schedule_id and instance.schedule else None
        data["notify_webhooks"] = [{"url": h.get("url", "")} for h in instance.notify_webhooks
                                   if isinstance(h, dict)]
        return data

    def validate_name(self, value: str) -> str:
        if self.instance is not None and value != self.instance.name:
            raise ValidationError("A policy cannot be renamed; create a new one and delete this one.")
        if self.instance is None and Policy.objects.filter(name=value).exists():
            raise ValidationError(f"A policy named '{value}' already exists; PUT or PATCH "
                                  f"/api/v1/governance/policies/{value}/ changes it.")
        return value

    def _save(self, name: str, base: dict[str, Any], given: dict[str, Any]) -> Policy:
        data = {**base, **{k: v for k, v in given.items() if k in FIELDS}}
        if "notify_webhooks" in given:
            stored = self.instance.notify_webhooks if isinstance(self.instance, Policy) else []
            data["notify_webhooks"] = _keep_secrets(given["notify_webhooks"], stored)
        try:
            policy, _created = save_policy(name, data)
        except PolicyError as e:
            raise ValidationError(field_errors(e.errors)) from e
        return policy

    def create(self, validated_data: dict[str, Any]) -> Policy:
        return self._save(validated_data["name"], _policy_data(Policy()), validated_data)

    def update(self, instance: Policy, validated_data: dict[str, Any]) -> Policy:
        base = _policy_data(instance) if self.partial else _policy_data(Policy())
        return self._save(instance.name, base, validated_data)


class OverrideRequestSerializer(serializers.Serializer):
    on = serializers.BooleanField(help_text="True: force the policy's action on; false: force it off.")
    reason = serializers.CharField(max_length=300, help_text="Why; shown in the audit trail.")
    minutes = serializers.FloatField(help_text=f"How long the override lasts: above 0, at most "
                                               f"{MAX_OVERRIDE_MINUTES} (a week).")

    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown(self, data)
        return super().to_internal_value(data)

    def validate_minutes(self, value: float) -> float:
        if not math.isfinite(value) or not 0 < value <= MAX_OVERRIDE_MINUTES:
            raise ValidationError(f"Must be above 0 and at most {MAX_OVERRIDE_MINUTES} (a week).")
        return value


class PolicyWriteSerializer(PolicySerializer):
    """The body of a create or a full replace (PUT): a condition and an action are required (policy_errors)."""

    condition = serializers.CharField(help_text="e.g. pool(booking, primary).utilisation > 0.8")
    action = PolicyActionField()


@extend_schema_view(create=extend_schema(request=PolicyWriteSerializer),
                    update=extend_schema(request=PolicyWriteSerializer))
class PolicyViewSet(viewsets.ModelViewSet):
    """Governance policies, by name: when a condition on live indicators holds, switch a gateway action on.

    Each policy shows its state (written by `accord governor`) and the manual override in force, if any.
    Deleting a policy whose action is on switches the action off at once.
    """

    serializer_class = PolicySerializer
    lookup_field = "name"
    lookup_value_regex = NAME_REGEX
    filterset_fields = ["enabled", "mode", "action", "simulated"]
    ordering_fields = ["name", "priority", "created_at"]

    def get_queryset(self) -> QuerySet[Policy]:
        return Policy.objects.select_related("state", "schedule").prefetch_related(live_overrides())

    def _fresh(self, policy: Policy) -> Policy:
        return self.get_queryset().get(pk=policy.pk)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)  # saved with its audit entry (Audited)
        return Response(self.get_serializer(self._fresh(cast(Policy, serializer.instance))).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=kwargs.pop("partial", False))
        serializer.is_valid(raise_exception=True)
        self.perform_update(serializer)
        return Response(self.get_serializer(self._fresh(cast(Policy, serializer.instance))).data)

    def perform_destroy(self, instance: Policy) -> None:
        user = self.request.user.get_username()
        with transaction.atomic():
            if do_clear_action(instance.action_name):
                AuditEvent.objects.create(
                    kind=AuditEvent.Kind.DEACTIVATED, policy=instance, subject=instance.name, actor=user,
                    reason=f"policy deleted by {user}: its action {instance.action_name} is off",
                )
            super().perform_destroy(instance)

    @extend_schema(methods=["POST"], request=OverrideRequestSerializer, responses={200: PolicySerializer},
                   summary="Override a policy",
                   description="Force the policy's action on or off until it expires; applied at once.")
    @extend_schema(methods=["DELETE"], request=None, responses={200: PolicySerializer},
                   summary="End a policy's override",
                   description="End the override in force; the governor takes over again at its next "
                               "evaluation. 404 when there is none.")
    @action(detail=True, methods=["post", "delete"], url_path="override", filter_backends=[])
    def override(self, request: Request, name: str | None = None) -> Response:
        policy = self.get_object()
        user = request.user.get_username()
        if request.method == "DELETE":
            if not engine.end_override(policy, user):
                raise NotFound(f"Policy '{policy.name}' has no override in force.")
            return Response(self.get_serializer(self._fresh(policy)).data)
        body = OverrideRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not policy.enabled:
            raise ValidationError({"_": [f"Policy '{policy.name}' is disabled: enable it before overriding it."]})
        d = body.validated_data
        until = timezone.now() + dt.timedelta(minutes=d["minutes"])
        try:
            engine.set_override(policy, d["on"], d["reason"], until, user)
        except ValueError as e:
            raise ValidationError({"_": [str(e)]}) from e
        return Response(self.get_serializer(self._fresh(policy)).data)


# -- audit ------------------------------------------------------------------------------------------------------


class AuditFilterSet(django_filters.FilterSet):
    policy = django_filters.CharFilter(method="by_policy", label="Policy name (also finds deleted policies' events)")
    kind = django_filters.ChoiceFilter(choices=AuditEvent.Kind.choices)
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte", label="At or after (ISO 8601)")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt", label="Before (ISO 8601)")
    actor = django_filters.CharFilter()

    class Meta:
        model = AuditEvent
        fields = ["policy", "kind", "since", "until", "actor"]

    def by_policy(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        return queryset.filter(Q(policy__name=value) | Q(policy__isnull=True, subject__in=[value, f"policy-{value}"]))


class AuditEventSerializer(serializers.ModelSerializer):
    policy = serializers.SlugRelatedField(slug_field="name", read_only=True)
    kind = serializers.CharField(help_text=", ".join(AuditEvent.Kind.values))

    class Meta:
        model = AuditEvent
        fields = ["id", "at", "kind", "policy", "subject", "actor", "reason", "values"]


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """Every activation, deactivation, override, burn alert and error: who or what, why, with the values."""

    queryset = AuditEvent.objects.select_related("policy").order_by("-at", "-id")
    serializer_class = AuditEventSerializer
    filterset_class = AuditFilterSet
    ordering_fields = ["at"]


# -- error budgets ----------------------------------------------------------------------------------------------


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "string", "enum": ["Infinity", "-Infinity"]}],
                      "nullable": True})
class MaybeInfiniteField(serializers.FloatField):
    """A number that may be infinite: JSON has no infinity, so infinity travels as the string "Infinity" (or
    "-Infinity"), which JavaScript's Number() and Python's float() read back (`accord.lib.units.json_number`)."""


class BudgetSerializer(serializers.Serializer):
    """The error budget of one run-time objective over its current window (docs/governance.md, "Service-level
    indicators": valid, good, bad and excluded events per objective kind)."""

    id = serializers.IntegerField(help_text="The objective's id.")
    agreement = serializers.CharField()
    objective = serializers.CharField()
    kind = serializers.CharField(help_text="availability, latency or error_rate")
    target = serializers.FloatField(help_text="availability: % good; latency: ms; error_rate: max % errors.")
    percentile = serializers.FloatField(allow_null=True)
    scope = serializers.DictField(help_text="The rollups it is about: tier, account, service, operation.")
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    requests = serializers.IntegerField(help_text="Everything the gateway measured in the objective's scope.")
    valid = serializers.IntegerField(help_text="The requests the SLI counts: all but the excluded.")
    good = serializers.IntegerField()
    bad = serializers.IntegerField()
    excluded = serializers.IntegerField(help_text="Refused by the customer's own rate limit (429), or abandoned by "
                                                  "the client (499) within abandon_threshold_ms.")
    abandon_threshold_ms = serializers.FloatField(help_text="A request abandoned after this long without an answer "
                                                            "is bad; sooner, it is excluded.")
    sli = serializers.FloatField(allow_null=True, help_text="% good, % errors, or the percentile in ms (4 significant "
                                                            "digits); null: no valid event.")
    met = serializers.BooleanField(allow_null=True)
    budget = serializers.FloatField(help_text="The share of valid requests allowed to be bad (0.001 for 99.9 %).")
    consumed = MaybeInfiniteField(allow_null=True, help_text="Share of the budget spent (may exceed 1); "
                                                             "\"Infinity\" when a zero budget has a bad event.")
    remaining = MaybeInfiniteField(allow_null=True, help_text="1 - consumed; \"-Infinity\" when a zero budget has "
                                                              "a bad event.")
    simulated = serializers.BooleanField(help_text="An agreement of a scenario's simulated account.")


class SloQuerySerializer(serializers.Serializer):
    agreement = serializers.CharField(required=False, max_length=200)
    account = serializers.CharField(required=False, max_length=100)
    tier = serializers.CharField(required=False, max_length=80)
    simulated = serializers.BooleanField(required=False, allow_null=True, default=None)


def budget_dict(objective: Any, now: dt.datetime) -> dict[str, Any]:
    return {"id": objective.pk, **budget_status(objective, now).as_dict(), "scope": objective_scope(objective),
            "simulated": objective.agreement.simulated}


class SloViewSet(viewsets.GenericViewSet):
    """Error budgets of the run-time objectives (availability, latency, error rate) in force today."""

    serializer_class = BudgetSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Any]:
        return runtime_objectives().order_by("agreement__name", "name", "id")

    @extend_schema(parameters=[
        OpenApiParameter("agreement", str, description="An agreement's name."),
        OpenApiParameter("account", str, description="An account's external id: the objectives of the "
                                                     "agreement that applies to it today."),
        OpenApiParameter("tier", str, description="A tier's name: the objectives of its agreements."),
        OpenApiParameter("simulated", bool, description="true: only the agreements of a scenario's simulated "
                                                        "accounts; false: only real ones."),
    ])
    def list(self, request: Request) -> Response:
        query = SloQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        qs = self.get_queryset()
        if q.get("agreement"):
            qs = qs.filter(agreement__name=q["agreement"])
        if q.get("tier"):
            qs = qs.filter(agreement__tier__name=q["tier"])
        if q.get("simulated") is not None:
            qs = qs.filter(agreement__simulated=q["simulated"])
        if q.get("account"):
            account = Account.objects.filter(external_id=q["account"]).first()
            if account is None:
                raise ValidationError({"account": [f"No account with external id '{q['account']}'."]})
            agreement = Agreement.for_account(account, timezone.localdate())
            qs = qs.filter(agreement=agreement) if agreement is not None else qs.none()
        page = self.paginate_queryset(qs)
        now = timezone.now()
        return self.get_paginated_response([budget_dict(o, now) for o in page or []])


# -- live indicators --------------------------------------------------------------------------------------------


class IndicatorQuerySerializer(serializers.Serializer):
    service = serializers.CharField(required=False, max_length=80)
    operation = serializers.CharField(required=False, max_length=80)
    pool = serializers.CharField(required=False, max_length=80)
    tier = serializers.CharField(required=False, max_length=80)
    window = serializers.IntegerField(required=False, default=30, min_value=1, max_value=MAX_LIVE_WINDOW)


class IndicatorsSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    window = serializers.IntegerField(help_text="Seconds looked back.")
    filters = serializers.DictField(help_text="The filters applied.")
    count = serializers.FloatField()
    rps = serializers.FloatField(allow_null=True)
    availability = serializers.FloatField(allow_null=True, help_text="0..1; null without traffic.")
    error_rate = serializers.FloatField(allow_null=True)
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)
    utilisation = serializers.FloatField(allow_null=True, help_text="Busy time over capacity time, 0 to 1 "
                                                                    "(needs service and pool).")
    in_flight = serializers.IntegerField(allow_null=True)
    waiting = serializers.IntegerField(allow_null=True)


class IndicatorsView(APIView):
    """Live indicators from the gateways' per-second signals over the last `window` seconds."""

    required_perms = {"GET": ["governance.view_policy"]}

    @extend_schema(parameters=[IndicatorQuerySerializer], responses={200: IndicatorsSerializer})
    def get(self, request: Request) -> Response:
        query = IndicatorQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        window = q["window"]
        filters = {k: q[k] for k in ("service", "operation", "pool", "tier") if q.get(k)}
        now = timezone.now()
        data: dict[str, Any] = {"at": now, "window": window, "filters": filters}
        traffic = live_traffic(now, window, **filters).as_dict(window)
        data.update({k: significant(_finite(v)) if k.endswith("_ms") else _finite(v) for k, v in traffic.items()})
        load = live_pool(now, window, filters["service"], filters["pool"]) if {"service", "pool"} <= set(filters) \
            else None
        data.update({"utilisation": _finite(load.utilisation) if load else None,
                     "in_flight": load.in_flight if load else None, "waiting": load.waiting if load else None})
        return Response(IndicatorsSerializer(data).data)


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets."""
    router.register("governance/policies", PolicyViewSet, basename="governance-policy")
    router.register("governance/audit", AuditEventViewSet, basename="governance-audit")
    router.register("governance/slo", SloViewSet, basename="governance-slo")
