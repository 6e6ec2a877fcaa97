"""Demo data of customers: a few hundred corporate clients of Voyager Travel, a European travel agency, with their
commitments, contacts and a tier history that the rules (and a few overrides) made over 18 months.

Revenue is Pareto-distributed, so the 80/20 holds; everything is drawn from the caller's seeded random generator,
so the same seed gives the same clients. `accord seed-demo` (accord/web/demo.py) composes this with the other
apps' demo data.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils import timezone
from django.utils.text import slugify

from accord.lib.db import bulk_update_rows

from . import tiers
from .actions import do_override_tier
from .models import Account, Commitment, Contact, ContactPoint, Tier, TierOverride

PREFIXES = [
    "Alpine", "Atlas", "Aurora", "Baltic", "Blue", "Cedar", "Cobalt", "Crown", "Delta", "Ember", "Falcon", "Fjord",
    "Granite", "Harbor", "Helix", "Iris", "Juniper", "Keystone", "Lakeside", "Lumen", "Meridian", "Mistral", "Nimbus",
    "Nord", "Northwind", "Oakridge", "Orbit", "Pacific", "Pioneer", "Polar", "Quartz", "Redwood", "Riviera",
    "Sapphire", "Sterling", "Summit", "Tundra", "Unity", "Vertex", "Zenith",
]
CORES = [
    "Aerospace", "Analytics", "Architects", "Bank", "Biotech", "Capital", "Chemicals", "Consulting", "Energy",
    "Engineering", "Foods", "Health", "Hotels", "Insurance", "Legal", "Logistics", "Media", "Mining", "Motors",
    "Pharma", "Publishing", "Renewables", "Retail", "Robotics", "Semiconductors", "Shipping", "Software", "Steel",
    "Telecom", "Textiles",
]


@dataclass(frozen=True)
class Region:
    """Where a client is: its time zone, phone numbering and the legal forms of companies there."""

    timezone: str
    calling_code: str
    national_digits: int
    legal_forms: tuple[str, ...]
    weight: int


# A European agency: most clients in Europe, the rest in the Americas and Asia.
REGIONS = [
    Region("Europe/London", "44", 10, ("Ltd", "plc"), 14),
    Region("Europe/Berlin", "49", 10, ("GmbH", "AG"), 12),
    Region("Europe/Paris", "33", 9, ("SA", "SAS"), 10),
    Region("Europe/Madrid", "34", 9, ("SL", "SA"), 6),
    Region("Europe/Amsterdam", "31", 9, ("BV", "NV"), 6),
    Region("Europe/Rome", "39", 10, ("SpA", "Srl"), 5),
    Region("Europe/Zurich", "41", 9, ("AG", "SA"), 5),
    Region("Europe/Stockholm", "46", 9, ("AB",), 4),
    Region("America/New_York", "1", 10, ("Inc", "LLC", "Corp"), 10),
    Region("America/Chicago", "1", 10, ("Inc", "LLC"), 5),
    Region("America/Toronto", "1", 10, ("Inc", "Ltd"), 3),
    Region("America/Sao_Paulo", "55", 11, ("Ltda", "SA"), 3),
    Region("Asia/Singapore", "65", 8, ("Pte Ltd",), 5),
    Region("Asia/Tokyo", "81", 10, ("KK",), 4),
    Region("Asia/Kolkata", "91", 10, ("Pvt Ltd",), 3),
    Region("Asia/Dubai", "971", 9, ("LLC", "FZE"), 3),
]
FIRST = [
    "Ada", "Aiko", "Ben", "Chloé", "Dario", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas", "Kavya", "Lars",
    "Léa", "Maya", "Nils", "Olga", "Pablo", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen",
    "Yara", "Zoe",
]
LAST = [
    "Andersen", "Bianchi", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Horvat", "Ivanova", "Jansen",
    "Kowalski", "Larsen", "Moreau", "Müller", "Novak", "Okafor", "Petrov", "Rao", "Rossi", "Schmidt", "Silva",
    "Tanaka", "Weber", "Yilmaz",
]
TITLES = ["Travel manager", "CFO", "Office manager", "Procurement lead", "Executive assistant", "HR director"]

# Revenue over 12 months is Pareto-distributed. The 80/20 exponent is log 5 / log 4 = 1.16, but a sample of a
# few hundred misses the far tail; with 1.0 the top fifth of the demo's accounts brings close to 80% of revenue.
PARETO_ALPHA = 1.0
REVENUE_FLOOR = 60_000
REVENUE_CAP = 30_000_000
# Tiers are re-evaluated at these ages (days before now) to give every account a history.
HISTORY_DAYS = (540, 365, 180)


@dataclass
class Client:
    """One generated account with its revenue path (oldest first) and its commitments by year."""

    account: Account
    region: Region
    revenues: list[Decimal]  # at each HISTORY_DAYS age, then now
    commitments: dict[int, Decimal]  # amount by calendar year
    average_booking: int


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _money(value: float) -> Decimal:
    return Decimal(str(round(value, 2))).quantize(Decimal("0.01"))


def _revenues(rng: random.Random, n: int) -> list[float]:
    """n Pareto draws, stratified so that even a small demo has its few very large clients."""
    draws = [max((i + rng.random()) / n, 1e-9) for i in range(n)]
    rng.shuffle(draws)
    revenues = [REVENUE_FLOOR * u ** (-1 / PARETO_ALPHA) for u in draws]
    # The far tail is cut to a plausible size for one client, without piling everyone there onto one figure.
    return [r if r <= REVENUE_CAP else REVENUE_CAP * rng.uniform(0.7, 1.0) for r in revenues]


def _unique_name(rng: random.Random, region: Region, used: set[str]) -> str:
    for _ in range(50):
        name = f"{rng.choice(PREFIXES)} {rng.choice(CORES)} {rng.choice(region.legal_forms)}"
        if name not in used:
            used.add(name)
            return name
    # Very large demos run out of combinations: number the rest.
    base, n = f"{rng.choice(PREFIXES)} {rng.choice(CORES)}", 2
    while f"{base} {n} {region.legal_forms[0]}" in used:
        n += 1
    name = f"{base} {n} {region.legal_forms[0]}"
    used.add(name)
    return name


def _unique_person(rng: random.Random, used: set[str]) -> str:
    for _ in range(50):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if name not in used:
            used.add(name)
            return name
    n = 2
    while f"{name} ({n})" in used:
        n += 1
    used.add(f"{name} ({n})")
    return f"{name} ({n})"


def _phone(rng: random.Random, region: Region) -> str:
    digits = region.national_digits
    return f"+{region.calling_code}{rng.randint(2 * 10 ** (digits - 1), 10**digits - 1)}"


def accounts(rng: random.Random, n: int, managers: list[Any], now: dt.datetime) -> list[Client]:
    """n accounts with their revenue paths and commitments by year, saved; owners taken in turn from `managers`."""
    used: set[str] = set()
    clients: list[Client] = []
    weights = [r.weight for r in REGIONS]
    for i, revenue in enumerate(_revenues(rng, n)):
        region = rng.choices(REGIONS, weights)[0]
        # A few small accounts are people: executives who book their private travel with the agency too.
        kind = Account.Kind.PERSON if revenue < 120_000 and rng.random() < 0.06 else Account.Kind.ORGANISATION
        name = _unique_person(rng, used) if kind == Account.Kind.PERSON else _unique_name(rng, region, used)
        if kind == Account.Kind.PERSON:
            revenue *= rng.uniform(0.1, 0.3)
        # Revenue path: half-yearly growth around +5%, so most clients grew into their tier and a few shrank.
        path = [revenue]
        for _ in HISTORY_DAYS:
            path.append(path[-1] / math.exp(rng.gauss(0.05, 0.2)))
        revenues = [_money(max(v, 1000.0)) for v in reversed(path)]
        # Cost to serve: mostly a healthy margin, but some small clients cost more than they bring.
        ratio = rng.uniform(1.0, 1.4) if revenue < 150_000 and rng.random() < 0.1 else rng.uniform(0.45, 0.85)
        account = Account(
            external_id=f"VOY-{1000 + i}", name=name, kind=kind, timezone=region.timezone,
            revenue_12m=revenues[-1], cost_to_serve_12m=_money(revenue * ratio),
            owner=managers[i % len(managers)] if managers else None,
        )
        # Clients commit a share of their expected bookings for the calendar year; most did so last year too.
        commitments = {now.year: _money(revenue * rng.uniform(0.2, 0.6))}
        if rng.random() < 0.85:
            commitments[now.year - 1] = _money(float(revenues[1]) * rng.uniform(0.2, 0.6))
        clients.append(Client(account, region, revenues, commitments, rng.randint(350, 900)))
    Account.objects.bulk_create([c.account for c in clients], batch_size=500)
    return clients


def commitments(clients: list[Client]) -> int:
    """Each client's booking commitments by calendar year, saved; returns how many."""
    rows = [
        Commitment(
            account=client.account, period_start=dt.date(year, 1, 1), period_end=dt.date(year, 12, 31),
            amount=amount, volume=max(1, int(amount / client.average_booking)), unit="bookings",
            note=f"{year} booking commitment",
        )
        for client in clients
        for year, amount in sorted(client.commitments.items())
    ]
    Commitment.objects.bulk_create(rows, batch_size=500)
    return len(rows)


