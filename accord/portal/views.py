"""The portal's pages. Every query of a customer's data goes through `request.portal` (a `scope.Scope`)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from django.contrib import messages
from django.db import transaction
from django.db.models import Max, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accord.agreements.models import Agreement
from accord.billing import render as invoice_formats
from accord.billing.models import Invoice
from accord.catalog.models import ApiCredential, CredentialUsage
from accord.customers.models import Contact, ContactPoint
from accord.desk.actions import Inbound, do_add_customer_message, do_open_ticket, do_set_status
from accord.desk.models import Attachment, Message, SlaClock, Ticket
from accord.governance.models import AuditEvent, Policy
from accord.lib import units
from accord.lib.charts import Bar, attainment_bars
from accord.reports import render as report_formats
from accord.reports.attainment import account_lines
from accord.reports.builder import build
from accord.reports.freeze import pdf_available
from accord.reports.models import Credit, FrozenReport
from accord.reports.periods import Period, current_month, parse_period

from . import auth
from .forms import InviteForm, LinkForm, ReplyForm, SignInForm, TicketFilter, TicketForm
from .invitations import invite
from .models import PortalUser
from .scope import Scope

PAGE = 50


def _scope(request: HttpRequest) -> Scope:
    return request.portal  # type: ignore[attr-defined]


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target.startswith("/portal/") and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return reverse("portal:home")


def login(request: HttpRequest) -> HttpResponse:
    if auth.current(request) is not None:
        return redirect("portal:home")
    form, link_form, status = SignInForm(request.POST or None), LinkForm(), 200
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"].strip().lower()
        if wait := auth.throttled(request, email):
            form.add_error(None, f"Too many failed sign-ins. Try again in {units.duration(wait)}, or ask for a link.")
            status = 429
        else:
            user = auth.find(email)
            if user is not None and user.check_password(form.cleaned_data["password"]):
                auth.sign_in(request, user)
                return redirect(_next(request))
            auth.failed(request, email)
            form.add_error(None, "That address and password do not match a portal user.")
            status = 400
    elif request.method == "POST":
        status = 400
    return render(request, "portal/login.html", {"form": form, "link_form": link_form,
                                                 "next": request.GET.get("next", "")}, status=status)


def request_link(request: HttpRequest) -> HttpResponse:
    """Mail a one-time link. The answer is the same whether the address is known or not."""
    form = LinkForm(request.POST or None)
    if request.method != "POST":
        return redirect("portal:login")
    if not form.is_valid():
        return render(request, "portal/login.html", {"form": SignInForm(), "link_form": form}, status=400)
    email = form.cleaned_data["email"].strip().lower()
    if wait := auth.throttled(request, email):
        form.add_error(None, f"Too many requests. Try again in {units.duration(wait)}.")
        return render(request, "portal/login.html", {"form": SignInForm(), "link_form": form}, status=429)
    auth.failed(request, email)  # each request counts, so the form cannot be used to flood an inbox
    user = auth.find(email)
    if user is not None:
        auth.mail_link(request, user)
    return render(request, "portal/link_sent.html", {"email": email})


def follow_link(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button (mail scanners fetch links: a GET must not spend it); POST signs in."""
    if request.method == "POST":
        user = auth.use_link(token)
        if user is None:
            return render(request, "portal/link_dead.html", status=410)
        auth.sign_in(request, user)
        if not user.password:
            messages.info(request, "Signed in. You may set a password under Team and profile, or keep using links.")
        return redirect("portal:home")
    return render(request, "portal/link_confirm.html", {"token": token})


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    auth.sign_out(request)
    return redirect("portal:login")


def _clock_line(clock: SlaClock, now: dt.datetime) -> str:
    what = clock.kind.replace("_", " ").capitalize()  # "First response"
    hours = "around the clock" if clock.calendar.is_24x7 else "business hours"
    if clock.breached_at is not None:
        return f"{what}: overdue since {units.instant(clock.breached_at, clock.calendar.timezone)}"
    if clock.status == SlaClock.Status.PAUSED or clock.due_at is None:
        return f"{what}: paused while we wait for you"
    if clock.due_at <= now:  # passed, the worker has not recorded the breach yet: overdue all the same
        return f"{what}: overdue since {units.instant(clock.due_at, clock.calendar.timezone)}"
    left = (clock.due_at - now).total_seconds() // 60 * 60  # whole minutes: "14 h 55 min", not "... 31.050169 s"
    return f"{what} due in {units.duration(max(left, 60), largest='d')} ({hours}; target {units.minutes(clock.target_minutes)})"


