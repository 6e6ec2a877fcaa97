"""/api/v1/me/tokens/: a staff member's own API tokens (list, create — the token is shown once —, revoke)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from accord.lib.api import refuse_unknown

from . import tokens
from .models import ApiToken


class ApiTokenSerializer(serializers.ModelSerializer):
    live = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = ["prefix", "name", "created_at", "expires_at", "last_used_at", "revoked_at", "live"]
        read_only_fields = fields


class NewTokenSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    days = serializers.IntegerField(
        min_value=1, max_value=tokens.MAX_DAYS, required=False, help_text="Days the token lives (default 90)"
    )

    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown(self, data)
        return super().to_internal_value(data)


class IssuedTokenSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The whole token, shown this once only")

    class Meta(ApiTokenSerializer.Meta):
        fields = ["token", *ApiTokenSerializer.Meta.fields]
        read_only_fields = fields


class MyTokenViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Your own API tokens. Only the prefix is shown after creation; delete revokes (the row stays, for the
    record)."""

    serializer_class = ApiTokenSerializer
    lookup_field = "prefix"
    lookup_value_regex = "[0-9a-f]{8}"
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[ApiToken]:
        user = getattr(self, "request", None) and self.request.user
        if not user or not user.is_authenticated:
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=user)

    @extend_schema(request=NewTokenSerializer, responses={201: IssuedTokenSerializer})
    def create(self, request: Request) -> Response:
        body = NewTokenSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        issued = tokens.create(request.user, body.validated_data["name"], body.validated_data.get("days"))
        issued.token.token = issued.secret  # type: ignore[attr-defined]
        return Response(IssuedTokenSerializer(issued.token).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: ApiToken) -> None:
        tokens.revoke(instance.prefix)


def register(router: DefaultRouter) -> None:
    router.register("me/tokens", MyTokenViewSet, basename="me-token")
