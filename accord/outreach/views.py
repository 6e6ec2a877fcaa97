"""The public pages behind the links in outreach mail: unsubscribe (RFC 8058 one-click) and double opt-in.

A GET shows a page and changes nothing, so link scanners and prefetchers cannot unsubscribe or confirm anyone;
the change is a POST. The unsubscribe POST needs no cookie, session or CSRF token: mailbox providers send
`List-Unsubscribe=One-Click` from their own servers (RFC 8058), and the signed link is the credential.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from accord.lib.net import client_ip as client_address
from accord.lib.views import needs, staff_required

from . import consent as service


def _page(request: HttpRequest, status: int = 200, **context: object) -> HttpResponse:
    return render(request, "outreach/link.html", context, status=status)


@csrf_exempt
@never_cache
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    heading = "Unsubscribe"
    try:
        consent = service.resolve(token, "unsubscribe")
    except service.LinkError as e:
        # an erased person's link: answered like a success, saying nothing about anyone
        return _page(request, 200 if not str(e) else 400, heading=heading, problem=str(e))
    what = consent.purpose.title or consent.purpose.name
    if request.method == "POST":
        try:
            service.unsubscribe(token, client_address(request))
        except service.LinkError as e:
            return _page(request, 400, heading=heading, problem=str(e))
        return _page(request, heading=heading, done=f"You are unsubscribed from {what}. It takes effect at once.")
    if request.method not in ("GET", "HEAD"):
        return _page(request, 405, heading=heading, problem="Use the button on this page.")
    if consent.status == "withdrawn":
        return _page(request, heading=heading, done=f"You are not subscribed to {what}.")
    return _page(request, heading=heading, question=f"Stop receiving {what} at {consent.address}?",
                 button="Unsubscribe")


@csrf_exempt
@never_cache
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    heading = "Confirm your subscription"
    try:
        consent = service.resolve(token, "confirm")
    except service.LinkError as e:
        return _page(request, 200 if not str(e) else 400, heading=heading, problem=str(e) or "Nothing to confirm.")
    what = consent.purpose.title or consent.purpose.name
    if request.method == "POST":
        try:
            service.confirm(token, client_address(request))
        except service.LinkError as e:
            return _page(request, 400, heading=heading, problem=str(e))
        return _page(request, heading=heading, done=f"Thank you: you will receive {what} at {consent.address}.")
    if consent.status != "pending":
        return _page(request, 400, heading=heading,
                     problem="This link is out of date: your choice has changed since it was sent.")
    return _page(request, heading=heading, question=f"Receive {what} at {consent.address}?", button="Confirm")


@never_cache
def opt_out(request: HttpRequest, contact_id: int) -> HttpResponse:
    """An agent's one click: the contact asked to stop marketing mail (from a ticket); service mail goes on."""
    from django.contrib import messages
    from django.core.exceptions import PermissionDenied
    from django.shortcuts import get_object_or_404, redirect
    from django.utils.http import url_has_allowed_host_and_scheme

    from accord.customers.models import Contact

    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return redirect(f"/login/?next={request.path}")
    if not user.has_perm("outreach.change_consent"):
        raise PermissionDenied("Your role does not allow this (it needs outreach.change_consent).")
    if request.method != "POST":
        return HttpResponse("Use the button on the ticket page.", status=405, content_type="text/plain")
    contact = get_object_or_404(Contact, pk=contact_id)
    changed = service.withdraw_all(contact, "desk", user=user, detail=request.POST.get("reason", "")[:300]
                                   or "asked an agent to stop marketing mail")
    messages.success(request, f"{contact} will receive no marketing mail ({changed} consent(s) withdrawn); "
                              "ticket replies and service notices go on.")
    back = request.POST.get("next", "")
    return redirect(back if url_has_allowed_host_and_scheme(back, {request.get_host()}) else "/")


# -- staff pages: campaigns and segments ----------------------------------------------------------------------

@staff_required
@needs("outreach.view_campaign")
def campaigns_page(request: HttpRequest) -> HttpResponse:
    from .campaigns import totals
    from .models import Campaign

    rows = [(c, totals(c)) for c in Campaign.objects.select_related("segment", "purpose")[:200]]
    return render(request, "outreach/campaigns.html", {"rows": rows})


