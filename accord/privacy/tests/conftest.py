"""A person with a trace in every app: tickets (with a raw e-mail, a file, a reply, a note), consent, suppression,
portal sign-in, an audit entry and a throttling strike; and a colleague who must stay untouched."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from accord.access.audit import record
from accord.access.models import Strike
from accord.agreements.testing import always_agreement
from accord.customers.models import Account, Contact, ContactPoint
from accord.desk.actions import Inbound, do_add_note, do_open_ticket, do_reply
from accord.desk.models import Attachment, RawMessage
from accord.outreach import consent as consents
from accord.outreach.models import Consent, Purpose
from accord.portal.models import PortalUser

NAME, EMAIL, PHONE = "Grace Hopper", "grace.hopper@globetrotter.example", "+442079460000"
PASSPORT = "PX-778899"  # a custom field's value: personal data no sweep term would find
TERMS = [NAME.lower(), EMAIL, PHONE, PHONE[1:], PASSPORT.lower()]


@pytest.fixture
def grace() -> Contact:
    agreement = always_agreement("gold", {"name": "first", "kind": "first_response", "target": 60, "priority": "normal"})
    account = Account.objects.create(name="Globetrotter Ltd", external_id="GLOBE", tier=agreement.tier)
    contact = Contact.objects.create(account=account, name=NAME, external_id="crm-grace",
                                     custom_fields={"passport": PASSPORT, "vip": True})
    ContactPoint.objects.create(contact=contact, kind="email", value=EMAIL, primary=True)
    ContactPoint.objects.create(contact=contact, kind="phone", value=PHONE)
    other = Contact.objects.create(account=account, name="Alan Turing")
    ContactPoint.objects.create(contact=other, kind="email", value="alan@globetrotter.example")
    agent = User.objects.create_user("agent", "agent@accord.example", "pw", is_staff=True)
    raw = RawMessage.objects.create(sha256="0" * 64, data=f"From: {NAME} <{EMAIL}>\r\n\r\nCall {PHONE}".encode(),
                                    size=60)
    ticket = do_open_ticket(Inbound(channel="email", subject=f"Refund for {NAME}", from_address=EMAIL,
                                    from_name=NAME, body_text=f"Please call me on {PHONE[1:]}. {NAME}", raw=raw),
                            contact=contact, account=account)
    Attachment.objects.create(message=ticket.first_message, filename="passport.pdf", size=8,  # type: ignore[attr-defined]
                              data=b"%PDF-1.4")
    do_reply(ticket, agent, "Hi Grace, we are on it.")
    do_add_note(ticket, agent, f"{NAME} called from {PHONE}")
    purpose = Purpose.objects.create(name="news", title="Product news")
    Consent.objects.create(contact=contact, purpose=purpose, address=EMAIL, source="import")
    consents.suppress(EMAIL, "complaint", f"{NAME} asked")
    PortalUser.objects.create(contact=contact, email=EMAIL)
    record(agent, "update", contact, summary=f"changed {NAME}'s phone to {PHONE}")
    record(agent, "update", contact, changes={"custom_fields": [{}, {"passport": PASSPORT, "vip": True}]})
    Strike.objects.create(key=f"portal:user:{EMAIL}")
    return contact
