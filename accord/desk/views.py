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
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accord.access.models import UsedNonce
from accord.access.strikes import Limit, strike, wait
from accord.lib.net import client_ip
from accord.lib.units import instant, minutes
from accord.lib.views import form_errors, needs, staff_required

from . import actions, live, outbound, search
from . import bulk as bulk_actions
from .actions import Inbound
from .filters import QueueFilterSet
from .forms import (
    MAX_FILL_SECONDS,
    BulkForm,
    ReplyForm,
    SavedFilterForm,
    SupportRequestForm,
    TicketUpdateForm,
)
from .models import SavedFilter, SlaClock, Ticket

WEBFORM_LIMIT = 5  # requests per address per window
WEBFORM_WINDOW = 600  # seconds
# An action's ValidationError names the model's field; the form shows it next to its own.
ACTION_FIELDS = {"body_text": "body"}


# The queue's views (tabs): key -> (label, statuses or None for all, ordering). "" is the default: the open
# work (new, open, pending, on hold), the next due clock first.
VIEWS: dict[str, tuple[str, tuple[str, ...] | None, tuple[str, ...]]] = {
    "": ("Open work", Ticket.OPEN_STATUSES, ("queue_due", "id")),
    "new": ("New", ("new",), ("queue_due", "id")),
    "open": ("Open", ("open",), ("queue_due", "id")),
    "pending": ("Pending", ("pending", "on_hold"), ("queue_due", "id")),
    "solved": ("Solved", ("solved",), ("-solved_at", "-id")),
    "closed": ("Closed", ("closed",), ("-closed_at", "-id")),
    "all": ("All", None, ("-created_at", "-id")),
}
# The built-in saved filters: name -> query string.
BUILT_IN_FILTERS = [
    ("My tickets", "assignee=me"),
    ("Unassigned", "assignee=none"),
    ("Breaching today", "due=today"),
    ("Platinum", "tier=platinum"),
]


def _tabs(request: HttpRequest, current: str) -> list[dict[str, Any]]:
    """Each view with its count (one GROUP BY over the tickets' statuses) and its link, keeping the filters."""
    counts = dict(Ticket.objects.order_by().values_list("status").annotate(n=Count("id")))
    query = request.GET.copy()
    for name in ("page", "view"):
        query.pop(name, None)
    tabs = []
    for key, (label, statuses, _order) in VIEWS.items():
        link = query.copy()
        if key:
            link["view"] = key
        n = sum(counts.get(s, 0) for s in statuses) if statuses is not None else sum(counts.values())
        tabs.append({"key": key, "label": label, "count": n, "query": link.urlencode(), "current": key == current})
    return tabs


@staff_required
@needs("desk.view_ticket")
def queue(request: HttpRequest) -> HttpResponse:
    """The tickets of one view (by default the open work, the next due clock first), filtered and searched."""
    view = request.GET.get("view", "")
    if view not in VIEWS:
        view = ""
    _label, statuses, order = VIEWS[view]
    base = Ticket.objects.select_related("account__tier", "assignee", "group")
    if view == "":
        base = base.filter(is_open=True)
    elif statuses is not None:
        base = base.filter(status__in=statuses)
    filterset = QueueFilterSet(request.GET, queryset=base, request=request)
    qs = filterset.qs if filterset.is_valid() else Ticket.objects.none()
    text = request.GET.get("search", "").strip()
    found: search.Results | None = None
    page: Any
    snippets: dict[int, str] = {}
    if text:
        found = search.search(qs, text)
        page = Paginator(found.ids, 50).get_page(request.GET.get("page"))
        rows = qs.in_bulk(list(page.object_list))
        page.object_list = [rows[pk] for pk in page.object_list if pk in rows]
        snippets = found.snippets([t.pk for t in page.object_list])
        for t in page.object_list:
            t.snippet = snippets.get(t.pk, "")
    else:
        page = Paginator(qs.order_by(*order), 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    saved_query = query.copy()
    saved = SavedFilter.objects.filter(user=request.user.pk)
    return render(request, "desk/queue.html", {
        "filter": filterset, "page": page, "query": query.urlencode(), "saved_query": saved_query.urlencode(),
        "now": timezone.now(), "live": live.cursor(), "live_poll": live.poll_seconds(),
        "tabs": _tabs(request, view), "view": view, "view_label": VIEWS[view][0], "search_text": text,
        "found": found, "found_cap": f"{search.CANDIDATES:,}", "built_in": BUILT_IN_FILTERS, "saved": saved, "save_form": SavedFilterForm(),
        "bulk_form": BulkForm(), "can_change": request.user.has_perm("desk.change_ticket"),
    })


def _clean_query(query: str) -> str:
    """A query string sent back by a form, parsed and encoded again (no page, nothing but parameters)."""
    parsed = QueryDict(query[:2000], mutable=True)
    parsed.pop("page", None)
    return parsed.urlencode()


@staff_required
@needs("desk.view_ticket")
@require_POST
def save_filter(request: HttpRequest) -> HttpResponse:
    """Save the queue's current filters (the query string) under a name of the agent's own."""
    form = SavedFilterForm(request.POST)
    query = request.POST.get("query", "")
    if form.is_valid():
        name = form.cleaned_data["name"]
        SavedFilter.objects.update_or_create(user=request.user, name=name,
                                             defaults={"query": form.cleaned_data["query"]})
        messages.success(request, f"Filter “{name}” saved.")
        return redirect(f"{reverse('desk:queue')}?{form.cleaned_data['query']}")
    messages.error(request, f"The filter was not saved: {form_errors(form)}")
    return redirect(f"{reverse('desk:queue')}?{_clean_query(query)}")


@staff_required
@needs("desk.view_ticket")
@require_POST
def delete_filter(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete one of the agent's own saved filters (another's is not found)."""
    saved = get_object_or_404(SavedFilter, pk=pk, user=request.user.pk)
    saved.delete()
    messages.success(request, f"Filter “{saved.name}” deleted.")
    return redirect("desk:queue")


@staff_required
@needs("desk.view_ticket", "desk.change_ticket")
@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """One change on the selected tickets, each through the domain action a single change uses, in one
    transaction; the flash says what changed and what was refused (and why)."""
    back = f"{reverse('desk:queue')}?{_clean_query(request.POST.get('query', ''))}"
    form = BulkForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Nothing was changed: {form_errors(form)}")
        return redirect(back)
    report = bulk_actions.apply(form.cleaned_data, request.user)
    if report.changed or report.unchanged:
        messages.success(request, report.done())
    if report.refused:
        messages.error(request, report.refusals())
    return redirect(back)


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
        if data.get("assign"):
            bulk_actions.assign(t, data["assign"])

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
            # The nonce is spent with the ticket and its acknowledgement, or not at all: a disk that fills up
            # between them would otherwise leave a ticket whose customer is never told (tests/test_disk_full.py).
            with transaction.atomic():
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
                    outbound.queue_acknowledgement(new, new.first_message, new.new_clocks)  # type: ignore[attr-defined]
            if spent is None:
                return _replayed(request, d["token"])
            strike(key, WEBFORM)
            UsedNonce.objects.filter(scope="webform",
                                     used_at__lt=timezone.now() - dt.timedelta(seconds=MAX_FILL_SECONDS)).delete()
            return render(request, "desk/support_form.html", {"done": new})
        # A fresh token in the re-rendered form, so a person who fixes an error can send it again.
        data["token"] = SupportRequestForm.new_token()
        status = 400
    else:
        form = SupportRequestForm(initial={"token": SupportRequestForm.new_token()})
        status = 200
    return render(request, "desk/support_form.html", {"form": form}, status=status)
