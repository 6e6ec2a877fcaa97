"""Desk pages: the agent queue, the ticket page, and the public web form.

Whatever a person typed survives every error: a refused reply or web form is shown again with the text in its
box and the error next to the field, never lost in a redirect.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accord.access.models import UsedNonce
from accord.access.strikes import Limit, strike, wait
from accord.lib.net import client_ip
from accord.lib.units import instant, minutes
from accord.lib.views import needs, staff_required

from . import actions, live, outbound
from .actions import Inbound
from .filters import TicketFilterSet
from .forms import MAX_FILL_SECONDS, ReplyForm, SupportRequestForm, TicketUpdateForm
from .models import SlaClock, Ticket

WEBFORM_LIMIT = 5  # requests per address per window
WEBFORM_WINDOW = 600  # seconds
# An action's ValidationError names the model's field; the form shows it next to its own.
ACTION_FIELDS = {"body_text": "body"}


@staff_required
@needs("desk.view_ticket")
def queue(request: HttpRequest) -> HttpResponse:
    """Open tickets, the next due clock first."""
    base = Ticket.objects.filter(is_open=True).select_related("account__tier", "assignee")
    filterset = TicketFilterSet(request.GET, queryset=base, request=request)
    qs = filterset.qs if filterset.is_valid() else Ticket.objects.none()
    page = Paginator(qs.order_by("queue_due", "id"), 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "desk/queue.html", {"filter": filterset, "page": page, "query": query.urlencode(),
                                               "now": timezone.now(), "live": live.cursor(),
                                               "live_poll": live.poll_seconds()})


def _ticket_page(
    request: HttpRequest, t: Ticket, *, reply_form: ReplyForm | None = None,
    update_form: TicketUpdateForm | None = None, status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "desk/ticket.html",
        {
            "ticket": t,
            "thread": t.messages.select_related("author_user", "author_contact").prefetch_related("attachments"),
            "clocks": t.clocks.order_by("kind", "cycle"),
            "reply_form": reply_form or ReplyForm(),
            "reply_route": outbound.route(t),
            "update_form": update_form or TicketUpdateForm(initial={"priority": t.priority, "status": t.status}),
            "now": timezone.now(),
            "running": SlaClock.Status.RUNNING,
            # The queue's most urgent other ticket: where the agent goes next (the `n` key, docs/accessibility.md).
            "next_ticket": Ticket.objects.filter(is_open=True).exclude(pk=t.pk).order_by("queue_due", "id").first(),
        },
        status=status,
    )


@staff_required
@needs("desk.view_ticket")
def ticket(request: HttpRequest, pk: int) -> HttpResponse:
    t = get_object_or_404(Ticket.objects.select_related("account__tier", "contact", "agreement", "assignee", "group"), pk=pk)
    return _ticket_page(request, t)


def _refused(form: forms.Form, error: ValidationError) -> None:
    """Put an action's refusal next to the field it is about (the whole form when it names none)."""
    if hasattr(error, "error_dict"):
        for name, errors in error.error_dict.items():
            field = ACTION_FIELDS.get(name, name)
            form.add_error(field if field in form.fields else None, [m for e in errors for m in e.messages])
    else:
        form.add_error(None, error.messages)


def _act(request: HttpRequest, t: Ticket, form: forms.Form, form_name: str,
         act: Callable[[dict[str, Any]], None], done: Callable[[dict[str, Any]], str]) -> HttpResponse:
    """Run an agent's action from a valid form and go back to the ticket; on any refusal, the ticket page again
    (400) with what was typed kept and the error next to its field."""
    if form.is_valid():
        try:
            act(form.cleaned_data)
        except ValidationError as e:
            _refused(form, e)
        else:
            # Said on the ticket page (role=status, focused), so a keyboard or screen reader user knows it went.
            messages.success(request, done(form.cleaned_data))
            return redirect("desk:ticket", pk=t.pk)
    t.refresh_from_db()
    return _ticket_page(request, t, status=400, **{form_name: form})  # type: ignore[arg-type]


