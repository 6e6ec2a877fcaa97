"""REST API for services, operations, pools, endpoints, partner services and API credentials."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from accord.access.audit import diff, record, snapshot
from accord.access.models import AuditEntry
from accord.customers.models import Account
from accord.lib.api import Conflict, StrictSerializer

from . import filters
from .models import ApiCredential, CredentialUsage, Endpoint, Operation, PartnerService, Pool, Service
from .uses import objectives


class ServiceSerializer(StrictSerializer):
    class Meta:
        model = Service
        fields = ["id", "name", "title", "base_path", "owner", "cost_per_instance_hour", "allow_anonymous",
                  "forward_credentials", "simulated"]
        read_only_fields = ["simulated"]


class OperationSerializer(StrictSerializer):
    service = serializers.SlugRelatedField(slug_field="name", queryset=Service.objects.all())

    class Meta:
        model = Operation
        fields = ["id", "service", "name", "title", "method", "path_pattern"]


class PoolSerializer(StrictSerializer):
    service = serializers.SlugRelatedField(slug_field="name", queryset=Service.objects.all())

    class Meta:
        model = Pool
        fields = ["id", "service", "name", "role", "capacity"]


class EndpointSerializer(StrictSerializer):
    class Meta:
        model = Endpoint
        fields = ["id", "pool", "url", "weight", "enabled"]


class PartnerServiceSerializer(StrictSerializer):
    services = serializers.SlugRelatedField(slug_field="name", queryset=Service.objects.all(), many=True, required=False)

    class Meta:
        model = PartnerService
        fields = ["id", "name", "provider", "promised_availability", "services"]


class ApiCredentialSerializer(StrictSerializer):
    account = serializers.SlugRelatedField(slug_field="external_id", queryset=Account.objects.all())
    active = serializers.BooleanField(read_only=True)
    requests_this_month = serializers.IntegerField(
        read_only=True, default=0,
        help_text="Requests the gateway counted with this key since the first of this month (UTC).")

    class Meta:
        model = ApiCredential
        fields = ["id", "account", "name", "prefix", "active", "created_at", "last_used_at", "revoked_at",
                  "requests_this_month"]
        read_only_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]


class IssuedCredentialSerializer(ApiCredentialSerializer):
    key = serializers.CharField(read_only=True, help_text="The key itself; shown only in this response.")

    class Meta(ApiCredentialSerializer.Meta):
        fields = [*ApiCredentialSerializer.Meta.fields, "key"]


def refuse_if_objectives_use(what: str, uses: Q) -> None:
    """409 while agreements' objectives are scoped to it: deleting would delete those objectives with it (they
    cascade), so a customer's promise would vanish without a word; change or remove the objectives first."""
    found = objectives(uses)
    names = [] if found is None else [f"{a}/{o}" for a, o in found.order_by("agreement__name", "name")
                                      .values_list("agreement__name", "name")]
    if names:
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise Conflict(f"This {what} cannot be deleted: it is still used by {len(names)} objective"
                       f"{'s' if len(names) != 1 else ''} of agreements ({shown}); change or remove "
                       f"{'them' if len(names) != 1 else 'it'} first.")


class ServiceViewSet(viewsets.ModelViewSet):
    """Run-time services behind the gateway."""

    queryset = Service.objects.all()
    serializer_class = ServiceSerializer
    filterset_fields = ["name", "owner", "allow_anonymous", "forward_credentials", "simulated"]

    def perform_destroy(self, instance: Service) -> None:
        refuse_if_objectives_use("service", Q(service=instance) | Q(operation__service=instance))
        super().perform_destroy(instance)


class OperationViewSet(viewsets.ModelViewSet):
    """Business processes of services (a method and a path pattern)."""

    queryset = Operation.objects.select_related("service")
    serializer_class = OperationSerializer
    filterset_class = filters.OperationFilterSet

    def perform_destroy(self, instance: Operation) -> None:
        refuse_if_objectives_use("operation", Q(operation=instance))
        super().perform_destroy(instance)


class PoolViewSet(viewsets.ModelViewSet):
    """Primary and standby pools of services."""

    queryset = Pool.objects.select_related("service")
    serializer_class = PoolSerializer
    filterset_class = filters.PoolFilterSet


class EndpointViewSet(viewsets.ModelViewSet):
    """Upstream addresses in pools."""

    queryset = Endpoint.objects.select_related("pool")
    serializer_class = EndpointSerializer
    filterset_class = filters.EndpointFilterSet


class PartnerServiceViewSet(viewsets.ModelViewSet):
    """Third-party services ours depend on, with their promised availability."""

    queryset = PartnerService.objects.prefetch_related("services")
    serializer_class = PartnerServiceSerializer
    filterset_class = filters.PartnerFilterSet


class ApiCredentialViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """API keys of accounts: the key is returned once, at creation; only its hash is stored."""

    queryset = ApiCredential.objects.select_related("account")
    serializer_class = ApiCredentialSerializer
    filterset_class = filters.CredentialFilterSet

    def get_queryset(self) -> QuerySet[ApiCredential]:
        return super().get_queryset().annotate(requests_this_month=Coalesce(
            Sum("usage__requests", filter=Q(usage__day__gte=CredentialUsage.month_start())), 0))

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return IssuedCredentialSerializer if self.action == "create" else ApiCredentialSerializer

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        data = serializer.validated_data
        with transaction.atomic():  # the key and its audit entry (never its hash), as from the UI and the CLI
            credential, key = ApiCredential.issue(data["account"], data.get("name", ""))
            record(self.request.user, "issue-key", credential,
                   changes=diff({}, snapshot(credential, ["account_id", "name", "prefix"])),
                   summary=f"API key of {credential.account.name}", source=AuditEntry.Source.API)
        credential.key = key  # type: ignore[attr-defined]
        serializer.instance = credential

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        with transaction.atomic():
            credential = self.get_object()
            before = snapshot(credential, ["revoked_at"])
            credential.revoke()
            record(request.user, "revoke-key", credential, changes=diff(before, snapshot(credential, ["revoked_at"])),
                   summary=f"API key of {credential.account.name}", source=AuditEntry.Source.API)
        return Response(ApiCredentialSerializer(credential).data)


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets."""
    router.register("services", ServiceViewSet)
    router.register("operations", OperationViewSet)
    router.register("pools", PoolViewSet)
    router.register("endpoints", EndpointViewSet)
    router.register("partners", PartnerServiceViewSet)
    router.register("credentials", ApiCredentialViewSet)
