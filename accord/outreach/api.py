"""The API of segments and campaigns (docs/outreach.md): `/api/v1/segments/` and `/api/v1/campaigns/`.

Segments: create, read, change and delete (409 while a campaign uses one); `count/` counts a saved one live,
`contacts/` answers a sample of its contacts, and `POST /segments/count/` counts a filter before it is saved.
Campaigns: create and change while a draft or scheduled; once sending has started an edit, a delete, a schedule or a
cancel is 409 with the reason. `preview/` renders the message for one contact, `schedule/` checks and lets it go
(now or at `send_at`), `cancel/` takes a scheduled campaign back to draft. Reading needs `outreach.view_*` (every
staff role); changing needs the manager's `outreach.add_*`, `change_*`, `delete_*` (docs/access.md).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from accord.customers.models import Contact, ContactPoint
from accord.lib.api import Conflict, StrictSerializer, refuse_unknown

from . import campaigns, segments
from .models import Campaign, Purpose, Segment

SPEC_SCHEMA = {
    "type": "object",
    "description": "The filter (docs/outreach.md, Segments): tier, clv, health, last_order, consent, country, custom; "
                   "{} is every contact. A filter that cannot be used is refused with its path and the reason. E.g. "
                   '`{"tier": ["gold"], "country": ["DE", "AT"], '
                   '"custom": [{"on": "account", "key": "industry", "equals": "travel"}]}`.',
}  # no "example": Redoc would draw its nested lists with expanders too small to touch (axe's target-size)
SAMPLE_MAX = 100


@extend_schema_field(SPEC_SCHEMA)
class SpecField(serializers.JSONField):
    """A segment filter, checked by `segments.check` (the same check as `accord outreach segment add`)."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        try:
            return segments.check(value)
        except segments.SpecError as e:
            raise ValidationError(str(e)) from None


class SegmentSerializer(StrictSerializer):
    spec = SpecField(required=False)

    class Meta:
        model = Segment
        fields = ["id", "name", "description", "spec", "created_at"]
        read_only_fields = ["created_at"]


class SpecRequest(serializers.Serializer):
    spec = SpecField()

    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown(self, data)
        return super().to_internal_value(data)


class CountSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Contacts the filter matches now.")


class SampleContactSerializer(serializers.ModelSerializer):
    account = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    email = serializers.SerializerMethodField()

    class Meta:
        model = Contact
        fields = ["id", "external_id", "name", "account", "email"]

    def get_email(self, obj: Contact) -> str:
        """The contact's first e-mail address ("" when none)."""
        return next((p.value for p in obj.points.all() if p.kind == ContactPoint.Kind.EMAIL), "")


class SampleSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Contacts the segment matches now.")
    contacts = SampleContactSerializer(many=True, help_text="The first of them by id, at most `limit`.")


class SegmentViewSet(viewsets.ModelViewSet):
    """Segments: saved filters over contacts and their accounts, counted live (docs/outreach.md)."""

    queryset = Segment.objects.all()
    serializer_class = SegmentSerializer
    filterset_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    required_perms = {"count_filter": ["outreach.view_segment"]}

    @extend_schema(responses={200: CountSerializer})
    @action(detail=True, methods=["get"])
    def count(self, request: Request, pk: str | None = None) -> Response:
        """Count a segment's contacts now.

        A stored filter that no longer holds (a tier or a purpose it names was deleted since) is 409 with the reason.
        """
        segment = self.get_object()
        try:
            return Response({"count": segments.count(segment.spec)})
        except segments.SpecError as e:
            raise Conflict(f"The segment's filter no longer holds: {e}") from None

    @extend_schema(
        parameters=[OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": SAMPLE_MAX},
                                     description=f"How many contacts (1-{SAMPLE_MAX}, default 20).")],
        responses={200: SampleSerializer})
    @action(detail=True, methods=["get"])
    def contacts(self, request: Request, pk: str | None = None) -> Response:
        """A sample of a segment's contacts.

        The count and the first contacts (by id) the segment matches now, with their account and first address.
        """
        segment = self.get_object()
        raw = request.query_params.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= SAMPLE_MAX:
            raise ValidationError({"limit": [f"A whole number from 1 to {SAMPLE_MAX}."]})
        try:
            found = segments.contacts(segment.spec)
            sample = list(found.select_related("account").prefetch_related("points")[: int(raw)])
            total = found.count()
        except segments.SpecError as e:
            raise Conflict(f"The segment's filter no longer holds: {e}") from None
        return Response({"count": total, "contacts": SampleContactSerializer(sample, many=True).data})

    @extend_schema(request=SpecRequest, responses={200: CountSerializer})
    @action(detail=False, methods=["post"], url_path="count")
    def count_filter(self, request: Request) -> Response:
        """Count a filter before saving it.

        Checks `spec` as a segment's filter (400 with its path and the reason) and answers how many contacts it
        matches now. Nothing is stored; reading segments is enough to ask.
        """
        query = SpecRequest(data=request.data)
        query.is_valid(raise_exception=True)
        return Response({"count": segments.count(query.validated_data["spec"])})