@staff_required
@needs("desk.add_message")
@require_POST
def reply(request: HttpRequest, pk: int) -> HttpResponse:
    t = get_object_or_404(Ticket, pk=pk)

    def act(data: dict[str, Any]) -> None:
        do = actions.do_add_note if data["kind"] == "note" else actions.do_reply
        do(t, request.user, data["body"], new_status=data["status"] or None)  # type: ignore[arg-type]

    def done(data: dict[str, Any]) -> str:
        return "Internal note added." if data["kind"] == "note" else "Reply sent."

    return _act(request, t, ReplyForm(request.POST), "reply_form", act, done)


@staff_required
@needs("desk.change_ticket")
@require_POST
def update(request: HttpRequest, pk: int) -> HttpResponse:
    t = get_object_or_404(Ticket, pk=pk)

    def act(data: dict[str, Any]) -> None:
        if data.get("priority") and data["priority"] != t.priority:
            actions.do_set_priority(t, data["priority"])
        if data.get("status") and data["status"] != t.status:
            actions.do_set_status(t, data["status"])
        if data.get("assign_to_me"):
            Ticket.objects.filter(pk=t.pk).update(assignee=request.user)

    return _act(request, t, TicketUpdateForm(request.POST), "update_form", act, lambda data: "Ticket updated.")


WEBFORM = Limit(WEBFORM_LIMIT, WEBFORM_WINDOW)


def _limited(request: HttpRequest, wait: int) -> HttpResponse:
    """The form again, with what the person wrote, saying when they can send it."""
    again = timezone.now() + dt.timedelta(seconds=wait)
    kept = {name: request.POST.get(name, "") for name in ("name", "email", "subject", "message")}
    form = SupportRequestForm(initial={**kept, "token": SupportRequestForm.new_token()})
    response = render(request, "desk/support_form.html", {
        "form": form, "limited": True, "limit": WEBFORM_LIMIT, "window": minutes(WEBFORM_WINDOW / 60),
        "wait": minutes(math.ceil(wait / 60)), "again": instant(again, timezone.get_current_timezone(), "%H:%M"),
    }, status=429)
    response["Retry-After"] = str(wait)
    return response


def _replayed(request: HttpRequest, nonce: str) -> HttpResponse:
    """The same form sent twice (a double click, a reload, a replay): the first stands, nothing is opened twice."""
    first = UsedNonce.objects.filter(scope="webform", nonce=nonce).first()
    return render(request, "desk/support_form.html", {"replayed": first.result if first else ""}, status=409)


def support_form(request: HttpRequest) -> HttpResponse:
    """The public web form: rate-limited per client address (in the database, behind trusted proxies), with a
    honeypot, a minimum fill time and a single-use token."""
    if request.method == "POST":
        key = f"webform:addr:{client_ip(request)}"
        if seconds := wait(key, WEBFORM):
            return _limited(request, seconds)
        data = request.POST.copy()
        form = SupportRequestForm(data)
        if form.is_valid():
            d = form.cleaned_data
            with transaction.atomic():  # the nonce is spent with the ticket, or not at all
                try:
                    with transaction.atomic():
                        spent = UsedNonce.objects.create(scope="webform", nonce=d["token"])
                except IntegrityError:
                    spent = None
                if spent is not None:
                    new = actions.do_open_ticket(
                        Inbound(channel=Ticket.Channel.WEB, subject=d["subject"], body_text=d["message"],
                                from_address=d["email"], from_name=d["name"])
                    )
                    spent.result = new.reference
                    spent.save(update_fields=["result"])
            if spent is None:
                return _replayed(request, d["token"])
            strike(key, WEBFORM)
            UsedNonce.objects.filter(scope="webform",
                                     used_at__lt=timezone.now() - dt.timedelta(seconds=MAX_FILL_SECONDS)).delete()
            outbound.queue_acknowledgement(new, new.first_message, new.new_clocks)  # type: ignore[attr-defined]
            return render(request, "desk/support_form.html", {"done": new})
        # A fresh token in the re-rendered form, so a person who fixes an error can send it again.
        data["token"] = SupportRequestForm.new_token()
        status = 400
    else:
        form = SupportRequestForm(initial={"token": SupportRequestForm.new_token()})
        status = 200
    return render(request, "desk/support_form.html", {"form": form}, status=status)