def _protections(scope: Scope, since: dt.datetime) -> list[dict[str, Any]]:
    """The reroutes and admissions that protected this account's tier: intervals of enforced policy activations."""
    tier = scope.account.tier
    if tier is None:
        return []
    policies = [p for p in Policy.objects.filter(mode=Policy.Mode.ENFORCE).exclude(action=Policy.Action.NOTIFY)
                if tier.name in (p.tiers or [])]
    out: list[dict[str, Any]] = []
    events = (AuditEvent.objects.filter(policy__in=policies, at__gte=since,
                                        kind__in=[AuditEvent.Kind.ACTIVATED, AuditEvent.Kind.DEACTIVATED])
              .select_related("policy").order_by("at", "id"))
    open_: dict[int, dict[str, Any]] = {}
    for e in events:
        assert e.policy is not None
        if e.kind == AuditEvent.Kind.ACTIVATED:
            open_[e.policy.pk] = {"what": e.policy.description or e.policy.get_action_display(),
                                  "action": e.policy.get_action_display(), "start": e.at, "end": None}
            out.append(open_[e.policy.pk])
        elif e.policy.pk in open_:
            open_.pop(e.policy.pk)["end"] = e.at
    return out[-20:][::-1]


@auth.portal_login_required
def home(request: HttpRequest) -> HttpResponse:
    scope, now = _scope(request), timezone.now()
    agreement = Agreement.for_account(scope.account, timezone.localdate(now))
    lines = account_lines(scope.account, agreement, now) if agreement else []
    open_tickets = list(scope.rows(Ticket).filter(is_open=True).order_by("next_due_at", "-created_at")[:20])
    clocks = (scope.rows(SlaClock).filter(ticket__in=open_tickets, stopped_at__isnull=True)
              .exclude(status=SlaClock.Status.CANCELLED).select_related("calendar").order_by("due_at"))
    by_ticket: dict[int, list[str]] = {}
    for c in clocks:
        by_ticket.setdefault(c.ticket_id, []).append(_clock_line(c, now))
    return render(request, "portal/home.html", {
        "account": scope.account, "agreement": agreement, "lines": lines,
        "chart": attainment_bars("portal-sla-chart", f"{scope.account.name}: attainment this month per objective",
                                 [Bar(line.objective.name, line.percent, line.required) for line in lines]),
        "tickets": [(t, by_ticket.get(t.pk, [])) for t in open_tickets],
        "protections": _protections(scope, now - dt.timedelta(days=30)),
        "timezone": scope.account.timezone,
    })


@auth.portal_login_required
def tickets(request: HttpRequest) -> HttpResponse:
    """The user's tickets (an admin: the organisation's, or only theirs), filtered by status and searched."""
    scope = _scope(request)
    form = TicketFilter(request.GET)  # every field optional: an empty query is valid, with the defaults
    valid = form.is_valid()
    data = form.cleaned_data if valid else {}
    whole = scope.user.is_admin and data.get("whose") != "mine"
    qs = scope.rows(Ticket, whole_account=whole)
    statuses = form.statuses() if valid else list(Ticket.OPEN_STATUSES)
    if statuses is not None:
        qs = qs.filter(status__in=statuses)
    if q := (data.get("q") or "").strip():
        visible = scope.rows(Message, whole_account=whole).filter(body_text__icontains=q).values("ticket_id")
        qs = qs.filter(Q(subject__icontains=q) | Q(pk__in=visible))
    total = qs.count()
    rows = list(qs.select_related("contact").order_by("-created_at", "-id")[:PAGE])
    return render(request, "portal/tickets.html", {"form": form, "tickets": rows, "total": total, "whole": whole,
                                                   "q": data.get("q", "")}, status=200 if valid else 400)


def _attachments(message: Message, files: list[Any]) -> None:
    for f in files:
        message.attachments.create(filename=(f.name or "file")[:255], size=f.size, data=f.read(),
                                   content_type=(f.content_type or "application/octet-stream")[:255])


def _inbound(scope: Scope, subject: str, text: str, priority: str = Ticket.Priority.NORMAL) -> Inbound:
    return Inbound(channel=Ticket.Channel.WEB, subject=subject, body_text=text, from_address=scope.user.email,
                   from_name=scope.contact.name, priority=priority, meta={"via": "portal"})