class CampaignSerializer(StrictSerializer):
    purpose = serializers.SlugRelatedField(slug_field="name", queryset=Purpose.objects.all(),
                                           help_text="The purpose's name: only contacts who consented to it get it.")
    segment = serializers.SlugRelatedField(slug_field="name", queryset=Segment.objects.all(),
                                           help_text="The segment's name.")
    totals = serializers.SerializerMethodField(help_text="Recipients by status (queued, sent, skipped, ...).")

    class Meta:
        model = Campaign
        fields = ["id", "name", "purpose", "segment", "from_email", "subject", "html", "text", "send_at", "rate",
                  "status", "totals", "created_at", "started_at", "finished_at"]
        read_only_fields = ["status", "created_at", "started_at", "finished_at"]
        extra_kwargs = {"rate": {"min_value": 0.01, "help_text": "Messages per second at most (at least 0.01)."}}

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "integer"}})
    def get_totals(self, obj: Campaign) -> dict[str, int]:
        return campaigns.totals(obj)


class PreviewSerializer(serializers.Serializer):
    contact = serializers.IntegerField(help_text="The contact it was rendered for.")
    to = serializers.CharField()
    subject = serializers.CharField()
    text = serializers.CharField(help_text="The plain-text part.")
    html = serializers.CharField(help_text="The HTML part.")


class ScheduleRequest(serializers.Serializer):
    send_at = serializers.DateTimeField(required=False, allow_null=True,
                                        help_text="When to go (ISO 8601); left out: the campaign's own, else now.")

    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown(self, data)
        return super().to_internal_value(data)


class EmptyRequest(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown(self, data)
        return super().to_internal_value(data)


EDITABLE = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)


def _editable(campaign: Campaign, what: str) -> Campaign:
    """The campaign locked for the change, or 409 once sending has started (its recipients are being written)."""
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if locked.status not in EDITABLE:
        since = f" since {locked.started_at:%Y-%m-%d %H:%M} UTC" if locked.started_at else ""
        raise Conflict(f"Campaign {locked.pk} is {locked.status}{since}: it cannot be {what} once sending has "
                       "started. Create a new campaign instead.")
    return locked


def _part(message: Any, kind: str) -> str:
    part = next((p for p in message.walk() if p.get_content_type() == kind), None)
    body = part.get_payload(decode=True) if part is not None else b""
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else ""


