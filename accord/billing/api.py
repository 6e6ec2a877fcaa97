"""The API of invoices under /api/v1/billing/invoices/: read (JSON, or ?output=csv|html|pdf), and the steps
finalise, pay and void for users who may change invoices. A finalised invoice cannot be edited: the API has no
edit, and adding a line to one is refused with 409."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from accord.lib.api import Conflict
from accord.reports.freeze import pdf_available

from . import render
from .actions import do_finalise, do_mark_paid, do_void
from .invoicing import BillingError
from .models import Invoice, InvoiceLine

CHANGE = "billing.change_invoice"


class LineSerializer(serializers.Serializer):
    description = serializers.CharField(max_length=300)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    quantity = serializers.DecimalField(max_digits=20, decimal_places=4, required=False, default=Decimal(0))


class InvoiceViewSet(viewsets.ReadOnlyModelViewSet):
    """Invoices and credit notes; filter by ?period=YYYY-MM, ?status=, ?account=EXT, ?kind=."""

    required_perms = {"finalise": [CHANGE], "pay": [CHANGE], "void": [CHANGE], "add_line": [CHANGE]}
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[Invoice]:
        qs = Invoice.objects.select_related("account").prefetch_related("credit_notes")
        for name in ("period", "status", "kind"):
            if value := self.request.query_params.get(name):
                qs = qs.filter(**{name: value})
        if value := self.request.query_params.get("account"):
            qs = qs.filter(account__external_id=value)
        return qs

    @extend_schema(parameters=[OpenApiParameter(n, str) for n in ("period", "status", "account", "kind")],
                   responses={200: dict}, operation_id="billing_invoices_list")
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([render.invoice_dict(i) for i in page or []])

    @extend_schema(parameters=[OpenApiParameter("output", str, enum=["json", "csv", "html", "pdf"])],
                   responses={200: dict})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        inv = self.get_object()
        output = request.query_params.get("output", "json")
        if output == "json":
            return Response(render.invoice_dict(inv))
        if output not in ("csv", "html", "pdf"):
            raise exceptions.ValidationError({"output": ["use json, csv, html or pdf"]})
        if output == "pdf" and not pdf_available():
            raise exceptions.APIException("PDF output needs WeasyPrint (with Pango) on the server")
        data = {"csv": render.csv_bytes, "html": render.html, "pdf": render.pdf}[output](inv)
        kind = {"csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8", "pdf": "application/pdf"}
        response = HttpResponse(data, content_type=kind[output])
        response["Content-Disposition"] = f'attachment; filename="{inv.number or f"draft-{inv.pk}"}.{output}"'
        return response

    def _step(self, request: Request, step: Any) -> Response:
        inv = self.get_object()
        try:
            step(inv.pk)
        except BillingError as e:
            raise Conflict(str(e)) from None
        return Response(render.invoice_dict(self.get_queryset().get(pk=inv.pk)))

    @extend_schema(request=None, responses={200: dict}, summary="Finalise a draft",
                   description="Gives the next number of the year without gaps; the invoice is immutable after.")
    @action(detail=True, methods=["post"])
    def finalise(self, request: Request, pk: str | None = None) -> Response:
        return self._step(request, lambda i: do_finalise(i, request.user.get_username()))

    @extend_schema(request=None, responses={200: dict}, summary="Mark a finalised invoice paid")
    @action(detail=True, methods=["post"])
    def pay(self, request: Request, pk: str | None = None) -> Response:
        return self._step(request, do_mark_paid)

    @extend_schema(request=None, responses={200: dict}, summary="Void a finalised invoice")
    @action(detail=True, methods=["post"])
    def void(self, request: Request, pk: str | None = None) -> Response:
        return self._step(request, do_void)

    @extend_schema(request=LineSerializer, responses={200: dict}, summary="Add a line to a draft",
                   description="A manual line (a one-off charge); 409 once the invoice is finalised.")
    @action(detail=True, methods=["post"], url_path="lines")
    def add_line(self, request: Request, pk: str | None = None) -> Response:
        inv = self.get_object()
        body = LineSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if inv.status != Invoice.Status.DRAFT:
            raise Conflict(f"{inv} is {inv.status}: it cannot be edited; correct it with a credit note or on the "
                           f"next invoice")
        d = body.validated_data
        InvoiceLine.objects.create(invoice=inv, position=inv.lines.count(), key=f"manual:{inv.lines.count()}",
                                   for_period=inv.period, description=d["description"], quantity=d["quantity"],
                                   amount=d["amount"])
        inv.total += d["amount"]
        inv.save(update_fields=["total"])
        return Response(render.invoice_dict(inv))


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets."""
    router.register("billing/invoices", InvoiceViewSet, basename="billing-invoice")


