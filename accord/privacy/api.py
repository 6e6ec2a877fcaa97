"""The API of a person's data under /api/v1/privacy/contacts/{id}/: `export/` (GET, a zip) for users who may change
contacts, `erase/` (POST) for users who may delete them; 409 when the contact has open tickets and the request
does not confirm (`confirm_open`)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from accord.access.models import AuditEntry
from accord.customers.models import Contact
from accord.lib.api import Conflict

from . import person


class EraseRequest(serializers.Serializer):
    confirm_open = serializers.BooleanField(default=False, help_text="Erase although the contact has open tickets "
                                            "(they go on under the pseudonym); without it such a request is 409.")


class ErasureSerializer(serializers.Serializer):
    contact_id = serializers.IntegerField()
    pseudonym = serializers.CharField()
    rows = serializers.IntegerField(help_text="Rows rewritten with the pseudonym.")
    raw_deleted = serializers.IntegerField(help_text="Raw e-mails deleted.")
    attachments_cleared = serializers.IntegerField()
    open_tickets = serializers.ListField(child=serializers.CharField(), help_text="Open tickets that go on.")


class PrivacyViewSet(viewsets.GenericViewSet):
    """A contact's personal data: export it, or erase it (pseudonymise everywhere; statistics stay)."""

    required_perms = {"GET": ["customers.change_contact"], "POST": ["customers.delete_contact"]}
    queryset = Contact.objects.all()
    filter_backends: list[Any] = []
    pagination_class = None

    def get_queryset(self) -> QuerySet[Contact]:
        return Contact.objects.select_related("account")

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY}, description=(
        "A zip of JSON files and the attachments: everything Accord holds about the person (docs/privacy.md)."))
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: str | None = None) -> HttpResponse:
        contact = self.get_object()
        response = HttpResponse(person.export_zip(contact, by=request.user, source=AuditEntry.Source.API),
                                content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="contact-{contact.pk}.zip"'
        return response

    @extend_schema(request=EraseRequest, responses={200: ErasureSerializer})
    @action(detail=True, methods=["post"])
    def erase(self, request: Request, pk: str | None = None) -> Response:
        query = EraseRequest(data=request.data)
        query.is_valid(raise_exception=True)
        contact = self.get_object()
        try:
            done = person.erase(contact, by=request.user, confirm_open=query.validated_data["confirm_open"],
                                source=AuditEntry.Source.API)
        except person.OpenTickets as e:
            raise Conflict(f"The contact has {e}; send confirm_open=true to erase anyway.") from None
        return Response(ErasureSerializer(done).data)


def register(router: DefaultRouter) -> None:
    router.register("privacy/contacts", PrivacyViewSet, basename="privacy-contact")