class CampaignViewSet(viewsets.ModelViewSet):
    """Campaigns: marketing mail for one purpose to one segment (docs/outreach.md). Changed while a draft or
    scheduled; once sending has started, edits are refused (409)."""

    queryset = Campaign.objects.select_related("purpose", "segment")
    serializer_class = CampaignSerializer
    filterset_fields = ["status"]
    ordering_fields = ["created_at", "send_at", "name"]

    def perform_update(self, serializer: Any) -> None:
        with transaction.atomic():
            _editable(serializer.instance, "changed")
            super().perform_update(serializer)

    def perform_destroy(self, instance: Campaign) -> None:
        with transaction.atomic():
            _editable(instance, "deleted")
            super().perform_destroy(instance)

    @extend_schema(
        parameters=[OpenApiParameter("contact", OpenApiTypes.STR, description=(
            "The contact: id, external id or e-mail address; left out: the segment's first contact."))],
        responses={200: PreviewSerializer})
    @action(detail=True, methods=["get"])
    def preview(self, request: Request, pk: str | None = None) -> Response:
        """Render the message for one contact.

        The subject, text and HTML parts the contact would get (whether or not they may be mailed: consent is
        checked when sending). 404 when the contact, or any contact of the segment, is not found.
        """
        campaign = self.get_object()
        ref = (request.query_params.get("contact") or "").strip()
        if ref:
            contact = Contact.objects.filter(
                (Q(pk=int(ref)) if ref.isdigit() else Q(pk__in=[]))
                | Q(external_id=ref) | Q(points__kind=ContactPoint.Kind.EMAIL, points__value=ref.lower())
            ).select_related("account").order_by("pk").first()
            if contact is None:
                raise _not_found(f"No contact with id, external id or e-mail address {ref!r}.")
        else:
            try:
                contact = segments.contacts(campaign.segment.spec).select_related("account").first()
            except segments.SpecError as e:
                raise Conflict(f"The segment's filter no longer holds: {e}") from None
            if contact is None:
                raise _not_found(f"The segment {campaign.segment.name!r} matches nobody: name a contact to preview.")
        message = campaigns.preview(campaign, contact)
        return Response({"contact": contact.pk, "to": str(message["To"]), "subject": str(message["Subject"]),
                         "text": _part(message, "text/plain"), "html": _part(message, "text/html")})

    @extend_schema(request=ScheduleRequest, responses={200: CampaignSerializer})
    @action(detail=True, methods=["post"])
    def schedule(self, request: Request, pk: str | None = None) -> Response:
        """Check a campaign and let it go.

        Checks the templates, the rate and that the segment matches somebody (400 with the reason), then schedules it
        for `send_at` (the campaign's own when left out, else now); `accord outreach send-due` sends it then.
        """
        query = ScheduleRequest(data=request.data)
        query.is_valid(raise_exception=True)
        with transaction.atomic():
            campaign = _editable(self.get_object(), "scheduled")
            try:
                campaigns.schedule(campaign, query.validated_data.get("send_at"))
            except DjangoValidationError as e:
                raise ValidationError(e.message_dict if hasattr(e, "error_dict") else {"_": e.messages}) from None
            except segments.SpecError as e:
                raise ValidationError({"segment": [f"The segment's filter no longer holds: {e}"]}) from None
            except campaigns.CampaignError as e:
                raise ValidationError({"segment": [str(e)]}) from None
        return Response(self.get_serializer(campaign).data)

    @extend_schema(request=EmptyRequest, responses={200: CampaignSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Take a scheduled campaign back to draft.

        Nothing has been sent yet; it can be changed and scheduled again. A draft stays a draft; a campaign that has
        started sending is 409.
        """
        EmptyRequest(data=request.data).is_valid(raise_exception=True)
        with transaction.atomic():
            campaign = _editable(self.get_object(), "cancelled")
            campaign.status = Campaign.Status.DRAFT
            campaign.save(update_fields=["status"])
        return Response(self.get_serializer(campaign).data)

    @extend_schema(request=EmptyRequest, responses={200: CampaignSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Hold a scheduled or sending campaign.

        Its senders stop within 50 messages and give back what they had claimed and not sent; nothing is lost or sent
        twice. 409 for a draft, a finished or an already paused campaign.
        """
        return _hold(self, request, "pause")

    @extend_schema(request=EmptyRequest, responses={200: CampaignSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Let a paused campaign go on.

        It is scheduled again (for its own time, or now) and the next `send-due` or `send-campaign` takes it where it
        stopped. 409 when the campaign is not paused.
        """
        return _hold(self, request, "resume")


def _hold(view: CampaignViewSet, request: Request, verb: str) -> Response:
    EmptyRequest(data=request.data).is_valid(raise_exception=True)
    campaign = view.get_object()
    try:
        if verb == "pause":
            campaigns.pause(campaign)
        else:
            campaigns.resume(campaign)
    except campaigns.CampaignError as e:
        raise Conflict(str(e)) from None
    campaign.refresh_from_db()
    return Response(view.get_serializer(campaign).data)


def _not_found(message: str) -> Exception:
    from rest_framework.exceptions import NotFound

    return NotFound(message)


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets."""
    router.register("segments", SegmentViewSet)
    router.register("campaigns", CampaignViewSet)
