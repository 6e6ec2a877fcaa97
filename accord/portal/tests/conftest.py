"""Two customer organisations, each with a portal admin, a plain portal user, tickets, a note, a file, a credit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from accord.agreements.models import Agreement
from accord.agreements.testing import always_agreement
from accord.catalog.models import ApiCredential
from accord.customers.models import Account, Contact, ContactPoint, Tier
from accord.desk.actions import Inbound, do_add_note, do_open_ticket
from accord.desk.models import Attachment, Ticket
from accord.portal.models import PortalUser
from accord.reports.models import Credit

PASSWORD = "a portal pass phrase"


@dataclass
class Org:
    account: Account
    admin: PortalUser
    user: PortalUser
    ticket: Ticket  # opened by `user`
    admin_ticket: Ticket  # opened by `admin`
    attachment: Attachment
    credit: Credit
    word: str  # a word only this organisation's tickets hold
    key: ApiCredential


def portal_user(account: Account, name: str, email: str, admin: bool = False) -> PortalUser:
    contact = Contact.objects.create(account=account, name=name)
    ContactPoint.objects.create(contact=contact, kind="email", value=email, primary=True)
    user = PortalUser(contact=contact, email=email, is_admin=admin)
    user.set_password(PASSWORD)
    user.save()
    return user


def org(tag: str, tier: Tier, agreement: Agreement, agent: User) -> Org:
    account = Account.objects.create(name=f"{tag.title()} Travel", external_id=tag.upper(), tier=tier)
    admin = portal_user(account, f"{tag} admin", f"admin@{tag}.example", admin=True)
    user = portal_user(account, f"{tag} user", f"user@{tag}.example")
    word = f"zebra{tag}"
    ticket = do_open_ticket(Inbound(channel="web", subject=f"{tag} bookings fail", body_text=f"the {word} fails",
                                    from_address=user.email), contact=user.contact, account=account)
    do_add_note(ticket, agent, f"internal: {tag} is a difficult customer")
    attachment = Attachment.objects.create(message=ticket.first_message, filename=f"{tag}.log",  # type: ignore[attr-defined]
                                           size=11, data=f"{tag} secrets".encode()[:11])
    admin_ticket = do_open_ticket(Inbound(channel="web", subject=f"{tag} invoice question", body_text="hello",
                                          from_address=admin.email), contact=admin.contact, account=account)
    now = timezone.now()
    credit = Credit.objects.create(account=account, agreement=agreement, objective="availability",
                                   period=f"{now.year - 1}-0{len(tag) % 9 + 1}", start=now, end=now, target=Decimal("99.9"),
                                   valid_events=10, bad_events=5, percent=Decimal(10), amount=Decimal("321.09"),
                                   currency="EUR", claim_until=now + dt.timedelta(days=30), computed_at=now)
    key, _secret = ApiCredential.issue(account, f"{tag} integration")
    return Org(account, admin, user, ticket, admin_ticket, attachment, credit, word, key)


@pytest.fixture
def orgs(db: None) -> tuple[Org, Org]:
    agreement = always_agreement("gold", *({"name": f"{kind}-normal", "kind": kind, "target": minutes,
                                            "priority": "normal"}
                                           for kind, minutes in (("first_response", 60), ("next_response", 120),
                                                                 ("resolution", 960))))
    tier = agreement.tier
    assert tier is not None
    agent = User.objects.create_user("agent", "agent@accord.example", "pw", is_staff=True)
    return org("alpha", tier, agreement, agent), org("beta", tier, agreement, agent)


def signed_in(user: PortalUser) -> Client:
    client = Client()
    answer = client.post("/portal/login/", {"email": user.email, "password": PASSWORD})
    assert answer.status_code == 302, answer.content.decode()[:500]
    return client