@auth.portal_login_required
def new_ticket(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    form = TicketForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            ticket = do_open_ticket(_inbound(scope, form.cleaned_data["subject"], form.cleaned_data["message"],
                                             form.cleaned_data["priority"]),
                                    contact=scope.contact, account=scope.account)
            _attachments(ticket.first_message, form.cleaned_data["attachments"])  # type: ignore[attr-defined]
        messages.success(request, f"Ticket {ticket.reference} opened.")
        return redirect("portal:ticket", ticket.reference)
    return render(request, "portal/ticket_new.html", {"form": form},
                  status=400 if request.method == "POST" else 200)


@auth.portal_login_required
def ticket(request: HttpRequest, reference: str) -> HttpResponse:
    scope, now = _scope(request), timezone.now()
    t = scope.ticket(reference)
    form = ReplyForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            message = do_add_customer_message(t, _inbound(scope, f"Re: {t.subject}", form.cleaned_data["message"]),
                                              contact=scope.contact)
            _attachments(message, form.cleaned_data["attachments"])
        messages.success(request, "Reply sent.")
        return redirect("portal:ticket", t.reference)
    thread = list(scope.rows(Message).filter(ticket=t).order_by("created_at", "id")
                  .prefetch_related("attachments").select_related("author_user", "author_contact"))
    clocks = [_clock_line(c, now) for c in scope.rows(SlaClock).filter(ticket=t, stopped_at__isnull=True)
              .exclude(status=SlaClock.Status.CANCELLED).select_related("calendar").order_by("due_at")]
    return render(request, "portal/ticket.html", {"ticket": t, "thread": thread, "form": form, "clocks": clocks,
                                                  "timezone": scope.account.timezone},
                  status=400 if request.method == "POST" else 200)


@auth.portal_login_required
@require_POST
def close_ticket(request: HttpRequest, reference: str) -> HttpResponse:
    t = _scope(request).ticket(reference)
    if t.status not in Ticket.DONE_STATUSES:
        do_set_status(t, Ticket.Status.SOLVED)
        messages.success(request, f"{t.reference} is solved. Write again on it to reopen it.")
    return redirect("portal:ticket", t.reference)


@auth.portal_login_required
def attachment(request: HttpRequest, reference: str, pk: int) -> HttpResponse:
    t = _scope(request).ticket(reference)
    a = _scope(request).get(Attachment, pk=pk, message__ticket=t)
    response = HttpResponse(bytes(a.data), content_type="application/octet-stream")
    response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(a.filename, safe='')}"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@auth.portal_login_required
def credits(request: HttpRequest) -> HttpResponse:
    rows = list(_scope(request).rows(Credit).select_related("agreement").order_by("-period", "objective", "id")[:100])
    return render(request, "portal/credits.html", {"credits": rows})


@auth.portal_login_required
def invoices(request: HttpRequest) -> HttpResponse:
    """The account's invoices and credit notes once finalised (drafts may still change), newest first."""
    rows = list(_scope(request).rows(Invoice).order_by("-period", "kind", "-id")[:100])
    return render(request, "portal/invoices.html", {"invoices": rows, "pdf": pdf_available()})


INVOICE_TYPES = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


