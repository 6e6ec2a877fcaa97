"""Canned replies: texts with placeholders that agents insert into the reply box, managed on /desk/canned/.

A body names placeholders in braces (`{customer_name}`); a literal brace is written twice (`{{`). Unknown
placeholders and stray braces are refused when the reply is saved, so an agent never inserts a broken text.
Managers create, edit and delete them (desk.change_cannedreply ...); agents only use them (desk.view_cannedreply).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accord.access.audit import record
from accord.lib.units import instant
from accord.lib.views import needs, staff_required

from .models import CannedReply, SlaClock, Ticket
from .placeholders import PLACEHOLDERS


def values(ticket: Ticket, user: Any) -> dict[str, str]:
    """The placeholders' values for a ticket and the agent using the reply."""
    contact = ticket.contact
    first = ticket.messages.filter(kind="inbound").order_by("created_at", "id").first()
    customer = contact.name if contact is not None else (first.from_address if first is not None else "")
    running = (SlaClock.objects.filter(ticket=ticket, status=SlaClock.Status.RUNNING, due_at__isnull=False)
               .select_related("calendar").order_by("due_at").first())
    if running is not None and running.due_at is not None:
        zone = ticket.customer_timezone() or running.calendar.timezone
        promised = instant(running.due_at, zone, "%a %d %b %Y %H:%M")
    else:
        promised = "as soon as we can"
    agent = (user.get_full_name() or user.get_username()) if user is not None else ""
    return {"customer_name": customer or "there", "ticket_ref": ticket.reference, "promised_time": promised,
            "agent_name": agent}


def render_body(reply: CannedReply, ticket: Ticket, user: Any) -> str:
    return reply.body.format_map(values(ticket, user))


def for_ticket(ticket: Ticket, user: Any) -> list[tuple[CannedReply, str]]:
    """Every canned reply with its text filled for this ticket (what the ticket page offers)."""
    vals = values(ticket, user)
    out = []
    for reply in CannedReply.objects.all():
        try:
            out.append((reply, reply.body.format_map(vals)))
        except (KeyError, ValueError, IndexError):  # saved before the check (fixtures, the admin): left out
            continue
    return out


class CannedReplyForm(forms.ModelForm):
    class Meta:
        model = CannedReply
        fields = ["title", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 6})}


@staff_required
@needs("desk.view_cannedreply")
def canned_list(request: HttpRequest) -> HttpResponse:
    """The canned replies; managers get the form to add one."""
    can_edit = request.user.has_perm("desk.add_cannedreply")
    form = CannedReplyForm() if can_edit else None
    status = 200
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Your role does not allow editing canned replies.")
        form = CannedReplyForm(request.POST)
        if form.is_valid():
            with transaction.atomic():
                reply = form.save(commit=False)
                reply.created_by = request.user
                reply.save()
                record(request.user, "create", reply, summary=f"canned reply '{reply.title}'")
            messages.success(request, f"Canned reply '{reply.title}' saved.")
            return redirect("desk:canned")
        status = 400
    return render(request, "desk/canned.html", {"replies": CannedReply.objects.all(), "form": form,
                                                "can_edit": can_edit, "placeholders": PLACEHOLDERS}, status=status)


@staff_required
@needs("desk.change_cannedreply")
def canned_edit(request: HttpRequest, pk: int) -> HttpResponse:
    reply = get_object_or_404(CannedReply, pk=pk)
    form = CannedReplyForm(instance=reply)
    status = 200
    if request.method == "POST":
        before = {"title": reply.title, "body": reply.body}
        form = CannedReplyForm(request.POST, instance=reply)
        if form.is_valid():
            with transaction.atomic():
                saved = form.save()
                after = {"title": saved.title, "body": saved.body}
                record(request.user, "update", saved, changes={k: [before[k], after[k]] for k in before
                                                              if before[k] != after[k]})
            messages.success(request, f"Canned reply '{saved.title}' saved.")
            return redirect("desk:canned")
        status = 400
    return render(request, "desk/canned_edit.html", {"reply": reply, "form": form, "placeholders": PLACEHOLDERS},
                  status=status)


@staff_required
@needs("desk.delete_cannedreply")
@require_POST
def canned_delete(request: HttpRequest, pk: int) -> HttpResponse:
    reply = get_object_or_404(CannedReply, pk=pk)
    with transaction.atomic():
        record(request.user, "delete", reply, summary=f"canned reply '{reply.title}'")
        reply.delete()
    messages.success(request, f"Canned reply '{reply.title}' deleted.")
    return redirect("desk:canned")
