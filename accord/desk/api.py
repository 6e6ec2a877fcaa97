"""Desk API: tickets, the phone call log, and signed webhooks for social and other channels."""

from __future__ import annotations

import hmac
import json
from typing import Any

from django.db import IntegrityError
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, NotFound, ParseError, ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.views import APIView

from . import actions
from .actions import Inbound, normalise_phone
from .filters import TicketFilterSet
from .models import Message, SlaClock, Ticket, WebhookChannel


class ClockSerializer(serializers.ModelSerializer):
    target_minutes = serializers.FloatField(
        read_only=True, help_text="The target in business minutes (0.5 for a 30-second chat target); target_seconds "
                                  "is exact.")

    class Meta:
        model = SlaClock
        fields = ["kind", "cycle", "status", "target_minutes", "target_seconds", "started_at", "due_at", "stopped_at",
                  "breached_at"]


class MessageSerializer(serializers.ModelSerializer):
    author = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = ["id", "kind", "channel", "author", "from_address", "subject", "body_text", "created_at",
                  "flagged", "flag_reason", "auto_generated", "meta"]

    def get_author(self, obj: Message) -> str:
        if obj.author_user_id:
            return str(obj.author_user)
        return obj.author_contact.name if obj.author_contact else obj.from_address


class TicketSerializer(serializers.ModelSerializer):
    reference = serializers.CharField(read_only=True)
    account = serializers.SlugRelatedField(slug_field="external_id", read_only=True)
    assignee = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    clocks = ClockSerializer(many=True, read_only=True)

    class Meta:
        model = Ticket
        fields = ["id", "reference", "account", "channel", "subject", "status", "priority", "assignee",
                  "sla_state", "next_due_at", "created_at", "clocks"]


class TicketViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Tickets with their SLA clocks; the thread is at /tickets/{id}/messages/."""

    queryset = Ticket.objects.select_related("account", "assignee").prefetch_related("clocks").order_by("queue_due", "id")
    serializer_class = TicketSerializer
    filterset_class = TicketFilterSet

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "request": self.request}


class CallSerializer(serializers.Serializer):
    caller = serializers.CharField(max_length=40, help_text="The caller's number, e.g. +44 20 7946 0000")
    duration_seconds = serializers.IntegerField(min_value=0, max_value=24 * 3600)
    notes = serializers.CharField(max_length=20_000, allow_blank=True)
    subject = serializers.CharField(max_length=300, required=False)
    priority = serializers.ChoiceField(choices=Ticket.Priority.choices, default=Ticket.Priority.NORMAL)
    ticket = serializers.IntegerField(required=False, help_text="Log the call on this ticket instead of a new one")

    def validate_caller(self, value: str) -> str:
        phone = normalise_phone(value)
        if len(phone.lstrip("+")) < 5 or any(ch.isalpha() for ch in value):
            raise ValidationError(f"'{value}' is not a phone number.")
        return phone

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValidationError({"_": ["Expected a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class CallLogView(APIView):
    """Log a phone call: a new ticket on the phone channel (caller matched to a contact), or on a given ticket."""

    required_perms = {"POST": ["desk.add_ticket", "desk.change_ticket"]}

    @extend_schema(request=CallSerializer, responses={201: TicketSerializer})
    def post(self, request: Request) -> Response:
        s = CallSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        d = s.validated_data
        inbound = Inbound(
            channel=Ticket.Channel.PHONE, subject=d.get("subject") or f"Call from {d['caller']}", body_text=d["notes"],
            from_address=d["caller"], priority=d["priority"], meta={"duration_seconds": d["duration_seconds"]},
        )
        if "ticket" in d:
            existing = Ticket.objects.filter(pk=d["ticket"]).first()
            if existing is None:
                raise ValidationError({"ticket": [f"No ticket {d['ticket']}."]})
            actions.do_add_customer_message(existing, inbound)
            ticket = existing
        else:
            ticket = actions.do_open_ticket(inbound)
        ticket.refresh_from_db()
        return Response(TicketSerializer(ticket).data, status=status.HTTP_201_CREATED)


class RawBodyParser(BaseParser):
    """Keep the exact bytes: the signature covers them."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return bytes(stream.read()) if stream is not None else b""


class NoAuthentication(BaseAuthentication):
    def authenticate(self, request: Any) -> None:
        return None

    def authenticate_header(self, request: Any) -> str:
        return 'HMAC realm="accord-webhook"'


class WebhookView(APIView):
    """Signed JSON from a social or other channel: X-Accord-Signature: sha256=<hex HMAC of the body>.

    Body: {"id": "<the channel's message id>", "from": "<handle or address>", "name": "...", "text": "...",
    "subject": "...", "in_reply_to": "<id of an earlier message>"}; the same id twice is stored once.
    """

    authentication_classes = [NoAuthentication]
    permission_classes = [AllowAny]
    parser_classes = [RawBodyParser]

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT},
        responses={201: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT},
        auth=[],
    )
    def post(self, request: Request, channel: str) -> Response:
        source = WebhookChannel.objects.filter(name=channel, enabled=True).first()
        if source is None:
            raise NotFound(f"No enabled webhook channel '{channel}'.")
        body: bytes = request.data if isinstance(request.data, bytes) else b""
        given = request.headers.get("X-Accord-Signature", "")
        if not hmac.compare_digest(given, source.signature(body)):
            raise AuthenticationFailed("Missing or wrong X-Accord-Signature (sha256=<hex HMAC-SHA256 of the body>).")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ParseError(f"The body is not JSON: {e}") from e
        if not isinstance(payload, dict):
            raise ValidationError({"_": ["Expected a JSON object."]})
        errors = {k: ["This field is required."] for k in ("id", "from", "text") if not str(payload.get(k, "")).strip()}
        errors |= {k: ["Must be a string."] for k in ("id", "from", "text", "name", "subject", "in_reply_to")
                   if k in payload and not isinstance(payload[k], str)}
        if errors:
            raise ValidationError(errors)
        message_id = f"<{payload['id']}@{source.name}.webhook>"
        if Message.objects.filter(message_id=message_id).exists():
            return Response({"duplicate": True}, status=status.HTTP_200_OK)
        inbound = Inbound(
            channel=Ticket.Channel.SOCIAL, subject=payload.get("subject") or payload["text"][:80],
            body_text=payload["text"], from_address=payload["from"][:320], from_name=payload.get("name", ""),
            message_id=message_id, received_at=timezone.now(), meta={"channel": source.name},
        )
        parent_id = payload.get("in_reply_to")
        parent = Message.objects.filter(message_id=f"<{parent_id}@{source.name}.webhook>").select_related("ticket").first() if parent_id else None
        try:
            if parent is not None and parent.ticket.status != Ticket.Status.CLOSED:
                actions.do_add_customer_message(parent.ticket, inbound)
                ticket = parent.ticket
            else:
                ticket = actions.do_open_ticket(inbound)
        except IntegrityError:
            return Response({"duplicate": True}, status=status.HTTP_200_OK)
        return Response({"ticket": ticket.reference, "id": ticket.pk}, status=status.HTTP_201_CREATED)


def register(router: DefaultRouter) -> None:
    """Register this app's viewsets."""
    router.register("tickets", TicketViewSet)
