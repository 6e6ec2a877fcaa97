"""Agents' actions in the API: /api/v1/tickets/{id}/reply/, note/, status/, priority/, assignee/, tags/, merge/,
link-requester/. Each takes a JSON object, runs the same action as the ticket page (actions.py,
ticket_actions.py, so the clocks settle identically) and answers with the ticket (or the new message); bad input
is a 400 in the API's one error shape with the field named.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accord.access.models import AuditEntry
from accord.customers.models import Account, Contact
from accord.lib.api import refuse_unknown

from . import actions, ticket_actions
from .api import MessageSerializer, TicketSerializer
from .forms import REPLY_LIMIT
from .models import SupportGroup, Ticket

API = AuditEntry.Source.API
ERROR_SHAPE = {"error": {"code": "invalid", "message": "The request has invalid fields.",
                         "fields": {"status": ["'later' is not a status (new, open, pending, on_hold, solved, closed)."]}}}


class Strict(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        refuse_unknown(self, data)
        return super().to_internal_value(data)


class TextBody(Strict):
    body = serializers.CharField(max_length=REPLY_LIMIT, help_text="The text (plain).")
    status = serializers.ChoiceField(choices=Ticket.Status.choices, required=False,
                                     help_text="Also move the ticket to this status, in the same step.")


class StatusBody(Strict):
    status = serializers.CharField(help_text=f"One of {', '.join(Ticket.Status.values)}.")


class PriorityBody(Strict):
    priority = serializers.CharField(help_text=f"One of {', '.join(Ticket.Priority.values)}.")


class AssigneeBody(Strict):
    user = serializers.CharField(allow_null=True, required=False, help_text="Username of an agent; null clears.")
    group = serializers.CharField(allow_null=True, required=False, help_text="Support group name; null clears.")


class TagsBody(Strict):
    add = serializers.ListField(child=serializers.CharField(max_length=60), required=False, max_length=50)
    remove = serializers.ListField(child=serializers.CharField(max_length=60), required=False, max_length=50)


class MergeBody(Strict):
    into = serializers.CharField(max_length=30, help_text="The target ticket: its id or reference (ACC-000042).")
    confirm_other_account = serializers.BooleanField(default=False,
                                                     help_text="Required to merge tickets of different accounts.")


class LinkBody(Strict):
    contact = serializers.IntegerField(required=False, help_text="Id of an existing contact of an account.")
    name = serializers.CharField(max_length=200, required=False, help_text="A new contact's name ...")
    email = serializers.EmailField(required=False, help_text="... its e-mail address ...")
    account = serializers.CharField(max_length=100, required=False, help_text="... and its account's external id.")


class TagsResult(serializers.Serializer):
    tags = serializers.ListField(child=serializers.CharField())



class TicketAction(APIView):
    """Base of the ticket action endpoints: POST only, desk.change_ticket."""

    required_perms = {"POST": ["desk.change_ticket"]}
    body_class: type[serializers.Serializer] = Strict

    def ticket(self, pk: int) -> Ticket:
        return get_object_or_404(Ticket, pk=pk)

    def body(self, request: Request) -> dict[str, Any]:
        s = self.body_class(data=request.data)
        s.is_valid(raise_exception=True)
        return dict(s.validated_data)

    def answer(self, ticket: Ticket, code: int = status.HTTP_200_OK) -> Response:
        fresh = Ticket.objects.select_related("account", "assignee").prefetch_related("clocks").get(pk=ticket.pk)
        return Response(TicketSerializer(fresh).data, status=code)


TICKET_EXAMPLE = {"id": 42, "reference": "ACC-000042", "account": "GLOBE", "channel": "email",
                  "subject": "Booking lost", "status": "open", "priority": "urgent", "assignee": "ann",
                  "sla_state": "on_track", "next_due_at": "2026-11-23T10:30:00Z", "created_at": "2026-11-23T09:30:00Z",
                  "clocks": [{"kind": "first_response", "cycle": 1, "status": "running", "target_minutes": 30,
                              "target_seconds": 1800,
                              "started_at": "2026-11-23T09:30:00Z", "due_at": "2026-11-23T10:00:00Z",
                              "stopped_at": None, "breached_at": None}]}
MESSAGE_EXAMPLE = {"id": 7, "kind": "reply", "channel": "email", "author": "ann", "from_address": "",
                   "subject": "", "body_text": "We have rebooked you on the 10:40.", "created_at": "2026-11-23T09:40:00Z",
                   "flagged": False, "flag_reason": "", "auto_generated": False, "meta": {}}


def _schema(summary: str, description: str, request: type[serializers.Serializer], example: dict[str, Any],
            response: Any = TicketSerializer, code: int = 200, answer: dict[str, Any] | None = None) -> Any:
    return extend_schema(
        summary=summary, description=description, request=request,
        responses={code: response},  # the error answers (400, 403, 404 ...) are added by accord.lib.schema
        examples=[
            OpenApiExample("request", value=example, request_only=True),
            OpenApiExample("bad input", value=ERROR_SHAPE, response_only=True, status_codes=["400"]),
            OpenApiExample("done", value=answer or {}, response_only=True, status_codes=[str(code)]),
        ],
        tags=["tickets"],
    )


class ReplyView(TicketAction):
    required_perms = {"POST": ["desk.add_message"]}
    body_class = TextBody

    @_schema("Reply to the customer",
             "A public reply from the calling agent: it reaches the first or next response milestone and goes to the "
             "customer after the commit, as from the ticket page. Refused (400, field `body_text`) when the "
             "requester cannot be reached; with `status`, the ticket moves to it in the same step.",
             TextBody, {"body": "We have rebooked you on the 10:40.", "status": "pending"}, MessageSerializer, 201,
             MESSAGE_EXAMPLE)
    def post(self, request: Request, pk: int) -> Response:
        d = self.body(request)
        message = actions.do_reply(self.ticket(pk), request.user, d["body"], new_status=d.get("status"))  # type: ignore[arg-type]
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


class NoteView(TicketAction):
    required_perms = {"POST": ["desk.add_message"]}
    body_class = TextBody

    @_schema("Add an internal note",
             "A note visible to agents only; it is no response for any SLA clock. With `status`, the ticket moves "
             "to it in the same step.",
             TextBody, {"body": "Checked with the airline: refund on its way."}, MessageSerializer, 201,
             MESSAGE_EXAMPLE)
    def post(self, request: Request, pk: int) -> Response:
        d = self.body(request)
        message = actions.do_add_note(self.ticket(pk), request.user, d["body"], new_status=d.get("status"))  # type: ignore[arg-type]
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


class StatusView(TicketAction):
    body_class = StatusBody

    @_schema("Set the status",
             "Clocks pause while pending or on hold, resume when open, resolution stops when solved; reopening a "
             "solved ticket starts a new resolution cycle. An unknown status, or any change to a closed ticket, is "
             "a 400 naming `status`.",
             StatusBody, {"status": "solved"}, answer=TICKET_EXAMPLE)
    def post(self, request: Request, pk: int) -> Response:
        d = self.body(request)
        return self.answer(actions.do_set_status(self.ticket(pk), d["status"]))


class PriorityView(TicketAction):
    body_class = PriorityBody

    @_schema("Set the priority",
             "Running clocks take the targets of the new priority; reached milestones keep their result.",
             PriorityBody, {"priority": "urgent"}, answer=TICKET_EXAMPLE)
    def post(self, request: Request, pk: int) -> Response:
        d = self.body(request)
        return self.answer(actions.do_set_priority(self.ticket(pk), d["priority"]))


class AssigneeView(TicketAction):
    body_class = AssigneeBody

    @_schema("Assign to an agent or a group",
             "`user` (a username) and/or `group` (a support group's name); null or absent clears that one. An "
             "unknown user or group, or a user without a desk role, is a 400 naming the field.",
             AssigneeBody, {"user": "ann", "group": "tier2"}, answer=TICKET_EXAMPLE)
    def post(self, request: Request, pk: int) -> Response:
        d = self.body(request)
        user = group = None
        if d.get("user"):
            user = get_user_model().objects.filter(username=d["user"]).first()
            if user is None:
                raise ValidationError({"user": [f"No user '{d['user']}'."]})
        if d.get("group"):
            group = SupportGroup.objects.filter(name=d["group"]).first()
            if group is None:
                raise ValidationError({"group": [f"No support group '{d['group']}'."]})
        return self.answer(ticket_actions.do_assign(self.ticket(pk), user=user, group=group, by=request.user,
                                                    source=API))


class TagsView(TicketAction):
    body_class = TagsBody

    @_schema("Add and remove tags",
             "Names in `add` are added (created when new), names in `remove` removed; answers the ticket's tags.",
             TagsBody, {"add": ["refund", "vip"], "remove": ["triage"]}, TagsResult,
             answer={"tags": ["refund", "vip"]})
    def post(self, request: Request, pk: int) -> Response:
        d = self.body(request)
        tags = ticket_actions.do_tags(self.ticket(pk), add=d.get("add", []), remove=d.get("remove", []))
        return Response({"tags": tags})


class MergeView(TicketAction):
    body_class = MergeBody

    @_schema("Merge into another ticket",
             "This ticket's messages move to `into`, its tags join that ticket's, its clocks stop (cancelled) and "
             "it is closed with a note linking the target; answers the target. Refused (400): merging into itself, "
             "into a closed ticket, or across accounts without `confirm_other_account`.",
             MergeBody, {"into": "ACC-000042"}, answer=TICKET_EXAMPLE)
    def post(self, request: Request, pk: int) -> Response:
        d = self.body(request)
        target = ticket_actions.find_ticket(d["into"])
        merged = ticket_actions.do_merge(self.ticket(pk), target, by=request.user,
                                         confirm_other_account=d["confirm_other_account"], source_kind=API)
        return self.answer(merged)


class LinkRequesterView(TicketAction):
    required_perms = {"POST": ["desk.change_ticket", "customers.view_contact"]}
    body_class = LinkBody

    @_schema("Link an unknown requester to a contact",
             "Give `contact` (an existing contact's id), or `name`, `email` and `account` (external id) to create a "
             "contact (needs customers.add_contact). The ticket takes the account's agreement and its SLA clocks "
             "start, counted in business time from the ticket's creation.",
             LinkBody, {"contact": 17}, answer=TICKET_EXAMPLE)
    def post(self, request: Request, pk: int) -> Response:
        from django.db import transaction

        d = self.body(request)
        ticket = self.ticket(pk)
        with transaction.atomic():
            if "contact" in d:
                contact = Contact.objects.filter(pk=d["contact"]).first()
                if contact is None:
                    raise ValidationError({"contact": [f"No contact {d['contact']}."]})
            else:
                missing = {k: ["Give this, or `contact`."] for k in ("name", "account") if not d.get(k)}
                if missing:
                    raise ValidationError(missing)
                if not request.user.has_perm("customers.add_contact"):
                    self.permission_denied(request, "Your role cannot create contacts: give an existing `contact`.")
                account = Account.objects.filter(external_id=d["account"]).first()
                if account is None:
                    raise ValidationError({"account": [f"No account '{d['account']}'."]})
                contact = ticket_actions.new_contact(d["name"], d.get("email", ""), account)
            linked = ticket_actions.do_link_requester(ticket, contact, by=request.user, source=API)
        return self.answer(linked)


ROUTES = [("reply", ReplyView), ("note", NoteView), ("status", StatusView), ("priority", PriorityView),
          ("assignee", AssigneeView), ("tags", TagsView), ("merge", MergeView), ("link-requester", LinkRequesterView)]
