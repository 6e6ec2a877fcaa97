"""Desk pages: the agent queue, the ticket page, and the public web form."""

from __future__ import annotations

from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accord.lib.views import form_errors, staff_required

from . import actions
from .actions import Inbound
from .filters import TicketFilterSet
from .forms import ReplyForm, SupportRequestForm, TicketUpdateForm
from .models import SlaClock, Ticket

WEBFORM_LIMIT = 5  # requests per address per window
WEBFORM_WINDOW = 600  # seconds


@staff_required
def queue(request: HttpRequest) -> HttpResponse:
    """Open tickets, the next due clock first."""
    base = Ticket.objects.filter(is_open=True).select_related("account__tier", "assignee")
    filterset = TicketFilterSet(request.GET, queryset=base, request=request)
    qs = filterset.qs if filterset.is_valid() else Ticket.objects.none()
    page = Paginator(qs.order_by("queue_due", "id"), 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "desk/queue.html", {"filter": filterset, "page": page, "query": query.urlencode(),
                                               "now": timezone.now()})


@staff_required
def ticket(request: HttpRequest, pk: int) -> HttpResponse:
    t = get_object_or_404(Ticket.objects.select_related("account__tier", "contact", "agreement", "assignee", "group"), pk=pk)
    return render(
        request,
        "desk/ticket.html",
        {
            "ticket": t,
            "thread": t.messages.select_related("author_user", "author_contact").prefetch_related("attachments"),
            "clocks": t.clocks.order_by("kind", "cycle"),
            "reply_form": ReplyForm(),
            "update_form": TicketUpdateForm(initial={"priority": t.priority, "status": t.status}),
            "now": timezone.now(),
            "running": SlaClock.Status.RUNNING,
        },
    )


@staff_required
@require_POST
def reply(request: HttpRequest, pk: int) -> HttpResponse:
    t = get_object_or_404(Ticket, pk=pk)
    form = ReplyForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("desk:ticket", pk=pk)
    try:
        if form.cleaned_data["kind"] == "note":
            actions.do_add_note(t, request.user, form.cleaned_data["body"])  # type: ignore[arg-type]
            if form.cleaned_data["status"]:
                actions.do_set_status(t, form.cleaned_data["status"])
        else:
            actions.do_reply(t, request.user, form.cleaned_data["body"],  # type: ignore[arg-type]
                             new_status=form.cleaned_data["status"] or None)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    return redirect("desk:ticket", pk=pk)


@staff_required
@require_POST
def update(request: HttpRequest, pk: int) -> HttpResponse:
    t = get_object_or_404(Ticket, pk=pk)
    form = TicketUpdateForm(request.POST)
    if not form.is_valid():
        messages.error(request, form_errors(form))
        return redirect("desk:ticket", pk=pk)
    data = form.cleaned_data
    try:
        if data.get("priority") and data["priority"] != t.priority:
            actions.do_set_priority(t, data["priority"])
        if data.get("status") and data["status"] != t.status:
            actions.do_set_status(t, data["status"])
        if data.get("assign_to_me"):
            Ticket.objects.filter(pk=pk).update(assignee=request.user)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    return redirect("desk:ticket", pk=pk)


def _client_ip(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", "unknown"))


def support_form(request: HttpRequest) -> HttpResponse:
    """The public web form: rate-limited per address, with a honeypot and a minimum fill time."""
    if request.method == "POST":
        key = f"desk:webform:{_client_ip(request)}"
        count = cache.get_or_set(key, 0, WEBFORM_WINDOW)
        if count is not None and count >= WEBFORM_LIMIT:
            response = render(request, "desk/support_form.html", {"form": None, "limited": True}, status=429)
            response["Retry-After"] = str(WEBFORM_WINDOW)
            return response
        data = request.POST.copy()
        form = SupportRequestForm(data)
        if form.is_valid():
            cache.incr(key)
            d = form.cleaned_data
            new = actions.do_open_ticket(
                Inbound(channel=Ticket.Channel.WEB, subject=d["subject"], body_text=d["message"],
                        from_address=d["email"], from_name=d["name"])
            )
            from .outbound import queue_acknowledgement

            queue_acknowledgement(new, new.first_message, new.new_clocks)  # type: ignore[attr-defined]
            return render(request, "desk/support_form.html", {"done": new})
        # A fresh token in the re-rendered form, so a person who fixes an error can send it again.
        data["token"] = SupportRequestForm.new_token()
        status = 400
    else:
        form = SupportRequestForm(initial={"token": SupportRequestForm.new_token()})
        status = 200
    return render(request, "desk/support_form.html", {"form": form}, status=status)
