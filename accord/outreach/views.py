"""The public pages behind the links in outreach mail: unsubscribe (RFC 8058 one-click) and double opt-in.

A GET shows a page and changes nothing, so link scanners and prefetchers cannot unsubscribe or confirm anyone;
the change is a POST. The unsubscribe POST needs no cookie, session or CSRF token: mailbox providers send
`List-Unsubscribe=One-Click` from their own servers (RFC 8058), and the signed link is the credential.
"""

from __future__ import annotations

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
        "statuses": CampaignSend.Status})


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
