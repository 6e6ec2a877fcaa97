"""What changed in the queue since the page was drawn: new tickets and breaches, for its live region.

The queue page remembers the newest ticket and the newest breach it showed (ids, not instants: a ticket
imported from a mailbox can carry an older date, and a wall clock can jump) and asks this view every few
seconds what came after them. The page announces the answer in a polite live region and offers a reload; it
never rewrites the table under the agent's focus, and it announces nothing when nothing changed, so a screen
reader hears events, not a timer (docs/accessibility.md).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from accord.lib.views import needs, staff_required

from .models import ClockEvent, Ticket

LIMIT = 20  # the most of each kind one answer lists; the page says "and N more"


def cursor() -> dict[str, int]:
    """The newest ticket and breach now: where a freshly drawn queue page starts listening."""
    newest = Ticket.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    breach = ClockEvent.objects.filter(kind="breach").order_by("-pk").values_list("pk", flat=True).first() or 0
    return {"ticket": newest, "breach": breach}


def poll_seconds() -> float:
    return float(getattr(settings, "ACCORD_DESK_LIVE_POLL", 15))


def _after(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name, "")
    return int(raw) if raw.isdigit() else None


@require_GET
@staff_required
@needs("desk.view_ticket")
def changes(request: HttpRequest) -> JsonResponse:
    """New open tickets with id > ?ticket= and breaches with event id > ?breach=, oldest first."""
    after_ticket, after_breach = _after(request, "ticket"), _after(request, "breach")
    if after_ticket is None or after_breach is None:
        return JsonResponse({"error": "bad_request", "detail": "ticket and breach must be non-negative integers"},
                            status=400)
    # The cursor first, and the lists bounded by it: a ticket saved between the two queries is told next time.
    now = cursor()
    upto_ticket, upto_breach = max(now["ticket"], after_ticket), max(now["breach"], after_breach)
    tickets = (Ticket.objects.filter(pk__gt=after_ticket, pk__lte=upto_ticket, is_open=True)
               .select_related("account").order_by("pk"))
    breaches = (ClockEvent.objects.filter(kind="breach", pk__gt=after_breach, pk__lte=upto_breach)
                .select_related("clock__ticket").order_by("pk"))
    new = [
        {"id": t.pk, "reference": t.reference, "subject": t.subject,
         "account": t.account.name if t.account else "", "url": reverse("desk:ticket", args=[t.pk])}
        for t in tickets[:LIMIT]
    ]
    breached = [
        {"id": e.pk, "reference": e.clock.ticket.reference, "clock": e.clock.kind.replace("_", " "),
         "url": reverse("desk:ticket", args=[e.clock.ticket_id])}
        for e in breaches[:LIMIT]
    ]
    return JsonResponse({
        "new": new, "new_total": tickets.count() if len(new) == LIMIT else len(new),
        "breached": breached, "breached_total": breaches.count() if len(breached) == LIMIT else len(breached),
        "cursor": {"ticket": upto_ticket, "breach": upto_breach},
    })