@staff_required
@needs("outreach.view_campaign")
def campaign_page(request: HttpRequest, pk: int) -> HttpResponse:
    from collections import Counter

    from django.shortcuts import get_object_or_404

    from .campaigns import preview, totals
    from .charts import ORDER, progress_bar
    from .models import Campaign, CampaignSend

    campaign = get_object_or_404(Campaign.objects.select_related("segment", "purpose"), pk=pk)
    counts = totals(campaign)
    reasons = Counter(r.split(" (")[0] for r in campaign.sends.filter(status="skipped").values_list("reason", flat=True))
    problems = campaign.sends.filter(status__in=["failed", "bounced"]).select_related("contact").order_by("-id")[:50]
    sample = campaign.sends.filter(status__in=["sent", "queued"]).select_related("contact__account").first()
    shown = None
    if sample is not None:
        msg = preview(campaign, sample.contact)
        text = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), None)
        body = text.get_payload(decode=True) if text is not None else b""
        shown = {"to": msg["To"], "subject": msg["Subject"],
                 "text": body.decode("utf-8", "replace") if isinstance(body, bytes) else ""}
    chart = progress_bar("campaign-progress", f"Recipients of {campaign.name} by status", counts)
    return render(request, "outreach/campaign.html", {
        "campaign": campaign, "counts": [(s, counts.get(s, 0)) for s, _c in ORDER], "total": sum(counts.values()),
        "chart": chart, "reasons": reasons.most_common(), "problems": problems, "preview": shown,
        "statuses": CampaignSend.Status, "editable": not _not_editable(campaign)})


@staff_required
@needs("outreach.view_segment")
def segments_page(request: HttpRequest) -> HttpResponse:
    import json

    from . import segments
    from .models import Segment

    rows = []
    for s in Segment.objects.all():
        try:
            count, problem = segments.count(s.spec), ""
        except segments.SpecError as e:
            count, problem = None, str(e)
        rows.append({"segment": s, "spec": json.dumps(s.spec), "count": count, "problem": problem})
    return render(request, "outreach/segments.html", {"rows": rows})


# -- staff pages: creating and editing segments and campaigns ----------------------------------------------------

def _allowed(request: HttpRequest, perm: str) -> None:
    from django.core.exceptions import PermissionDenied

    if not request.user.has_perm(perm):
        raise PermissionDenied(f"Your role does not allow this page (it needs {perm}).")


@staff_required
def segment_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """A new segment, or an existing one changed; "Count" counts the filter as written without saving it."""
    from django.contrib import messages
    from django.db import transaction
    from django.shortcuts import get_object_or_404, redirect

    from accord.access.audit import diff, record

    from . import segments
    from .forms import SegmentForm
    from .models import Segment

    _allowed(request, "outreach.change_segment" if pk else "outreach.add_segment")
    segment = get_object_or_404(Segment, pk=pk) if pk else None
    before = {"name": segment.name, "description": segment.description, "spec": segment.spec} if segment else {}
    form = SegmentForm(request.POST if request.method == "POST" else None, instance=segment)
    count: int | None = None
    problem = ""
    if request.method == "POST" and form.is_valid():
        if request.POST.get("do") == "count":
            count = segments.count(form.cleaned_data["spec"])
        else:
            with transaction.atomic():
                saved = form.save()
                after = {"name": saved.name, "description": saved.description, "spec": saved.spec}
                record(request.user, "update" if segment else "create", saved, changes=diff(before, after),
                       summary="segment " + ("changed" if segment else "created"))
            messages.success(request, f"Segment “{saved.name}” {'saved' if segment else 'created'}: "
                                      f"{segments.count(saved.spec)} contact(s) match now.")
            return redirect("outreach:segments")
    elif request.method != "POST" and segment is not None:
        try:
            count = segments.count(segment.spec)
        except segments.SpecError as e:
            problem = f"The stored filter no longer holds: {e}"
    return render(request, "outreach/segment_form.html",
                  {"form": form, "segment": segment, "count": count, "problem": problem})


def _campaign_locked(campaign_pk: int) -> Any:
    from .models import Campaign

    return Campaign.objects.select_for_update().get(pk=campaign_pk)


def _not_editable(campaign: Any) -> str:
    from .models import Campaign

    if campaign.status in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
        return ""
    return (f"Campaign “{campaign.name}” is {campaign.status}: it cannot be changed once sending has started. "
            "Create a new campaign instead.")


