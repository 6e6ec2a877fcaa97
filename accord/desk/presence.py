"""Who else has a ticket open: a small presence record per agent and ticket, refreshed by the ticket page.

The page posts every few seconds (`ACCORD_DESK_PRESENCE_POLL`, 10 s) whether the agent is viewing or typing a
reply, and gets back the other agents seen within `ACCORD_DESK_PRESENCE_TTL` (30 s): a closed tab drops out on
its own. As with the queue's live changes (live.py), no websockets: the page announces what changed in a polite
live region, and nothing when nothing changed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.http import require_POST

from accord.lib.views import needs, staff_required

from .models import Presence, Ticket


def ttl_seconds() -> float:
    return float(getattr(settings, "ACCORD_DESK_PRESENCE_TTL", 30))


def poll_seconds() -> float:
    return float(getattr(settings, "ACCORD_DESK_PRESENCE_POLL", 10))


def seen(ticket: Ticket, user: Any, replying: bool) -> None:
    """Note that `user` has the ticket open (and whether they are writing a reply) now."""
    now = timezone.now()
    updated = Presence.objects.filter(ticket=ticket, user=user).update(replying=replying, seen_at=now)
    if not updated:
        try:
            with transaction.atomic():
                Presence.objects.create(ticket=ticket, user=user, replying=replying, seen_at=now)
        except IntegrityError:  # the same agent's other tab got there first
            Presence.objects.filter(ticket=ticket, user=user).update(replying=replying, seen_at=now)


def others(ticket: Ticket, user: Any) -> list[dict[str, object]]:
    """The other agents who had the ticket open within the TTL, by name."""
    since = timezone.now() - dt.timedelta(seconds=ttl_seconds())
    rows = (Presence.objects.filter(ticket=ticket, seen_at__gte=since).exclude(user=user)
            .select_related("user").order_by("user__username"))
    return [{"name": p.user.get_full_name() or p.user.get_username(), "replying": p.replying} for p in rows]


def sentence(people: list[dict[str, object]]) -> str:
    """"ann is also viewing; bob is also replying" — what the page says (empty when alone)."""
    return "; ".join(f"{p['name']} is also {'replying' if p['replying'] else 'viewing'}" for p in people)


@require_POST
@staff_required
@needs("desk.view_ticket")
def ping(request: HttpRequest, pk: int) -> JsonResponse:
    """POST replying=0|1: record this agent on the ticket; answer who else is on it."""
    ticket = get_object_or_404(Ticket, pk=pk)
    raw = request.POST.get("replying", "0")
    if raw not in ("0", "1"):
        return JsonResponse({"error": "bad_request", "detail": "replying must be 0 or 1"}, status=400)
    seen(ticket, request.user, raw == "1")
    Presence.objects.filter(seen_at__lt=timezone.now() - dt.timedelta(seconds=ttl_seconds() * 20)).delete()
    people = others(ticket, request.user)
    return JsonResponse({"others": people, "text": sentence(people), "poll": poll_seconds()})
