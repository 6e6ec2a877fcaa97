"""The API of reports and credits under /api/v1/reports/: an account's period report (JSON, CSV, HTML, PDF),
the credit ledger, and its steps (approve, reject with a reason, apply) for users with
`reports.approve_credit`."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from accord.customers.models import Account

from . import render
from .builder import build
from .credits import CreditError, credit_dict, decide
from .freeze import pdf_available
from .models import Credit
from .periods import current_month, parse_period

APPROVE = "reports.approve_credit"


@extend_schema_field({"type": "string", "maxLength": 40,
                     "pattern": r"^(?:\d{4}-(?:0[1-9]|1[0-2])|\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2})$"})
class PeriodField(serializers.CharField):
    """A month (YYYY-MM) or days (YYYY-MM-DD..YYYY-MM-DD); parse_period checks the days and their order."""


class ReportQuery(serializers.Serializer):
    period = PeriodField(required=False, max_length=40, help_text="YYYY-MM, or YYYY-MM-DD..YYYY-MM-DD (both days "
                         "included); default: this month")
    output = serializers.ChoiceField(choices=["json", "csv", "html", "pdf"], default="json", required=False)


class ReportViewSet(viewsets.GenericViewSet):
    """An account's report for a period, by the account's external id."""

    required_perms = {"GET": ["customers.view_account", "reports.view_credit"]}

    lookup_field = "external_id"
    lookup_value_regex = "[^/]+"
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Account]:
        return Account.objects.select_related("tier")

    @extend_schema(parameters=[ReportQuery], responses={200: dict})
    def retrieve(self, request: Request, external_id: str | None = None) -> Any:
        query = ReportQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        try:
            period = parse_period(q["period"]) if q.get("period") else current_month()
        except ValueError as e:
            raise exceptions.ValidationError({"period": [str(e)]}) from None
        account = self.get_object()
        report = build(account, period, timezone.now())
        output = q.get("output", "json")
        name = f"{external_id}-{period.label}"
        if output == "json":
            return Response(render.as_dict(report))
        if output == "csv":
            data, kind = render.csv_bytes(report), "text/csv; charset=utf-8"
        elif output == "html":
            data, kind = render.html(report), "text/html; charset=utf-8"
        else:
            if not pdf_available():
                raise exceptions.APIException("PDF output needs WeasyPrint (with Pango) on the server")
            data, kind = render.pdf(report), "application/pdf"
        response = HttpResponse(data, content_type=kind)
        response["Content-Disposition"] = f'attachment; filename="{name}.{output}"'
        return response


class DecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class CreditViewSet(viewsets.ReadOnlyModelViewSet):
    """The service-credit ledger: computed by `accord credits compute`, approved or rejected by finance."""

    required_perms = {"approve": [APPROVE], "reject": [APPROVE], "apply_credit": [APPROVE]}

    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Credit]:
        qs = Credit.objects.select_related("account", "agreement").prefetch_related("steps")
        for name in ("period", "status"):
            if value := self.request.query_params.get(name):
                qs = qs.filter(**{name: value})
        if value := self.request.query_params.get("account"):
            qs = qs.filter(account__external_id=value)
        return qs

    @extend_schema(parameters=[OpenApiParameter("period", str), OpenApiParameter("status", str),
                               OpenApiParameter("account", str)], responses={200: dict},
                   operation_id="reports_credits_list")
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([credit_dict(c) for c in page or []])

    @extend_schema(responses={200: dict})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(credit_dict(self.get_object()))

    def _decide(self, request: Request, status: str) -> Response:
        if not request.user.has_perm(APPROVE):
            raise exceptions.PermissionDenied("Deciding on credits needs the permission reports.approve_credit.")
        credit = self.get_object()
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            decide(credit.pk, status, request.user.get_username(), body.validated_data["reason"])
        except CreditError as e:
            raise exceptions.ValidationError({"status": [str(e)]}) from None
        return Response(credit_dict(self.get_queryset().get(pk=credit.pk)))

    @extend_schema(request=DecisionSerializer, responses={200: dict}, summary="Approve a credit",
                   description="Finance approves a computed credit; it can then be applied to an invoice.")
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, Credit.Status.APPROVED)

    @extend_schema(request=DecisionSerializer, responses={200: dict}, summary="Reject a credit",
                   description="Finance rejects a computed credit, with a reason; it is not owed.")
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, Credit.Status.REJECTED)

    @extend_schema(request=DecisionSerializer, responses={200: dict}, summary="Apply a credit",
                   description="Marks an approved credit as applied (given to the customer).")
    @action(detail=True, methods=["post"], url_path="apply")
    def apply_credit(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, Credit.Status.APPLIED)


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets."""
    router.register("reports/accounts", ReportViewSet, basename="reports-account")
    router.register("reports/credits", CreditViewSet, basename="reports-credit")
