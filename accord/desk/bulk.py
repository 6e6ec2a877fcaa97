"""Bulk changes from the queue: one change on many tickets, each made by the action a single change uses.

Status and priority go through `actions.do_set_status` / `actions.do_set_priority`, so the SLA clocks settle
exactly as for one ticket. All run in one transaction, each ticket in a savepoint of its own: a ticket the rules
refuse (a closed ticket cannot change) keeps its state, is named in the report with the reason, and the others
change. Nothing is half-applied silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from . import actions
from .forms import split_assign
from .models import SupportGroup, Tag, Ticket


@dataclass
class Report:
    """What a bulk change did: the references changed, unchanged (already so) and refused (with why)."""

    what: str
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    def done(self) -> str:
        text = f"{self.what}: {len(self.changed)} ticket{'s' if len(self.changed) != 1 else ''} changed ({', '.join(self.changed)})."
        if self.unchanged:
            text += f" Already so: {', '.join(self.unchanged)}."
        return text

    def refusals(self) -> str:
        return f"{self.what}: refused for " + "; ".join(f"{ref} ({why})" for ref, why in self.refused) + "."


def assign(ticket: Ticket, value: str) -> bool:
    """Assign a ticket to an agent or a group ('assignee:<id>', 'group:<id>', or ':none' to clear); True if it
    changed. The assignee must hold the agent or manager role."""
    from .filters import agents

    kind, pk = split_assign(value)
    if kind == "assignee":
        user = None if pk is None else agents().filter(pk=pk).first()
        if pk is not None and user is None:
            raise ValidationError({"assignee": "That user is not an agent."})
        if ticket.assignee_id == (user.pk if user else None):
            return False
        Ticket.objects.filter(pk=ticket.pk).update(assignee=user)
        ticket.assignee = user
        return True
    if kind == "group":
        group = None if pk is None else SupportGroup.objects.filter(pk=pk).first()
        if pk is not None and group is None:
            raise ValidationError({"group": "That group does not exist."})
        if ticket.group_id == (group.pk if group else None):
            return False
        Ticket.objects.filter(pk=ticket.pk).update(group=group)
        ticket.group = group
        return True
    raise ValidationError({"assign": f"“{value}” is not an agent or a group."})


def describe(change: str, tag: str) -> str:
    kind, _, value = change.partition(":")
    if kind == "tag":
        return f"Tag “{tag}” added"
    if kind in ("assignee", "group"):
        _kind, pk = split_assign(change)
        if pk is None:
            return "Unassigned" if kind == "assignee" else "Group cleared"
        if kind == "assignee":
            user = get_user_model().objects.filter(pk=pk).first()
            return f"Assigned to {user.get_username() if user else pk}"
        group = SupportGroup.objects.filter(pk=pk).first()
        return f"Assigned to group {group.name if group else pk}"
    return f"{kind.capitalize()} set to {value}"


def change_one(ticket: Ticket, change: str, tag: str) -> bool:
    """One ticket, one change; True if it changed, ValidationError if the rules refuse it."""
    kind, _, value = change.partition(":")
    if kind == "status":
        if ticket.status == value:
            return False
        actions.do_set_status(ticket, value)
        return True
    if kind == "priority":
        if ticket.priority == value:
            return False
        actions.do_set_priority(ticket, value)
        return True
    if kind == "tag":
        if ticket.tags.filter(name=tag).exists():
            return False
        ticket.tags.add(Tag.objects.get_or_create(name=tag)[0])
        return True
    return assign(ticket, change)


def apply(data: dict[str, Any], user: Any) -> Report:
    """Apply a valid BulkForm's change to its tickets (see the module's doc)."""
    change, tag = data["change"], data.get("tag") or ""
    report = Report(describe(change, tag))
    with transaction.atomic():
        for ticket in sorted(data["tickets"], key=lambda t: t.pk):
            try:
                with transaction.atomic():
                    changed = change_one(ticket, change, tag)
            except ValidationError as e:
                report.refused.append((ticket.reference, " ".join(e.messages)))
            else:
                (report.changed if changed else report.unchanged).append(ticket.reference)
    return report
