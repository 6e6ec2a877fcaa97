"""The outbox page: outgoing mail not yet delivered (pending, being sent, failed) with its last error, for staff."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accord.lib.views import needs, staff_required

from . import outbox
from .models import OutgoingMail

S = OutgoingMail.Status


@staff_required
@needs("desk.view_outgoingmail")
def outbox_page(request: HttpRequest) -> HttpResponse:
    """What is waiting or failed, the oldest first; the sent ones of the last day are only counted."""
    rows = (OutgoingMail.objects.exclude(status=S.SENT).select_related("message__ticket", "channel")
            .order_by("status", "next_attempt_at", "id")[:500])
    since = timezone.now() - dt.timedelta(days=1)
    sent = OutgoingMail.objects.filter(status=S.SENT, sent_at__gte=since).count()
    return render(request, "desk/outbox.html", {"rows": rows, "sent_today": sent, "now": timezone.now()})


@staff_required
@needs("desk.change_outgoingmail")
@require_POST
def outbox_retry(request: HttpRequest) -> HttpResponse:
    """Retry the chosen mails now (staff): due at once, and tried right after this request commits."""
    pks = [int(v) for v in request.POST.getlist("mail") if v.isdigit()]
    if not pks:
        messages.error(request, "Choose at least one message to retry.")
        return redirect("desk:outbox")
    with transaction.atomic():
        count = outbox.retry_now(pks)
        transaction.on_commit(lambda: [outbox.deliver(pk) for pk in pks])
    messages.success(request, f"{count} message(s) queued to be sent again now.")
    return redirect("desk:outbox")