@auth.portal_login_required
def invoice_file(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    inv = _scope(request).get(Invoice, pk=pk)
    if fmt not in INVOICE_TYPES:
        raise Http404("Not found.")
    if fmt == "pdf" and not pdf_available():
        return HttpResponse("PDF invoices need WeasyPrint (with Pango) on the server; the CSV is there.",
                            status=503, content_type="text/plain")
    data = invoice_formats.csv_bytes(inv) if fmt == "csv" else invoice_formats.pdf(inv)
    response = HttpResponse(data, content_type=INVOICE_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{inv.number}.{fmt}"'
    return response


@auth.portal_login_required
def team(request: HttpRequest) -> HttpResponse:
    scope = _scope(request)
    form = InviteForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if not scope.user.is_admin:
            return render(request, "portal/forbidden.html", status=403)
        if form.is_valid():
            email = form.cleaned_data["email"].strip().lower()
            if PortalUser.objects.filter(email=email).exists():
                form.add_error("email", "This address already has a portal sign-in.")
            else:
                with transaction.atomic():
                    contact = Contact.objects.create(account=scope.account, name=form.cleaned_data["name"])
                    ContactPoint.objects.create(contact=contact, kind=ContactPoint.Kind.EMAIL, value=email, primary=True)
                    invite(contact, email, admin=form.cleaned_data["admin"], invited_by=scope.user.email,
                           inviter_name=scope.contact.name, request=request)
                messages.success(request, f"Invitation sent to {email}.")
                return redirect("portal:team")
        status = 400
    return render(request, "portal/team.html", {
        "form": form, "members": list(scope.rows(PortalUser).select_related("contact").order_by("email")),
    }, status=status)


@auth.portal_login_required
@require_POST
def set_password(request: HttpRequest) -> HttpResponse:
    user = _scope(request).user
    raw = request.POST.get("password", "")
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    try:
        validate_password(raw)
    except ValidationError as e:
        for m in e.messages:
            messages.error(request, m)
        return redirect("portal:team")
    user.set_password(raw)
    user.save(update_fields=["password"])
    messages.success(request, "Password set.")
    return redirect("portal:team")


REPORT_MONTHS = 12
REPORT_TYPES = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


def _months(now: dt.datetime) -> list[Period]:
    months = [current_month(now)]
    while len(months) < REPORT_MONTHS:
        months.append(current_month(months[-1].start - dt.timedelta(days=1)))
    return months


@auth.portal_login_required
def reports(request: HttpRequest) -> HttpResponse:
    """The account's monthly reports: a closed month's as frozen (its latest version), this month's provisional."""
    scope, now = _scope(request), timezone.now()
    closed = dict(scope.rows(FrozenReport).values_list("period").annotate(latest=Max("version")))
    rows = [{"period": p, "version": closed.get(p.label), "ended": p.ended(now)} for p in _months(now)]
    return render(request, "portal/reports.html", {"rows": rows, "pdf": pdf_available()})


@auth.portal_login_required
def report_file(request: HttpRequest, period: str, fmt: str) -> HttpResponse:
    scope, now = _scope(request), timezone.now()
    if fmt not in REPORT_TYPES or period not in {p.label for p in _months(now)}:
        raise Http404("Not found.")
    frozen = scope.rows(FrozenReport).filter(period=period, fmt=fmt).order_by("-version").first()
    if frozen is not None:
        data, name = bytes(frozen.content), f"{period}-v{frozen.version}.{fmt}"
    else:
        if fmt == "pdf" and not pdf_available():
            return HttpResponse("PDF reports need WeasyPrint (with Pango) on the server; the CSV is there.",
                                status=503, content_type="text/plain")
        report = build(scope.account, parse_period(period), now)
        data = report_formats.csv_bytes(report) if fmt == "csv" else report_formats.pdf(report)
        name = f"{period}-provisional.{fmt}"
    response = HttpResponse(data, content_type=REPORT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="service-report-{name}"'
    return response


@auth.portal_login_required
def keys(request: HttpRequest) -> HttpResponse:
    """The account's API keys (what its systems call the protected services with): a portal admin issues one
    (shown once, never stored) and revokes; everyone sees them, by prefix, with when each was last used."""
    scope = _scope(request)
    shown = ""
    status = 200
    if request.method == "POST":
        if not scope.user.is_admin:
            return render(request, "portal/forbidden.html", status=403)
        name = " ".join(request.POST.get("name", "").split())
        if not name or len(name) > 100:
            messages.error(request, "Name the key (at most 100 characters): what system uses it.")
            status = 400
        else:
            _cred, shown = ApiCredential.issue(scope.account, name)
    keys = CredentialUsage.attach_this_month(list(scope.rows(ApiCredential).order_by("revoked_at", "-created_at")),
                                             scope.rows(CredentialUsage))
    return render(request, "portal/keys.html", {"keys": keys, "shown": shown, "month": timezone.now()},
                  status=status)


@auth.portal_login_required
@require_POST
def revoke_key(request: HttpRequest, key: int) -> HttpResponse:
    scope = _scope(request)
    credential = scope.get(ApiCredential, pk=key)
    if not scope.user.is_admin:
        return render(request, "portal/forbidden.html", status=403)
    credential.revoke()
    messages.success(request, f"Key {credential.prefix}… revoked: the gateway refuses it from its next refresh on.")
    return redirect("portal:keys")
