"""Retention: what Accord deletes once it is no longer needed (`accord privacy purge`, run daily).

Each rule deletes one kind of data past its age; the SLA statistics never depend on what goes: tickets, clocks
and message texts stay, so reports and credits are unchanged. The ages come from the environment (days):

| rule | what goes | default |
|---|---|---|
| raw-mail | the raw source (the e-mail as received) of messages on tickets done for longer than | 365 |
| attachments | the contents of attachments on tickets done for longer than | 730 |
| throttle | sign-in and form throttling strikes older than | 1 |
| sign-in-links | portal sign-in links expired or used longer ago than | 1 |
| sessions | expired sessions (Django's own) | — |
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accord.access.models import Strike
from accord.desk.models import Attachment, Message, RawMessage, Ticket
from accord.portal.models import SignInLink


def days(name: str, default: float) -> dt.timedelta:
    return dt.timedelta(days=float(os.environ.get(name, default)))


@dataclass
class Rule:
    name: str
    what: str
    run: Callable[[dt.datetime, bool], int]  # (now, dry_run) -> rows affected (or that would be)


def _done_before(cutoff: dt.datetime) -> Q:
    return Q(ticket__status__in=list(Ticket.DONE_STATUSES)) & (
        Q(ticket__closed_at__lt=cutoff) | Q(ticket__closed_at__isnull=True, ticket__solved_at__lt=cutoff))


def raw_mail(now: dt.datetime, dry: bool) -> int:
    cutoff = now - days("ACCORD_RETAIN_RAW_MAIL_DAYS", 365)
    old = Message.objects.filter(_done_before(cutoff), raw__isnull=False)
    raw_ids = set(old.values_list("raw_id", flat=True))
    if dry:
        return len(raw_ids)
    with transaction.atomic():
        old.update(raw=None)
        deleted, _ = RawMessage.objects.filter(pk__in=raw_ids, messages__isnull=True).delete()
    return deleted


def attachments(now: dt.datetime, dry: bool) -> int:
    cutoff = now - days("ACCORD_RETAIN_ATTACHMENT_DAYS", 730)
    old = Attachment.objects.filter(Q(message__in=Message.objects.filter(_done_before(cutoff))), size__gt=0)
    return old.count() if dry else old.update(data=b"", size=0)


def throttle(now: dt.datetime, dry: bool) -> int:
    old = Strike.objects.filter(at__lt=now - days("ACCORD_RETAIN_THROTTLE_DAYS", 1))
    return old.count() if dry else old.delete()[0]


def sign_in_links(now: dt.datetime, dry: bool) -> int:
    cutoff = now - days("ACCORD_RETAIN_SIGNIN_LINK_DAYS", 1)
    old = SignInLink.objects.filter(Q(expires_at__lt=cutoff) | Q(used_at__lt=cutoff))
    return old.count() if dry else old.delete()[0]


def sessions(now: dt.datetime, dry: bool) -> int:
    old = Session.objects.filter(expire_date__lt=now)
    return old.count() if dry else old.delete()[0]


RULES = [
    Rule("raw-mail", "raw e-mails of tickets done long ago", raw_mail),
    Rule("attachments", "attachment contents of tickets done long ago", attachments),
    Rule("throttle", "throttling strikes", throttle),
    Rule("sign-in-links", "spent or expired portal sign-in links", sign_in_links),
    Rule("sessions", "expired sessions", sessions),
]


def purge(now: dt.datetime | None = None, *, dry_run: bool = False,
          progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Run every rule; rows deleted (or that would be) per rule."""
    now = now or timezone.now()
    out = {}
    for rule in RULES:
        out[rule.name] = rule.run(now, dry_run)
        if progress:
            progress(rule.name, out[rule.name])
    return out