def contacts(rng: random.Random, clients: list[Client]) -> int:
    """1-3 contacts per client, each with an e-mail address and a phone number in the client's country."""
    contacts: list[Contact] = []
    addresses: list[tuple[str, str]] = []
    used: set[str] = set()
    for client in clients:
        acct = client.account
        if acct.kind == Account.Kind.PERSON:
            # A private client is their own contact, with a personal address.
            people = [(acct.name, "", f"{slugify(_ascii(acct.name))}.{acct.pk}@mail.example")]
        else:
            domain = slugify(_ascii(acct.name)) + ".example"
            people = []
            for _ in range(rng.randint(1, 3)):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                people.append((f"{first} {last}", rng.choice(TITLES), _ascii(f"{first}.{last}@{domain}").lower()))
        for name, title, email in people:
            phone = _phone(rng, client.region)
            if email in used or phone in used:
                continue
            used.update((email, phone))
            contacts.append(
                Contact(account=acct, name=name, title=title, external_id=f"{acct.external_id}-C{len(contacts) + 1}")
            )
            addresses.append((email, phone))
    Contact.objects.bulk_create(contacts, batch_size=500)
    points = []
    for contact, (email, phone) in zip(contacts, addresses, strict=True):
        points.append(ContactPoint(contact=contact, kind=ContactPoint.Kind.EMAIL, value=email, primary=True))
        points.append(ContactPoint(contact=contact, kind=ContactPoint.Kind.PHONE, value=phone, primary=True))
    ContactPoint.objects.bulk_create(points, batch_size=500)
    return len(contacts)


