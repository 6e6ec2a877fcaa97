"""Desk personas: a platinum account under an agreement with support objectives on a London calendar."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from accord.agreements.models import Agreement, BusinessCalendar, Objective
from accord.customers.models import Account, Contact, ContactPoint, Tier

LONDON = dt.timezone(dt.timedelta(0))  # winter in London: UTC+0


def at(text: str) -> dt.datetime:
    """An aware instant from 'YYYY-MM-DD HH:MM' in UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@dataclass
class Desk:
    """The cast of the desk tests."""

    calendar: BusinessCalendar
    platinum: Tier
    gold: Tier
    agreement: Agreement
    gold_agreement: Agreement
    account: Account
    contact: Contact
    agent: User


def support_objectives(agreement: Agreement, first: dict[str, int], nxt: dict[str, int], res: dict[str, int]) -> None:
    for kind, targets in (("first_response", first), ("next_response", nxt), ("resolution", res)):
        for priority, minutes in targets.items():
            Objective.objects.create(
                agreement=agreement, name=f"{kind}-{priority}", kind=kind, target=Decimal(minutes), priority=priority
            )


@pytest.fixture
def desk(db: None) -> Desk:
    calendar = BusinessCalendar.objects.create(
        name="london-office",
        timezone="Europe/London",
        hours={d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    )
    platinum = Tier.objects.create(name="platinum", rank=1)
    gold = Tier.objects.create(name="gold", rank=2)
    agreement = Agreement.objects.create(
        name="platinum-sla", tier=platinum, effective_from=dt.date(2026, 1, 1), calendar=calendar
    )
    support_objectives(
        agreement,
        first={"urgent": 30, "normal": 60, "low": 240},
        nxt={"urgent": 60, "normal": 120, "low": 480},
        res={"urgent": 240, "normal": 960, "low": 2400},
    )
    gold_agreement = Agreement.objects.create(
        name="gold-sla", tier=gold, effective_from=dt.date(2026, 1, 1), calendar=calendar
    )
    support_objectives(gold_agreement, first={"normal": 240}, nxt={"normal": 480}, res={"normal": 2400})
    account = Account.objects.create(name="Globetrotter Ltd", external_id="GLOBE", tier=platinum)
    contact = Contact.objects.create(name="Grace Hopper", account=account)
    ContactPoint.objects.create(contact=contact, kind="email", value="grace@globetrotter.example", primary=True)
    ContactPoint.objects.create(contact=contact, kind="phone", value="+442079460000")
    agent = User.objects.create_user("agent", "agent@accord.example", "agent-password", is_staff=True)
    return Desk(calendar, platinum, gold, agreement, gold_agreement, account, contact, agent)