@staff_required
def campaign_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """A new campaign (a draft), or a draft or scheduled one changed; "Preview" renders the message as written for
    one contact without saving anything."""
    from django.contrib import messages
    from django.core.exceptions import ValidationError
    from django.db import transaction
    from django.shortcuts import get_object_or_404, redirect

    from accord.access.audit import diff, record, snapshot

    from .campaigns import preview
    from .forms import CampaignForm, PreviewForm
    from .models import Campaign

    _allowed(request, "outreach.change_campaign" if pk else "outreach.add_campaign")
    campaign = get_object_or_404(Campaign.objects.select_related("segment", "purpose"), pk=pk) if pk else None
    if campaign is not None and (why := _not_editable(campaign)):
        messages.error(request, why)
        return redirect("outreach:campaign", pk=campaign.pk)
    fields = ["name", "purpose_id", "segment_id", "from_email", "subject", "html", "text", "send_at", "rate"]
    before = snapshot(campaign, fields) if campaign else {}
    data = request.POST if request.method == "POST" else None
    form = CampaignForm(data, instance=campaign)
    preview_form = PreviewForm(data)
    shown = None
    if data is not None and form.is_valid() and preview_form.is_valid():
        if request.POST.get("do") == "preview":
            try:
                contact = preview_form.contact_for(form.instance)
            except ValidationError as e:
                preview_form.add_error("contact", e)
                contact = None
            if contact is None and not preview_form.errors:
                preview_form.add_error("contact", "The segment matches nobody: name a contact to preview.")
            if contact is not None:
                message = preview(form.instance, contact)
                parts: dict[str, str] = {}
                for p in message.walk():
                    body = p.get_payload(decode=True)
                    if isinstance(body, bytes):
                        parts[p.get_content_type()] = body.decode("utf-8", "replace")
                shown = {"to": message["To"], "subject": message["Subject"],
                         "text": parts.get("text/plain", ""), "html": parts.get("text/html", "")}
        else:
            with transaction.atomic():
                if campaign is not None and (why := _not_editable(_campaign_locked(campaign.pk))):
                    messages.error(request, why + " Nothing was saved.")
                    return redirect("outreach:campaign", pk=campaign.pk)
                saved = form.save()
                record(request.user, "update" if campaign else "create", saved,
                       changes=diff(before, snapshot(saved, fields)),
                       summary="campaign " + ("changed" if campaign else "created as a draft"))
            messages.success(request, f"Campaign “{saved.name}” saved"
                                      + ("." if campaign else " as a draft: schedule it when it is ready."))
            return redirect("outreach:campaign", pk=saved.pk)
    return render(request, "outreach/campaign_form.html",
                  {"form": form, "preview_form": preview_form, "campaign": campaign, "preview": shown})


@staff_required
@needs("outreach.change_campaign")
def campaign_schedule(request: HttpRequest, pk: int) -> HttpResponse:
    """Check a draft or scheduled campaign and let it go (at "send at", else now); or ("cancel") back to draft."""
    import datetime as dt

    from django.contrib import messages
    from django.core.exceptions import ValidationError
    from django.db import transaction
    from django.shortcuts import get_object_or_404, redirect

    from accord.access.audit import record

    from . import campaigns, segments
    from .models import Campaign

    campaign = get_object_or_404(Campaign, pk=pk)
    if request.method != "POST":
        return HttpResponse("Use the buttons on the campaign's page.", status=405, content_type="text/plain")
    if request.POST.get("do") in ("pause", "resume"):  # a sending campaign may be held too: no edit lock needed
        try:
            if request.POST["do"] == "pause":
                waiting = campaigns.pause(campaign)
                messages.success(request, f"Campaign “{campaign.name}” is paused: {waiting:,} recipients wait; its "
                                          "senders stop within moments and give back what they had not sent.")
            else:
                campaigns.resume(campaign)
                messages.success(request, f"Campaign “{campaign.name}” goes on where it stopped.")
        except campaigns.CampaignError as e:
            messages.error(request, str(e))
            return redirect("outreach:campaign", pk=pk)
        record(request.user, request.POST["do"], campaign, summary=f"campaign {request.POST['do']}d")
        return redirect("outreach:campaign", pk=pk)
    with transaction.atomic():
        locked = _campaign_locked(campaign.pk)
        if why := _not_editable(locked):
            messages.error(request, why)
            return redirect("outreach:campaign", pk=pk)
        if request.POST.get("do") == "cancel":
            locked.status = Campaign.Status.DRAFT
            locked.save(update_fields=["status"])
            record(request.user, "cancel", locked, summary="campaign back to draft")
            messages.success(request, f"Campaign “{locked.name}” is a draft again; nothing was sent.")
            return redirect("outreach:campaign", pk=pk)
        raw = (request.POST.get("send_at") or "").strip()
        at = None
        if raw:
            try:
                at = dt.datetime.strptime(raw, "%Y-%m-%dT%H:%M").replace(tzinfo=dt.UTC)
            except ValueError:
                messages.error(request, f"“{raw}” is not a time (YYYY-MM-DD HH:MM, UTC). Nothing was scheduled.")
                return redirect("outreach:campaign", pk=pk)
        try:
            campaigns.schedule(locked, at)
        except (ValidationError, campaigns.CampaignError, segments.SpecError) as e:
            why = "; ".join(e.messages) if isinstance(e, ValidationError) else str(e)
            messages.error(request, f"Not scheduled: {why}")
            return redirect("outreach:campaign", pk=pk)
        record(request.user, "schedule", locked, summary=f"campaign scheduled for {locked.send_at:%Y-%m-%d %H:%M} UTC")
    messages.success(request, f"Campaign “{locked.name}” is scheduled for {locked.send_at:%Y-%m-%d %H:%M} UTC.")
    return redirect("outreach:campaign", pk=pk)