def _rules_tier(client: Client, rules: list[Tier], moments: list[dt.datetime], i: int) -> Tier | None:
    """The tier the rules gave the client at moments[i], from the figures it had then."""
    committed = client.commitments.get(timezone.localdate(moments[i]).year, Decimal(0))
    return tiers.decide(rules, committed, client.revenues[i], None).tier


def history(
    clients: list[Client], rules: list[Tier], moments: list[dt.datetime], demo: Any, step: Callable[[str], None]
) -> int:
    """Evaluate tiers as they were 18, 12 and 6 months ago, then now; returns the overrides made on the way.

    Revenue is set to each past figure before each evaluation, so the history shows clients growing into (and
    a few dropping out of) their tiers. One client had a trial upgrade between two evaluations, since ended.
    """

    def steady_tier(client: Client) -> Tier | None:
        seen = {_rules_tier(client, rules, moments, i) for i in range(len(moments))}
        return seen.pop() if len(seen) == 1 else None

    # The trial goes to a client that stayed in one tier below the top the whole time.
    trial = next((c for c in clients if steady_tier(c) in rules[1:]), None)
    made = 0
    for i, moment in enumerate(moments):
        step(f"tiers as of {timezone.localdate(moment)}")
        bulk_update_rows(Account, ["revenue_12m"], [(c.revenues[i], c.account.pk) for c in clients])
        tiers.recompute(now=moment)
        if trial is not None and i == 1:
            # Recorded as it happened, months ago: do_override_tier only takes expiries in the future.
            tier = _rules_tier(trial, rules, moments, i)
            assert tier is not None
            started = moment + dt.timedelta(days=60)
            TierOverride.objects.create(
                account=trial.account, tier=rules[rules.index(tier) - 1], created_by=demo, created_at=started,
                reason="Trial: faster response times during their ERP migration",
                expires_at=started + dt.timedelta(days=90),
            )
            trial_only = Account.objects.filter(pk=trial.account.pk)
            tiers.recompute(trial_only, now=started)
            tiers.recompute(trial_only, now=started + dt.timedelta(days=91))  # the night after it expired
            made += 1
    return made


def current_overrides(clients: list[Client], rules: list[Tier], moments: list[dt.datetime], demo: Any) -> int:
    """Two live overrides: a pilot lifted to the top tier, and a client the rules moved down kept where it was."""
    if len(rules) < 2:
        return 0
    rank = {t.pk: i for i, t in enumerate(rules)}
    tier_of = dict(Account.objects.filter(tier__isnull=False).values_list("pk", "tier_id"))
    taken = set(TierOverride.objects.values_list("account_id", flat=True))
    now, made = timezone.now(), 0
    pilot = next((c for c in clients if tier_of.get(c.account.pk) == rules[1].pk and c.account.pk not in taken), None)
    if pilot is not None:
        do_override_tier(pilot.account, rules[0], "Strategic pilot: new regional contract signed",
                         now + dt.timedelta(days=90), demo)
        taken.add(pilot.account.pk)
        made += 1
    for client in clients:
        before, after = _rules_tier(client, rules, moments, -2), tier_of.get(client.account.pk)
        if client.account.pk in taken or before is None or after is None or rank[after] <= rank[before.pk]:
            continue
        do_override_tier(client.account, before, "Retention: kept while their travel policy is renegotiated",
                         now + dt.timedelta(days=60), demo)
        made += 1
        break
    return made
