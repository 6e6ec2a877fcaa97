"""Demo data of the desk: a day of work from several channels, some answered, some waiting on the customer."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.test.utils import override_settings
from django.utils import timezone

from accord.customers.models import Account

from . import actions
from .actions import Inbound


@contextlib.contextmanager
def mail_stays_local() -> Iterator[None]:
    """Demo replies go to files under var/sent-mail, never to an SMTP server (their addresses are made up)."""
    if settings.EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend":
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend"):
            yield
    else:
        yield


SUBJECTS = [
    ("Booking for the sales kick-off failed", "urgent"), ("Change of travel dates for our team", "normal"),
    ("Invoice for October bookings", "low"), ("Fare search is very slow this morning", "high"),
    ("Cancel booking for next week", "normal"), ("Seat upgrade for our CEO", "high"),
    ("Hotel missing from the itinerary", "normal"), ("Refund for the cancelled flight", "normal"),
]


def tickets(rng: random.Random, accounts: list[Account], agent: Any) -> int:
    """A desk with a day of work in it: tickets from several channels, some answered, some waiting."""
    now = timezone.now()
    first = [a.pk for a in accounts[:120]]
    biggest = [a.pk for a in sorted(accounts, key=lambda a: -a.revenue_12m)[:10]]
    fresh = Account.objects.select_related("tier").in_bulk(first + biggest)  # tiers as the history left them
    count = 0
    for i in range(40):
        account = fresh[rng.choice(first if i % 3 else biggest)]
        contact = account.contacts.first()
        if contact is None:
            continue
        subject, priority = rng.choice(SUBJECTS)
        channel = rng.choice(["email", "email", "web", "phone", "social"])
        address = contact.phones[0] if channel == "phone" and contact.phones else contact.emails[0]
        ticket = actions.do_open_ticket(
            Inbound(channel="phone" if address.startswith("+") else channel, subject=subject,
                    body_text="Hello, could you help us with this please?", from_address=address,
                    priority=priority, received_at=now - dt.timedelta(minutes=rng.randint(5, 3 * 24 * 60))),
            contact=contact, account=account,
        )
        count += 1
        if i % 4 == 0:
            actions.do_reply(ticket, agent, "Thank you, we are looking into it.", at=timezone.now())
        if i % 7 == 0:
            actions.do_set_status(ticket, "pending")
    return count
