"""Parts of the ticket page added by the ticket-level features: canned replies, presence, merge and link."""

from __future__ import annotations

from typing import Any

from django import template

from .. import canned, presence
from ..models import Ticket

register = template.Library()


@register.inclusion_tag("desk/_canned_picker.html", takes_context=True)
def canned_picker(context: dict[str, Any], ticket: Ticket) -> dict[str, Any]:
    """A select of the canned replies, filled for this ticket, and an Insert button (canned.js)."""
    user = context["request"].user
    replies = canned.for_ticket(ticket, user) if user.has_perm("desk.view_cannedreply") else []
    return {"replies": replies}


@register.inclusion_tag("desk/_ticket_tools.html", takes_context=True)
def ticket_tools(context: dict[str, Any], ticket: Ticket) -> dict[str, Any]:
    """The collision notice's live region, and the merge and link-requester actions."""
    user = context["request"].user
    return {"ticket": ticket, "perms": context.get("perms"), "poll": presence.poll_seconds(),
            "can_change": user.has_perm("desk.change_ticket"),
            "tags": list(ticket.tags.values_list("name", flat=True))}
