"""The demo company: Voyager Travel, a corporate travel agency, and a few hundred of its corporate clients."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accord.agreements.manifest import apply_manifest
from accord.catalog.models import ApiCredential
from accord.customers import tiers
from accord.customers.actions import do_override_tier
from accord.customers.models import Account, Commitment, Contact, ContactPoint, Tier

MANIFEST = Path(__file__).resolve().parents[1] / "agreements" / "fixtures" / "demo.yaml"

PREFIXES = ["Nord", "Atlas", "Blue", "Silver", "Green", "Polar", "Orbit", "Summit", "Harbor", "Crown", "Vertex", "Aurora",
            "Pioneer", "Meridian", "Cobalt", "Falcon", "Granite", "Lumen", "Nimbus", "Quartz", "Redwood", "Sterling"]
CORES = ["Pharma", "Logistics", "Energy", "Bank", "Consulting", "Motors", "Foods", "Telecom", "Insurance", "Retail",
         "Chemicals", "Media", "Software", "Aerospace", "Textiles", "Engineering", "Health", "Shipping"]
SUFFIXES = ["AG", "SA", "Ltd", "GmbH", "Inc", "BV", "plc", "SpA", "AB", "Group"]
ZONES = ["Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Madrid", "Europe/Stockholm", "Europe/Zurich",
         "America/New_York", "America/Chicago", "America/Sao_Paulo", "Asia/Singapore", "Asia/Tokyo", "Asia/Dubai"]
FIRST = ["Ada", "Ben", "Chloé", "Dario", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas", "Kavya", "Lars", "Maya",
         "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yara", "Zoe"]
LAST = ["Andersen", "Bianchi", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Horvat", "Ivanova", "Jansen",
        "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Rossi", "Schmidt", "Tanaka", "Weber"]
TITLES = ["Travel manager", "CFO", "Office manager", "Procurement lead", "Executive assistant", "HR director"]


@dataclass
class DemoSummary:
    """What the seed created."""

    accounts: int
    contacts: int
    per_tier: dict[str, int]
    manifest: str
    tickets: int = 0


def seed(accounts: int = 300, rng_seed: int = 7) -> DemoSummary:
    """Create the demo company; deterministic for a given seed."""
    rng = random.Random(rng_seed)
    today = timezone.localdate()
    year_start, year_end = dt.date(today.year, 1, 1), dt.date(today.year, 12, 31)
    with transaction.atomic():
        manifest = apply_manifest(MANIFEST.read_text(), source=str(MANIFEST)).summary()
        user_model = get_user_model()
        demo = user_model.objects.filter(username="demo").first()
        if demo is None:
            demo = user_model.objects.create_superuser("demo", "demo@voyager.example", "demo")
        managers = []
        for name in ("maria", "kofi", "ingrid"):
            user = user_model.objects.filter(username=name).first() or user_model.objects.create_user(
                name, f"{name}@voyager.example", is_staff=True
            )
            managers.append(user)
        used_names: set[str] = set()
        created: list[Account] = []
        for i in range(accounts):
            while True:
                name = f"{rng.choice(PREFIXES)} {rng.choice(CORES)} {rng.choice(SUFFIXES)}"
                if name not in used_names:
                    used_names.add(name)
                    break
            # Pareto-distributed revenue: a few clients bring most of it (the 80/20 the insight pages show).
            revenue = Decimal(int(60_000 * rng.paretovariate(1.16))).quantize(Decimal(1))
            revenue = min(revenue, Decimal(25_000_000))
            cost = (revenue * Decimal(rng.uniform(0.35, 0.9))).quantize(Decimal("0.01"))
            created.append(
                Account(
                    external_id=f"VOY-{1000 + i}",
                    name=name,
                    kind=Account.Kind.ORGANISATION,
                    timezone=rng.choice(ZONES),
                    revenue_12m=revenue,
                    cost_to_serve_12m=cost,
                    owner=rng.choice(managers),
                )
            )
        Account.objects.bulk_create(created)
        commitments = []
        for acct in created:
            # Clients commit a share of their expected bookings in advance; bigger clients commit more.
            share = rng.uniform(0.2, 0.6)
            amount = (acct.revenue_12m * Decimal(share)).quantize(Decimal(1))
            bookings = max(1, int(amount / Decimal(rng.randint(400, 900))))
            commitments.append(
                Commitment(account=acct, period_start=year_start, period_end=year_end, amount=amount,
                           volume=bookings, unit="bookings", note="annual booking commitment")
            )
        Commitment.objects.bulk_create(commitments)
        n_contacts = 0
        used_addresses: set[str] = set()
        for acct in created:
            domain = acct.name.split()[0].lower() + acct.name.split()[1].lower() + ".example"
            for _ in range(rng.randint(1, 3)):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                email = f"{first}.{last}@{domain}".lower().replace("é", "e").replace("í", "i")
                if email in used_addresses:
                    continue
                used_addresses.add(email)
                contact = Contact.objects.create(
                    account=acct, name=f"{first} {last}", title=rng.choice(TITLES),
                    external_id=f"{acct.external_id}-C{n_contacts}",
                )
                ContactPoint.objects.create(contact=contact, kind="email", value=email, primary=True)
                phone = f"+{rng.choice(['44', '33', '49', '1', '65'])}{rng.randint(100000000, 999999999)}"
                if phone not in used_addresses:
                    used_addresses.add(phone)
                    ContactPoint.objects.create(contact=contact, kind="phone", value=phone, primary=True)
                n_contacts += 1
        # Last year, before this year's commitments, tiers came from revenue alone: a history with upgrades.
        tiers.recompute(now=timezone.now() - dt.timedelta(days=400))
        tiers.recompute()
        biggest = sorted(created, key=lambda a: a.revenue_12m, reverse=True)
        for acct in biggest[:5]:
            ApiCredential.issue(acct, "booking integration")
        gold, platinum = Tier.objects.filter(name="gold").first(), Tier.objects.filter(name="platinum").first()
        if gold and platinum:
            rising = next((a for a in created if a.tier_id == gold.pk), None)
            if rising is not None:
                do_override_tier(rising, platinum, "Strategic pilot: new regional contract signed",
                                 timezone.now() + dt.timedelta(days=90), demo)
        tickets = _demo_tickets(rng, created)
    per_tier = {t.name: t.accounts.count() for t in Tier.objects.order_by("rank")}
    return DemoSummary(len(created), n_contacts, per_tier, manifest, tickets)


SUBJECTS = [
    ("Booking for the sales kick-off failed", "urgent"), ("Change of travel dates for our team", "normal"),
    ("Invoice for October bookings", "low"), ("Fare search is very slow this morning", "high"),
    ("Cancel booking for next week", "normal"), ("Seat upgrade for our CEO", "high"),
    ("Hotel missing from the itinerary", "normal"), ("Refund for the cancelled flight", "normal"),
]


def _demo_tickets(rng: random.Random, accounts: list[Account]) -> int:
    """A desk with a day of work in it: tickets from several channels, some answered, some waiting."""
    from accord.desk import actions
    from accord.desk.actions import Inbound

    agent = get_user_model().objects.get(username="demo")
    now = timezone.now()
    accounts = list(Account.objects.filter(pk__in=[a.pk for a in accounts]).select_related("tier"))  # fresh tiers
    count = 0
    for i in range(40):
        account = rng.choice(accounts[:120] if i % 3 else sorted(accounts, key=lambda a: -a.revenue_12m)[:10])
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
