"""The demo company: Voyager Travel, a corporate travel agency, and a few hundred of its corporate clients.

A short script over each app's own demo data: the manifest (`accord/agreements/fixtures/demo.yaml`: calendars,
tiers, services, agreements, policies), then customers (`accord.customers.demo`), their API keys
(`accord.catalog.demo`), a day of tickets (`accord.desk.demo`) and orders with the insight computed from them
(`accord.insight.demo`). Everything is drawn from one seeded random generator, so the same seed gives the same
company.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accord.access.roles import grant
from accord.agreements.models import Agreement
from accord.catalog import demo as catalog_demo
from accord.catalog.models import Service
from accord.customers import demo as customers_demo
from accord.customers.models import Account, Tier
from accord.desk import demo as desk_demo
from accord.insight.demo import seed_orders
from accord.lib.manifest import apply_manifest

MANIFEST = Path(__file__).resolve().parents[1] / "agreements" / "fixtures" / "demo.yaml"
DEMO_USER = "demo"
MANAGERS = ("ingrid", "kofi", "maria")
# The seed's phases, for a progress bar: the fixed ones around one tier evaluation per point in time.
STEPS = 7 + len(customers_demo.HISTORY_DAYS) + 1


@dataclass
class DemoSummary:
    """What the seed created."""

    accounts: int
    contacts: int
    commitments: int
    per_tier: dict[str, int]
    manifest: str
    services: int = 0
    agreements: int = 0
    credentials: int = 0
    overrides: int = 0
    tickets: int = 0
    demo_user_created: bool = True


def seed(accounts: int = 300, rng_seed: int = 7, progress: Callable[[str], None] | None = None) -> DemoSummary:
    """Create the demo company in a database without accounts; deterministic for a given seed.

    Only the API keys differ between two runs with the same seed: they are secrets, drawn from the OS.
    `progress` is called with a label as each of the STEPS phases starts.
    """
    if accounts < 1:
        raise ValueError("the demo needs at least one account")
    if Account.objects.exists():
        raise ValueError("accounts exist already; the demo fills an empty database")
    step = progress or (lambda label: None)
    rng = random.Random(rng_seed)
    now = timezone.now()
    with desk_demo.mail_stays_local(), transaction.atomic():
        step("manifest")
        manifest = apply_manifest(MANIFEST.read_text(encoding="utf-8"), source=str(MANIFEST)).summary()
        demo, created_user = _users()
        managers = list(get_user_model().objects.filter(username__in=MANAGERS).order_by("username"))
        step("accounts")
        clients = customers_demo.accounts(rng, accounts, managers, now)
        step("commitments")
        n_commitments = customers_demo.commitments(clients)
        step("contacts")
        n_contacts = customers_demo.contacts(rng, clients)
        rules = list(Tier.objects.order_by("rank"))
        moments = [now - dt.timedelta(days=d) for d in customers_demo.HISTORY_DAYS] + [now]
        overrides = customers_demo.history(clients, rules, moments, demo, step)
        step("overrides")
        overrides += customers_demo.current_overrides(clients, rules, moments, demo)
        step("API keys")
        n_credentials = catalog_demo.credentials(rng, [c.account for c in clients], now)
        step("tickets")
        tickets = desk_demo.tickets(rng, [c.account for c in clients], demo)
        seed_orders([c.account for c in clients], rng)  # and the insight pages' fit, topics and health
    per_tier = {t.name: t.accounts.count() for t in Tier.objects.order_by("rank")}
    untiered = Account.objects.filter(tier__isnull=True).count()
    if untiered:
        per_tier["no tier"] = untiered
    return DemoSummary(
        accounts=len(clients), contacts=n_contacts, commitments=n_commitments, per_tier=per_tier, manifest=manifest,
        services=Service.objects.count(), agreements=Agreement.objects.count(), credentials=n_credentials,
        overrides=overrides, tickets=tickets, demo_user_created=created_user,
    )


def _users() -> tuple[Any, bool]:
    """The demo/demo superuser (an existing `demo` keeps its password) and three account managers (role manager)."""
    user_model = get_user_model()
    demo = user_model.objects.filter(username=DEMO_USER).first()
    created = demo is None
    if demo is None:
        demo = user_model.objects.create_superuser(DEMO_USER, "demo@voyager.example", "demo")
    for name in MANAGERS:
        if not user_model.objects.filter(username=name).exists():
            manager = user_model.objects.create_user(name, f"{name}@voyager.example", is_staff=True)
            grant(manager, "manager")
    return demo, created
